"""Decay fits on constructed curves with known parameters."""

import numpy as np
import pandas as pd
import pytest

from factacq import fits
from factacq.errors import FactacqError

T = np.unique(np.geomspace(1, 30000, 40).round())


def loglinear_points(a=0.2, b=0.95, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return T, b - a * np.log10(T) + rng.normal(0, noise, T.size)


def test_loglinear_recovers_slope_and_x_intercept():
    t, R = loglinear_points()
    fit = fits.fit_loglinear(t, R, tokens_per_step=64)
    # estimates from noisy points (noise 0.01): statistical tolerances, several standard errors wide
    assert fit.params["a"] == pytest.approx(0.2, abs=0.01)
    assert 0 < fit.stderr["a"] < 0.01
    assert fit.r2 > 0.99
    assert fit.x_intercept == pytest.approx(10 ** (0.95 / 0.2), rel=0.15)
    assert fit.x_intercept_tokens == pytest.approx(fit.x_intercept * 64)
    assert "a=0.2" in str(fit) and "tokens" in str(fit) and "[[Fit Statistics]]" in fit.report()


def test_aic_prefers_the_generating_model():
    rng = np.random.default_rng(1)
    t, R = loglinear_points(seed=2)
    t_exp = np.linspace(1, 500, 40)
    R_exp = 0.8 * np.exp(-t_exp / 60) + 0.15 + rng.normal(0, 0.01, t_exp.size)
    points = pd.concat([
        pd.DataFrame({"scenario": "once", "kind": "memorization", "t": t, "retainability": R}),
        pd.DataFrame({"scenario": "once", "kind": "semantic", "t": t_exp,
                      "retainability": R_exp})])
    table = fits.compare_models(points, tokens_per_step=10).set_index(["kind", "model"])
    assert table.loc[("memorization", "loglinear"), "best"]
    assert table.loc[("semantic", "exponential"), "best"]
    assert (table.loc["memorization", "aic"].drop("loglinear")
            > table.loc[("memorization", "loglinear"), "aic"]).all()
    exp = table.loc[("semantic", "exponential")]
    assert exp["rate"] == pytest.approx(1 / 60, rel=0.1) and exp["offset"] == pytest.approx(0.15, abs=0.02)
    assert np.isnan(table.loc[("memorization", "loglinear"), "iqr_factor"])  # no IQR filter said


def test_exponential_without_offset_and_power_law():
    t = np.linspace(1, 400, 30)
    # noise-free curves, nonlinear fits from a rough start: lmfit converges to xtol = 1.5e-8, so
    # 1e-4 only leaves room for a slow convergence, not for a wrong model or parameterization
    fit = fits.fit_exponential(t, 0.9 * np.exp(-0.01 * t), offset=False)
    assert fit.params == pytest.approx({"amplitude": 0.9, "rate": 0.01}, rel=1e-4)
    power = fits.fit_powerlaw(t, 0.7 * t ** -0.25)
    assert power.params["exponent"] == pytest.approx(0.25, rel=1e-4)
    assert np.isnan(power.x_intercept)


def test_fit_refuses_nonpositive_t_and_too_few_points():
    with pytest.raises(FactacqError, match="t must be > 0"):
        fits.fit_loglinear([0, 1, 2], [1, 0.9, 0.8])
    with pytest.raises(FactacqError, match="at least 3 points"):
        fits.fit_powerlaw([1, 2], [1, 0.9])


def probe_points(a, n_items=12, seed=0, scenario="once"):
    """Per-probe points: each item has its own offset; every probe shares the t grid."""
    rng = np.random.default_rng(seed)
    t = np.array([1, 3, 10, 30, 100, 300, 1000])
    rows = []
    for i in range(n_items):
        offset = rng.normal(0, 0.05)
        for j in range(2):
            rows.append(pd.DataFrame({"item_id": f"{scenario}{i}", "scenario": scenario,
                                      "kind": "memorization", "probe_index": j, "t": t,
                                      "retainability": 1 + offset - a * np.log10(t)
                                      + rng.normal(0, 0.02, t.size)}))
    return pd.concat(rows, ignore_index=True)


def test_bootstrap_matches_lmfit_and_covers_truth():
    points = probe_points(0.15)
    table = fits.bootstrap(points, n_boot=300, tokens_per_step=100).iloc[0]
    mean = points.groupby("t")["retainability"].mean()
    fit = fits.fit_loglinear(mean.index, mean.to_numpy())
    # closed-form least squares (the bootstrap's) vs lmfit's leastsq (xtol = ftol = 1.5e-8 relative to
    # (a, b)): a and b agree to ~1.5e-8 * max(|a|, |b|) = ~1.5e-8 here (b ~ 1), so 1e-7 relative to
    # a = 0.15. The x-intercept 10**(b/a) amplifies that by ln(10) * (1 + b/a) ~ 17: ~2e-6.
    assert table["a"] == pytest.approx(fit.params["a"], rel=1e-6)
    assert table["x_intercept_steps"] == pytest.approx(fit.x_intercept, rel=1e-5)
    assert table["a_lo"] < 0.15 < table["a_hi"]
    assert table["x_intercept_tokens"] == pytest.approx(table["x_intercept_steps"] * 100)
    assert table["n_items"] == 12 and table["x_intercept_defined"] == 1.0


def test_compare_conditions_difference_of_decay_constants():
    results = {"paraphrase": probe_points(0.10, seed=1, scenario="p"),
               "duplicate": probe_points(0.20, seed=2, scenario="d")}
    table = fits.compare_conditions(results, "a", n_boot=300).iloc[0]
    assert table["condition"] == "duplicate" and table["reference"] == "paraphrase"
    assert table["difference"] == pytest.approx(0.10, abs=0.02)
    assert 0 < table["difference_lo"] < table["difference"] < table["difference_hi"]
    with pytest.raises(FactacqError, match="reference 'x'"):
        fits.compare_conditions(results, reference="x")


def sweep_log(interval, gain_kept):
    """Two items injected 3 times every `interval` steps; each encounter leaves `gain_kept`."""
    rows = []
    for item, base in (("a", -5.0), ("b", -6.0)):
        for i in range(3):
            step = 10 + i * interval
            rows.append({"record": "injection", "step": step, "item_id": item,
                         "scenario": "duplicate"})
            rows.append({"record": "probe", "step": step, "item_id": item,
                         "scenario": "duplicate", "kind": "memorization", "probe_index": 0,
                         "logprob": base + i * gain_kept + (0.01 if item == "a" else -0.01)})
    return pd.DataFrame(rows)


def test_learnability_threshold_for_interval_sweep_and_tokens():
    sweep = {10: sweep_log(10, 0.5), 50: sweep_log(50, 0.1), 200: sweep_log(200, -0.05)}
    out = fits.learnability_threshold(sweep, n_boot=100)
    assert out["threshold_interval"] == 50
    assert out["table"].set_index("interval").loc[10, "mean"] == pytest.approx(1.0)
    fit = fits.fit_loglinear(*loglinear_points(noise=0))
    assert fits.learnability_threshold(fit, tokens_per_step=64) == pytest.approx(
        10 ** (0.95 / 0.2) * 64, rel=1e-6)
