"""Knowledge injection: the plan, batch surgery, and the injection run.

`factacq inject PARAMS` continues pretraining from a stage checkpoint (or an HF model) on the next
rows of the same background stream, writes each planned passage + EOS at the front of a batch row
(the row's tail cut, the batch shape unchanged), probes on the schedule of factacq.probe, and logs
probe / injection / train records through factacq.runlog. `factacq resume RUN_DIR` continues a killed
run from its last checkpoint to the same end, bit for bit on the CPU. Under torchrun the same loop
runs data-parallel (factacq.distributed). Step conventions: docs/architecture.md.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from factacq import distributed as D
from factacq.atomic import atomic_path
from factacq.errors import FactacqError
from factacq.params import GROUPS, SCENARIOS, Params, dump_params, load_params, parse_params

CHECKPOINT = "latest"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Injection:
    step: int  # run step s: the passage is in the batch of update s + 1
    item_id: str
    scenario: str
    text_index: int  # 0 = the passage, k = paraphrase k


class InjectionPlan:
    """All injections of a run, sorted by step (then item order), and the run's length."""

    def __init__(self, events, total_steps: int, items_by_group: dict[str, tuple[str, ...]]):
        self.events = tuple(sorted(events, key=lambda e: e.step))
        self.total_steps = int(total_steps)
        self.items_by_group = items_by_group
        self._by_step: dict[int, list[Injection]] = {}
        for ev in self.events:
            self._by_step.setdefault(ev.step, []).append(ev)

    @property
    def first_step(self) -> int:
        return self.events[0].step if self.events else 0

    @property
    def last_step(self) -> int:
        return self.events[-1].step if self.events else 0

    def at(self, step: int) -> list[Injection]:
        return list(self._by_step.get(step, ()))

    def rows_per_step(self) -> dict[int, int]:
        return {s: len(evs) for s, evs in self._by_step.items()}

    def to_dict(self) -> dict:
        return {"total_steps": self.total_steps, "first_step": self.first_step,
                "last_step": self.last_step, "items_by_group": {g: list(v) for g, v in
                                                                self.items_by_group.items()},
                "events": [asdict(e) for e in self.events]}


def injection_order(groups: dict[str, str]) -> list[str]:
    """Injected items interleaved over the scenarios (p0, d0, o0, p1, ...), so that with a stagger
    every scenario spans the same stretch of training."""
    by_group = [[i for i, g in groups.items() if g == s] for s in SCENARIOS]
    order = []
    for k in range(max((len(ids) for ids in by_group), default=0)):
        order += [ids[k] for ids in by_group if k < len(ids)]
    return order


def _text_length(passage_lengths: dict | None, item_id: str, k: int) -> int | None:
    if not passage_lengths:
        return None
    return passage_lengths.get(f"{item_id}/{k}", passage_lengths.get(item_id))


def build_plan(params: Params, ks, groups: dict[str, str],
               passage_lengths: dict[str, int] | None = None) -> InjectionPlan:
    """:func:`plan_of` with its refusals naming the params file."""
    try:
        return plan_of(params, ks, groups, passage_lengths)
    except FactacqError as exc:
        raise in_params(params, exc) from None


def in_params(params: Params, exc: FactacqError) -> FactacqError:
    """The error with the params file in front (unless it already names it)."""
    msg = str(exc)
    if params.source == "<params>" or msg.startswith(params.source):
        return exc
    return FactacqError(f"{params.source}: {msg}")


