"""The findings table on synthetic run logs whose answers are known by construction.

Every item of a scenario is injected on SCHEDULE; each encounter raises ℓ by the kind's JUMP (times
the item's own multiplier) one step later, where ℓ stays until the next encounter, so E = jump and
ℓ(t_N) − ℓ(t_1) = (N − 1)·jump. After the last encounter (t_LAM = t_N + 1) the gain decays as
R = 0.9·(1 − a·log10 t) (or 0.9·exp(−t/τ)), so the fitted decay constant is 0.9·a, a per scenario
and kind. Foils sit at −9 (plus any drift), so the contrast measures the same facts as ℓ; control
items (never injected) only add noise.
"""

import sys
import types

import numpy as np
import pandas as pd
import pytest

from factacq import findings, fits
from factacq.errors import FactacqError
from factacq.params import Params
from factacq.runlog import RunLogWriter, write_json_atomic

WINDOW = 5
SCHEDULE = {"paraphrase": (10, 20, 30), "duplicate": (10, 20, 30), "once": (10,), "control": ()}
STEPS = sorted(set(range(0, 37)) | set(np.geomspace(37, 2000, 30).astype(int).tolist()))
JUMP = {"memorization": 1.0, "semantic": 0.6, "composition": 0.3}
KIND_A = {"memorization": 0.2, "semantic": 0.2, "composition": 0.1}
SCENARIO_A = {"paraphrase": 1.0, "duplicate": 1.5, "once": 1.0}  # a_dup > a_para
BOOT = 200
PEAK_GAP = 0.9  # R just after t_LAM: the peak at t_LAM is unique, so t_LAM = t_N + 1 exactly


def params(**sections) -> Params:
    analysis = {"bootstrap": BOOT, "seed": 0, **sections.pop("analysis", {})}
    return Params(name=sections.pop("name", "synthetic"), probe={"window": WINDOW},
                  analysis=analysis, **sections)


def synthetic_log(jump=JUMP, a=None, noise=0.01, drift=0.0, n_items=8, seed=0, foils=True,
                  shape="loglinear", tau=100.0, spread=0.0) -> pd.DataFrame:
    """`a(scenario, kind)` the decay constant (default KIND_A x SCENARIO_A); `spread`: each item's
    jumps are multiplied by a uniform factor in [1 − spread, 1 + spread], the same for its kinds."""
    a = a or (lambda scenario, kind: KIND_A[kind] * SCENARIO_A[scenario])
    rng = np.random.default_rng(seed)
    steps = np.array(STEPS, dtype=float)
    rows = []
    for scenario, enc in SCHEDULE.items():
        for i in range(n_items):
            item = f"{scenario}-{i}"
            rows += [{"record": "injection", "step": t, "item_id": item, "scenario": scenario}
                     for t in enc]
            scale = 1 + rng.uniform(-spread, spread)
            for kind in JUMP:
                base, size = rng.normal(-5, 0.3), jump[kind] * scale * bool(enc)
                value = base + size * np.array([sum(t < s for t in enc) for s in steps])
                if enc:
                    t = steps - enc[-1] - 1
                    after = t > 0
                    curve = (PEAK_GAP * (1 - a(scenario, kind) * np.log10(np.maximum(t, 1)))
                             if shape == "loglinear" else PEAK_GAP * np.exp(-t / tau))
                    value = np.where(after, base + size * len(enc) * curve, value)
                value = value + drift * steps + rng.normal(0, noise, steps.size)
                foil = -9 + drift * steps + rng.normal(0, noise, steps.size)
                rows += [{"record": "probe", "step": int(s), "item_id": item, "scenario": scenario,
                          "kind": kind, "probe_index": 0, "logprob": v,
                          "foil_logprob": f if foils else np.nan}
                         for s, v, f in zip(steps, value, foil)]
    return pd.DataFrame(rows)


def rows(table, finding, measure="logprob"):
    return table[(table["finding"] == finding) & (table["measure"] == measure)]


