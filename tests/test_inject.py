from collections import Counter

import pytest
import torch

from factacq.errors import FactacqError
from factacq.knowledge import knowledge_from_params
from factacq.params import parse_params
from factacq.plan import build_plan, choose_rows, describe_plan, inject_rows, injection_order


def params(**inject):
    return parse_params({
        "knowledge": {"source": "generate:8", "n_paraphrases": 3,
                      "assign": {"paraphrase": 2, "duplicate": 2, "once": 2, "control": 2}},
        "pretrain": {"seq_len": 64, "batch_size": 8, "steps": 10, "stages": {"late": 10}},
        "inject": {"first_step": 5, "paraphrase": {"count": 3, "interval": 10},
                   "duplicate": {"count": 4, "interval": 7}, "steps_after_last": 20,
                   "max_row_fraction": 1.0, "stagger": 0, **inject},
    })


def plan_of(p, lengths=None):
    ks, groups = knowledge_from_params(p)
    return build_plan(p, ks, groups, lengths), ks, groups


def test_presets_paraphrase_duplicate_once():
    plan, ks, groups = plan_of(params())
    by_item = {}
    for ev in plan.events:
        by_item.setdefault(ev.item_id, []).append(ev)
    for item_id, group in groups.items():
        evs = by_item.get(item_id, [])
        steps, texts = [e.step for e in evs], [e.text_index for e in evs]
        if group == "paraphrase":
            assert steps == [5, 15, 25] and texts == [0, 1, 2]  # text k at encounter k
        elif group == "duplicate":
            assert steps == [5, 12, 19, 26] and texts == [0, 0, 0, 0]
        elif group == "once":
            assert steps == [5] and texts == [0]
        else:
            assert evs == []  # control and spare items are never injected
    assert plan.first_step == 5 and plan.last_step == 26 and plan.total_steps == 46
    assert len(plan.at(5)) == 6 and plan.at(6) == []
    assert set(plan.items_by_group["control"]) == {i for i, g in groups.items() if g == "control"}
    assert [e.step for e in plan.events] == sorted(e.step for e in plan.events)


def test_stagger_interleaves_scenarios_and_spreads_rows():
    plan, ks, groups = plan_of(params(stagger=1))
    order = injection_order(groups)
    assert [groups[i] for i in order] == ["paraphrase", "duplicate", "once"] * 2
    firsts = {}
    for ev in plan.events:
        firsts.setdefault(ev.item_id, ev.step)
    assert [firsts[i] for i in order] == [5, 6, 7, 8, 9, 10]
    assert max(plan.rows_per_step().values()) < 6


def test_explicit_schedule_overrides_preset():
    p0 = params()
    _, ks, groups = plan_of(p0)
    dup = next(i for i, g in groups.items() if g == "duplicate")
    para = next(i for i, g in groups.items() if g == "paraphrase")
    plan, _, _ = plan_of(params(explicit={dup: [3, 40], para: [0, 8]}))
    assert [(e.step, e.text_index) for e in plan.events if e.item_id == dup] == [(3, 0), (40, 0)]
    assert [(e.step, e.text_index) for e in plan.events if e.item_id == para] == [(0, 0), (8, 1)]
    assert plan.total_steps == 60


def test_refuses_too_many_rows_per_step():
    with pytest.raises(FactacqError, match=r"step 5 needs 6 rows of a 8-row batch.*max_row_fraction=0.5"):
        plan_of(params(max_row_fraction=0.5))
    plan, _, _ = plan_of(params(max_row_fraction=0.5, stagger=1))  # staggering fixes it
    assert max(plan.rows_per_step().values()) <= 4


def test_refuses_passage_longer_than_row():
    p = params()
    _, ks, groups = plan_of(p)
    item = next(i for i, g in groups.items() if g == "once")
    lengths = {i: 10 for i in groups}
    lengths[f"{item}/0"] = 64  # + EOS = 65 > seq_len 64
    with pytest.raises(FactacqError, match=rf"item '{item}' text 0 is 64 tokens \+ EOS, longer than a row "
                                           r"of pretrain.seq_len=64"):
        plan_of(p, lengths)
    lengths[f"{item}/0"] = 63  # exactly fills the row
    assert plan_of(p, lengths)[0].total_steps == 46


