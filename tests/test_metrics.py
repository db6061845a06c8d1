"""Metrics on small hand-made run logs whose answers are worked out in the comments."""

import numpy as np
import pandas as pd
import pytest

from factacq import metrics
from factacq.errors import FactacqError


def probe(item, step, value, scenario="paraphrase", kind="memorization", index=0, **extra):
    return {"record": "probe", "step": step, "item_id": item, "scenario": scenario, "kind": kind,
            "probe_index": index, "logprob": value, **extra}


def injection(item, step, scenario="paraphrase"):
    return {"record": "injection", "step": step, "item_id": item, "scenario": scenario}


def hand_log() -> pd.DataFrame:
    """Item a: injected at 10 and 20, t_w = 3; step 22 was not probed.

    probe 0: l(10) = -5 = l(t_pre); window (10,13] -> max -3.5 at 12, E1 = 1.5;
             window (20,23] probed at 21, 23 -> max -3.0 at 21, E2 = -3.0 - (-4.2) = 1.2;
             R at 23, 30, 50 (t = 2, 9, 29): (l + 5) / 2 = 0.9, 0.7, 0.45.
    probe 1: l(t_pre) = -2 but l(t_LAM(2)) = -2.5 -> denominator -0.5 -> excluded.
    Item c: injected at 40, probed only at 10 and 50 -> no value at t_i, none in (40,43].
    """
    p0 = {10: -5, 11: -4, 12: -3.5, 13: -3.8, 20: -4.2, 21: -3.0, 23: -3.2, 30: -3.6, 50: -4.1}
    p1 = {10: -2, 11: -3, 12: -3, 13: -3, 20: -3.5, 21: -2.5, 23: -2.8, 30: -3, 50: -3}
    rows = [injection("a", 10), injection("a", 20), injection("a", 20), injection("c", 40, "once")]
    rows += [probe("a", s, v) for s, v in p0.items()]
    rows += [probe("a", s, v, index=1) for s, v in p1.items()]
    rows += [probe("c", 10, -6.0, "once"), probe("c", 50, -5.0, "once")]
    return pd.DataFrame(rows)


def test_encounters_from_injection_records():
    enc = metrics.encounters(hand_log())
    a = enc[enc["item_id"] == "a"]
    assert list(a["encounter"]) == [1, 2] and list(a["t_i"]) == [10, 20]  # duplicate record merged
    assert set(a["t_pre"]) == {10} and set(a["n_encounters"]) == {2}


def test_t_lam_and_effectivity_on_sparse_steps():
    eff = metrics.effectivity(hand_log(), window=3).set_index(["item_id", "probe_index",
                                                                "encounter"])
    first, second = eff.loc[("a", 0, 1)], eff.loc[("a", 0, 2)]
    assert first["t_lam"] == 12 and first["effectivity"] == pytest.approx(1.5)
    assert first["window_missing"] == 0 and first["window_probed"] == 3
    assert second["t_lam"] == 21 and second["effectivity"] == pytest.approx(1.2)
    assert second["window_missing"] == 1  # step 22
    missing = eff.loc[("c", 0, 1)]
    assert pd.isna(missing["t_lam"]) and pd.isna(missing["effectivity"])
    assert bool(missing["t_i_missing"]) and missing["window_missing"] == 3


def test_retainability_points_and_excluded_denominator():
    points, counts = metrics.retainability(hand_log(), window=3)
    assert counts == {"probes": 3, "used": 1, "excluded_nonpositive_denominator": 1,
                      "excluded_missing_t_pre": 0, "excluded_missing_window": 1}
    assert set(points["probe_index"]) == {0}
    assert list(points["t"]) == [2, 9, 29]
    assert np.allclose(points["retainability"], [0.9, 0.7, 0.45])


def test_delta_logprob_uses_item_t_pre_and_flags_missing_baseline():
    delta = metrics.delta_logprob(hand_log())
    a0 = delta[(delta["item_id"] == "a") & (delta["probe_index"] == 0)].set_index("step")
    assert a0.loc[21, "delta_logprob"] == pytest.approx(2.0)
    c = delta[delta["item_id"] == "c"]
    assert c["baseline_missing"].all() and c["delta_logprob"].isna().all()  # c has no l(40)


