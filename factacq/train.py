"""The one training loop (pretraining and injection runs), checkpoints, and `factacq pretrain`.

AdamW with decay on matrices only, linear warmup then cosine or linear decay to
``min_lr_ratio * lr`` at ``optim.total_steps`` (held there afterwards, so a continuation past the
horizon never trains at zero LR), gradient clipping, gradient accumulation over micro batches (the
global batch is independent of memory), fp32 on CPU and bf16 autocast on GPU. A checkpoint holds
model, optimizer, scheduler, data position and RNG states: continuing is exactly like never stopping.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from factacq.atomic import atomic_dir, json_text
from factacq.errors import FactacqError
from factacq.params import OptimParams, Params, dump_params, load_params

BASE_SECTIONS = ("corpus", "tokenizer", "model", "optim", "pretrain")


@dataclass
class Batch:
    input_ids: torch.LongTensor  # [B, L]
    background: torch.BoolTensor  # [B]: rows untouched by injection


@dataclass
class TrainState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    data_position: int = 0  # stream rows consumed so far
    tokens: int = 0
    optim: OptimParams | None = None  # the params the optimizer and schedule were built from
    total_steps: int | None = None  # the schedule's horizon


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FactacqError(f"device: {device!r} requested but CUDA is not available")
    return device


# --------------------------------------------------------------------------- optimizer and schedule


def make_optimizer(model: torch.nn.Module, op: OptimParams) -> torch.optim.AdamW:
    """AdamW; weight decay only on >= 2-D weights (matrices and embeddings), not on 1-D params."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": op.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    # the fused kernel (CPU and CUDA) does the whole update in one pass: ~10x less time than the loop
    fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW(groups, lr=op.lr, betas=op.betas, eps=op.eps, fused=fused)


def lr_ratio(step: int, op: OptimParams, total_steps: int) -> float:
    """LR multiplier for the update that follows ``step`` completed updates."""
    if step < op.warmup_steps:
        return (step + 1) / op.warmup_steps
    if op.schedule == "constant":
        return 1.0
    span = max(1, total_steps - op.warmup_steps)
    progress = min(1.0, (step - op.warmup_steps) / span)
    if op.schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return op.min_lr_ratio + (1.0 - op.min_lr_ratio) * shape


def make_scheduler(optimizer, op: OptimParams, total_steps: int, constant_lr: float | None = None):
    """LambdaLR over :func:`lr_ratio`; ``constant_lr`` holds the LR at that value instead."""
    if constant_lr is not None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: constant_lr / op.lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_ratio(step, op, total_steps))


# --------------------------------------------------------------------------- one update


def _takes_logits_to_keep(model) -> bool:
    model = getattr(model, "module", model)  # through a DDP wrapper
    forward = getattr(model, "_orig_mod", model).forward  # and a torch.compile one
    return "logits_to_keep" in inspect.signature(forward).parameters


def row_losses(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row, in fp32: a [B] tensor (works through DDP).

    Logits are computed for the first L-1 positions only (``logits_to_keep``) so the vocab-sized
    tensor is produced contiguous, with no slice copy; that is most of a step's memory traffic."""
    return _row_losses(model, input_ids, _takes_logits_to_keep(model))


def _row_losses(model, input_ids: torch.Tensor, keep_logits: bool) -> torch.Tensor:
    targets = input_ids[:, 1:]
    if keep_logits:
        keep = torch.arange(input_ids.size(1) - 1, device=input_ids.device)
        logits = model(input_ids=input_ids, logits_to_keep=keep).logits
    else:
        logits = model(input_ids=input_ids).logits[:, :-1]
    ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                         reduction="none")
    return ce.view(targets.shape).mean(dim=1)


_compiled_row_losses = None