def plan_of(params: Params, ks, groups: dict[str, str],
            passage_lengths: dict[str, int] | None = None) -> InjectionPlan:
    """The injection plan of ``params``: presets per scenario (paraphrase: text k at encounter k;
    duplicate: the passage every time; once: a single time), ``stagger`` steps between consecutive
    items' first injections, ``explicit`` per-item steps. Refuses, before any training, a step past
    the end of training, a step that needs more than ``max_row_fraction`` of the batch's rows, and
    (when ``passage_lengths`` gives token counts, keyed "item/k" or "item") a passage + EOS longer
    than a row."""
    ip = params.inject
    batch_size = ip.batch_size or params.pretrain.batch_size
    seq_len = params.pretrain.seq_len
    for item_id, steps in ip.explicit.items():
        group = groups.get(item_id)
        if group is None:
            raise FactacqError(f"inject.explicit: unknown item id {item_id!r}")
        if group not in SCENARIOS:
            raise FactacqError(f"inject.explicit.{item_id}: item is in group {group!r}, which is never "
                               f"injected (choose a paraphrase, duplicate or once item)")
        if len(set(steps)) != len(steps) or any(s < 0 for s in steps) or not steps:
            raise FactacqError(f"inject.explicit.{item_id}: steps must be distinct and >= 0, got {steps}")
    events = []
    for n, item_id in enumerate(injection_order(groups)):
        group = groups[item_id]
        start = ip.first_step + n * ip.stagger
        if item_id in ip.explicit:
            steps = sorted(ip.explicit[item_id])
        elif group == "once":
            steps = [start]
        else:
            sched = getattr(ip, group)
            steps = [start + k * sched.interval for k in range(sched.count)]
        for k, step in enumerate(steps):
            text = k if group == "paraphrase" else 0
            if group == "paraphrase":
                n_texts = 1 + len(ks.get(item_id).paraphrases)
                if k >= n_texts:
                    raise FactacqError(f"inject.paraphrase.count: item {item_id!r} is injected {len(steps)} "
                                       f"times but has only {n_texts} texts (passage + paraphrases)")
            events.append(Injection(int(step), item_id, group, text))
    if not events:
        raise FactacqError("inject: the plan injects nothing (no paraphrase, duplicate or once items)")
    last = max(e.step for e in events)
    total = ip.total_steps or last + ip.steps_after_last
    for ev in events:
        if ev.step >= total:
            raise FactacqError(f"inject: item {ev.item_id!r} is injected at step {ev.step} but training "
                               f"ends at step {total} (inject.total_steps)")
    limit = ip.max_row_fraction * batch_size
    for step, n_rows in sorted(Counter(e.step for e in events).items()):
        if n_rows > limit:
            raise FactacqError(
                f"inject: step {step} needs {n_rows} rows of a {batch_size}-row batch, more than "
                f"inject.max_row_fraction={ip.max_row_fraction} allows; set inject.stagger or a larger "
                f"inject.batch_size")
    for ev in events:
        n_tokens = _text_length(passage_lengths, ev.item_id, ev.text_index)
        if n_tokens is not None and n_tokens + 1 > seq_len:
            raise FactacqError(
                f"inject: item {ev.item_id!r} text {ev.text_index} is {n_tokens} tokens + EOS, longer than "
                f"a row of pretrain.seq_len={seq_len}")
    items_by_group = {g: tuple(i for i, gg in groups.items() if gg == g)
                      for g in GROUPS}
    return InjectionPlan(events, total, items_by_group)


# --------------------------------------------------------------------------- batch surgery


def choose_rows(step: int, n: int, batch_size: int, seed: int = 0) -> list[int]:
    """``n`` distinct rows of a batch for the injections of ``step`` (seeded by seed and step)."""
    if n > batch_size:
        raise FactacqError(f"inject: step {step} needs {n} rows but the batch has {batch_size}")
    rng = np.random.default_rng([seed, step])
    return [int(r) for r in rng.choice(batch_size, size=n, replace=False)]


