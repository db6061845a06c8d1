"""The end-of-run report (factacq.report) and the one item bootstrap (metrics.resampled_means)."""

import json

import numpy as np
import pandas as pd
import pytest

from factacq import fits, metrics
from factacq.atomic import json_text
from factacq.params import Params
from factacq.report import RunReport, run_report
from test_analyze import END, WINDOW, synthetic_log

PARAMS = Params(probe={"window": WINDOW}, analysis={"bootstrap": 50, "stationarity_n": 10})


def test_the_report_is_the_metrics_and_reads_back_from_json_as_it_was():
    frame = synthetic_log()
    report = run_report(frame, PARAMS)
    assert report.specificity == metrics.specificity(frame, WINDOW)
    assert report.contrastive_effectivity == metrics.contrastive_effectivity(frame, WINDOW, 0.95, 50, 0)
    assert report.stationarity == metrics.stationarity(frame, 10)
    assert report.unavailable == {}
    # bg_loss falls 1e-3 per update, and the last 10 updates are END - 10 after the first 10: a
    # change of -0.29 nats/token, outside the default target of 0.1
    assert report.stationarity["change"] == pytest.approx(-(END - 10) * 1e-3)
    assert report.stationary is False
    assert run_report(frame, PARAMS.model_copy(update={"analysis": PARAMS.analysis.model_copy(
        update={"stationarity_target": 0.3})})).stationary is True
    text = report.report()
    # the stationarity line also gives the LR of the update that trained the first injection
    assert report.stationarity["lr_first_injection"] == 1e-3
    assert text.splitlines()[2].endswith(
        "outside the 0.1 nats/token target; LR at the first injection 0.001")
    stored = json.loads(json_text(report.to_dict()))  # as run.json and summary.json hold it
    assert RunReport.from_dict(stored) == report and RunReport.from_dict(stored).report() == text


def test_a_part_the_log_cannot_give_is_none_with_the_reason():
    report = run_report(synthetic_log(control=False, foils=False), PARAMS)
    assert report.specificity is None and report.contrastive_effectivity is None
    assert "no control probes" in report.unavailable["specificity"]
    assert report.report().startswith("specificity: n/a (run log: no control probes")
    # a run.json from before RunReport stored such a part as {"error": ...}
    old = RunReport.from_dict({"specificity": {"error": "no control"},
                               "stationarity": report.to_dict()["stationarity"]})
    assert old.specificity is None and old.unavailable["specificity"] == "no control"
    assert old.stationarity_target == 0.1 and old.stationary is report.stationary


def test_the_shared_item_bootstrap_draws_as_the_two_bootstraps_did():
    frame = pd.DataFrame({"item_id": np.repeat(list("abcdefg"), 3),
                          "effectivity": np.random.default_rng(1).normal(size=21)})
    per_item = frame.groupby("item_id")["effectivity"].agg(["sum", "size"])
    sums, sizes = per_item["sum"].to_numpy(), per_item["size"].to_numpy()
    idx = np.random.default_rng(5).integers(0, len(sums), (200, len(sums)))  # the draws of before
    expected = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    samples = fits._effectivity_samples(frame, 200, 5)["effectivity_samples"]
    assert np.array_equal(samples, expected)  # the same draws and arithmetic: bit for bit
    lo, hi = np.quantile(expected, [(1 - 0.95) / 2, (1 + 0.95) / 2])
    stats = metrics.bootstrap_mean(frame, "effectivity", 200, 0.95, 5)
    assert (stats["lo"], stats["hi"]) == (lo, hi)