def _loss_fn(model, compile: bool = False) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:
    """:func:`row_losses`, or with ``compile`` (params ``compile: true``) or for a model wrapped in
    ``torch.compile`` the whole loss (model and cross-entropy) compiled around the plain model, so
    inductor fuses the vocab-sized softmax too. Compiled numerics differ from eager in the last bits."""
    global _compiled_row_losses
    inner = getattr(model, "_orig_mod", None)
    if inner is None and not compile:
        return row_losses
    inner = model if inner is None else inner
    if hasattr(inner, "no_sync"):  # a DDP wrapper
        raise FactacqError("compile: true is for single-process training; under torchrun (DDP/FSDP) "
                           "set compile: false")
    if _compiled_row_losses is None:
        _compiled_row_losses = torch.compile(_row_losses)
    keep = _takes_logits_to_keep(inner)
    return lambda _, input_ids: _compiled_row_losses(inner, input_ids, keep)


def _autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


_PHASES = {  # train(desc=...) -> how a divergence names the run, and what it leaves behind
    "pretrain": ("pretraining", "no base was saved; lower optim.lr{now}"),
    "inject": ("injection run", "the run stays incomplete (run.json complete: false) and its "
                                "checkpoints/latest as it was; lower optim.lr{now} or inject.constant_lr"),
}


def check_finite(loss: float, grad_norm: float, lr: float, step: int, phase: str = "train",
                 step_offset: int = 0, base_lr: float | None = None) -> None:
    """Refuse a non-finite loss or gradient norm (a diverged run) with one line naming the run, the
    step (``step - step_offset``, the run's own step) and the value. Only reads the floats."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    name, hint = _PHASES.get(phase, (phase, "lower optim.lr{now}"))
    value = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm} (loss {loss:.4g})"
    where = f"step {step - step_offset}" + (f" (global step {step})" if step_offset else "")
    hint = hint.format(now=f" (now {base_lr:g})" if base_lr is not None else "")
    raise FactacqError(f"{name}: non-finite {value} at {where}, lr {lr:g}: training diverged and "
                       f"stopped before this update; {hint}")


def train_step(state: TrainState, batch: Batch, *, micro_batch_size: int | None = None,
               grad_clip: float | None = 1.0, device: str = "cpu", compile: bool = False,
               phase: str = "train", step_offset: int = 0) -> dict:
    """One optimizer update on ``batch`` (accumulated over micro batches). Returns loss, bg_loss
    (background rows only; nan if none), lr (used for this update), grad_norm (before clipping).
    ``compile``: the loss through torch.compile (see :func:`_loss_fn`). A non-finite loss or
    gradient norm raises FactacqError (:func:`check_finite`, naming ``phase`` and the step) before
    the optimizer step, so the weights, optimizer and ``state.step`` stay those of the last good
    step."""
    model, optimizer = state.model, state.optimizer
    model.train()
    ids = batch.input_ids.to(device, non_blocking=True)
    n_rows = ids.size(0)
    micro = micro_batch_size or n_rows
    loss_fn = _loss_fn(model, compile)
    losses = []
    for i in range(0, n_rows, micro):
        last = i + micro >= n_rows
        # under DDP, gradients are all-reduced once, on the last micro batch
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(device):
                rl = loss_fn(model, ids[i:i + micro])
            (rl.sum() / n_rows).backward()
        losses.append(rl.detach())
    rl = torch.cat(losses).cpu()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, grad_clip if grad_clip else float("inf"))
    if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
        grad_norm = grad_norm.full_tensor()
    lr = optimizer.param_groups[0]["lr"]
    loss, grad_norm = float(rl.mean()), float(grad_norm)
    check_finite(loss, grad_norm, float(lr), state.step + 1, phase, step_offset,
                 state.optim.lr if state.optim else None)
    optimizer.step()
    state.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.tokens += int(ids.numel())
    bg = batch.background.cpu()
    return {
        "loss": loss,
        "bg_loss": float(rl[bg].mean()) if bool(bg.any()) else float("nan"),
        "lr": float(lr),
        "grad_norm": grad_norm,
    }


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters in glibc's malloc.h
_KEEP_BYTES = 1 << 30
_kept_freed_memory: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the kernel.

    A training step allocates and frees the same large buffers every time (the default's logits
    are 4064 x 4096 fp32 = 67 MB). glibc serves a block over its mmap threshold (dynamic, at most
    32 MB) with fresh pages and unmaps it on free, and trims the heap top, so every step page-faults
    those buffers in again: about a fifth of a default CPU step (see the README's benchmarks).
    Raising the mmap and trim thresholds to 1 GiB keeps them on the heap. The numerics are
    bit-identical (only addresses change; a test checks it); the cost is that the process keeps its
    peak memory until it exits. Process-wide and idempotent; returns False (and does nothing)
    where the C library is not glibc, or when FACTACQ_KEEP_FREED_MEMORY=0.
    """
    global _kept_freed_memory
    if _kept_freed_memory is None:
        _kept_freed_memory = False
        if os.environ.get("FACTACQ_KEEP_FREED_MEMORY", "1") != "0":
            try:
                import ctypes

                libc = ctypes.CDLL(None)
                if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
                    _kept_freed_memory = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
                                              and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
            except OSError:
                pass
    return _kept_freed_memory


