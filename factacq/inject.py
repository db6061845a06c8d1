"""The injection run: `factacq inject PARAMS` and `factacq resume RUN_DIR`.

A run continues pretraining from a stage checkpoint (or an HF model) on the next rows of the same
background stream, through the loop of factacq.train: each batch gets the injections the plan
(factacq.plan) puts at its step, the probes of factacq.probe are scored on their schedule, and the
probe / injection / train records go to the run log (factacq.runlog) in chunks, with a checkpoint
(factacq.checkpoint) every ``inject.checkpoint_every`` steps. At the end the run's report
(factacq.report) is stored in run.json and printed. `factacq resume RUN_DIR` continues a killed run
from its last checkpoint to the same end, bit for bit on the CPU. Under torchrun the same loop runs
data-parallel (factacq.distributed). Step conventions: docs/architecture.md.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from factacq import checkpoint
from factacq import distributed as D
from factacq.atomic import atomic_path
from factacq.corpus import prepare_corpus, replaced_rows
from factacq.errors import FactacqError
from factacq.knowledge import knowledge_from_params
from factacq.params import Params, dump_params, load_params, parse_params, project_root, working_dir
from factacq.plan import build_plan, choose_rows, inject_rows, passage_ids, preflight, probed_probes
from factacq.pretrain import pretrain, stage_path
from factacq.probe import choose_foils, encode_probes, probe_schedule, score
from factacq.provenance import provenance
from factacq.report import RunReport, run_report
from factacq.runlog import RunLogWriter, load_run, load_sidecar, write_json_atomic
from factacq.train import Batch, make_scheduler, new_state, resolve_device, train

CHECKPOINT = "latest"
RUN_MARKERS = ("run.json", "condition.json")  # the sidecars of a folder factacq made


# --------------------------------------------------------------------------- the run


def run_id(params: Params) -> str:
    return f"{params.name}-{params.section_hash()}"


class _Run:
    """Everything a run rebuilds from its params: knowledge, tokenizer, stream, plan, probes."""

    def __init__(self, params: Params, run_dir: Path, world: D.World, device: str):
        self.params, self.run_dir, self.world, self.device = params, run_dir, world, device
        self.run_id = run_id(params)
        pp = params.probe
        self.batch_size = params.run_batch_size
        self.seq_len = params.pretrain.seq_len
        ks, self.groups = knowledge_from_params(params)
        corpus = prepare_corpus(params, "heldout" if params.corpus.heldout else "train")
        self.tokenizer, self.documents_sha = corpus.tokenizer, corpus.documents_sha  # sha: for base_dir
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.text_ids = passage_ids(ks, self.groups, self.tokenizer)
        self.plan = build_plan(params, ks, self.groups, {k: len(v) for k, v in self.text_ids.items()})
        foils = choose_foils(ks, self.groups, pp.n_foils, pp.foil_seed) if pp.foils != "none" else None
        self.encoded = encode_probes(probed_probes(ks, self.groups), self.tokenizer, foils,
                                     full_foils=pp.foils == "full")
        self.schedule = probe_schedule(self.plan, pp, self.groups)
        rows_of_item: dict[str, list[int]] = {}
        for i, (item_id, _, _) in enumerate(self.encoded.keys):
            rows_of_item.setdefault(item_id, []).append(i)
        at: dict[int, list[int]] = {}
        for item_id, steps in self.schedule.items():
            for s in steps.tolist():
                at.setdefault(s, []).extend(rows_of_item.get(item_id, []))
        self.probes_at = {s: np.asarray(sorted(v), dtype=np.int64) for s, v in at.items()}
        self.split, self.stream = corpus.split, corpus.stream  # the stream is built here
        self.shard = D.shard(self.batch_size, world)

    # ---- records

    def probe_records(self, model, step: int, global_step: int) -> list[dict]:
        idx = self.probes_at.get(step)
        if idx is None or len(idx) == 0:
            return []
        fsdp = D.is_fsdp(model)  # every rank takes part in every forward pass: all score all probes
        mine = idx if fsdp else idx[self.world.rank::self.world.size]
        values = score(D.unwrap(model), self.encoded.subset(mine), self.params.probe.batch_size,
                       self.device)
        parts = [(mine, values)] if fsdp else D.gather_objects((mine, values), self.world)
        records = []
        for rows, vals in parts:
            for j, i in enumerate(rows.tolist()):
                item_id, kind, index = self.encoded.keys[i]
                rec = {"run_id": self.run_id, "record": "probe", "step": step, "global_step": global_step,
                       "item_id": item_id, "scenario": self.groups[item_id], "kind": kind,
                       "probe_index": index}
                rec.update({k: float(v[j]) for k, v in vals.items()})
                records.append(rec)
        records.sort(key=lambda r: (r["item_id"], r["kind"], r["probe_index"]))
        return records

    def batch(self, step: int, base_position: int, records: list, global_step: int):
        """The batch of update step + 1 (this rank's shard), with the planned injections."""
        ids = self.stream.batch(step, self.batch_size, base_position,
                                self.params.inject.duplicate_background)
        events = self.plan.at(step)
        background = torch.ones(self.batch_size, dtype=torch.bool)
        if events:
            rows = choose_rows(step, len(events), self.batch_size, self.params.inject.seed)
            passages = [self.text_ids[f"{e.item_id}/{e.text_index}"] for e in events]
            ids, background = inject_rows(ids, passages, self.eos_id, rows)
            for ev, row in zip(events, rows):
                records.append({"run_id": self.run_id, "record": "injection", "step": step,
                                "global_step": global_step, "item_id": ev.item_id,
                                "scenario": ev.scenario, "text_index": ev.text_index, "row": row,
                                "cohort": ev.cohort})
        return Batch(ids[self.shard], background[self.shard])


def _start_state(params: Params, tokenizer, device: str, documents_sha: str | None = None):
    """The state the run continues from: a stage checkpoint (with its optimizer and LR state) or an
    HF model (fresh optimizer, schedule from params.optim). ``documents_sha``: see pretrain.base_dir."""
    ip = params.inject
    if params.model.name_or_path is None and ip.stage in params.pretrain.stages:
        # the base _execute built (or reused) before
        path = stage_path(params, ip.stage, tokenizer, documents_sha)
    elif (Path(ip.stage) / "state.json").is_file():
        path = Path(ip.stage)
    elif params.model.name_or_path is not None:
        state = new_state(params, len(tokenizer), tokenizer.eos_token_id, device)
        if ip.constant_lr is not None:
            state.scheduler = make_scheduler(state.optimizer, params.optim, state.total_steps,
                                             constant_lr=ip.constant_lr)
        return state, {"model": params.model.name_or_path, "revision": params.model.revision}
    else:
        raise FactacqError(f"inject.stage: {ip.stage!r} is neither a stage of pretrain.stages "
                           f"({sorted(params.pretrain.stages)}) nor a checkpoint folder")
    state, _ = checkpoint.load_checkpoint(path, params.optim, device, constant_lr=ip.constant_lr,
                                          reset_optimizer=ip.reset_optimizer, dtype=params.model.dtype,
                                          trust_remote_code=params.model.trust_remote_code)
    return state, {"stage": ip.stage, "path": str(path)}


def _loop(run: _Run, state, base: dict, start: int, writer) -> None:
    """Train from run step ``start`` to the end: batches with injections, probes on the schedule,
    log chunks every flush_every steps, checkpoints every checkpoint_every steps."""
    params, world = run.params, run.world
    ip = params.inject
    total = run.plan.total_steps
    base_step, base_position = base["step"], base["data_position"]
    tokens_per_step = run.batch_size * run.seq_len
    pending: list[dict] = []
    n_local = run.shard.stop - run.shard.start
    last_batch = {}

    def flush():
        if world.main and pending:
            writer.append(pending)
        pending.clear()

    def get_batch(state):
        s = state.step - base_step
        batch = run.batch(s, base_position, pending, state.step)
        state.data_position = base_position + (s + 1) * run.batch_size
        last_batch["n_bg"] = int(batch.background.sum())
        return batch

    def on_step(state, m):
        s = state.step - base_step
        bg = m["bg_loss"] if last_batch["n_bg"] else 0.0
        loss_sum, n, bg_sum, n_bg = D.all_sum([m["loss"] * n_local, n_local, bg * last_batch["n_bg"],
                                               last_batch["n_bg"]], world)
        pending.append({"run_id": run.run_id, "record": "train", "step": s, "global_step": state.step,
                        "loss": loss_sum / n, "bg_loss": bg_sum / n_bg if n_bg else float("nan"),
                        "lr": m["lr"], "grad_norm": m["grad_norm"], "tokens": s * tokens_per_step})
        pending.extend(run.probe_records(state.model, s, state.step))
        if s % ip.checkpoint_every == 0 or s == total:
            flush()
            model_state, optimizer_state = D.full_state_dicts(state, world)  # FSDP: gathered on rank 0
            if world.main:
                checkpoint.save_checkpoint(state, run.run_dir / "checkpoints" / CHECKPOINT,
                                           extra={"run_step": s, "n_chunks": writer.next_chunk},
                                           model_state=model_state, optimizer_state=optimizer_state)
            D.barrier(world)
        elif s % ip.flush_every == 0:
            flush()

    if start == 0:
        pending.extend(run.probe_records(state.model, 0, base_step))
    train(state, total - start, get_batch, on_step=on_step,
          micro_batch_size=params.pretrain.micro_batch_size, grad_clip=params.optim.grad_clip,
          device=run.device, compile=params.compile, desc="inject", step_offset=base_step)
    flush()


def _execute(params: Params, run_dir: Path, resume_from: Path | None) -> Path:
    """Run the injection run of ``params`` in ``run_dir`` from its start (``resume_from`` None) or
    from the checkpoint ``resume_from``: check the inputs, build (or reuse) the base, load the state,
    train to the end, then store the report in run.json and print it."""
    world, device = D.init_world(resolve_device(params.device))
    t0 = time.perf_counter()
    try:
        if params.compile and world.active:
            raise FactacqError("compile: true is for single-process runs; under torchrun set "
                               "compile: false")
        if world.main and resume_from is None:
            preflight(params)  # refuse bad input before minutes of pretraining
            run_dir.mkdir(parents=True, exist_ok=True)
        if world.main and params.model.name_or_path is None and params.inject.stage in params.pretrain.stages:
            pretrain(params)  # one rank builds (or reuses) the cached tokenizer, stream and base
        D.barrier(world)
        run = _Run(params, run_dir, world, device)
        # FSDP loads the full model on the CPU; fully_shard moves each rank's shard to its device
        load_device = "cpu" if world.active and params.inject.parallel == "fsdp" else device
        if resume_from is None:
            state, base, start = _start(run, load_device)
        else:
            state, base, start = _restart(run, resume_from, load_device)
        writer = RunLogWriter(run_dir)
        D.shard_state(state, world, device, params.inject.parallel)
        if start < run.plan.total_steps:
            _loop(run, state, base, start, writer)
        D.barrier(world)
        if world.main:
            _finish(run, time.perf_counter() - t0)
    finally:
        D.close_world(world)
    return run_dir


def _start(run: _Run, load_device: str) -> tuple:
    """A fresh start: an earlier run's log and checkpoints removed, the start state loaded, and
    params.yaml and run.json (complete: false) written. Returns (state, base, start step 0)."""
    params, world, run_dir = run.params, run.world, run.run_dir
    if world.main:
        for sub in ("log", "checkpoints"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    D.barrier(world)
    state, source = _start_state(params, run.tokenizer, load_device, run.documents_sha)
    # the next rows pretraining would have seen, or the held-out split from its start
    position = 0 if params.corpus.heldout else state.data_position
    base = {"step": state.step, "data_position": position, "stream": run.split, **source}
    if world.main:
        with atomic_path(run_dir / "params.yaml") as tmp:
            tmp.write_text(dump_params(params))
        write_json_atomic(run_dir / "run.json", {
            "kind": "inject", "run_id": run.run_id, "complete": False,
            "params": params.model_dump(mode="json"),
            "seeds": {"inject": params.inject.seed, "pretrain": params.pretrain.seed,
                      "knowledge_assign": params.knowledge.assign_seed,
                      "foils": params.probe.foil_seed, "analysis": params.analysis.seed},
            "base": base, "world_size": world.size,
            "tokens_per_step": run.batch_size * run.seq_len,
            "plan": run.plan.to_dict(),
            "probe_steps": {i: s.tolist() for i, s in run.schedule.items()},
            "provenance": provenance(run.device), **_background_record(run, position)})
    return state, base, 0


def _background_record(run: _Run, position: int) -> dict:
    """With inject.duplicate_background: the pool's first stream row and how many of the run's
    rows are pool copies (before the surgery writes knowledge over some rows); else nothing."""
    dup = run.params.inject.duplicate_background
    if dup is None:
        return {}
    rows = run.plan.total_steps * run.batch_size
    return {"background": {"pool_start": position, "rows": rows,
                           "replaced_rows": replaced_rows(position, rows, dup)}}


def _restart(run: _Run, resume_from: Path, load_device: str) -> tuple:
    """A resume: the state of checkpoint ``resume_from`` loaded and the log chunks written after
    it dropped. Returns (state, base from run.json, the checkpoint's run step)."""
    params, world = run.params, run.world
    base = load_sidecar(run.run_dir)["base"]
    state, extra = checkpoint.load_checkpoint(resume_from, params.optim, load_device,
                                              constant_lr=params.inject.constant_lr,
                                              dtype=params.model.dtype,
                                              trust_remote_code=params.model.trust_remote_code)
    if world.main:
        RunLogWriter(run.run_dir).truncate_after(extra["n_chunks"])
    D.barrier(world)
    return state, base, extra["run_step"]


def _finish(run: _Run, seconds: float) -> None:
    """The run's report (factacq.report) on its log, stored in run.json (complete: true); the
    commands print it (:func:`cmd_inject`, :func:`cmd_resume`), a notebook shows it itself."""
    report = run_report(load_run(run.run_dir), run.params)
    sidecar = load_sidecar(run.run_dir)
    sidecar.update({"complete": True, "report": report.to_dict(),
                    "seconds": round(sidecar.get("seconds", 0) + seconds, 1)})
    write_json_atomic(run.run_dir / "run.json", sidecar)


# --------------------------------------------------------------------------- run folders


def made_by_factacq(folder: Path) -> bool:
    """True for a folder holding an injection run's run.json or a condition's condition.json."""
    sidecar = folder / "run.json"
    if (folder / "condition.json").is_file():
        return True
    if not sidecar.is_file():
        return False
    try:
        return json.loads(sidecar.read_text()).get("kind") == "inject"
    except (OSError, ValueError, AttributeError):
        return False


def check_replaceable(folder: Path, what: str = "run folder") -> None:
    """Refuse to replace the contents of a folder that factacq did not make: it must be missing,
    empty, or hold a factacq sidecar (:data:`RUN_MARKERS`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FactacqError(f"{folder}: the {what} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not made_by_factacq(folder):
        raise FactacqError(f"{folder}: not empty and not made by factacq (no run.json of an injection "
                           f"run, no condition.json); refusing to replace its contents: choose an empty "
                           f"or new {what}")


# --------------------------------------------------------------------------- run, resume, the commands


def run_inject(params: Params, run_dir: str | Path | None = None) -> Path:
    """Run the injection condition of ``params`` into ``run_dir`` (default <output_dir>/<name>),
    starting afresh: an earlier run's log and checkpoints there are replaced, but only in a folder
    that is new, empty, or made by factacq (:func:`check_replaceable`)."""
    run_dir = Path(run_dir) if run_dir is not None else params.run_dir
    check_replaceable(run_dir)
    return _execute(params, run_dir, None)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    ckpt = run_dir / "checkpoints" / CHECKPOINT
    if (ckpt / "state.json").is_file():
        return ckpt
    # a kill between the two renames of a checkpoint swap leaves the previous one aside
    old = sorted((run_dir / "checkpoints").glob(f"{CHECKPOINT}.old-*"))
    return next((p for p in old if (p / "state.json").is_file()), None)


def resume(run_dir: str | Path) -> Path:
    """Continue a killed run from its last checkpoint to the same end (log chunks written after
    that checkpoint are dropped and written again); with no checkpoint yet, start it again."""
    run_dir = Path(run_dir)
    sidecar_path = run_dir / "run.json"
    if not sidecar_path.is_file():
        raise FactacqError(f"{run_dir}: not an injection run folder (no run.json)")
    sidecar = load_sidecar(run_dir)
    kind = sidecar.get("kind")
    if kind != "inject":
        what = ("a pretraining base folder (kind 'pretrain')" if kind == "pretrain"
                else f"kind {kind!r}")
        tail = "; `factacq pretrain` reuses or rebuilds a base" if kind == "pretrain" else ""
        raise FactacqError(f"{sidecar_path}: {what}, not an injection run; factacq resume takes the "
                           f"folder of a `factacq inject` run{tail}")
    if not isinstance(sidecar.get("params"), dict):
        raise FactacqError(f"{sidecar_path}: no 'params' entry (the params of the injection run)")
    params = parse_params(sidecar["params"], str(sidecar_path))
    ckpt = _latest_checkpoint(run_dir)
    if ckpt is not None:  # refuse a damaged checkpoint before any work, one line naming the file
        extra = checkpoint.read_checkpoint(ckpt).get("extra")
        for key in ("run_step", "n_chunks"):
            if not isinstance(extra, dict) or not isinstance(extra.get(key), int):
                raise FactacqError(f"{ckpt / 'state.json'}: not an injection-run checkpoint (no "
                                   f"integer extra.{key})")
        base = sidecar.get("base")
        if not isinstance(base, dict) or not all(isinstance(base.get(k), int)
                                                 for k in ("step", "data_position")):
            raise FactacqError(f"{sidecar_path}: no valid 'base' entry (its step and data_position)")
    return _execute(params, run_dir, ckpt)


def cmd_inject(args) -> int:
    """`factacq inject PARAMS [--out RUN_DIR]`."""
    path = Path(args.params).resolve()
    out = getattr(args, "out", None)
    out = Path(out).resolve() if out is not None else None
    with working_dir(project_root(path)):  # relative paths in params: against the project root
        _print_finished(run_inject(load_params(path), out))
    return 0


def _print_finished(run_dir: Path) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 prints
        print(f"run: {run_dir}")
        print(loaded_report(run_dir).report())


def cmd_resume(args) -> int:
    """`factacq resume RUN_DIR` (from the run folder's project root, as the run was made)."""
    run_dir = Path(args.run_dir).resolve()
    with working_dir(project_root(run_dir / "run.json")):
        _print_finished(resume(run_dir))
    return 0


def loaded_report(run_dir: str | Path) -> RunReport:
    """The end-of-run report stored in a finished run's run.json (print it, or ``.report()``)."""
    sidecar = load_sidecar(run_dir)
    if "report" not in sidecar:
        raise FactacqError(f"{Path(run_dir) / 'run.json'}: no report yet (the run is not complete; "
                           f"factacq resume finishes it)")
    return RunReport.from_dict(sidecar["report"])