def control_log() -> pd.DataFrame:
    rows = [injection("a", 0)]
    for step, (a, c1, c2, s1) in enumerate([(-5.0, -6.0, -4.0, -3.0), (-3.0, -5.5, -3.5, -1.0)]):
        rows += [probe("a", step, a), probe("c1", step, c1, "control"),
                 probe("c2", step, c2, "control"),
                 probe("c1", step, s1, "control", kind="semantic")]
    rows.append(probe("a", 2, -2.0))  # no control value at step 2
    return pd.DataFrame(rows)


def test_control_adjusted_subtracts_same_step_and_kind():
    adj = metrics.control_adjusted(control_log())
    a = adj[(adj["item_id"] == "a") & (adj["record"] == "probe")].set_index("step")
    assert adj.loc[adj["record"] == "injection", "logprob_adj"].isna().all()
    # control memorization means: step 0 -> -5.0, step 1 -> -4.5
    assert a.loc[0, "logprob_adj"] == pytest.approx(0.0)
    assert a.loc[1, "logprob_adj"] == pytest.approx(1.5)
    assert np.isnan(a.loc[2, "logprob_adj"]) and a.loc[2, "control_n"] == 0
    semantic = adj[adj["kind"] == "semantic"]
    assert np.allclose(semantic["logprob_adj"], 0.0)  # its own mean, not the memorization one
    assert a.loc[1, "control_n"] == 2


def test_control_adjusted_needs_control_probes():
    with pytest.raises(FactacqError, match="no control probes"):
        metrics.control_adjusted(hand_log())


def test_mean_trajectories_average_delta_per_step():
    rows = [injection("a", 0), injection("b", 0)]
    rows += [probe("a", 0, -4.0), probe("a", 1, -3.0), probe("b", 0, -6.0), probe("b", 1, -4.0)]
    mean = metrics.mean_trajectories(pd.DataFrame(rows)).set_index("step")
    assert mean.loc[1, "mean"] == pytest.approx(1.5) and mean.loc[1, "n"] == 2
    assert mean.loc[1, "sem"] == pytest.approx(0.5)  # std(1, 2) / sqrt(2)


@pytest.mark.parametrize("factor, removed", [(1.5, 2), (2.0, 1)])
def test_iqr_filter_hand_case(factor, removed):
    # both groups: Q1 = 4.5, Q3 = 7.5, IQR = 3 (linear interpolation, n = 7)
    # factor 1.5 -> keep [0, 12]: removes 12.5 and 14; factor 2.0 -> keep [-1.5, 13.5]: removes 14
    g1 = [0, 4, 5, 6, 7, 8, 12.5]
    g2 = [0, 4, 5, 6, 7, 8, 14]
    frame = pd.DataFrame({"scenario": ["once"] * 7 + ["duplicate"] * 7, "kind": "memorization",
                          "effectivity": g1 + g2})
    kept, n = metrics.iqr_filter(frame, "effectivity", factor)
    assert n == removed and len(kept) == 14 - removed
    assert 14 not in set(kept["effectivity"]) and 0 in set(kept["effectivity"])
    assert (12.5 in set(kept["effectivity"])) == (factor == 2.0)


def test_summarize_effectivity_counts_removed_and_missing():
    table = pd.DataFrame({"scenario": "once", "kind": "memorization",
                          "effectivity": [0, 4, 5, 6, 7, 8, 14, np.nan]})
    out = metrics.summarize_effectivity(table, iqr_factor=1.5).iloc[0]
    assert out["n"] == 6 and out["removed"] == 1 and out["missing"] == 1
    assert out["mean"] == pytest.approx(30 / 6) and out["iqr_factor"] == 1.5