def train(state: TrainState, n_steps: int, get_batch: Callable[[TrainState], Batch], *,
          on_step: Callable[[TrainState, dict], None] | None = None,
          micro_batch_size: int | None = None, grad_clip: float | None = 1.0, device: str = "cpu",
          compile: bool = False, desc: str = "train", step_offset: int = 0) -> TrainState:
    """Run ``n_steps`` updates; ``get_batch(state)`` gives the next batch (and advances
    ``state.data_position``); ``on_step(state, metrics)`` runs after each update. Metrics include
    ``tokens_per_s`` of the update. Calls :func:`keep_freed_memory` first.

    A non-finite loss or gradient norm stops training with a FactacqError before that update (and
    before its ``on_step``, so nothing is saved from it) naming ``desc`` ("pretrain", "inject") and
    the step: ``state.step - step_offset`` (an injection run passes its checkpoint's step).

    Progress: a tqdm bar (steps, loss, tokens/s, ETA), by default tqdm.auto's (a widget in a
    notebook). Environment variable FACTACQ_PROGRESS: "0" turns it off; "terminal" writes a plain
    text bar to the process's real stderr (``sys.__stderr__``; in a Jupyter kernel that captures
    fd 2, the copy of the original stderr it keeps) and nothing into the notebook, so `factacq run`,
    whose papermill kernels inherit its stderr, shows training progress in the user's terminal."""
    keep_freed_memory()
    bar, stream = _progress_bar(n_steps, desc)
    try:
        for _ in range(n_steps):
            t0 = time.perf_counter()
            batch = get_batch(state)
            metrics = train_step(state, batch, micro_batch_size=micro_batch_size, grad_clip=grad_clip,
                                 device=device, compile=compile, phase=desc, step_offset=step_offset)
            metrics["tokens_per_s"] = batch.input_ids.numel() / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
            bar.update(1)
            if on_step is not None:
                on_step(state, metrics)
    finally:
        bar.close()
        if stream is not None:
            stream.close()
    return state


def _progress_bar(n_steps: int, desc: str):
    """The tqdm bar of :func:`train` (see FACTACQ_PROGRESS there) and a stream to close, or None."""
    mode = os.environ.get("FACTACQ_PROGRESS", "1")
    if mode != "terminal":
        return tqdm(total=n_steps, desc=desc, unit="step", dynamic_ncols=True, disable=mode == "0"), None
    from tqdm.std import tqdm as text_tqdm

    out, stream = sys.__stderr__, None
    # ipykernel >= 6 points fd 2 (sys.__stderr__) into a pipe that it forwards to the notebook as
    # well as to the original stderr; its sys.stderr.fileno() is a copy of that original stderr
    if type(sys.stderr).__module__.startswith("ipykernel"):
        try:
            fd = sys.stderr.fileno()
        except (OSError, ValueError):  # no fd capture: fd 2 is still the real stderr
            fd = None
        if fd is not None:
            out = stream = open(fd, "w", buffering=1, closefd=False)
    if out is None:  # no stderr at all (pythonw, a detached daemon)
        return tqdm(total=n_steps, disable=True), None
    return text_tqdm(total=n_steps, desc=desc, unit="step", file=out, dynamic_ncols=True,
                     mininterval=1.0), stream


