"""The one training loop, for pretraining and injection runs alike.

Read top to bottom: the state (model, optimizer, schedule, data position), the optimizer and LR
schedule, one update (:func:`train_step`), and the loop (:func:`train`), which asks a ``get_batch``
for each batch and calls an ``on_step`` after each update (pretraining saves its stages there, an
injection run logs, probes and checkpoints there). Checkpoints: factacq.checkpoint; pretraining the
base and its cache: factacq.pretrain; the injection run: factacq.inject.

AdamW with decay on matrices only, linear warmup then cosine or linear decay to
``min_lr_ratio * lr`` at ``optim.total_steps``, or warmup-stable-decay (``wsd``: constant, then
a linear decay over the last ``decay_fraction`` of the horizon) (held there afterwards, so a continuation past the
horizon never trains at zero LR), gradient clipping, gradient accumulation over micro batches (the
global batch is independent of memory), fp32 on CPU and bf16 autocast on GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from factacq.errors import FactacqError
from factacq.models import build_model, load_model
from factacq.params import OptimParams, Params


# --------------------------------------------------------------------------- the state


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
    if op.schedule == "wsd":
        decay_start = total_steps - op.decay_fraction * (total_steps - op.warmup_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1.0, total_steps - decay_start))
        return op.min_lr_ratio + (1.0 - op.min_lr_ratio) * (1.0 - progress)
    span = max(1, total_steps - op.warmup_steps)
    progress = min(1.0, (step - op.warmup_steps) / span)
    if op.schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return op.min_lr_ratio + (1.0 - op.min_lr_ratio) * shape


def run_lr_ratio(step: int, op: OptimParams, total_steps: int, constant_lr: float | None = None
                 ) -> float:
    """LR multiplier for run step ``step``: the schedule at ``op.start_step + step`` (or
    ``constant_lr``), ramped up linearly over the first ``op.rewarm_steps`` steps."""
    ratio = constant_lr / op.lr if constant_lr is not None else lr_ratio(op.start_step + step, op,
                                                                          total_steps)
    if step < op.rewarm_steps:
        ratio *= (step + 1) / op.rewarm_steps
    return ratio


def make_scheduler(optimizer, op: OptimParams, total_steps: int, constant_lr: float | None = None):
    """LambdaLR over :func:`run_lr_ratio`; ``constant_lr`` holds the LR at that value instead."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: run_lr_ratio(step, op, total_steps, constant_lr))


def new_state(params: Params, vocab_size: int, eos_token_id: int | None, device: str) -> TrainState:
    """A fresh model (preset, seeded by pretrain.seed, or an HF model), optimizer and schedule."""
    torch.manual_seed(params.pretrain.seed)
    random.seed(params.pretrain.seed)
    np.random.seed(params.pretrain.seed)
    mp = params.model
    if mp.name_or_path:
        model = load_model(mp.name_or_path, mp.revision, mp.trust_remote_code, mp.dtype,
                           gguf_file=mp.gguf_file)
    else:
        model = build_model(mp, vocab_size, params.pretrain.seq_len, eos_token_id)
    model.to(device)
    op = params.optim
    horizon = op.total_steps or params.pretrain.steps
    optimizer = make_optimizer(model, op)
    return TrainState(model, optimizer, make_scheduler(optimizer, op, horizon), optim=op,
                      total_steps=horizon)



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


# --------------------------------------------------------------------------- the loop


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