def test_t_cells_exact_when_shared_else_log_bins():
    shared = pd.DataFrame({"item_id": ["a", "a", "b", "b"], "scenario": "once",
                           "kind": "memorization", "probe_index": 0, "t": [1, 10, 1, 10],
                           "retainability": [1.0, 0.5, 0.8, 0.3]})
    mean = metrics.mean_retainability(shared)
    assert list(mean["t_rule"].unique()) == ["exact"]
    assert np.allclose(mean["retainability"], [0.9, 0.4])
    differ = shared.assign(t=[1, 10, 2, 20])
    mean = metrics.mean_retainability(differ, n_bins=2)  # edges 1, sqrt(20), 20
    assert list(mean["t_rule"].unique()) == ["log_bins"]
    assert np.allclose(mean["t"], [np.sqrt(2), np.sqrt(200)])  # geometric means of the bins
    assert np.allclose(mean["retainability"], [0.9, 0.4]) and list(mean["n"]) == [2, 2]


def test_specificity_compares_control_gain_with_effectivity():
    rows = [injection("a", 0)]
    rows += [probe("a", 0, -5.0), probe("a", 1, -4.5), probe("a", 2, -4.0)]  # E = 1.0
    rows += [probe("c", 0, -5.0, "control"), probe("c", 1, -4.75, "control"),
             probe("c", 2, -4.8, "control")]  # gain = 0.25
    out = metrics.specificity(pd.DataFrame(rows), window=2)
    assert out["specificity"] == pytest.approx(0.75)
    assert out["control_gain"] == pytest.approx(0.25) and out["effectivity"] == pytest.approx(1.0)


def test_contrastive_effectivity_prefers_full_foils_and_bootstraps_items():
    rows = [injection("a", 0), injection("b", 0)]
    for item, gain in (("a", 1.0), ("b", 2.0)):
        rows += [probe(item, 0, -5.0, foil_logprob=-5.0, first_logprob=-3, first_foil_logprob=-3),
                 probe(item, 1, -5.0 + gain, foil_logprob=-4.5, first_logprob=-3,
                       first_foil_logprob=-3)]
    frame = pd.DataFrame(rows)
    out = metrics.contrastive_effectivity(frame, window=1, n_boot=200)
    assert out["column"] == "contrast"
    assert out["mean"] == pytest.approx(1.0)  # contrasts gain 0.5 (a) and 1.5 (b)
    assert 0.5 <= out["lo"] <= out["mean"] <= out["hi"] <= 1.5
    first = metrics.contrastive_effectivity(frame.assign(foil_logprob=np.nan), 1, n_boot=0)
    assert first["column"] == "first_contrast" and first["mean"] == pytest.approx(0.0)


def test_stationarity_first_and_last_records():
    train = pd.DataFrame({"record": "train", "step": range(1, 11),
                          "bg_loss": [5.0] * 5 + [4.0] * 5, "loss": 9.0})
    out = metrics.stationarity(train, n=3)
    assert out["first"] == 5.0 and out["last"] == 4.0 and out["change"] == -1.0
    assert out["column"] == "bg_loss" and not out["overlap"]


def test_duplicate_probe_record_is_named():
    frame = pd.concat([hand_log(), pd.DataFrame([probe("a", 12, -1.0)])], ignore_index=True)
    with pytest.raises(FactacqError, match=r"\(a, memorization, 0\) has two records at step 12"):
        metrics.t_lam(frame, 3)