def verdict_of(table, finding, measure="logprob"):
    verdicts = set(rows(table, finding, measure)["verdict"])
    assert len(verdicts) == 1, (finding, measure, verdicts)
    return verdicts.pop()


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi, expect, threshold, out", [
    (0.1, 0.3, "above", 0, "holds"), (-0.3, -0.1, "above", 0, "reversed"),
    (-0.1, 0.1, "above", 0, "not detected"), (0.0, 0.1, "above", 0, "not detected"),
    (-0.3, -0.1, "below", 0, "holds"), (0.1, 0.3, "below", 0, "reversed"),
    (0.8, 0.9, "at_least", 0.8, "holds"), (0.5, 0.79, "at_least", 0.8, "reversed"),
    (0.7, 0.9, "at_least", 0.8, "not detected"),
    (-0.5, -0.1, "no_increase", 0, "holds"), (-0.1, 0.5, "no_increase", 0, "holds"),
    (0.1, 0.5, "no_increase", 0, "reversed"),
    (np.nan, 0.5, "above", 0, "not run"), (0.1, np.inf, "below", 0, "not run"),
])
def test_verdict_rules(lo, hi, expect, threshold, out):
    assert findings.verdict(lo, hi, expect, threshold) == out


def test_joint_verdicts_and_bad_rule():
    H, N, R, X = findings.VERDICTS
    assert findings.joint([H, H]) == H
    assert findings.joint([H, N]) == N
    assert findings.joint([H, R]) == R
    assert findings.joint([H, R], reversing=[0]) == N  # only the first statistic can reverse
    assert findings.joint([R, X], reversing=[0]) == R  # a reversal stands without the other CI
    assert findings.joint([H, X]) == X
    with pytest.raises(FactacqError, match="expect must be"):
        findings.verdict(np.nan, 1, "sideways")


def test_known_log_holds_with_the_known_values():
    table = findings.run_findings(synthetic_log(), params())
    assert list(table.columns) == findings.COLUMNS
    assert list(dict.fromkeys(table["finding"])) == ["F1", "F2", "F3", "F7", "F8"]
    # one-statistic findings: the statistic's verdict is the finding's
    single = table[table["finding"].isin(["F2", "F3", "F7"])]
    assert (single["statistic_verdict"] == single["verdict"]).all()
    assert set(table["measure"]) == {"logprob", "contrast"}
    for measure in ("logprob", "contrast"):
        for finding in ("F1", "F3", "F7", "F8"):
            assert verdict_of(table, finding, measure) == "holds", (finding, measure)
    f1 = rows(table, "F1").set_index("statistic")["value"]
    # (N − 1) jumps of 1.0 remain before the last encounter; E = one jump (+ the window's noise max)
    assert f1["accumulation ℓ(t_N) − ℓ(t_1)"] == pytest.approx(2.0, abs=0.02)
    assert f1["mean effectivity E"] == pytest.approx(1.0, abs=0.05)
    assert "k=1: 1" in rows(table, "F1")["detail"].iloc[0] and "k=3" in rows(table, "F1")["detail"].iloc[0]
    f3 = rows(table, "F3").iloc[0]
    assert f3["value"] == pytest.approx(PEAK_GAP * (0.3 - 0.2), abs=0.01) and f3["n_items"] == 16
    f8 = rows(table, "F8").set_index("statistic")["value"]
    assert f8["E(memorization) − E(semantic)"] == pytest.approx(0.4, abs=0.05)
    assert f8["E(semantic) − E(composition)"] == pytest.approx(0.3, abs=0.05)
    # pooled a: composition 0.1·(1 + 1.5 + 1)/3 against memorization 0.2·(3.5/3)
    assert rows(table, "F7")["value"].iloc[0] == pytest.approx(-PEAK_GAP * 0.1 * 3.5 / 3, abs=0.01)
    f2 = rows(table, "F2").set_index("conditions")
    assert (f2["value"] > 0.98).all() and (f2["verdict"] == "holds").all()
    assert len(f2) == 3 and all(0 <= f2["lo"]) and all(f2["lo"] <= f2["hi"])


