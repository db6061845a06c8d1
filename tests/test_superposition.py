"""The superposition Δℓ model and the learnability threshold on simulated data with known answers.

The simulator below is written independently of factacq.superposition (an explicit sum over
encounters), so the fits also check the model's vectorized Δℓ."""

import numpy as np
import pandas as pd
import pytest

from factacq import superposition as sp
from factacq.errors import FactacqError


def kernel_value(kernel, tau, shape):
    if kernel == "power":
        return tau ** -shape
    if kernel == "exponential":
        return np.exp(-(tau - 1) / shape)
    return np.maximum(0.0, 1 - shape * np.log10(tau))


def simulate(steps, encounters, kernel="power", shape=0.35, g=0.8, c=0.0, l0=0.0, d=0.0):
    steps = np.asarray(steps, float)
    out = l0 + d * (steps - encounters[0])
    for k, t_k in enumerate(encounters):
        tau = steps - t_k
        seen = tau > 0
        out[seen] += g / (1 + c * k) * kernel_value(kernel, tau[seen], shape)
    return out


def schedule(count, interval, first=0):
    return first + interval * np.arange(count)


def trajectories(specs, noise=0.01, seed=0, after=300, **truth):
    rng = np.random.default_rng(seed)
    out = []
    for count, interval, first in specs:
        enc = schedule(count, interval, first)
        steps = np.arange(first, enc[-1] + after + 1)
        mean = simulate(steps, enc, **truth) + rng.normal(0, noise, steps.size)
        out.append(sp.Trajectory(steps, enc, mean, name=f"{count}x{interval}"))
    return out


POWER = dict(kernel="power", shape=0.35, g=0.8, c=0.3, l0=0.02, d=-2e-4)
SPECS = [(4, 20, 0), (6, 50, 10), (3, 120, 5)]


def test_fit_recovers_a_known_power_superposition():
    fit = sp.fit_superposition(trajectories(SPECS, **POWER), "power", "saturating")
    truth = {"alpha": 0.35, "g": 0.8, "c": 0.3, "l0": 0.02, "d": -2e-4}
    for name, value in truth.items():
        err = fit.stderr[name]
        assert np.isfinite(err) and err > 0, name
        assert abs(fit.params[name] - value) <= 3 * err, (name, fit.params[name], err)
    assert fit.result.ndata == sum(tr.steps.size for tr in trajectories(SPECS, **POWER))
    assert np.isfinite([fit.aic, fit.bic, fit.redchi]).all()
    assert fit.redchi == pytest.approx(0.01 ** 2, rel=0.15)
    assert "alpha=" in str(fit) and "[[Fit Statistics]]" in fit.report()


def test_fixed_drift_is_not_fitted():
    fit = sp.fit_superposition(trajectories(SPECS, **POWER), "power", "saturating", drift=-2e-4)
    assert "d" not in fit.stderr and fit.params["d"] == -2e-4
    assert fit.result.nvarys == 4 and "(fixed)" in str(fit)


def test_aic_picks_the_generating_kernel():
    exp_truth = dict(POWER, kernel="exponential", shape=40.0)
    for data, winner, loser in [(trajectories(SPECS, **POWER), "power", "exponential"),
                                (trajectories(SPECS, seed=1, **exp_truth), "exponential",
                                 "power")]:
        table = sp.compare_kernels(data, kernels=("power", "exponential"))
        assert set(table["kernel"] + "/" + table["gain"]) == {
            "power/constant", "power/saturating", "power/headroom", "exponential/constant",
            "exponential/saturating", "exponential/headroom"}
        best = table.groupby("kernel")["aic"].min()
        assert best[winner] < best[loser] - 10
        assert table.loc[table["best"], "kernel"].item() == winner
        assert table["delta_aic"].min() == 0 and (table["note"] == "").all()
        assert {"alpha", "alpha_stderr", "lam", "lam_stderr", "c", "bic", "redchi"} <= set(table)