def stream_batches(stream, batch_size: int) -> Callable[[TrainState], Batch]:
    """``get_batch`` for plain training: the next ``batch_size`` rows at ``state.data_position``."""

    def get_batch(state: TrainState) -> Batch:
        ids = stream.rows(state.data_position, batch_size)
        state.data_position += batch_size
        return Batch(ids, torch.ones(batch_size, dtype=torch.bool))

    return get_batch


# --------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"python": [version, list(internal), gauss], "numpy": _numpy_state()}


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _set_rng_state(rng: dict) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    n = rng["numpy"]
    np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))


def save_checkpoint(state: TrainState, path, extra: dict | None = None, tokenizer=None,
                    model_state: dict | None = None, optimizer_state: dict | None = None) -> None:
    """Write a checkpoint folder atomically (temp dir + rename): model (safetensors), optimizer.pt,
    scheduler.pt, state.json (step, data_position, tokens, optim, extra, python/numpy RNG), rng.pt
    (torch RNG), and the tokenizer if given (so the folder also loads as a plain HF model).
    ``model_state`` / ``optimizer_state`` replace the live state dicts (FSDP gathers them)."""
    with atomic_dir(path) as tmp:
        model = getattr(state.model, "module", state.model)
        model.save_pretrained(tmp, safe_serialization=True, state_dict=model_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        torch.save(optimizer_state or state.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(state.scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        info = {"step": state.step, "data_position": state.data_position, "tokens": state.tokens,
                "optim": state.optim.model_dump(mode="json") if state.optim else None,
                "total_steps": state.total_steps,
                "extra": extra or {}, "rng": _rng_state()}
        (tmp / "state.json").write_text(json_text(info))


CHECKPOINT_STATE_KEYS = ("step", "data_position", "tokens", "rng")


def read_checkpoint(path, optimizer: bool = True) -> dict:
    """A checkpoint folder's state.json, after checking every file :func:`load_checkpoint` reads:
    state.json (valid JSON with step, data_position, tokens, rng and a valid optim), config.json,
    the safetensors weights (headers cover the files), scheduler.pt, rng.pt and, with
    ``optimizer``, optimizer.pt (loaded memory-mapped, weights only). A missing, truncated or
    corrupt file is one FactacqError line naming it."""
    from pydantic import ValidationError
    from safetensors import safe_open

    from factacq.errors import first_line
    from factacq.params import validation_error
    from factacq.runlog import read_json_object

    path = Path(path)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise FactacqError(f"{path}: not a factacq checkpoint (no state.json)")
    info = read_json_object(state_file, "checkpoint state")
    for key in CHECKPOINT_STATE_KEYS:
        value = info.get(key)
        ok = isinstance(value, dict) if key == "rng" else (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        if not ok:
            what = "an object" if key == "rng" else "a non-negative integer"
            raise FactacqError(f"{state_file}: corrupt checkpoint state (field {key!r} must be {what}, "
                               f"got {value!r})")
    if info.get("optim"):
        if not isinstance(info["optim"], dict):
            raise FactacqError(f"{state_file}: corrupt checkpoint state (field 'optim' must be an "
                               f"object, got {type(info['optim']).__name__})")
        try:
            OptimParams(**info["optim"])
        except ValidationError as exc:
            raise validation_error(exc, f"{state_file} (optim)") from None
    config = path / "config.json"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FactacqError(f"{path}: incomplete checkpoint (no config.json)") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise FactacqError(f"{config}: corrupt checkpoint model config (not valid JSON: "
                           f"{first_line(exc)})") from None
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise FactacqError(f"{path}: incomplete checkpoint (no model.safetensors)")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError (truncated, not safetensors), OSError
            raise FactacqError(f"{file}: corrupt checkpoint weights (truncated or not safetensors: "
                               f"{first_line(exc)})") from None
    for name in (["optimizer.pt"] if optimizer else []) + ["scheduler.pt", "rng.pt"]:
        file = path / name
        if not file.is_file():
            raise FactacqError(f"{path}: incomplete checkpoint (no {name})")
        try:
            torch.load(file, weights_only=True, mmap=True, map_location="cpu")
        except Exception as exc:  # RuntimeError (truncated zip), UnpicklingError, EOFError, OSError
            reason = first_line(exc).split(". ")[0]  # torch's first sentence
            raise FactacqError(f"{file}: corrupt checkpoint file (cannot load: {reason})") from None
    return info


def load_checkpoint(path, op: OptimParams | None = None, device: str = "cpu",
                    total_steps: int | None = None, constant_lr: float | None = None,
                    reset_optimizer: bool = False, dtype: str | None = None,
                    trust_remote_code: bool = False) -> tuple[TrainState, dict]:
    """Load a checkpoint folder: model, optimizer and scheduler state, data position and RNG states
    (restored, so training on continues exactly as if never stopped). ``op`` replaces the saved
    optimizer params (lr, betas, weight decay, schedule); ``reset_optimizer`` starts fresh moments.
    ``dtype`` and ``trust_remote_code`` are those of params.model (see models.load_model): a bf16 run
    resumes in bf16, a remote-code model loads its code."""
    from factacq.models import load_model

    path = Path(path)
    info = read_checkpoint(path, optimizer=not reset_optimizer)  # bad files: one line naming them
    saved_op = OptimParams(**info["optim"]) if info.get("optim") else OptimParams()
    # the horizon: as asked, else op's own, else the one the checkpoint's schedule was built with
    horizon = (total_steps or (op.total_steps if op else None) or info.get("total_steps")
               or saved_op.total_steps or max(info["step"], 1))
    op = op or saved_op
    model = load_model(path, trust_remote_code=trust_remote_code, dtype=dtype).to(device)
    optimizer = make_optimizer(model, op)
    if not reset_optimizer:  # moments from the checkpoint, hyperparameters from op
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True,
                                             map_location=device))
        for group, h in zip(optimizer.param_groups, hyper):
            group.pop("initial_lr", None)
            group.update(h)
    scheduler = make_scheduler(optimizer, op, horizon, constant_lr=constant_lr)
    sched_state = torch.load(path / "scheduler.pt", weights_only=True)
    scheduler.last_epoch = sched_state["last_epoch"]
    scheduler.base_lrs = [op.lr for _ in optimizer.param_groups]
    for group, fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["lr"] = op.lr * fn(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    state = TrainState(model, optimizer, scheduler, step=info["step"],
                       data_position=info["data_position"], tokens=info["tokens"], optim=op,
                       total_steps=horizon)
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    _set_rng_state(info["rng"])
    return state, info.get("extra", {})


# --------------------------------------------------------------------------- pretraining


def base_key(params: Params, documents_sha: str, tokenizer_fp: str) -> str:
    """The base's cache key: a hash of the params sections BASE_SECTIONS (and compile, when true),
    the sha256 of the documents it trains on (``tokenizer.documents_hash`` of the train split) and
    the tokenizer's fingerprint (``tokenizer.tokenizer_fingerprint``): editing the files of a
    ``corpus.source`` folder, or swapping the tokenizer, keys a new base."""
    blob = json.dumps([params.section_hash(*BASE_SECTIONS, "compile"), documents_sha, tokenizer_fp,
                       "base-v2"])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _train_documents(params: Params) -> list[str]:
    from factacq.corpus import load_documents, split_documents

    return split_documents(load_documents(params.corpus), params.corpus, "train")


def base_dir(params: Params, tokenizer=None, documents_sha: str | None = None) -> Path:
    """<cache_dir>/base/<:func:`base_key`>. Callers that have the run's ``tokenizer`` and the
    ``documents_sha`` (documents_hash of the train split) pass them; else the documents are loaded
    and hashed (the default corpus: a few seconds the first time in a process, then cached; a hub
    corpus is streamed) and the tokenizer is got (``tokenizer.get_tokenizer``: a BPE not cached yet
    is trained and cached). :func:`base_cached` asks whether a base is complete without either."""
    from factacq.tokenizer import documents_hash, get_tokenizer, tokenizer_fingerprint

    docs = None
    if documents_sha is None:
        docs = _train_documents(params)
        documents_sha = documents_hash(docs)
    if tokenizer is None:
        tokenizer = get_tokenizer(params, docs)  # docs None: get_tokenizer loads them if it needs them
    return Path(params.cache_dir) / "base" / base_key(params, documents_sha, tokenizer_fingerprint(tokenizer))


def base_cached(params: Params) -> bool:
    """Whether a complete base of ``params`` is cached, building and writing nothing (the dry run).
    The documents are loaded (and a cached tokenizer looked up) only when some cached base was
    pretrained from the same params sections; no cached tokenizer means no base either."""
    from factacq.tokenizer import documents_hash, get_tokenizer, load_tokenizer, tokenizer_dir

    section_hash = params.section_hash(*BASE_SECTIONS, "compile")
    candidates = []
    for sidecar in (Path(params.cache_dir) / "base").glob("*/run.json"):
        try:
            candidates.append(json.loads(sidecar.read_text()).get("params_hash"))
        except (OSError, ValueError, AttributeError):
            continue
    if section_hash not in candidates:
        return False
    docs = _train_documents(params)
    documents_sha = documents_hash(docs)
    if params.tokenizer.path or params.model.name_or_path:
        tokenizer = get_tokenizer(params, docs)  # loads that tokenizer, trains nothing
    else:
        cached = tokenizer_dir(params, documents_sha)
        if not (cached / "tokenizer.json").is_file():
            return False
        tokenizer = load_tokenizer(cached)
    return _base_complete(base_dir(params, tokenizer, documents_sha), params)


def stage_path(params: Params, stage: str, tokenizer=None, documents_sha: str | None = None) -> Path:
    """The folder of stage checkpoint ``stage`` of the base (``tokenizer``, ``documents_sha``: as for
    :func:`base_dir`)."""
    if stage not in params.pretrain.stages:
        raise FactacqError(f"inject.stage: unknown stage {stage!r} "
                           f"(pretrain.stages: {sorted(params.pretrain.stages)})")
    return base_dir(params, tokenizer, documents_sha) / "stages" / stage


def _base_complete(path: Path, params: Params) -> bool:
    return (path / "run.json").is_file() and all(
        (path / "stages" / s / "state.json").is_file() for s in params.pretrain.stages)


def new_state(params: Params, vocab_size: int, eos_token_id: int | None, device: str) -> TrainState:
    """A fresh model (preset, seeded by pretrain.seed, or an HF model), optimizer and schedule."""
    from factacq.models import build_model, load_model

    torch.manual_seed(params.pretrain.seed)
    random.seed(params.pretrain.seed)
    np.random.seed(params.pretrain.seed)
    mp = params.model
    if mp.name_or_path:
        model = load_model(mp.name_or_path, mp.revision, mp.trust_remote_code, mp.dtype)
    else:
        model = build_model(mp, vocab_size, params.pretrain.seq_len, eos_token_id)
    model.to(device)
    op = params.optim
    horizon = op.total_steps or params.pretrain.steps
    optimizer = make_optimizer(model, op)
    return TrainState(model, optimizer, make_scheduler(optimizer, op, horizon), optim=op,
                      total_steps=horizon)


def pretrain(params: Params, force: bool = False) -> Path:
    """Pretrain the base model and save the stage checkpoints; reuse a complete base with the same
    :func:`base_key` (params sections, documents, tokenizer) unless ``force``. Returns the base
    folder (see docs/architecture.md). A diverging loss stops it with a FactacqError and no base."""
    import pandas as pd

    from factacq.corpus import build_stream, load_documents, split_documents
    from factacq.models import count_parameters
    from factacq.provenance import provenance
    from factacq.tokenizer import documents_hash, get_tokenizer, tokenizer_fingerprint

    docs = load_documents(params.corpus)
    train_docs = split_documents(docs, params.corpus, "train")
    tokenizer = get_tokenizer(params, train_docs)
    documents_sha = documents_hash(train_docs)
    out = base_dir(params, tokenizer, documents_sha)
    if _base_complete(out, params) and not force:
        return out
    device = resolve_device(params.device)
    stream = build_stream(params, tokenizer, "train", documents=docs)
    pp = params.pretrain
    state = new_state(params, len(tokenizer), tokenizer.eos_token_id, device)
    stage_at = {step: name for name, step in pp.stages.items()}
    log = []
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:

        def on_step(state: TrainState, m: dict) -> None:
            if state.step % pp.log_every == 0 or state.step in stage_at or state.step == 1:
                log.append({"step": state.step, "loss": m["loss"], "lr": m["lr"],
                            "grad_norm": m["grad_norm"], "tokens": state.tokens,
                            "tokens_per_s": m["tokens_per_s"]})
            if state.step in stage_at:
                save_checkpoint(state, tmp / "stages" / stage_at[state.step],
                                extra={"stage": stage_at[state.step], "base": out.name}, tokenizer=tokenizer)

        train(state, pp.steps, stream_batches(stream, pp.batch_size), on_step=on_step,
              micro_batch_size=pp.micro_batch_size, grad_clip=params.optim.grad_clip, device=device,
              compile=params.compile, desc="pretrain")
        pd.DataFrame(log).to_parquet(tmp / "pretrain_log.parquet", index=False)
        (tmp / "params.yaml").write_text(dump_params(params))
        run = {"kind": "pretrain", "params_hash": params.section_hash(*BASE_SECTIONS, "compile"),
               "base_key": out.name, "documents_sha256": documents_sha,
               "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "complete": True,
               "seconds": round(time.perf_counter() - t0, 2), "n_parameters": count_parameters(state.model),
               "stream": {"n_rows": stream.n_rows, "seq_len": stream.seq_len,
                          "n_tokens": int(len(stream.tokens)), "path": str(stream.path)},
               "epochs": state.data_position / stream.n_rows,
               "stages": dict(pp.stages), "provenance": provenance(device)}
        (tmp / "run.json").write_text(json_text(run, indent=2))
    return out


def cmd_pretrain(args) -> int:
    """`factacq pretrain PARAMS [--force]` (from the params file's project root)."""
    from factacq.pipeline import project_root, working_dir

    path = Path(args.params).resolve()
    with working_dir(project_root(path)):
        params = load_params(path)
        out = pretrain(params, force=getattr(args, "force", False)).resolve()
    log = __import__("pandas").read_parquet(out / "pretrain_log.parquet")
    print(f"base: {out}")
    for name, step in sorted(params.pretrain.stages.items(), key=lambda kv: kv[1]):
        loss = log.loc[log.step.between(step - 49, step), "loss"].mean()  # over the last 50 steps
        print(f"  stage {name:>8} step {step:>6}  loss {loss:.3f}  {out / 'stages' / name}")
    return 0