def test_flipped_signs_reverse():
    log = synthetic_log(jump={"memorization": 0.3, "semantic": 0.6, "composition": 1.0},
                        a=lambda s, k: {"memorization": 0.1, "semantic": 0.1,
                                        "composition": 0.25}[k] * (0.6 if s == "duplicate" else 1))
    table = findings.run_findings(log, params())
    for finding in ("F3", "F7", "F8"):
        assert verdict_of(table, finding) == "reversed", finding
    assert verdict_of(table, "F1") == "holds"  # ℓ still accumulates


def test_no_signal_is_not_detected():
    log = synthetic_log(jump={k: 0.0 for k in JUMP}, noise=0.3, seed=3)
    table = findings.run_findings(log, params())
    for finding in ("F1", "F3", "F8"):
        assert verdict_of(table, finding) == "not detected", finding
        assert verdict_of(table, finding, "contrast") == "not detected", finding


def test_drift_is_raw_not_fact_specific():
    # no injected gain, but ℓ of every probe (and of its foils) rises 0.05 per step: raw ℓ
    # "accumulates" (20 steps x 0.05 = 1.0), the contrast against the foils does not
    log = synthetic_log(jump={k: 0.0 for k in JUMP}, noise=0.1, drift=0.05, seed=4)
    table = findings.run_findings(log, params())
    acc = rows(table, "F1").set_index("statistic")["value"]["accumulation ℓ(t_N) − ℓ(t_1)"]
    assert acc == pytest.approx(1.0, abs=0.1) and verdict_of(table, "F1") == "holds"
    assert verdict_of(table, "F1", "contrast") == "not detected"


def test_r2_of_an_exponential_curve_is_lower_and_exponential_wins():
    linear = rows(findings.run_findings(synthetic_log(), params()), "F2")
    curved = rows(findings.run_findings(synthetic_log(shape="exponential", tau=5.0), params()), "F2")
    assert (linear["value"].to_numpy() > 0.98).all()
    assert (curved["value"].to_numpy() < linear["value"].to_numpy() - 0.05).all()
    assert curved["detail"].str.startswith("lowest AIC: exponential").all()
    assert linear["detail"].str.startswith("lowest AIC: loglinear").all()
    assert linear["detail"].str.contains(r"AIC\(powerlaw\) − AIC\(loglinear\) = ").all()
    memorization = curved[curved["statistic"].str.contains("memorization")].iloc[0]
    assert memorization["hi"] < 0.8 and memorization["verdict"] == "reversed"
    assert "composition (threshold 0.65)" in curved["statistic"].iloc[2]


def test_paired_difference_has_a_narrower_interval():
    # per-item multipliers shared by the kinds: E_mem and E_sem move together across items, so
    # the paired CI of E_mem − E_sem is far narrower than one from independent resamples
    log = synthetic_log(spread=0.5, seed=5)
    paired = rows(findings.run_findings(log[log["scenario"].isin(["paraphrase"])], params()), "F8")
    paired = paired.set_index("statistic").loc["E(memorization) − E(semantic)"]
    eff = findings.Condition("x", log, params()).effectivity("logprob")
    indep = fits.compare_conditions({k: eff[eff["kind"] == k] for k in ("semantic", "memorization")},
                                    "effectivity", by=("scenario",), n_boot=BOOT)
    indep = indep[indep["scenario"] == "paraphrase"].iloc[0]
    assert paired["value"] == pytest.approx(indep["difference"])
    assert (paired["hi"] - paired["lo"]) < 0.5 * (indep["difference_hi"] - indep["difference_lo"])


def test_effectivity_outliers_are_left_out_as_analyze_does():
    # one memorization probe that gains 100 nats at every encounter: an IQR outlier (factor 1.5)
    log = synthetic_log()
    planted = (log["item_id"] == "once-0") & (log["kind"] == "memorization") & (log["step"] > 10)
    log.loc[planted, "logprob"] += 100
    f8 = rows(findings.run_findings(log, params()), "F8").set_index("statistic")["value"]
    assert f8["E(memorization) − E(semantic)"] == pytest.approx(0.4, abs=0.05)


