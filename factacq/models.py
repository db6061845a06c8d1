"""Models: OLMo-architecture presets built from config, and any causal LM by local path or hub id."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, OlmoConfig, OlmoForCausalLM, PreTrainedModel

from factacq.errors import FactacqError, first_line
from factacq.params import ModelParams

# Shapes of the OLMo architecture (non-parametric LayerNorm, SwiGLU, RoPE, tied embeddings as in
# OLMo-1B). Parameter counts are for vocab 4096; `micro` is for tests only.
PRESETS: dict[str, dict] = {
    "micro": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    "mini": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4),
    "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=5, num_attention_heads=4),
    "base": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8),
}


def build_model(mp: ModelParams, vocab_size: int, seq_len: int, eos_token_id: int | None = None
                ) -> OlmoForCausalLM:
    """A freshly initialised OLMo-architecture model of preset ``mp.preset`` (seed torch first)."""
    if mp.preset not in PRESETS:
        raise FactacqError(f"model.preset: unknown preset {mp.preset!r} (choose from {sorted(PRESETS)})")
    config = OlmoConfig(
        vocab_size=vocab_size,
        max_position_embeddings=seq_len,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        bos_token_id=None,
        use_cache=False,
        **PRESETS[mp.preset],
    )
    return OlmoForCausalLM(config)


def load_model(name_or_path, revision: str | None = None, trust_remote_code: bool = False,
               dtype: str | torch.dtype | None = None) -> PreTrainedModel:
    """Any causal LM through ``AutoModelForCausalLM.from_pretrained``: a local folder or a hub id.

    ``dtype`` "auto"/None loads fp32 (training casts with autocast); "bfloat16" loads bf16 weights.
    """
    torch_dtype = {None: torch.float32, "auto": torch.float32, "float32": torch.float32,
                   "bfloat16": torch.bfloat16}.get(dtype, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_path), revision=revision, trust_remote_code=trust_remote_code, dtype=torch_dtype
        )
    except (OSError, ValueError) as exc:
        raise FactacqError(f"model.name_or_path: cannot load {str(name_or_path)!r}: "
                           f"{first_line(exc)}") from None
    model.config.use_cache = False
    return model


def count_parameters(model: torch.nn.Module, non_embedding: bool = False) -> int:
    """Unique parameters (tied weights once); ``non_embedding`` leaves out the input embedding
    unless it is tied to the output layer (then the lm_head matmul still costs FLOPs)."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    if non_embedding and not getattr(model.config, "tie_word_embeddings", False):
        total -= model.get_input_embeddings().weight.numel()
    return total
