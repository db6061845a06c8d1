"""Is the Hugging Face hub reachable, and does a name look like a hub id or a local path?"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import urllib.parse
from pathlib import Path

from factacq.errors import FactacqError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def offline() -> bool:
    """True when the hub counts as offline (see :func:`hub_offline`)."""
    return hub_offline() is not None


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers a TCP connection (once per process; offline mode: False).
    A source with a local fallback checks this first instead of waiting out the hub's retries."""
    if hub_offline():
        return False
    endpoint = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def looks_like_hub_id(name: str) -> bool:
    """"org/name" or "name": no leading ./, /, ~, no backslash, at most one slash."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def check_model_source(name: str, field: str) -> str | None:
    """Check a model or tokenizer source before any training. An existing folder must hold a
    config.json (models) or be a folder; a name that is no folder must look like a hub id (and not
    start in a local folder that exists). Returns a note when it cannot be checked (a hub id while
    the hub is offline), else None; a definite problem is a FactacqError naming the field and value."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FactacqError(f"{field}: {name!r} is a file, not a model folder")
        if field == "model.name_or_path" and not (path / "config.json").is_file():
            raise FactacqError(f"{field}: {name!r} is not a model folder (no config.json)")
        return None
    if not looks_like_hub_id(name) or ("/" in name and Path(name.split("/")[0]).is_dir()):
        raise FactacqError(f"{field}: folder not found: {name!r}")
    if offline():
        return f"{field} {name!r}: a hub id, not checked (the hub is offline)"
    return None


# the hub while offline: answer from the local cache at once, or refuse in one line

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> str | None:
    """Why the Hugging Face hub counts as offline: HF_HUB_OFFLINE, HF_DATASETS_OFFLINE or
    TRANSFORMERS_OFFLINE set, or huggingface_hub / datasets in offline mode; None when online."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var].strip()}"
    import datasets.config
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
        return "huggingface_hub offline mode"
    return None


@contextlib.contextmanager
def hub_offline_mode(offline: str | None):
    """While the hub is offline, make huggingface_hub and datasets see it too (they read the
    variables once, at import; a variable set later would leave datasets retrying the network for
    ~20 s): a cached dataset or a local folder then loads, anything else fails at once."""
    if not offline:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def is_offline_failure(exc: BaseException) -> bool:
    """Whether a datasets / huggingface_hub error says it needed the hub, which is offline."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    seen = set()
    while exc is not None and id(exc) not in seen:
        text = str(exc)
        if (isinstance(exc, OfflineModeIsEnabled) or "OfflineModeIsEnabled" in text
                or "offline mode is enabled" in text.lower()):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def hub_offline_error(field: str, dataset_id: str, reason: str, local_files: str) -> FactacqError:
    """The one line for a hub dataset that the offline hub cannot give (nor the local cache)."""
    return FactacqError(
        f"{field} 'hf:{dataset_id}': the Hugging Face hub is offline ({reason}) and {dataset_id!r} "
        f"is neither a local dataset folder nor in the datasets cache; give a local copy: set "
        f"{field} to {local_files}, or to hf:<a local folder of the dataset's data files>")
