"""Cohorts (several schedules in one scenario group, factacq.plan) and background duplication in
the injection run (inject.duplicate_background, factacq.corpus.duplicate_sources)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from factacq.corpus import TokenStream, duplicate_sources, replaced_rows
from factacq.errors import FactacqError
from factacq.knowledge import knowledge_from_params
from factacq.params import DuplicateBackground, Params, load_params, parse_params
from factacq.plan import build_plan, cohorts_of, describe_plan, injection_order, item_schedules
from test_resume import final_weights, micro_params  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]


def params(source="<params>", **inject):
    """12 paraphrase and 12 duplicate items (8 texts each), 2 once, 2 control; no stagger; the
    paraphrase group 3 encounters 10 steps apart, the duplicate group the default (10 x 100)."""
    return parse_params({
        "knowledge": {"source": "generate:28", "n_paraphrases": 7,
                      "assign": {"paraphrase": 12, "duplicate": 12, "once": 2, "control": 2}},
        "pretrain": {"seq_len": 64, "batch_size": 32, "steps": 10, "stages": {"late": 10}},
        "inject": {"first_step": 5, "stagger": 0, "steps_after_last": 20, "max_row_fraction": 1.0,
                   "paraphrase": {"count": 3, "interval": 10}, **inject},
    }, source)


def plan_for(p):
    ks, groups = knowledge_from_params(p)
    return build_plan(p, ks, groups), groups


def steps_by_item(plan) -> dict[str, list[int]]:
    out = {}
    for ev in plan.events:
        out.setdefault(ev.item_id, []).append(ev.step)
    return out


def group_items(groups, group):
    return [i for i in injection_order(groups) if groups[i] == group]


# --------------------------------------------------------------------------- cohorts


def test_interval_list_makes_one_cohort_per_interval_dealt_round_robin():
    p = params(duplicate={"count": 3, "interval": [5, 10, 20]}, stagger=1)
    plan, groups = plan_for(p)
    order = injection_order(groups)
    steps = steps_by_item(plan)
    labels = {ev.item_id: ev.cohort for ev in plan.events}
    for m, item in enumerate(group_items(groups, "duplicate")):
        interval = (5, 10, 20)[m % 3]  # round-robin in injection order
        start = 5 + order.index(item) * 1
        assert steps[item] == [start, start + interval, start + 2 * interval]
        assert labels[item] == f"3x{interval}"
    # each cohort's items span the stagger range: 4 items each, spread over the group's starts
    table = item_schedules(plan)
    dup = table[table.scenario == "duplicate"]
    firsts = dup.groupby("cohort")["first_step"].agg(["min", "max", "size"])
    assert (firsts["size"] == 4).all()
    # the group's starts span steps 6-30 (every 3rd then every 2nd step: interleaved with the
    # other scenarios); each cohort's span at least 18 of those 24 steps
    assert dup["first_step"].max() - dup["first_step"].min() == 24
    assert (firsts["max"] - firsts["min"] >= 18).all()


def test_counts_with_span_are_spread_exactly():
    p = params(paraphrase={"count": [1, 2, 4, 8], "span": 100}, duplicate={"count": 3, "span": 10})
    plan, groups = plan_for(p)
    steps = steps_by_item(plan)
    # round((j + 1/2) * 100 / count), half to even: 12.5 -> 12, 37.5 -> 38, 62.5 -> 62, 87.5 -> 88,
    # 6.25 -> 6, 18.75 -> 19, ...: every count's mean encounter offset is 50 (within rounding)
    expected = {"1x": [50], "2/100": [25, 75], "4/100": [12, 38, 62, 88],
                "8/100": [6, 19, 31, 44, 56, 69, 81, 94]}
    for m, item in enumerate(group_items(groups, "paraphrase")):
        label = list(expected)[m % 4]
        assert [s - 5 for s in steps[item]] == expected[label]
        assert {ev.cohort for ev in plan.events if ev.item_id == item} == {label}
        # the paraphrase group gets text k at encounter k
        texts = [ev.text_index for ev in plan.events if ev.item_id == item]
        assert texts == list(range(len(expected[label])))
    for item in group_items(groups, "duplicate"):
        assert [s - 5 for s in steps[item]] == [2, 5, 8]  # 10/6 -> 2, 30/6 = 5, 50/6 -> 8
    assert [c.offsets for c in cohorts_of(p.inject.duplicate)] == [(2, 5, 8)]


def test_align_end_puts_every_last_encounter_on_the_same_step():
    p = params(duplicate={"count": [1, 3], "interval": [5, 10, 20], "align": "end"})
    plan, groups = plan_for(p)
    table = item_schedules(plan)
    dup = table[table.scenario == "duplicate"].set_index("item_id")
    assert sorted(dup["cohort"].unique()) == ["1x", "3x10", "3x20", "3x5"]
    assert set(dup["last_step"]) == {5 + 40}  # the latest last offset: 2 * 20
    shapes = {row.cohort: [s - 5 for s in row.steps] for row in dup.itertuples()}
    assert shapes == {"1x": [40], "3x5": [30, 35, 40], "3x10": [20, 30, 40], "3x20": [0, 20, 40]}
    # so every cohort has the same steps after its last encounter
    assert len({plan.total_steps - s for s in dup["last_step"]}) == 1
    # start (the default): all begin at offset 0
    start = item_schedules(plan_for(params(duplicate={"count": 3, "interval": [5, 20]}))[0])
    assert set(start[start.scenario == "duplicate"]["first_step"]) == {5}


def test_identical_cohorts_collapse_and_labels():
    p = params(duplicate={"count": [1, 3], "interval": [5, 10]},
               paraphrase={"count": [1, 1, 2], "span": 40})
    assert [c.label for c in cohorts_of(p.inject.duplicate)] == ["1x", "3x5", "3x10"]
    assert [c.label for c in cohorts_of(p.inject.paraphrase)] == ["1x", "2/40"]
    plan, groups = plan_for(p)
    labels = {ev.item_id: ev.cohort for ev in plan.events}
    assert [labels[i] for i in group_items(groups, "duplicate")] == ["1x", "3x5", "3x10"] * 4
    assert {labels[i] for i in group_items(groups, "once")} == {"1x"}  # once: a single encounter
    item = group_items(groups, "duplicate")[0]
    explicit = plan_for(params(duplicate={"count": [1, 3], "interval": [5, 10]},
                               explicit={item: [3, 9]}))[0]
    ex_labels = {ev.item_id: ev.cohort for ev in explicit.events}
    assert ex_labels[item] == "explicit"
    # explicit items are not dealt: the other 11 cycle through the cohorts from the first
    assert [ex_labels[i] for i in group_items(groups, "duplicate")[1:4]] == ["1x", "3x5", "3x10"]


def test_item_schedules_from_a_plan_and_from_run_json():
    p = params(duplicate={"count": [2, 4], "interval": 6}, stagger=1)
    plan, groups = plan_for(p)
    table = item_schedules(plan)
    assert list(table.columns) == ["item_id", "scenario", "cohort", "count", "interval", "first_step",
                                   "last_step", "steps"]
    assert len(table) == 12 + 12 + 2 and set(table.item_id) == set(injection_order(groups))
    row = table.set_index("item_id").loc[group_items(groups, "duplicate")[1]]
    assert (row.cohort, row["count"], row.interval) == ("4x6", 4, 6.0)
    assert row.steps == list(range(row.first_step, row.last_step + 1, 6))
    once = table[table.scenario == "once"]
    assert once["interval"].isna().all() and (once["count"] == 1).all()
    assert (table.interval[table.scenario == "paraphrase"] == 10.0).all()
    stored = json.loads(json.dumps(plan.to_dict()))  # as run.json holds it
    assert all("cohort" in ev for ev in stored["events"])
    pd.testing.assert_frame_equal(item_schedules(stored), table, check_exact=True)
    old = {"events": [{k: v for k, v in ev.items() if k != "cohort"} for ev in stored["events"]]}
    assert item_schedules(old)["cohort"].isna().all()  # a run from before cohorts
    with pytest.raises(FactacqError, match="item_schedules: expected an InjectionPlan"):
        item_schedules([1, 2])


def test_describe_plan_lists_the_cohorts(tmp_path):
    p = params(duplicate={"count": 3, "interval": [5, 10]})
    p = p.model_copy(update={"cache_dir": str(tmp_path / "cache"),
                             "pretrain": p.pretrain.model_copy(update={"seq_len": 192})})
    cohorts = describe_plan(p)["cohorts"]
    assert list(cohorts) == ["paraphrase 3x10", "duplicate 3x5", "duplicate 3x10", "once 1x"]
    assert cohorts["duplicate 3x10"] == {"items": 6, "first_step": 5, "last_step": 25}
    assert cohorts["paraphrase 3x10"]["items"] == 12


@pytest.mark.parametrize("inject, message", [
    ({"duplicate": {"count": 3, "interval": 10, "span": 100}},
     r"x\.yaml: field 'inject\.duplicate\.span': Value error, span and interval are both set"),
    ({"duplicate": {"count": []}}, r"x\.yaml: field 'inject\.duplicate\.count': .*non-empty list"),
    ({"duplicate": {"count": 0}}, r"x\.yaml: field 'inject\.duplicate\.count': .* \(got 0\)"),
    ({"duplicate": {"count": [2, 0]}}, r"x\.yaml: field 'inject\.duplicate\.count': .*\(got \[2, 0\]\)"),
    ({"duplicate": {"interval": [4, True]}}, r"x\.yaml: field 'inject\.duplicate\.interval'"),
    ({"paraphrase": {"count": [2, 12], "interval": 5}},
     r"x\.yaml: inject\.paraphrase\.count: item '.*' is injected 12 times but has only 8 texts"),
    ({"duplicate": {"count": [5, 50], "span": 20}},
     r"x\.yaml: field 'inject\.duplicate\.span': Value error, span is shorter than count 50"),
    ({"duplicate": {"count": [1, 2, 3, 4], "interval": [5, 6, 7, 8]}},
     r"x\.yaml: inject\.duplicate: 13 cohorts .* but only 12 items"),
    ({"duplicate_background": {"fraction": 0.1, "pool": 100_000}},
     r"x\.yaml: inject\.duplicate_background\.pool: 100000 rows is more than the run's"),
    ({"duplicate_background": {"fraction": 1.0, "pool": 4}},
     r"x\.yaml: field 'inject\.duplicate_background\.fraction'"),
])
def test_refusals_name_the_file_and_field(inject, message):
    with pytest.raises(FactacqError, match=message) as info:
        plan_for(params("x.yaml", **inject))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- hashes and old plans

# section_hash() and section_hash("inject") of every shipped params file, with the default cache and
# output dirs: those that existed before cohorts and background duplication were computed on the code
# from before them (commit 2b8dc16); params/beyond/ (which needs them) on the code that added them.
# The default's base changed after them (issue 10: vocabulary 2048, 1200 steps), which moved the whole
# hash of default.yaml and of every file that extends it, but no inject hash; those whole hashes
# were pinned again then. A code change must leave them alone; a changed or new params file changes
# or adds its own pin.
SHIPPED_HASHES = {
    "params/beyond/dedup_off.yaml": ("5d7594552b4d", "ca9a875f4b84"),
    "params/beyond/dedup_on.yaml": ("32d1fa41d9bc", "0558883d9825"),
    "params/beyond/interval.yaml": ("0f3c78c613ab", "2d68ea50fb44"),
    "params/beyond/longtail.yaml": ("a93aa6d72851", "84aec454e231"),
    "params/beyond/smoke.yaml": ("d8a888c960e9", "3072b77e35e1"),
    "params/default.yaml": ("2f29abb7cd83", "ca9a875f4b84"),
    "params/examples/smollm2_cpu.yaml": ("af20adc7bd8e", "da0bbf8e43ed"),
    "params/gpu/olmo1b_early.yaml": ("80e07968ebc5", "49c4da63aefb"),
    "params/gpu/olmo1b_late.yaml": ("2890c2573ebe", "49c4da63aefb"),
    "params/gpu/olmo1b_late_bs128.yaml": ("937e7fa49b42", "682115784db9"),
    "params/gpu/olmo1b_mid.yaml": ("a26a6146dd55", "49c4da63aefb"),
    "params/gpu/olmo7b_late.yaml": ("a1fa041af8c2", "49c4da63aefb"),
    "params/miniature/batch_64.yaml": ("e0e1b932f666", "077b2aedc903"),
    "params/miniature/batch_8.yaml": ("eb2fc183c59e", "b5b05fa521c3"),
    "params/miniature/model_mini.yaml": ("88910e68a4ed", "ca9a875f4b84"),
    "params/miniature/paper_data.yaml": ("1ae8be52cfde", "b3d7b05b8224"),
    "params/miniature/paper_schedule.yaml": ("b0f54b68f45c", "34650c71cfa5"),
    "params/miniature/stage_early.yaml": ("bf4eb4b02c0c", "05c78a2bccf9"),
    "params/miniature/stage_mid.yaml": ("00744f1ae9b2", "29f8592e4c3d"),
    "params/smoke.yaml": ("25110d984df3", "d43485d31447"),
}


def test_hashes_of_the_shipped_params_are_unchanged(monkeypatch):
    monkeypatch.delenv("FACTACQ_CACHE_DIR", raising=False)
    monkeypatch.delenv("FACTACQ_OUTPUT_DIR", raising=False)
    shipped = {str(p.relative_to(ROOT)) for p in [*ROOT.glob("params/*.yaml"), *ROOT.glob("params/*/*.yaml")]
               if not p.name.startswith("sweep_")}
    assert shipped == set(SHIPPED_HASHES)  # a new params file: add its hash here
    for path, (whole, inject) in SHIPPED_HASHES.items():
        p = load_params(ROOT / path)
        assert (p.section_hash(), p.section_hash("inject")) == (whole, inject), path
    # the defaults too, and a scalar count stays a scalar (a list of one is another params)
    assert Params().section_hash("inject") == "68e9faa7e70b"
    assert parse_params({"inject": {"paraphrase": {"count": 5}}}).section_hash("inject") == "607daddb20b5"
    changed = [{"paraphrase": {"count": [5]}}, {"paraphrase": {"count": 5, "align": "end"}},
               {"paraphrase": {"count": 5, "span": 50}},
               {"duplicate_background": {"fraction": 0.1, "pool": 4}}]
    hashes = {parse_params({"inject": c}).section_hash("inject") for c in changed}
    assert len(hashes) == len(changed) and "607daddb20b5" not in hashes


@pytest.mark.parametrize("path", ["params/smoke.yaml", "params/default.yaml",
                                  "params/miniature/paper_schedule.yaml"])
def test_an_old_style_params_file_gives_the_plan_it_gave_before(path):
    """Before cohorts: item n of the injection order at first_step + n * stagger + k * interval
    (count times; once a single time), paraphrase text k at encounter k."""
    p = load_params(ROOT / path)
    plan, groups = plan_for(p)
    ip = p.inject
    expected = []
    for n, item in enumerate(injection_order(groups)):
        group, start = groups[item], ip.first_step + n * ip.stagger
        steps = [start] if group == "once" else [start + k * getattr(ip, group).interval
                                                 for k in range(getattr(ip, group).count)]
        expected += [(s, item, group, k if group == "paraphrase" else 0) for k, s in enumerate(steps)]
    got = [(e.step, e.item_id, e.scenario, e.text_index) for e in plan.events]
    assert got == sorted(expected, key=lambda e: e[0])
    assert plan.total_steps == max(s for s, *_ in expected) + ip.steps_after_last


# --------------------------------------------------------------------------- background duplication


def toy_stream(n_rows=1000, seq_len=4, seed=3) -> TokenStream:
    # token t of packed row r is r * seq_len + t: a row's tokens say which packed row it is
    return TokenStream(np.arange(n_rows * seq_len, dtype=np.int64), seq_len, seed)


def stream_positions(stream: TokenStream, ids: torch.Tensor) -> list[int]:
    """The packed row of each row of a batch (first token // seq_len)."""
    return (ids[:, 0] // stream.seq_len).tolist()


def test_off_gives_the_plain_stream():
    stream = toy_stream()
    for step in (0, 7, 130):  # 130 * 8 + 17 rows: into the second epoch
        plain = stream.batch(step, 8, 17)
        assert torch.equal(plain, stream.batch(step, 8, 17, None))
        # the documented order: position p is row perm_e[p % n_rows], perm_e seeded by (seed, e)
        expected = [int(np.random.default_rng([3, p // 1000]).permutation(1000)[p % 1000])
                    for p in range(17 + step * 8, 17 + step * 8 + 8)]
        assert stream_positions(stream, plain) == expected


def test_on_replaces_a_seeded_fraction_by_the_pool_rows():
    stream = toy_stream()
    dup = DuplicateBackground(fraction=0.1, pool=40, seed=5)
    start, steps, batch = 500, 25_000, 8
    positions = np.arange(start, start + steps * batch)
    sources = duplicate_sources(positions, start, dup)
    replaced = sources != positions
    assert not replaced[:40].any()  # the pool's own rows are left in place
    n = len(positions) - 40
    # a correct hash replaces each row after the pool independently with p = 0.1, so the count is
    # Binomial(n, p): sd = sqrt(n p (1 - p)) = 134 rows for n = 199,960; 5 sd two-sided fails a
    # true binomial with probability 6e-7 (the hash is fixed, so the test itself is deterministic)
    assert abs(replaced.sum() - n * 0.1) < 5 * math.sqrt(n * 0.1 * 0.9)
    assert replaced.sum() == replaced_rows(start, len(positions), dup)
    # the replacements are the first 40 rows of the range, each used about equally: a count per
    # pool row is Binomial(19,984, 1/40), sd 22; 5 sd each
    picks = np.bincount(sources[replaced] - start, minlength=40)
    assert len(picks) == 40 and abs(picks - replaced.sum() / 40).max() < 5 * math.sqrt(replaced.sum() / 40)
    # batch by batch (as the run reads them, and as a resume or a rank's shard would) = the whole
    for step in (0, 1, 777, steps - 1):
        ids = stream.batch(step, batch, start, dup)
        assert ids.shape == stream.batch(step, batch, start).shape
        window = slice(step * batch, (step + 1) * batch)
        assert torch.equal(ids, stream.rows_at(sources[window]))
        pool_rows = stream.rows(start, 40)
        for r in np.flatnonzero(replaced[window]):
            assert torch.equal(ids[r], pool_rows[sources[window][r] - start])
    # another seed, another choice
    other = duplicate_sources(positions, start, dup.model_copy(update={"seed": 6}))
    assert (other != sources).mean() > 0.1


def test_duplication_is_the_same_in_another_process():
    dup = DuplicateBackground(fraction=0.25, pool=7, seed=11)
    here = duplicate_sources(np.arange(100, 20_100), 100, dup).tolist()
    code = ("import json, numpy as np; from factacq.corpus import duplicate_sources; "
            "from factacq.params import DuplicateBackground; "
            "print(json.dumps(duplicate_sources(np.arange(100, 20_100), 100, "
            "DuplicateBackground(fraction=0.25, pool=7, seed=11)).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here


def test_a_run_with_duplicated_background_resumes_exactly(tmp_path, monkeypatch):
    """A micro run with half its background rows copies of 4 pool rows, stopped after its step-8
    checkpoint and resumed: the same log (cohort column included) and weights as a run never stopped."""
    from factacq.inject import _Run, resume, run_inject
    from factacq.runlog import load_run

    torch.set_num_threads(1)
    p = micro_params(tmp_path, duplicate_background={"fraction": 0.5, "pool": 4, "seed": 1})
    whole = run_inject(p, tmp_path / "whole")
    expected = load_run(whole)
    sidecar = json.loads((whole / "run.json").read_text())
    start, rows = sidecar["base"]["data_position"], sidecar["plan"]["total_steps"] * 8
    replaced = replaced_rows(start, rows, p.inject.duplicate_background)
    assert sidecar["background"] == {"pool_start": start, "rows": rows, "replaced_rows": replaced}
    assert 0 < sidecar["background"]["replaced_rows"] < rows
    injections = expected[expected.record == "injection"]
    assert set(injections["cohort"]) == {"2x4", "1x"}
    assert expected[expected.record != "injection"]["cohort"].isna().all()

    real_batch = _Run.batch

    class Killed(Exception):
        pass

    def stop_at_12(self, step, *args):
        if step == 12:
            raise Killed  # after the step-8 checkpoint and the step-10 chunk
        return real_batch(self, step, *args)

    monkeypatch.setattr(_Run, "batch", stop_at_12)
    with pytest.raises(Killed):
        run_inject(p, tmp_path / "stopped")
    monkeypatch.setattr(_Run, "batch", real_batch)
    assert load_run(tmp_path / "stopped")["step"].max() < 16
    resume(tmp_path / "stopped")
    pd.testing.assert_frame_equal(load_run(tmp_path / "stopped"), expected, check_exact=True)
    a, b = final_weights(whole), final_weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # and the duplication changed what was trained on (the same first batch only if no row of it
    # was replaced: its rows 4-7 follow the pool)
    plain = load_run(run_inject(micro_params(tmp_path), tmp_path / "plain"), "train")
    assert plain["loss"].tolist() != expected[expected.record == "train"]["loss"].tolist()