def test_headroom_gain_by_hand():
    # exponential kernel, λ = 20: the first encounter's gain, 1, is exp(−9/20) = 0.6376 held at the
    # second (τ = 10: f = exp(−(τ − 1)/λ)), which then adds 1·(1 − 0.6376/2) with a ceiling m = 2
    enc = np.array([[0.0, 10.0]])
    held = np.exp(-9 / 20)
    second = 1 - held / 2
    at = sp._delta_logprob(np.array([15.0]), enc, g=1.0, lam=20.0, m=2.0, kernel="exponential",
                           gain="headroom")
    assert at[0] == pytest.approx(np.exp(-14 / 20) + second * np.exp(-4 / 20), rel=1e-12)
    # a ceiling far above any held gain is the constant gain (1 − L/m differs from 1 by < 1e-8)
    steps = np.arange(0.0, 400.0)
    encs = np.repeat(schedule(8, 10)[None, :].astype(float), steps.size, axis=0)
    far = sp._delta_logprob(steps, encs, g=0.7, alpha=0.3, m=1e9, gain="headroom")
    constant = sp._delta_logprob(steps, encs, g=0.7, alpha=0.3)
    assert np.abs(far - constant).max() < 1e-7 * np.abs(constant).max()
    # a NaN-padded encounter adds nothing
    padded = np.repeat(np.array([[0.0, 10.0, np.nan]]), 1, axis=0)
    assert sp._delta_logprob(np.array([15.0]), padded, g=1.0, lam=20.0, m=2.0,
                             kernel="exponential", gain="headroom")[0] == pytest.approx(at[0])


def test_fit_recovers_a_known_headroom_superposition():
    """Encounters close together add less (the gain still held eats the headroom): a headroom
    model is recovered, and AIC prefers it to the constant and saturating gains."""
    truth = dict(g=0.9, lam=60.0, m=1.5)
    rng = np.random.default_rng(5)
    trs = []
    for count, interval in [(8, 5), (8, 25), (4, 100), (1, 1)]:
        enc = schedule(count, interval).astype(float)
        steps = np.arange(0.0, enc[-1] + 300)
        mean = sp._delta_logprob(steps, np.repeat(enc[None, :], steps.size, axis=0),
                                 kernel="exponential", gain="headroom", **truth)
        trs.append(sp.Trajectory(steps, enc, mean + rng.normal(0, 0.01, steps.size),
                                 name=f"{count}x{interval}"))
    fit = sp.fit_superposition(trs, "exponential", "headroom", drift=0.0, offset=0.0)
    for name, value in truth.items():
        assert abs(fit.params[name] - value) <= 3 * fit.stderr[name], (name, fit.params[name])
    table = sp.compare_kernels(trs, kernels=("exponential",), drift=0.0, offset=0.0)
    assert table.loc[table["best"], "gain"].item() == "headroom"
    assert table.set_index("gain")["delta_aic"].drop("headroom").min() > 10


def with_items(count, interval, n_items=30, noise=0.02, seed=3, after=300, **truth):
    """A held-out trajectory with per-item values: item gains vary by 10%, probes are noisy."""
    rng = np.random.default_rng(seed)
    enc = schedule(count, interval)
    steps = np.arange(0, enc[-1] + after + 1, 5)
    base = {k: v for k, v in truth.items() if k != "g"}
    items = np.stack([simulate(steps, enc, g=truth["g"] * rng.normal(1, 0.1), **base)
                      for _ in range(n_items)]) + rng.normal(0, noise, (n_items, steps.size))
    return sp.Trajectory(steps, enc, items.mean(0), items, np.arange(n_items).astype(str),
                         f"{count}x{interval}")


def test_held_out_schedule_is_predicted_without_refitting():
    train = trajectories([(4, 20, 0), (4, 120, 0)], noise=0.002, **POWER)
    fit = sp.fit_superposition(train, "power", "saturating")
    held_out = with_items(4, 50, **POWER)
    pred = sp.predict(fit, held_out.steps, held_out.encounters)
    truth = simulate(held_out.steps, held_out.encounters, **POWER)
    assert pred[-1] == pytest.approx(truth[-1], rel=0.05)
    table = sp.prediction_error(fit, [held_out, (train[0].steps, train[0].encounters,
                                                 train[0].mean)], n_boot=300, seed=1)
    assert list(table.columns) == ["schedule", "n_encounters", "n_points", "rmse", "final_step",
                                   "final_measured", "final_predicted", "rel_error",
                                   "within_tolerance", "final_lo", "final_hi",
                                   "predicted_in_ci"]
    row = table.iloc[0]
    assert row["within_tolerance"] and abs(row["rel_error"]) <= 0.2
    assert row["final_lo"] < row["final_measured"] < row["final_hi"] and row["predicted_in_ci"]
    assert row["rmse"] < 0.05 and row["final_step"] == held_out.steps[-1]
    assert np.isnan(table.iloc[1][["final_lo", "predicted_in_ci"]].astype(float)).all()  # no items