def test_without_foils_the_contrast_rows_are_not_run():
    table = findings.run_findings(synthetic_log(foils=False), params())
    contrast = table[table["measure"] == "contrast"]
    assert len(contrast) == 5 and (contrast["verdict"] == "not run").all()
    assert contrast["detail"].str.contains("no foil log-probs").all()
    assert verdict_of(table, "F3") == "holds"


def test_too_little_data_is_not_run_with_a_reason():
    log = synthetic_log()
    log = log[~log["scenario"].isin(["duplicate"])]
    table = findings.run_findings(log, params(analysis={"bootstrap": 0}))
    assert (table["verdict"] == "not run").all()
    f3 = rows(table, "F3").iloc[0]
    assert "duplicate" in f3["detail"]
    assert rows(table, "F8")["detail"].str.startswith("no interval").all()


def test_preset_order_is_the_models_order():
    from factacq.models import PRESETS
    assert findings.PRESET_ORDER == tuple(PRESETS)


# ---------------------------------------------------------------------------------------------
# the sweep table from run folders


@pytest.fixture
def pool_runs_available(monkeypatch):
    """The real factacq.replicates when it is there; else a minimal stand-in with its contract."""
    try:
        import factacq.replicates  # noqa: F401
    except ImportError:
        from factacq.runlog import load_run

        def pool_runs(run_dirs):
            parts = []
            for d in run_dirs:
                frame = load_run(d)
                named = frame["item_id"].notna()
                frame.loc[named, "item_id"] = d.name + "::" + frame.loc[named, "item_id"]
                parts.append(frame.assign(replicate=d.name))
            return pd.concat(parts, ignore_index=True)

        monkeypatch.setitem(sys.modules, "factacq.replicates",
                            types.SimpleNamespace(pool_runs=pool_runs, clusters_of=lambda ids: None))


def write_run(run_dir, frame, p: Params, **sidecar):
    RunLogWriter(run_dir).append(frame)
    tokens = p.run_batch_size * p.pretrain.seq_len
    write_json_atomic(run_dir / "run.json", {"kind": "inject", "params": p.model_dump(mode="json"),
                                             "tokens_per_step": tokens, **sidecar})
    return run_dir


def scaled(factor=1.0, a=1.0, seed=0):
    """The default log with every jump x factor and every a x a."""
    return synthetic_log(jump={k: v * factor for k, v in JUMP.items()},
                         a=lambda s, k: KIND_A[k] * SCENARIO_A[s] * a, seed=seed)


