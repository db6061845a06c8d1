"""`factacq analyze` on a synthetic run folder written through the run-log writer."""

import json

import numpy as np
import pandas as pd
import pytest

from factacq.analyze import TABLES, analyze, compare_decay, load_tables
from factacq.cli import main
from factacq.errors import FactacqError
from factacq.params import Params
from factacq.runlog import RunLogWriter, write_json_atomic

WINDOW, DECAY, END, DRIFT = 5, 0.15, 300, 0.002
SCHEDULE = {"paraphrase": [10, 20, 30], "duplicate": [10, 20, 30], "once": [10], "control": []}


def gain(d):
    """ℓ gained d steps after an encounter: rises to 1 at d = 3 (t_LAM), then 0.98 − a·log10(d−3),
    so R after the last encounter of a `once` item is exactly 0.98 − a·log10 t."""
    if d <= 0:
        return 0.0
    return d / 3 if d <= 3 else 0.98 - DECAY * np.log10(d - 3)


def synthetic_log(control=True, foils=True, seed=0):
    """Sparse probe steps (t_i, the windows, log-spaced after), a linear drift shared by all items
    (which the control adjustment removes), one memorization and one semantic probe per item."""
    rng = np.random.default_rng(seed)
    windows = {s for t in (10, 20, 30) for s in range(t, t + WINDOW + 1)}
    steps = sorted(windows | set(np.geomspace(36, END, 12).astype(int).tolist()))
    rows = []
    for scenario, injected in SCHEDULE.items():
        if scenario == "control" and not control:
            continue
        for k in range(3):
            item = f"{scenario}-{k}"
            rows += [{"run_id": "r", "record": "injection", "step": t, "global_step": 100 + t,
                      "item_id": item, "scenario": scenario, "text_index": 0, "row": k}
                     for t in injected]
            for kind, size in (("memorization", 1.0), ("semantic", 0.3)):
                base = -5 + rng.normal(0, 0.3)
                for s in steps:
                    value = base + DRIFT * s + size * sum(gain(s - t) for t in injected)
                    rows.append({"run_id": "r", "record": "probe", "step": s,
                                 "global_step": 100 + s, "item_id": item, "scenario": scenario,
                                 "kind": kind, "probe_index": 0, "logprob": value,
                                 "first_logprob": value - 0.5, "seq_logprob": value - 1.0,
                                 "foil_logprob": -6 + DRIFT * s if foils else None,
                                 "first_foil_logprob": -6.5 + DRIFT * s if foils else None})
    rows += [{"run_id": "r", "record": "train", "step": s, "global_step": 100 + s, "loss": 4.0,
              "bg_loss": 4.2 - 1e-3 * s, "lr": 1e-3, "grad_norm": 1.0, "tokens": 64 * s}
             for s in range(1, END + 1)]
    return pd.DataFrame(rows)


