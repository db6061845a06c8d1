"""Checkpoints: a training state saved to a folder and loaded back exactly.

A checkpoint folder holds the model (safetensors + config, so it also loads as a plain HF model),
optimizer.pt, scheduler.pt, rng.pt (torch RNG) and state.json (step, data position, tokens, optim,
horizon, extra, python and numpy RNG states). Loading restores all of it, so training continues as
if it had never stopped. Every write goes through a temp folder + rename (factacq.atomic); every
read checks the files first and names a bad one in one line (:func:`read_checkpoint`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import safe_open

from factacq import models
from factacq.atomic import atomic_dir, json_text
from factacq.errors import FactacqError, first_line
from factacq.files import read_json_object
from factacq.params import OptimParams, validation_error
from factacq.train import TrainState, make_optimizer, make_scheduler

CHECKPOINT_STATE_KEYS = ("step", "data_position", "tokens", "rng")


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


def read_checkpoint(path, optimizer: bool = True) -> dict:
    """A checkpoint folder's state.json, after checking every file :func:`load_checkpoint` reads:
    state.json (valid JSON with step, data_position, tokens, rng and a valid optim), config.json,
    the safetensors weights (headers cover the files), scheduler.pt, rng.pt and, with
    ``optimizer``, optimizer.pt (loaded memory-mapped, weights only). A missing, truncated or
    corrupt file is one FactacqError line naming it."""
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
    path = Path(path)
    info = read_checkpoint(path, optimizer=not reset_optimizer)  # bad files: one line naming them
    saved_op = OptimParams(**info["optim"]) if info.get("optim") else OptimParams()
    # the horizon: as asked, else op's own, else the one the checkpoint's schedule was built with
    horizon = (total_steps or (op.total_steps if op else None) or info.get("total_steps")
               or saved_op.total_steps or max(info["step"], 1))
    op = op or saved_op
    model = models.load_model(path, trust_remote_code=trust_remote_code, dtype=dtype).to(device)
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