def inject_rows(input_ids: torch.Tensor, passages: list[list[int]], eos_id: int,
                rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Write passage + EOS at the front of each given row; the row's original tokens follow and its
    tail is cut, so the shape is unchanged. Returns (new ids, background mask: rows left alone)."""
    if len(passages) != len(rows) or len(set(rows)) != len(rows):
        raise FactacqError(f"inject: {len(passages)} passages for rows {rows} (one distinct row each)")
    out = input_ids.clone()
    batch_size, seq_len = input_ids.shape
    background = torch.ones(batch_size, dtype=torch.bool)
    for passage, row in zip(passages, rows):
        n = len(passage) + 1
        if n > seq_len:
            raise FactacqError(f"inject: a passage of {len(passage)} tokens + EOS does not fit a row of "
                               f"{seq_len}")
        head = torch.tensor(list(passage) + [eos_id], dtype=input_ids.dtype)
        out[row] = torch.cat([head, input_ids[row, : seq_len - n]])
        background[row] = False
    return out, background


# --------------------------------------------------------------------------- dry run


def _knowledge(params: Params):
    from factacq.knowledge import knowledge_from_params

    return knowledge_from_params(params)


def probed_probes(ks, groups: dict[str, str]) -> list:
    return [p for item in ks if groups.get(item.id) in GROUPS for p in item.probes]


def preflight(params: Params) -> tuple:
    """Everything a run can check before training, so that a dry run refuses what the run would:
    the device, the model and stage, the knowledge and its groups, the corpus, the tokenizer, and
    the plan with every passage + EOS fitting a row. Returns (knowledge, groups, plan, notes);
    ``notes`` say what could not be checked (a hub source while the hub is offline). Errors name
    the params file. Writes nothing (a tokenizer not cached yet is trained in memory, ~1 s)."""
    from factacq.corpus import load_documents, split_documents
    from factacq.hub import check_model_source, offline
    from factacq.tokenizer import get_tokenizer
    from factacq.train import resolve_device

    notes = []
    try:
        resolve_device(params.device)
        mp, ip = params.model, params.inject
        for field, value in (("model.name_or_path", mp.name_or_path), ("tokenizer.path", params.tokenizer.path)):
            if value is not None:
                note = check_model_source(value, field)
                notes += [note] if note else []
        stage_is_folder = (Path(ip.stage) / "state.json").is_file()
        if mp.name_or_path is None and ip.stage not in params.pretrain.stages and not stage_is_folder:
            raise FactacqError(f"inject.stage: {ip.stage!r} is neither a stage of pretrain.stages "
                               f"({sorted(params.pretrain.stages)}) nor a checkpoint folder")
        ks, groups = _knowledge(params)
        if params.corpus.source.startswith("hf:") and offline():
            notes.append(f"corpus.source {params.corpus.source!r}: on the hub, not checked (the hub is offline)")
            docs = None
        else:
            docs = load_documents(params.corpus)
        hub_tokenizer = params.tokenizer.path or mp.name_or_path
        if hub_tokenizer is None and docs is None:
            tokenizer = None
        elif hub_tokenizer is not None and not Path(hub_tokenizer).expanduser().exists() and offline():
            tokenizer = None
        else:
            tokenizer = get_tokenizer(params, docs and split_documents(docs, params.corpus, "train"),
                                      cache=False)
        lengths = None
        if tokenizer is None:
            notes.append("passage lengths: not checked (the tokenizer is on the hub, which is offline)")
        else:
            texts = {f"{i}/{k}": ks.get(i).text(k) for i in injected_items(groups)
                     for k in range(1 + len(ks.get(i).paraphrases))}
            enc = tokenizer(list(texts.values()), add_special_tokens=False)["input_ids"]
            lengths = {key: len(ids) for key, ids in zip(texts, enc)}
        plan = plan_of(params, ks, groups, lengths)
    except FactacqError as exc:
        raise in_params(params, exc) from None
    return ks, groups, plan, notes


def describe_plan(params: Params) -> dict:
    """Steps, injected rows per step, probe evaluations (schedule vs every step) and tokens of the
    injection run of ``params``, without training (for `factacq run --dry-run`), after
    :func:`preflight` has checked every input."""
    from factacq.probe import probe_schedule, schedule_evaluations
    from factacq.train import base_cached

    ks, groups, plan, notes = preflight(params)
    pp = params.probe
    probes = probed_probes(ks, groups)
    per_item = Counter(p.item_id for p in probes)
    schedule = probe_schedule(plan, pp, groups)
    every = probe_schedule(plan, pp.model_copy(update={"every_step": True}), groups)
    n_eval = schedule_evaluations(schedule, per_item)
    n_every = schedule_evaluations(every, per_item)
    batch_size = params.inject.batch_size or params.pretrain.batch_size
    seq_len = params.pretrain.seq_len
    rows = plan.rows_per_step()
    chars = {p.item_id: 0 for p in probes}
    for p in probes:
        chars[p.item_id] += len(p.prompt) + 1 + len(p.target)
    probe_tokens = sum(len(schedule[i]) * (chars[i] / 4 + per_item[i]) for i in schedule)
    n_params = None
    if params.model.preset is not None:
        from factacq.models import build_model, count_parameters

        with torch.device("meta"):
            n_params = count_parameters(build_model(params.model, params.tokenizer.vocab_size, seq_len))
    pretrain_steps = 0
    if params.model.name_or_path is None and not base_cached(params):
        pretrain_steps = params.pretrain.steps
    return {
        "steps": plan.total_steps,
        "first_injection": plan.first_step,
        "last_injection": plan.last_step,
        "injections": len(plan.events),
        "items": {g: len(v) for g, v in plan.items_by_group.items()},
        "injected_rows_per_step_max": max(rows.values()),
        "injected_rows_per_step_mean": round(len(plan.events) / plan.total_steps, 4),
        "knowledge_row_share_max": round(max(rows.values()) / batch_size, 4),
        "probes": len(probes),
        "probe_steps": len(set().union(*[set(s.tolist()) for s in schedule.values()])) if schedule else 0,
        "probe_evaluations": n_eval,
        "probe_evaluations_every_step": n_every,
        "probe_evaluation_ratio": round(n_every / max(n_eval, 1), 2),
        "probe_tokens": int(probe_tokens),
        "tokens_per_step": batch_size * seq_len,
        "train_tokens": plan.total_steps * batch_size * seq_len,
        "model_parameters": n_params,
        "pretrain_steps_to_run": pretrain_steps,
        "pretrain_tokens": pretrain_steps * params.pretrain.batch_size * seq_len,
        "not_checked": notes or "nothing: every input was checked",
    }


# --------------------------------------------------------------------------- the run


def run_id(params: Params) -> str:
    return f"{params.name}-{params.section_hash()}"


class _Run:
    """Everything a run rebuilds from its params: knowledge, tokenizer, stream, plan, probes."""

    def __init__(self, params: Params, run_dir: Path, world: D.World, device: str):
        from factacq.corpus import build_stream, load_documents, split_documents
        from factacq.probe import choose_foils, encode_probes, probe_schedule
        from factacq.tokenizer import documents_hash, get_tokenizer

        self.params, self.run_dir, self.world, self.device = params, run_dir, world, device
        self.run_id = run_id(params)
        ip, pp = params.inject, params.probe
        self.batch_size = ip.batch_size or params.pretrain.batch_size
        self.seq_len = params.pretrain.seq_len
        ks, self.groups = _knowledge(params)
        documents = load_documents(params.corpus)  # once, for the tokenizer, the stream, the base key
        train_documents = split_documents(documents, params.corpus, "train")
        self.tokenizer = get_tokenizer(params, train_documents)
        self.documents_sha = documents_hash(train_documents)  # for train.base_dir
        self.eos_id = int(self.tokenizer.eos_token_id)
        texts = {}
        for item_id in injected_items(self.groups):
            item = ks.get(item_id)
            for k in range(1 + len(item.paraphrases)):
                texts[f"{item_id}/{k}"] = item.text(k)
        enc = self.tokenizer(list(texts.values()), add_special_tokens=False)["input_ids"]
        self.text_ids = dict(zip(texts, enc))
        self.plan = build_plan(params, ks, self.groups, {k: len(v) for k, v in self.text_ids.items()})
        foils = choose_foils(ks, self.groups, pp.n_foils, params.inject.seed) if pp.foils != "none" else None
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
        self.split = "heldout" if params.corpus.heldout else "train"
        self.stream = build_stream(params, self.tokenizer, self.split, documents=documents)
        self.shard = D.shard(self.batch_size, world)

    # ---- records

    def probe_records(self, model, step: int, global_step: int) -> list[dict]:
        from factacq.probe import score

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
        from factacq.train import Batch

        ids = self.stream.batch(step, self.batch_size, base_position)
        events = self.plan.at(step)
        background = torch.ones(self.batch_size, dtype=torch.bool)
        if events:
            rows = choose_rows(step, len(events), self.batch_size, self.params.inject.seed)
            passages = [self.text_ids[f"{e.item_id}/{e.text_index}"] for e in events]
            ids, background = inject_rows(ids, passages, self.eos_id, rows)
            for ev, row in zip(events, rows):
                records.append({"run_id": self.run_id, "record": "injection", "step": step,
                                "global_step": global_step, "item_id": ev.item_id,
                                "scenario": ev.scenario, "text_index": ev.text_index, "row": row})
        return Batch(ids[self.shard], background[self.shard])


def injected_items(groups: dict[str, str]) -> list[str]:
    return [i for i, g in groups.items() if g in SCENARIOS]


def _start_state(params: Params, tokenizer, device: str, documents_sha: str | None = None):
    """The state the run continues from: a stage checkpoint (with its optimizer and LR state) or an
    HF model (fresh optimizer, schedule from params.optim). ``documents_sha``: see train.base_dir."""
    from factacq.train import load_checkpoint, new_state, stage_path

    ip = params.inject
    if params.model.name_or_path is None and ip.stage in params.pretrain.stages:
        # the base _execute built (or reused) before
        path = stage_path(params, ip.stage, tokenizer, documents_sha)
    elif (Path(ip.stage) / "state.json").is_file():
        path = Path(ip.stage)
    elif params.model.name_or_path is not None:
        state = new_state(params, len(tokenizer), tokenizer.eos_token_id, device)
        if ip.constant_lr is not None:
            from factacq.train import make_scheduler

            state.scheduler = make_scheduler(state.optimizer, params.optim, state.total_steps,
                                             constant_lr=ip.constant_lr)
        return state, {"model": params.model.name_or_path, "revision": params.model.revision}
    else:
        raise FactacqError(f"inject.stage: {ip.stage!r} is neither a stage of pretrain.stages "
                           f"({sorted(params.pretrain.stages)}) nor a checkpoint folder")
    state, _ = load_checkpoint(path, params.optim, device, constant_lr=ip.constant_lr,
                               reset_optimizer=ip.reset_optimizer, dtype=params.model.dtype,
                               trust_remote_code=params.model.trust_remote_code)
    return state, {"stage": ip.stage, "path": str(path)}


def _loop(run: _Run, state, base: dict, start: int, writer) -> None:
    """Train from run step ``start`` to the end: batches with injections, probes on the schedule,
    log chunks every flush_every steps, checkpoints every checkpoint_every steps."""
    from factacq.train import save_checkpoint, train

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
                save_checkpoint(state, run.run_dir / "checkpoints" / CHECKPOINT,
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


def _report(run_dir: Path, params: Params) -> dict:
    """Specificity, contrastive effectivity of memorization probes (CI) and stationarity."""
    from factacq import metrics
    from factacq.runlog import load_run

    frame = load_run(run_dir)
    window = params.analysis.window or params.probe.window
    out = {}
    for name, fn in (("specificity", lambda: metrics.specificity(frame, window)),
                     ("contrastive_effectivity", lambda: metrics.contrastive_effectivity(
                         frame, window, params.analysis.ci, params.analysis.bootstrap, params.analysis.seed)),
                     ("stationarity", lambda: metrics.stationarity(frame, params.analysis.stationarity_n))):
        try:
            out[name] = fn()
        except FactacqError as exc:
            out[name] = {"error": str(exc)}
    return out


def print_report(report: dict) -> None:
    # run.json stores a NaN as null (runlog.write_json_atomic): print it as nan again
    sp, ce, st = ({k: float("nan") if v is None else v for k, v in report.get(name, {}).items()}
                  for name in ("specificity", "contrastive_effectivity", "stationarity"))
    if "error" in sp:
        print(f"specificity: n/a ({sp['error']})")
    else:
        print(f"specificity (memorization): {sp['specificity']:.3f}  (control gain {sp['control_gain']:.4f}"
              f" / effectivity {sp['effectivity']:.4f})")
    if "error" in ce:
        print(f"contrastive effectivity: n/a ({ce['error']})")
    else:
        print(f"contrastive effectivity (memorization, {ce['column']}): {ce['mean']:.4f}  "
              f"{ce['ci']:.0%} CI [{ce['lo']:.4f}, {ce['hi']:.4f}]  ({ce['n_items']} items)")
    if "error" in st:
        print(f"stationarity: n/a ({st['error']})")
    else:
        print(f"stationarity ({st['column']}): first {st['n']} steps {st['first']:.4f}, last {st['n']} "
              f"{st['last']:.4f}, change {st['change']:+.4f} nats/token")


def _execute(params: Params, run_dir: Path, resume_from: Path | None) -> Path:
    from factacq.provenance import provenance
    from factacq.runlog import RunLogWriter, load_sidecar, write_json_atomic
    from factacq.train import load_checkpoint, resolve_device

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
            from factacq.train import pretrain

            pretrain(params)  # one rank builds (or reuses) the cached tokenizer, stream and base
        D.barrier(world)
        run = _Run(params, run_dir, world, device)
        # FSDP loads the full model on the CPU; fully_shard moves each rank's shard to its device
        load_device = "cpu" if world.active and params.inject.parallel == "fsdp" else device
        if resume_from is None:
            if world.main:
                for sub in ("log", "checkpoints"):
                    shutil.rmtree(run_dir / sub, ignore_errors=True)
            D.barrier(world)
            state, source = _start_state(params, run.tokenizer, load_device, run.documents_sha)
            # the next rows pretraining would have seen, or the held-out split from its start
            position = 0 if params.corpus.heldout else state.data_position
            base = {"step": state.step, "data_position": position, "stream": run.split, **source}
            start = 0
            if world.main:
                with atomic_path(run_dir / "params.yaml") as tmp:
                    tmp.write_text(dump_params(params))
                write_json_atomic(run_dir / "run.json", {
                    "kind": "inject", "run_id": run.run_id, "complete": False,
                    "params": params.model_dump(mode="json"),
                    "seeds": {"inject": params.inject.seed, "pretrain": params.pretrain.seed,
                              "knowledge_assign": params.knowledge.assign_seed,
                              "analysis": params.analysis.seed},
                    "base": base, "world_size": world.size,
                    "tokens_per_step": run.batch_size * run.seq_len,
                    "plan": run.plan.to_dict(),
                    "probe_steps": {i: s.tolist() for i, s in run.schedule.items()},
                    "provenance": provenance(device)})
        else:
            sidecar = load_sidecar(run_dir)
            base = sidecar["base"]
            state, extra = load_checkpoint(resume_from, params.optim, load_device,
                                           constant_lr=params.inject.constant_lr,
                                           dtype=params.model.dtype,
                                           trust_remote_code=params.model.trust_remote_code)
            start = extra["run_step"]
            if world.main:
                RunLogWriter(run_dir).truncate_after(extra["n_chunks"])
            D.barrier(world)
        writer = RunLogWriter(run_dir)
        D.shard_state(state, world, device, params.inject.parallel)
        if start < run.plan.total_steps:
            _loop(run, state, base, start, writer)
        D.barrier(world)
        if world.main:
            report = _report(run_dir, params)
            sidecar = load_sidecar(run_dir)
            sidecar.update({"complete": True, "report": report,
                            "seconds": round(sidecar.get("seconds", 0) + time.perf_counter() - t0, 1)})
            write_json_atomic(run_dir / "run.json", sidecar)
            print(f"run: {run_dir}")
            print_report(report)
    finally:
        D.close_world(world)
    return run_dir


def default_run_dir(params: Params) -> Path:
    return Path(params.output_dir) / params.name  # the condition folder (docs/architecture.md)


RUN_MARKERS = ("run.json", "condition.json")  # the sidecars of a folder factacq made


def made_by_factacq(folder: Path) -> bool:
    """True for a folder holding an injection run's run.json or a condition's condition.json."""
    sidecar = folder / "run.json"
    if (folder / "condition.json").is_file():
        return True
    if not sidecar.is_file():
        return False
    try:
        import json

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


def run_inject(params: Params, run_dir: str | Path | None = None) -> Path:
    """Run the injection condition of ``params`` into ``run_dir`` (default <output_dir>/<name>),
    starting afresh: an earlier run's log and checkpoints there are replaced, but only in a folder
    that is new, empty, or made by factacq (:func:`check_replaceable`)."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(params)
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
    from factacq.runlog import load_sidecar

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
        from factacq.train import read_checkpoint

        extra = read_checkpoint(ckpt).get("extra")
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
    from factacq.pipeline import project_root, working_dir

    path = Path(args.params).resolve()
    out = getattr(args, "out", None)
    out = Path(out).resolve() if out is not None else None
    with working_dir(project_root(path)):  # relative paths in params: against the project root
        run_inject(load_params(path), out)
    return 0


def cmd_resume(args) -> int:
    """`factacq resume RUN_DIR` (from the run folder's project root, as the run was made)."""
    from factacq.pipeline import project_root, working_dir

    run_dir = Path(args.run_dir).resolve()
    with working_dir(project_root(run_dir / "run.json")):
        resume(run_dir)
    return 0


def loaded_report(run_dir: str | Path) -> dict:
    """The end-of-run report stored in a run's run.json."""
    from factacq.runlog import load_sidecar

    return load_sidecar(run_dir).get("report", {})