def write_run(run_dir, **kwargs):
    params = Params(name="synthetic", probe={"window": WINDOW},
                    analysis={"bootstrap": 50, "stationarity_n": 10})
    writer = RunLogWriter(run_dir)
    log = synthetic_log(**kwargs)
    writer.append(log.iloc[: len(log) // 2])
    writer.append(log.iloc[len(log) // 2:])
    write_json_atomic(run_dir / "run.json", {"params": params.model_dump(mode="json"),
                                             "tokens_per_step": 64})
    return run_dir


def test_cli_analyze_writes_tables_figures_and_prints_summary(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run")
    assert main(["analyze", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for text in ("effectivity E", "control-adjusted", "decay constant a", "specificity:",
                 "contrastive effectivity (contrast)", "stationarity: bg_loss",
                 "retainability: 18 of 18 probes used"):
        assert text in out
    tables = run_dir / "tables"
    for name in ("effectivity", "effectivity_summary", "retainability_points",
                 "retainability_mean", "retainability_counts", "fits", "model_comparison",
                 "comparisons", "summary"):
        assert (tables / f"{name}.csv").is_file(), name
    for name in ("dynamics", "dynamics_adjusted", "effectivity", "retention", "retention_tokens",
                 "stationarity"):
        for ext in ("png", "pdf"):
            assert (run_dir / "figures" / f"{name}.{ext}").stat().st_size > 0
    assert not [p for p in run_dir.rglob(".*") if p.is_file()]  # no temp files left

    fits = pd.read_csv(tables / "fits.csv")
    assert set(fits["adjustment"]) == {"raw", "control-adjusted"}
    assert set(fits["measure"]) == {"logprob", "contrast"}
    assert set(fits["iqr_factor"]) == {1.5}
    once = fits[(fits["measure"] == "logprob") & (fits["adjustment"] == "control-adjusted")
                & (fits["scenario"] == "once") & (fits["kind"] == "memorization")].iloc[0]
    # drift removed: the points are exactly log-linear up to rounding (zero residual), so lmfit starts
    # at the optimum (np.polyfit's) and stays there; a and 10**(b/a) match to rounding, far inside 1e-6
    assert once["a"] == pytest.approx(DECAY, rel=1e-6)
    assert once["x_intercept_steps"] == pytest.approx(10 ** (0.98 / DECAY), rel=1e-6)
    assert once["x_intercept_tokens"] == pytest.approx(once["x_intercept_steps"] * 64)
    raw = fits[(fits["measure"] == "logprob") & (fits["adjustment"] == "raw")
               & (fits["scenario"] == "once") & (fits["kind"] == "memorization")].iloc[0]
    assert raw["a"] < DECAY  # the shared upward drift slows the raw decay

    eff = pd.read_csv(tables / "effectivity_summary.csv")
    adj = eff[(eff["measure"] == "logprob") & (eff["adjustment"] == "control-adjusted")
              & (eff["scenario"] == "once") & (eff["kind"] == "memorization")].iloc[0]
    assert adj["mean"] == pytest.approx(1.0) and adj["lo"] <= adj["mean"] <= adj["hi"]

    summary = json.loads((tables / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert 0.9 < summary["specificity"]["specificity"] <= 1.0
    assert summary["stationarity"]["change"] == pytest.approx(-(END - 10) * 1e-3)
    comparisons = pd.read_csv(tables / "comparisons.csv")
    assert {"duplicate", "once"} <= set(comparisons["condition"])
    assert set(comparisons["reference"]) == {"paraphrase"}


def test_analyze_without_control_or_foils_reports_raw_only(tmp_path):
    run_dir = write_run(tmp_path / "run", control=False, foils=False)
    summary = analyze(run_dir)
    assert summary["specificity"] is None and summary["contrastive_effectivity"] is None
    fits = pd.read_csv(run_dir / "tables" / "fits.csv")
    assert set(fits["adjustment"]) == {"raw"} and set(fits["measure"]) == {"logprob"}
    assert not (run_dir / "figures" / "dynamics_adjusted.png").exists()


def test_cli_analyze_bad_folder_is_one_line_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("factacq: error:") and "no run log" in err and "\n" not in err


def test_load_tables_reads_back_every_table_analyze_writes(tmp_path):
    run_dir = write_run(tmp_path / "run")
    with pytest.raises(FactacqError, match="factacq analyze"):
        load_tables(run_dir)
    analyze(run_dir)
    tables = load_tables(run_dir)
    assert sorted(TABLES) == sorted(p.stem for p in (run_dir / "tables").glob("*.csv"))
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(tables, name),
                                      pd.read_csv(run_dir / "tables" / f"{name}.csv"))
    (run_dir / "tables" / "comparisons.csv").write_text("\n")  # how an empty table is written
    assert load_tables(run_dir).comparisons.empty


def _set_analysis(run_dir, **options):
    sidecar = json.loads((run_dir / "run.json").read_text())
    sidecar["params"]["analysis"].update(options)
    write_json_atomic(run_dir / "run.json", sidecar)


def test_compare_decay_draws_its_intervals_with_the_runs_analysis_options(tmp_path):
    runs = {name: write_run(tmp_path / name, seed=i) for i, name in enumerate(("a", "b"))}
    for run_dir in runs.values():
        analyze(run_dir)
    compare = {"ab": ["a", "b"]}
    wide = compare_decay(runs, compare)
    assert len(wide) > 0 and set(wide["ci"]) == {0.95} and set(wide["reference"]) == {"a"}
    for run_dir in runs.values():
        _set_analysis(run_dir, ci=0.5)
    narrow = compare_decay(runs, compare)
    # the same bootstrap draws (the runs' analysis.bootstrap and seed), a 50 % instead of a 95 % interval
    assert set(narrow["ci"]) == {0.5}
    assert narrow["difference"].tolist() == wide["difference"].tolist()
    width = {name: t["difference_hi"] - t["difference_lo"] for name, t in (("wide", wide), ("narrow", narrow))}
    assert (width["narrow"] <= width["wide"]).all() and (width["narrow"] < width["wide"]).any()
    _set_analysis(runs["b"], bootstrap=20)
    with pytest.raises(FactacqError, match=r"compare\.ab: the conditions differ in analysis\.bootstrap"):
        compare_decay(runs, compare)