BETA, HORIZON = 0.4, 10
LOG_THRESHOLD = 10 ** (1 / BETA) - HORIZON  # net = g·f(Δ + h) reaches 0 where f does


def items_frame(intervals, count=2, horizon=HORIZON, n_items=40, noise=0.02, seed=5,
                extra=None, **truth):
    """Per-item rows (item_id, interval, step, delta_logprob) at the steps net acquisition reads."""
    rng = np.random.default_rng(seed)
    rows, encounters = [], {}
    for label, count_, interval in [(i, count, i) for i in intervals] + (extra or []):
        enc = schedule(count_, interval)
        encounters[label] = enc
        steps = np.unique([0, 1, horizon, enc[-1] + 1, enc[-1] + horizon])
        for n in range(n_items):
            g = truth.get("g", 1.0) * rng.normal(1, 0.1)
            values = simulate(steps, enc, **{**truth, "g": g}) + rng.normal(0, noise, steps.size)
            rows += [{"item_id": f"{label}-{n}", "interval": label, "step": s, "kind": "mem",
                      "delta_logprob": v} for s, v in zip(steps, values)]
    return pd.DataFrame(rows), encounters


LOG = dict(kernel="log", shape=BETA)
INTERVALS = [10, 20, 40, 80, 160]


def test_learnability_threshold_covers_the_log_kernel_x_intercept():
    frame, encounters = items_frame(INTERVALS, **LOG)
    net = sp.net_acquisition(frame, encounters, HORIZON, n_boot=400, seed=2)
    assert list(net["interval"]) == INTERVALS and (net["n_items"] == 40).all()
    assert (net["missing"] == 0).all() and (net["note"] == "").all()
    expected = 1 - BETA * np.log10(np.array(INTERVALS) + HORIZON)
    assert np.all(np.abs(net["net"] - expected) < net["hi"] - net["lo"])  # ~4 SE
    out = sp.net_acquisition_threshold(net)
    assert out["reason"] == "" and out["n_fitted"] == 5 and out["defined"] == 1.0
    assert out["lo"] < LOG_THRESHOLD < out["hi"]
    assert out["threshold"] == pytest.approx(LOG_THRESHOLD, rel=0.3)
    assert out["B"] == pytest.approx(-BETA, abs=3 * out["B_stderr"])


def test_trajectories_from_items_keep_the_items():
    frame, encounters = items_frame([10, 40], **LOG)
    frame = pd.concat([frame, frame.assign(kind="sem")])  # two probes per item and step: averaged
    trs = sp.trajectories_from_items(frame, encounters)
    assert [tr.name for tr in trs] == ["10", "40"]
    tr = trs[1]
    assert tr.items.shape == (40, tr.steps.size) and list(tr.encounters) == [0, 40]
    expected = frame[frame["interval"] == 40].groupby("step")["delta_logprob"].mean()
    assert np.allclose(tr.mean, expected.to_numpy()) and list(tr.steps) == list(expected.index)
    with pytest.raises(FactacqError, match="no schedule for interval 40"):
        sp.trajectories_from_items(frame, {10: [0, 10]})


def test_single_encounter_reference_for_horizons_beyond_the_interval():
    horizon = 50  # > the shorter intervals: the paired Δℓ(t_first + h) would hold encounter 2
    frame, encounters = items_frame(INTERVALS, horizon=horizon, extra=[("once", 1, 1)], **LOG)
    paired = sp.net_acquisition(frame, encounters, horizon, n_boot=50)
    assert paired["net"].isna().tolist() == [True, True, True, False, False]
    assert "single-encounter reference" in paired["note"].iloc[0]
    net = sp.net_acquisition(frame, encounters, horizon, reference="once", n_boot=300)
    expected = 1 - BETA * np.log10(np.array(INTERVALS) + horizon)
    assert np.all(np.abs(net["net"] - expected) < net["hi"] - net["lo"])  # ~4 SE
    out = sp.net_acquisition_threshold(net)
    assert out["lo"] < 10 ** (1 / BETA) - horizon < out["hi"]
    with pytest.raises(FactacqError, match="reference 'twice'"):
        sp.net_acquisition(frame, encounters, horizon, reference="twice")


