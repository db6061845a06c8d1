"""The injection plan and the batch surgery: plain objects and functions the run loop calls.

- :func:`build_plan` / :func:`plan_of`: which item is injected at which run step (an
  :class:`InjectionPlan` of :class:`Injection` events) and where the run ends, with the refusals
  that must come before any training (docs/architecture.md, "Injection runs"); the cohorts of a
  scenario group (:func:`cohorts_of`) and every item's schedule as a table (:func:`item_schedules`).
- :func:`choose_rows` and :func:`inject_rows`: the batch surgery, which writes a passage + EOS at
  the front of a seeded choice of batch rows.
- :func:`preflight` and :func:`describe_plan`: every input checked, and the run's size, without
  training (`factacq run --dry-run` and the real run both call :func:`preflight`).

The run that carries out a plan is factacq.inject.
"""

from __future__ import annotations

import math

from collections import Counter
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from factacq.corpus import load_documents, prepare_corpus
from factacq.errors import FactacqError
from factacq.hub import offline
from factacq.knowledge import knowledge_from_params
from factacq.model_source import check_source, resolve_source
from factacq.models import build_model, count_parameters
from factacq.params import GROUPS, SCENARIOS, Params, ScenarioSchedule
from factacq.pretrain import base_cached
from factacq.probe import probe_schedule, schedule_evaluations
from factacq.tokenizer import get_tokenizer
from factacq.train import resolve_device


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Injection:
    step: int  # run step s: the passage is in the batch of update s + 1
    item_id: str
    scenario: str
    text_index: int  # 0 = the passage, k = paraphrase k
    cohort: str = ""  # the item's cohort in its group (see :func:`cohorts_of`; "explicit", "1x")


# the cohort of an item whose steps inject.explicit gives
EXPLICIT = "explicit"
# the label of a cohort of single encounters (and of the once group)
SINGLE = "1x"


@dataclass(frozen=True)
class Cohort:
    """One schedule of a scenario group: ``offsets`` (steps after the item's start,
    first_step + n * stagger, alignment included) and its ``label``: "<count>x<interval>" (count
    encounters interval steps apart), "<count>/<span>" (count encounters spread evenly over span
    steps) or "1x" (a single encounter)."""

    label: str
    offsets: tuple[int, ...]


def cohorts_of(schedule: ScenarioSchedule) -> list[Cohort]:
    """The cohorts of a scenario group's schedule: every count x every interval, in that order, or
    every count with ``span``: offsets round((j + 1/2) * span / count), half to even, each encounter
    in the middle of its 1/count of the span (every count then has the same mean encounter step).
    Cohorts with the same offsets collapse into the first (count 1 with several intervals is one
    "1x" cohort). With ``align: end`` each cohort is shifted so that all end on the latest last
    offset among them."""
    raw: dict[tuple[int, ...], str] = {}
    for count in schedule.counts:
        if schedule.span is not None:
            spread = [(tuple(round(Fraction((2 * j + 1) * schedule.span, 2 * count))
                             for j in range(count)), f"{count}/{schedule.span}")]
        else:
            spread = [(tuple(k * interval for k in range(count)), f"{count}x{interval}")
                      for interval in schedule.intervals]
        for offsets, label in spread:
            raw.setdefault(offsets, SINGLE if count == 1 else label)
    cohorts = [Cohort(label, offsets) for offsets, label in raw.items()]
    if schedule.align == "end":
        end = max(c.offsets[-1] for c in cohorts)
        cohorts = [Cohort(c.label, tuple(o + end - c.offsets[-1] for o in c.offsets)) for c in cohorts]
    return cohorts


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


ITEM_SCHEDULE_COLUMNS = ["item_id", "scenario", "cohort", "count", "interval", "first_step",
                         "last_step", "steps"]


