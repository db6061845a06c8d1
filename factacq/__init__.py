"""factacq: how language models acquire and forget factual knowledge during pretraining.

Data flows one way: params -> knowledge + corpus -> training loop (injection, probing) -> run log ->
metrics and fits -> figures. See docs/architecture.md for the module map.
"""

__version__ = "0.1.0"

from factacq.errors import FactacqError  # noqa: E402
from factacq.params import Params, load_params  # noqa: E402

__all__ = ["FactacqError", "Params", "load_params", "__version__"]