def test_refuses_step_past_end_of_training():
    with pytest.raises(FactacqError, match=r"injected at step 26 but training ends at step 26"):
        plan_of(params(total_steps=26))
    assert plan_of(params(total_steps=27))[0].total_steps == 27


def test_refuses_bad_explicit_entries_and_too_few_paraphrases():
    _, ks, groups = plan_of(params())
    control = next(i for i, g in groups.items() if g == "control")
    with pytest.raises(FactacqError, match="unknown item id 'nope'"):
        plan_of(params(explicit={"nope": [1]}))
    with pytest.raises(FactacqError, match=rf"inject.explicit.{control}: item is in group 'control'"):
        plan_of(params(explicit={control: [1]}))
    once = next(i for i, g in groups.items() if g == "once")
    with pytest.raises(FactacqError, match="steps must be distinct"):
        plan_of(params(explicit={once: [3, 3]}))
    with pytest.raises(FactacqError, match=r"injected 5 times but has only 4 texts"):
        plan_of(params(paraphrase={"count": 5, "interval": 10}))


def test_inject_rows_front_eos_tail_cut():
    ids = torch.arange(40).view(4, 10)
    out, bg = inject_rows(ids, [[100, 101, 102], [200]], eos_id=0, rows=[2, 0])
    assert out.shape == ids.shape
    assert out[2].tolist() == [100, 101, 102, 0, 20, 21, 22, 23, 24, 25]
    assert out[0].tolist() == [200, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert torch.equal(out[[1, 3]], ids[[1, 3]])
    assert bg.tolist() == [False, True, False, True]
    full, _ = inject_rows(ids, [list(range(50, 59))], eos_id=0, rows=[1])  # 9 + EOS = the whole row
    assert full[1].tolist() == list(range(50, 59)) + [0]
    with pytest.raises(FactacqError, match="does not fit a row of 10"):
        inject_rows(ids, [list(range(10))], eos_id=0, rows=[1])
    with pytest.raises(FactacqError, match="one distinct row each"):
        inject_rows(ids, [[1], [2]], eos_id=0, rows=[1, 1])


def test_row_choice_is_deterministic_and_seeded_by_step():
    a = choose_rows(7, 3, 32, seed=0)
    assert a == choose_rows(7, 3, 32, seed=0) and len(set(a)) == 3
    assert all(0 <= r < 32 for r in a)
    picks = Counter(tuple(choose_rows(s, 3, 32, seed=0)) for s in range(20))
    assert len(picks) > 15  # different steps, different rows
    # and by the seed: another seed picks other rows at every step (a repeat of 3 ordered rows of 32
    # has odds 1 in 29,760 per step); no seed means seed 0
    assert all(choose_rows(s, 3, 32, seed=1) != choose_rows(s, 3, 32, seed=0) for s in range(20))
    assert choose_rows(8, 3, 32) == choose_rows(8, 3, 32, seed=0)


def test_describe_plan_does_not_train(tmp_path):
    p = params()
    p = p.model_copy(update={"cache_dir": str(tmp_path / "cache"),  # rows that fit the passages
                             "pretrain": p.pretrain.model_copy(update={"seq_len": 192})})
    d = describe_plan(p)
    assert d["steps"] == 46 and d["injections"] == 2 * 3 + 2 * 4 + 2
    assert d["injected_rows_per_step_max"] == 6 and d["knowledge_row_share_max"] == 0.75
    assert d["probe_evaluations"] < d["probe_evaluations_every_step"]
    assert d["probe_evaluations_every_step"] == 8 * 15 * 47
    assert d["train_tokens"] == 46 * 8 * 192 and d["model_parameters"] > 0
    assert d["pretrain_steps_to_run"] == 10
    assert not (tmp_path / "cache").exists()


def test_default_run_keeps_knowledge_small_and_probes_10x_less_than_every_step():
    from pathlib import Path

    from factacq.params import load_params

    d = describe_plan(load_params(Path(__file__).resolve().parents[1] / "params" / "default.yaml"))
    assert d["knowledge_row_share_max"] <= 1 / 16  # at most one row of the run's 16 is knowledge
    assert d["items"] == {"paraphrase": 10, "duplicate": 10, "once": 10, "control": 10}
    # t_w = 50 with 10 log-spaced window steps and the controls at every 4th probed step
    assert d["probe_evaluations_every_step"] >= 10 * d["probe_evaluations"]
    assert d["retention_decades"] >= 2  # the forgetting curve spans two decades of t after t_LAM