def item_schedules(plan: InjectionPlan | dict) -> pd.DataFrame:
    """One row per injected item of ``plan`` (an :class:`InjectionPlan`, or the plan dict of a
    run.json, ``InjectionPlan.to_dict()``), in the order of their first injection: item_id,
    scenario, cohort (None in the plan of a run from before cohorts), count (encounters),
    interval (mean steps between consecutive encounters; NaN for a single one), first_step,
    last_step, steps (the list of its injection steps)."""
    if isinstance(plan, InjectionPlan):
        events = [asdict(e) for e in plan.events]
    elif isinstance(plan, dict) and isinstance(plan.get("events"), list):
        events = plan["events"]
    else:
        raise FactacqError(f"item_schedules: expected an InjectionPlan or a run.json plan (a dict with "
                           f"'events'), got {type(plan).__name__}")
    items: dict[str, dict] = {}
    for ev in sorted(events, key=lambda e: e["step"]):
        row = items.setdefault(ev["item_id"], {"item_id": ev["item_id"], "scenario": ev["scenario"],
                                               "cohort": ev.get("cohort"), "steps": []})
        row["steps"].append(int(ev["step"]))
    for row in items.values():
        steps = row["steps"]
        row.update(count=len(steps), first_step=steps[0], last_step=steps[-1],
                   interval=(steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else math.nan)
    frame = pd.DataFrame(list(items.values()), columns=ITEM_SCHEDULE_COLUMNS)
    return frame.astype({"count": "int64", "first_step": "int64", "last_step": "int64",
                         "interval": "float64"})


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
    duplicate: the passage every time; once: a single time), the paraphrase and duplicate items
    dealt round-robin to their group's cohorts (:func:`cohorts_of`), ``stagger`` steps between
    consecutive items' starts, ``explicit`` per-item steps. Refuses, before any training, a group
    with fewer items than cohorts, a step past the end of training, a background pool larger than
    the run, a step that needs more than ``max_row_fraction`` of the batch's rows, and (when
    ``passage_lengths`` gives token counts, keyed "item/k" or "item") a passage + EOS longer than a
    row."""
    ip = params.inject
    batch_size = params.run_batch_size
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
    order = injection_order(groups)
    # each group's cohorts, and its items (but for explicit ones) dealt to them round-robin
    cohort_of: dict[str, Cohort] = {}
    for group in ("paraphrase", "duplicate"):
        cohorts = cohorts_of(getattr(ip, group))
        items = [i for i in order if groups[i] == group and i not in ip.explicit]
        if items and len(items) < len(cohorts):
            raise FactacqError(f"inject.{group}: {len(cohorts)} cohorts ("
                               f"{', '.join(c.label for c in cohorts)}) but only {len(items)} items to "
                               f"deal to them; give fewer counts or intervals, or more items")
        cohort_of.update({item_id: cohorts[m % len(cohorts)] for m, item_id in enumerate(items)})
    events = []
    for n, item_id in enumerate(order):
        group = groups[item_id]
        start = ip.first_step + n * ip.stagger
        if item_id in ip.explicit:
            steps, label = sorted(ip.explicit[item_id]), EXPLICIT
        elif group == "once":
            steps, label = [start], SINGLE
        else:
            cohort = cohort_of[item_id]
            steps, label = [start + o for o in cohort.offsets], cohort.label
        for k, step in enumerate(steps):
            text = k if group == "paraphrase" else 0
            if group == "paraphrase":
                n_texts = 1 + len(ks.get(item_id).paraphrases)
                if k >= n_texts:
                    raise FactacqError(f"inject.paraphrase.count: item {item_id!r} is injected {len(steps)} "
                                       f"times but has only {n_texts} texts (passage + paraphrases)")
            events.append(Injection(int(step), item_id, group, text, label))
    if not events:
        raise FactacqError("inject: the plan injects nothing (no paraphrase, duplicate or once items)")
    last = max(e.step for e in events)
    total = ip.total_steps or last + ip.steps_after_last
    for ev in events:
        if ev.step >= total:
            raise FactacqError(f"inject: item {ev.item_id!r} is injected at step {ev.step} but training "
                               f"ends at step {total} (inject.total_steps)")
    dup = ip.duplicate_background
    if dup is not None and dup.pool > total * batch_size:
        raise FactacqError(f"inject.duplicate_background.pool: {dup.pool} rows is more than the run's "
                           f"{total * batch_size} rows ({total} steps x {batch_size}); the pool is the "
                           f"first rows of the run's own background")
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


# --------------------------------------------------------------------------- texts and probes


def injected_items(groups: dict[str, str]) -> list[str]:
    """The items of the injected groups (paraphrase, duplicate, once), in knowledge order."""
    return [i for i, g in groups.items() if g in SCENARIOS]


def passage_ids(ks, groups: dict[str, str], tokenizer) -> dict[str, list[int]]:
    """Token ids (no special tokens) of every text an injected item can be injected with, keyed
    "item/k" (k = 0 the passage, k >= 1 paraphrase k)."""
    texts = {f"{i}/{k}": ks.get(i).text(k) for i in injected_items(groups)
             for k in range(1 + len(ks.get(i).paraphrases))}
    enc = tokenizer(list(texts.values()), add_special_tokens=False)["input_ids"]
    return dict(zip(texts, enc))


def probed_probes(ks, groups: dict[str, str]) -> list:
    """The probes of every probed item (the injected groups and control), in knowledge order."""
    return [p for item in ks if groups.get(item.id) in GROUPS for p in item.probes]


# --------------------------------------------------------------------------- preflight and dry run


def preflight(params: Params) -> tuple:
    """Everything a run can check before training, so that a dry run refuses what the run would:
    the device, the model and stage, the knowledge and its groups, the corpus, the tokenizer, and
    the plan with every passage + EOS fitting a row. Returns (knowledge, groups, plan, notes);
    ``notes`` say what could not be checked (a hub source while the hub is offline). Errors name
    the params file. Writes nothing (a tokenizer not cached yet is trained in memory, ~1 s)."""
    notes = []
    try:
        resolve_device(params.device)
        mp, ip = params.model, params.inject
        for field, value in (("model.name_or_path", mp.name_or_path), ("tokenizer.path", params.tokenizer.path)):
            if value is not None:
                note = check_source(value, field, mp.gguf_file)  # pkg: folders, GGUF files
                notes += [note] if note else []
        stage_is_folder = (Path(ip.stage) / "state.json").is_file()
        if mp.name_or_path is None and ip.stage not in params.pretrain.stages and not stage_is_folder:
            raise FactacqError(f"inject.stage: {ip.stage!r} is neither a stage of pretrain.stages "
                               f"({sorted(params.pretrain.stages)}) nor a checkpoint folder")
        ks, groups = knowledge_from_params(params)
        hub_tokenizer = params.tokenizer.path or mp.name_or_path
        tokenizer_offline = (hub_tokenizer is not None and offline() and not Path(
            resolve_source(hub_tokenizer, "tokenizer")).expanduser().exists())
        tokenizer = None
        if params.corpus.source.startswith("hf:") and offline():
            notes.append(f"corpus.source {params.corpus.source!r}: on the hub, not checked (the hub is offline)")
            if hub_tokenizer is not None and not tokenizer_offline:
                tokenizer = get_tokenizer(params, cache=False)  # tokenizer.path or the model's own
        elif tokenizer_offline:
            load_documents(params.corpus)  # checked; the tokenizer cannot be
        else:
            tokenizer = prepare_corpus(params, cache=False).tokenizer  # writes nothing
        lengths = None
        if tokenizer is None:
            notes.append("passage lengths: not checked (the tokenizer is on the hub, which is offline)")
        else:
            lengths = {key: len(ids) for key, ids in passage_ids(ks, groups, tokenizer).items()}
        plan = plan_of(params, ks, groups, lengths)
    except FactacqError as exc:
        raise in_params(params, exc) from None
    return ks, groups, plan, notes


def retention_horizon(plan, params: Params) -> int:
    """Steps of forgetting every injected item is probed for after its t_LAM, at the least: the
    run's end minus (the last injection + t_w), t_LAM being at most t_w after an injection."""
    return plan.total_steps - plan.last_step - params.analysis_window