def random_log(seed=0):
    """Random values on random sparse steps; probes listed in shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, (item, scenario) in enumerate([("z", "duplicate"), ("b", "once"), ("m", "paraphrase"),
                                          ("a", "duplicate")]):
        steps = sorted(rng.choice(np.arange(5, 40), size=rng.integers(1, 4), replace=False))
        rows += [injection(item, int(t), scenario) for t in steps]
        for kind in ("semantic", "memorization"):
            for index in (1, 0):
                probed = rng.choice(np.arange(0, 60), size=35, replace=False)
                rows += [probe(item, int(s), float(rng.normal()), scenario, kind, index)
                         for s in probed]
    order = rng.permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order])


def naive_metrics(frame, window):
    """A direct reading of the definitions, one probe at a time."""
    probes = frame[frame["record"] == "probe"]
    inj = frame[frame["record"] == "injection"]
    eff, points = {}, {}
    for (item, kind, index), g in probes.groupby(["item_id", "kind", "probe_index"]):
        ell = dict(zip(g["step"], g["logprob"]))
        ts = sorted(set(inj.loc[inj["item_id"] == item, "step"]))
        lam = []
        for i, t in enumerate(ts, 1):
            w = {s: v for s, v in ell.items() if t < s <= t + window}
            best = max(sorted(w), key=lambda s: w[s]) if w else None  # first step on ties
            lam.append(best)
            if best is not None and t in ell:
                eff[(item, kind, index, i)] = ell[best] - ell[t]
        last, pre = lam[-1], ts[0]
        if last is None or pre not in ell or not ell[last] - ell[pre] > 0:
            continue
        for s, v in ell.items():
            if s > last:
                points[(item, kind, index, s)] = (v - ell[pre]) / (ell[last] - ell[pre])
    return eff, points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effectivity_and_retainability_match_naive_reference(seed):
    frame = random_log(seed)
    eff, points = naive_metrics(frame, window=6)
    table = metrics.effectivity(frame, 6).dropna(subset=["effectivity"])
    got = {(r.item_id, r.kind, r.probe_index, r.encounter): r.effectivity
           for r in table.itertuples()}
    assert got.keys() == eff.keys() and np.allclose([got[k] for k in eff], list(eff.values()))
    pts, counts = metrics.retainability(frame, 6)
    got = {(r.item_id, r.kind, r.probe_index, r.step): r.retainability for r in pts.itertuples()}
    assert got.keys() == points.keys()
    assert np.allclose([got[k] for k in points], list(points.values()))
    assert counts["used"] + counts["excluded_nonpositive_denominator"] + counts[
        "excluded_missing_t_pre"] + counts["excluded_missing_window"] == counts["probes"] == 16


def test_control_adjusted_interpolates_between_sparse_control_steps():
    # controls probed at steps 0 and 4 only (probe.control_every); item a at 0, 2, 4 and 6
    rows = [injection("a", 0)]
    rows += [probe("a", s, v) for s, v in {0: -5.0, 2: -3.0, 4: -3.5, 6: -3.0}.items()]
    rows += [probe("c1", 0, -6.0, "control"), probe("c1", 4, -5.0, "control"),
             probe("c2", 0, -4.0, "control"), probe("c2", 4, -4.0, "control")]
    adj = metrics.control_adjusted(pd.DataFrame(rows))
    a = adj[(adj["item_id"] == "a")].set_index("step")
    # control mean: -5.0 at 0, -4.5 at 4, so -4.75 at step 2 (linear); step 6 is past the controls
    assert a.loc[2, "logprob_adj"] == pytest.approx(-3.0 + 4.75)
    assert a.loc[2, "control_n"] == 2 and a.loc[4, "logprob_adj"] == pytest.approx(1.0)
    assert np.isnan(a.loc[6, "logprob_adj"]) and a.loc[6, "control_n"] == 0


def test_specificity_reads_controls_at_the_injected_items_probed_steps():
    # item a is probed at 0, 1 and 3 of its window (t_w = 3, probe.window_points); the control
    # spikes at step 2, where no injected probe was read, so the spike is not its gain
    rows = [injection("a", 0)]
    rows += [probe("a", 0, -5.0), probe("a", 1, -4.5), probe("a", 3, -4.0)]  # E = 1.0
    rows += [probe("c", s, v, "control") for s, v in
             {0: -5.0, 1: -4.8, 2: -3.0, 3: -4.9}.items()]  # gain over steps 1, 3 = 0.2
    out = metrics.specificity(pd.DataFrame(rows), window=3)
    assert out["control_gain"] == pytest.approx(0.2) and out["specificity"] == pytest.approx(0.8)
    # a control probed only at 0 and 4 is read at steps 1 and 3 by interpolation
    sparse = [injection("a", 0)] + [probe("a", 0, -5.0), probe("a", 1, -4.5), probe("a", 3, -4.0)]
    sparse += [probe("c", 0, -5.0, "control"), probe("c", 4, -4.6, "control")]
    out = metrics.specificity(pd.DataFrame(sparse), window=3)
    assert out["control_gain"] == pytest.approx(0.3) and out["control_missing"] == 0