def test_findings_table_of_a_sweep(tmp_path, pool_runs_available):
    runs = {
        # two seeds of the main condition, pooled
        "default": [write_run(tmp_path / f"default_s{s}", scaled(seed=s), params(name="default"))
                    for s in (0, 1)],
        # the larger batch forgets slower per step and sees more tokens per step
        "batch_4": [write_run(tmp_path / "batch_4", scaled(a=1.5, seed=2),
                              params(name="batch_4", inject={"batch_size": 4}))],
        "batch_16": [write_run(tmp_path / "batch_16", scaled(a=0.7, seed=3),
                               params(name="batch_16", inject={"batch_size": 16}))],
        # the later stage learns more: F5 reversed
        "late": [write_run(tmp_path / "late", scaled(1.5, seed=4),
                           params(name="late", inject={"stage": "late"}))],
        "early": [write_run(tmp_path / "early", scaled(seed=5),
                            params(name="early", inject={"stage": "early"}))],
        # the larger model (by run.json n_parameters, against the preset order) learns more
        "big": [write_run(tmp_path / "big", scaled(1.3, seed=6),
                          params(name="big", model={"preset": "micro"}), n_parameters=10**6)],
        "little": [write_run(tmp_path / "little", scaled(seed=7),
                             params(name="little", model={"preset": "base"}), n_parameters=10**4)],
    }
    compare = {"batch_size": ["batch_16", "batch_4"], "stage": ["late", "early"],
               "model_size": ["little", "big"]}
    table = findings.findings_table(runs, compare)
    assert list(dict.fromkeys(table["finding"])) == list(findings.FINDINGS)
    assert verdict_of(table, "F3") == "holds"
    assert rows(table, "F3")["n_items"].iloc[0] == 32  # 16 per seed, pooled
    assert "default (2 seeds)" in rows(table, "F1")["conditions"].iloc[0]
    f4 = rows(table, "F4").set_index("statistic")
    # pooled memorization a: 0.2·(1 + 1.5 + 1)/3, times 0.7 (larger) and 1.5 (smaller)
    assert f4.loc["a(larger) − a(smaller)", "value"] == pytest.approx(
        -PEAK_GAP * 0.8 * 0.2 * 3.5 / 3, abs=0.02)
    assert f4.loc["x-intercept tokens, larger − smaller", "lo"] > 0
    assert verdict_of(table, "F4") == "holds" and verdict_of(table, "F4", "contrast") == "holds"
    f5 = table[table["finding"] == "F5"]
    stage = f5[f5["statistic"].str.contains("own LR") & (f5["measure"] == "logprob")].iloc[0]
    assert stage["verdict"] == "reversed" and stage["value"] == pytest.approx(0.5, abs=0.05)
    assert stage["conditions"] == "stage: late vs early"
    matched = f5[f5["measure"] == "any"].iloc[0]
    assert matched["verdict"] == "not run" and "stage_matched_lr" in matched["detail"]
    assert verdict_of(table, "F6") == "holds"
    assert rows(table, "F6")["conditions"].iloc[0] == "model_size: big vs little"
    # a missing label: one not-run row with the reason; no verdict is written by hand
    missing = findings.findings_table({"default": runs["default"][:1]}, {})
    for finding in ("F4", "F5", "F6"):
        part = missing[missing["finding"] == finding]
        assert (part["verdict"] == "not run").all() and part["detail"].str.startswith("no compare.").all()
    assert set(missing["verdict"]) <= set(findings.VERDICTS)
    assert rows(missing, "F3")["n_items"].iloc[0] == 16
    with pytest.raises(FactacqError, match="main condition 'nope'"):
        findings.findings_table(runs, compare, main="nope")
    # a second condition's own findings (the paper's data beside the generator's): its rows follow
    # the main condition's, named in "conditions", with its own statistics (here a 1.5x jump)
    both = findings.findings_table(runs, compare, conditions=["late"])
    f1 = rows(both, "F1")
    assert [c.split(" ")[0].rstrip(":") for c in dict.fromkeys(f1["conditions"])] == ["default", "late"]
    f8 = rows(both, "F8")
    default_f8, late_f8 = (f8[f8["conditions"].str.startswith(n)] for n in ("default", "late"))
    assert late_f8["value"].iloc[0] == pytest.approx(1.5 * default_f8["value"].iloc[0], rel=0.2)
    assert len(both) == len(table) + len(table[table["finding"].isin(["F1", "F2", "F3", "F7", "F8"])])
    with pytest.raises(FactacqError, match=r"conditions \['nope'\]"):
        findings.findings_table(runs, compare, conditions=["nope"])


def test_comparison_needs_matching_analysis_options(tmp_path):
    runs = {"a": [write_run(tmp_path / "a", scaled(), params(name="a", inject={"batch_size": 4}))],
            "b": [write_run(tmp_path / "b", scaled(seed=1),
                            Params(name="b", probe={"window": WINDOW}, inject={"batch_size": 8},
                                   analysis={"bootstrap": 50}))]}
    table = findings.findings_table(runs, {"batch_size": ["a", "b"], "model_size": ["a", "b"]})
    assert rows(table, "F4", "any")["detail"].iloc[0] == "its conditions differ in analysis options"
    assert rows(table, "F6", "any")["detail"].iloc[0] == "its conditions do not differ"


def test_format_findings_is_a_markdown_table():
    table = findings.run_findings(synthetic_log(foils=False), params())
    text = findings.format_findings(table)
    lines = text.splitlines()
    assert lines[0].startswith("| finding | measure | statistic | value [CI] |")
    assert len([l for l in lines if l.startswith("| F")]) == len(table)
    assert "**holds**" in text and "**not run**" in text and "| — |" in text
    assert "F2: mean retainability R is linear in log t." in text
    assert "detail" not in findings.format_findings(table, detail=False).splitlines()[0]