def cohort_summary(plan: InjectionPlan) -> dict[str, dict]:
    """"<scenario> <cohort>" -> its items and its first and last injection step, by scenario."""
    table = item_schedules(plan)
    out = {}
    for scenario in SCENARIOS:
        part = table[table["scenario"] == scenario]
        for label, rows in part.groupby("cohort", sort=False, dropna=False):
            out[f"{scenario} {label}"] = {"items": len(rows), "first_step": int(rows["first_step"].min()),
                                          "last_step": int(rows["last_step"].max())}
    return out


def describe_plan(params: Params) -> dict:
    """Steps, the cohorts of each scenario group (:func:`cohort_summary`), injected rows per step,
    probe evaluations (schedule vs every step) and tokens of the injection run of ``params``,
    without training (for `factacq run --dry-run`), after :func:`preflight` has checked every
    input."""
    ks, groups, plan, notes = preflight(params)
    pp = params.probe
    probes = probed_probes(ks, groups)
    per_item = Counter(p.item_id for p in probes)
    schedule = probe_schedule(plan, pp, groups)
    every = probe_schedule(plan, pp.model_copy(update={"every_step": True}), groups)
    n_eval = schedule_evaluations(schedule, per_item)
    n_every = schedule_evaluations(every, per_item)
    batch_size = params.run_batch_size
    seq_len = params.pretrain.seq_len
    rows = plan.rows_per_step()
    chars = {p.item_id: 0 for p in probes}
    for p in probes:
        chars[p.item_id] += len(p.prompt) + 1 + len(p.target)
    probe_tokens = sum(len(schedule[i]) * (chars[i] / 4 + per_item[i]) for i in schedule)
    n_params = None
    if params.model.preset is not None:
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
        "cohorts": cohort_summary(plan),
        "injected_rows_per_step_max": max(rows.values()),
        "injected_rows_per_step_mean": round(len(plan.events) / plan.total_steps, 4),
        "knowledge_row_share_max": round(max(rows.values()) / batch_size, 4),
        "probes": len(probes),
        "probe_steps": len(set().union(*[set(s.tolist()) for s in schedule.values()])) if schedule else 0,
        "probe_evaluations": n_eval,
        "probe_evaluations_every_step": n_every,
        "probe_evaluation_ratio": round(n_every / max(n_eval, 1), 2),
        "probe_tokens": int(probe_tokens),
        # steps after the latest possible t_LAM of the last injected item (last injection + t_w)
        # and the decades of t after t_LAM they span from t = 1 (the paper's Fig. 4 spans ~3)
        "retention_horizon_steps": retention_horizon(plan, params),
        "retention_decades": round(math.log10(max(retention_horizon(plan, params), 1)), 2),
        "tokens_per_step": batch_size * seq_len,
        "train_tokens": plan.total_steps * batch_size * seq_len,
        "model_parameters": n_params,
        "pretrain_steps_to_run": pretrain_steps,
        "pretrain_tokens": pretrain_steps * params.pretrain.batch_size * seq_len,
        "not_checked": notes or "nothing: every input was checked",
    }

