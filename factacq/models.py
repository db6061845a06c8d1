"""Models: OLMo-architecture presets built from config, any causal LM by local path, hub id or
``pkg:<package>``, GGUF files dequantized to fp32, and `factacq convert-gguf` (GGUF -> HF folder)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, OlmoConfig, OlmoForCausalLM, PreTrainedModel

from factacq.atomic import atomic_dir, json_text
from factacq.errors import FactacqError, first_line
from factacq.model_source import check_gguf_support, gguf_of, resolve_source
from factacq.params import ModelParams
from factacq.tokenizer import load_tokenizer

# Shapes of the OLMo architecture (non-parametric LayerNorm, SwiGLU, RoPE, tied embeddings as in
# OLMo-1B). With the default vocabulary of 2048: micro 0.09M (tests only), mini 0.39M, tiny 1.31M,
# small 5.8M, base 26.2M parameters (with 4096: 0.15M, 0.52M, 1.57M, 6.3M, 27.3M).
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
               dtype: str | torch.dtype | None = None, gguf_file: str | None = None) -> PreTrainedModel:
    """Any causal LM through ``AutoModelForCausalLM.from_pretrained``: a local folder, a hub id or
    ``pkg:<package>`` (an installed package's folder, :mod:`factacq.model_source`).

    ``dtype`` "auto"/None loads fp32 (training casts with autocast); "bfloat16" loads bf16 weights.
    ``gguf_file`` (model.gguf_file; a folder without config.json loads its single .gguf file) is
    dequantized to fp32 and rebuilt as a plain model (:func:`load_gguf`), which saves like any other.
    """
    torch_dtype = {None: torch.float32, "auto": torch.float32, "float32": torch.float32,
                   "bfloat16": torch.bfloat16}.get(dtype, dtype)
    name = str(name_or_path)
    gguf = gguf_of(name, gguf_file)
    if gguf is not None:
        return load_gguf(name, gguf, revision).to(torch_dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_source(name, "model.name_or_path"), revision=revision,
            trust_remote_code=trust_remote_code, dtype=torch_dtype
        )
    except (OSError, ValueError) as exc:
        raise FactacqError(f"model.name_or_path: cannot load {name!r}: {first_line(exc)}") from None
    model.config.use_cache = False
    return model


def load_gguf(name_or_path: str, gguf_file: str, revision: str | None = None) -> PreTrainedModel:
    """The model of GGUF file ``gguf_file`` in ``name_or_path`` (a folder, ``pkg:<package>`` or a
    hub id), dequantized to fp32 by transformers, then rebuilt from its config and state dict: a
    GGUF-loaded model refuses ``save_pretrained``, which checkpoints and convert-gguf need."""
    check_gguf_support(gguf_file)
    name = str(name_or_path)
    try:
        quantized = AutoModelForCausalLM.from_pretrained(
            resolve_source(name, "model.name_or_path"), gguf_file=gguf_file, revision=revision,
            dtype=torch.float32)
    except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        raise FactacqError(f"model.gguf_file: cannot load {gguf_file!r} from model.name_or_path "
                           f"{name!r}: {first_line(exc)}") from None
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.use_cache = False
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    return model


# --------------------------------------------------------------------------- convert-gguf

CONVERTED = "converted_from.json"  # what `factacq convert-gguf` wrote a folder from


def convert_gguf(source, out, gguf_file: str | None = None, revision: str | None = None) -> Path:
    """Write the model and tokenizer of a GGUF file as a plain HF folder ``out`` (fp32 safetensors,
    config, tokenizer files and :data:`CONVERTED`), atomically; it then loads like any checkpoint
    (model.name_or_path, or AutoModelForCausalLM.from_pretrained). ``source``: a folder (with
    ``gguf_file``, or its single .gguf file), ``pkg:<package>``, a hub id with ``gguf_file``, or the
    .gguf file itself. ``out`` may be new, empty, or an earlier conversion (replaced)."""
    name = str(source)
    path = Path(resolve_source(name, "source")).expanduser()
    if path.is_file():
        if gguf_file not in (None, path.name):
            raise FactacqError(f"--gguf-file: {gguf_file!r}, but the source {name!r} is the GGUF "
                               f"file {path.name!r}")
        name, gguf_file = str(path.parent), path.name
    elif not path.is_dir() and gguf_file is None:
        raise FactacqError(f"source: {name!r} is no folder or .gguf file here (a hub id needs "
                           f"--gguf-file)")
    gguf = gguf_of(name, gguf_file, "source")
    if gguf is None:
        raise FactacqError(f"source: {name!r} holds no .gguf file (or is an HF folder, config.json): "
                           f"name one with --gguf-file")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONVERTED).is_file())):
        raise FactacqError(f"--out: {str(out)!r} exists and is not an earlier convert-gguf folder "
                           f"(no {CONVERTED}); refusing to replace it: choose a new or empty folder")
    model = load_gguf(name, gguf, revision)
    tokenizer = load_tokenizer(name, revision, gguf_file=gguf)
    gguf_path = Path(resolve_source(name, "source")).expanduser() / gguf
    sha = _sha256(gguf_path) if gguf_path.is_file() else None  # None: a hub id's file
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERTED).write_text(json_text(
            {"source": str(source), "gguf_file": gguf, "revision": revision, "gguf_sha256": sha,
             "dtype": "float32", "parameters": count_parameters(model)}, indent=2) + "\n")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def cmd_convert_gguf(args) -> int:
    out = convert_gguf(args.source, args.out, gguf_file=args.gguf_file, revision=args.revision)
    print(f"wrote {out}: loads as model.name_or_path: {str(out)!r}")
    return 0


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