def test_no_crossing_gives_nan_with_a_reason():
    frame, encounters = items_frame(INTERVALS, kernel="power", shape=0.1)
    out = sp.net_acquisition_threshold(sp.net_acquisition(frame, encounters, HORIZON, n_boot=100))
    assert np.isnan(out["threshold"]) and "outside the measured intervals" in out["reason"]
    frame, encounters = items_frame(INTERVALS, kernel="power", shape=0.3, d=0.01)  # rising
    out = sp.net_acquisition_threshold(sp.net_acquisition(frame, encounters, HORIZON, n_boot=100))
    assert np.isnan(out["threshold"]) and "does not fall" in out["reason"]


def test_model_threshold_matches_the_analytic_crossing():
    log = dict(LOG, g=0.5)
    fit = sp.fit_superposition(trajectories([(8, 20, 0), (8, 60, 0)], noise=0.005, **log),
                               "log", "constant", drift=0.0)
    beta = fit.params["beta"]
    out = sp.model_threshold(fit, count=8, horizon=HORIZON, intervals=INTERVALS)
    assert out["reason"] == ""
    assert out["threshold"] == pytest.approx(10 ** (1 / beta) - HORIZON, rel=1e-6)
    assert out["threshold"] == pytest.approx(LOG_THRESHOLD, rel=0.1)
    assert np.all(np.diff(out["net"]) < 0) and len(out["net"]) == len(INTERVALS)

    # power kernel, constant gain: the residual never reaches 0
    power = sp.fit_superposition(trajectories(SPECS, **dict(POWER, c=0.0)), "power", "constant",
                                 drift=0.0)
    out = sp.model_threshold(power, count=2, horizon=HORIZON, intervals=INTERVALS)
    assert np.isnan(out["threshold"]) and "stays > 0" in out["reason"]
    # power kernel, saturating gain, k = 2: g·(h+Δ)^−α = g·h^−α·c/(1+c) at the crossing
    sat = sp.fit_superposition(trajectories(SPECS, **dict(POWER, c=3.0, d=0.0)), "power",
                               "saturating", drift=0.0)
    alpha, c = sat.params["alpha"], sat.params["c"]
    analytic = HORIZON * ((1 + c) / c) ** (1 / alpha) - HORIZON
    out = sp.model_threshold(sat, count=2, horizon=HORIZON, intervals=INTERVALS)
    assert out["threshold"] == pytest.approx(analytic, rel=1e-6)
    assert sp.model_net_acquisition(sat, 2, HORIZON, [analytic]) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda: sp.fit_superposition([]), "fit_superposition: trajectories is empty"),
    (lambda: sp.fit_superposition([([0, 1, 2], [0], [0.1, 0.2])]),
     "trajectories[0] has 3 steps but 2 mean values"),
    (lambda: sp.fit_superposition([([0, 1, 2], [], [0, 1, 2])]),
     "trajectories[0] encounter_steps must be finite and non-empty"),
    (lambda: sp.fit_superposition([([0, 1, 2], [0], [0, 1, 2])]), "3 finite points for 5"),
    (lambda: sp.fit_superposition([([0, 1], [0])]), "trajectories[0] must be a Trajectory or"),
    (lambda: sp.SuperpositionModel(kernel="gauss"),
     "kernel must be one of power, exponential, log, got 'gauss'"),
    (lambda: sp.fit_superposition([([0, 1], [0], [0, 1])], gain="linear"),
     "gain must be one of constant, saturating, headroom, got 'linear'"),
    (lambda: sp.net_acquisition(pd.DataFrame({"item_id": ["a"]}), {}, 10),
     "net_acquisition: per_item is missing columns ['interval', 'step', 'delta_logprob']"),
    (lambda: sp.net_acquisition(pd.DataFrame({"item_id": ["a"], "interval": [5], "step": [0],
                                              "delta_logprob": [0.0]}), {}, 10),
     "net_acquisition: encounter_steps has no schedule for interval 5"),
])
def test_bad_input_is_one_clear_line(call, message):
    with pytest.raises(FactacqError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
