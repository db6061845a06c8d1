"""A model that predicts Δℓ from the encounter schedule, and the learnability threshold (issue 12).

**Model.** Encounter k = 0, 1, 2, ... at step t_k adds a gain g·h(k) that decays with the steps
since, on a linear background drift:   Δℓ(t) = ℓ0 + d·(t − t_0) + Σ_{k: t_k < t} g·h(k)·f(t − t_k)
- kernel f(τ), τ = t − t_k (an injection at step s trains in update s+1, so its gain shows from
  s+1; f = 0 for τ ≤ 0): ``power`` τ^(−alpha); ``exponential`` exp(−(τ−1)/lam); ``log``
  max(0, 1 − beta·log10 τ), the paper's log-linear retention, gone at τ = 10^(1/beta);
- gain h(k): ``constant`` 1, ``saturating`` 1/(1 + c·k) (by the encounter's index), or
  ``headroom`` max(0, 1 − L_k/m), with L_k = Σ_{j<k} g·h(j)·f(t_k − t_j) the gain still held at
  t_k: an encounter adds less the more of the earlier gains is left (encounters close together add
  less than spaced ones; m is the ceiling of the held gain, in the units of Δℓ);
- drift d·(t − t_0), counted from the schedule's first encounter (the issue's d·t, reparametrized
  so that ℓ0 is the same for every schedule: Δℓ is 0 at t_0 by construction); fitted, or fixed
  with ``drift=`` (e.g. the control group's slope).
Assumptions: encounters add linearly, every item of a trajectory shares its schedule (align
staggered items on t − t_pre), unit weights (AIC/BIC compare fits to the same points, as in
factacq.fits). Trajectories of several schedules are fitted jointly with one parameter set, so a
held-out schedule is predicted without refitting (:func:`predict`, :func:`prediction_error`).

**Net acquisition** of k encounters spaced Δ apart, at horizon h (issue 12 §1):
net(Δ) = Δℓ_k(t_last + h) − Δℓ_1(t_1 + h), Δℓ h steps after the last of k encounters minus Δℓ h
steps after a single one: what the first k−1 encounters left behind (plus drift d·(k−1)Δ and the
gain lost if h(k−1) < 1). For h ≤ Δ this is the issue's Δℓ(t_last + h) − Δℓ(t_first + h), paired
within items (the default); for h > Δ the item's own t_first + h already holds later encounters
(the issue's formula would go negative at short intervals), so a single-encounter group is the
reference (``reference=``). Without drift and with constant gain the model's net is
Σ_m g·f(h + mΔ) ≥ 0: it reaches 0 only where f does (log kernel: Δ* = 10^(1/beta) − h for every
k, the paper's x-intercept argument) and goes below 0 only with d < 0 or a saturating or headroom
gain; a power kernel alone never crosses.

**Threshold.** :func:`net_acquisition_threshold` fits net = A + B·log10(Δ + h) (Δ + h: the age of the
latest earlier gain when net is read; exact for the log kernel at k = 2, an approximation for
larger k) to the intervals up to the first with mean net ≤ 0 (beyond it net only sits at 0):
Δ* = 10^(−A/B) − h, with a percentile CI from refitting each bootstrap draw over items.
:func:`model_threshold` is the fitted model's own crossing (brentq over log Δ), the second,
independent estimate. Both are NaN, with a reason, when there is no crossing near the intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
import lmfit
import numpy as np
import pandas as pd
from scipy.optimize import brentq

from factacq.errors import FactacqError
from factacq.fits import loglinear_batch
from factacq.metrics import resampled_means
from factacq.replicates import clusters_of

KERNELS = {"power": "alpha", "exponential": "lam", "log": "beta"}  # kernel -> shape parameter
GAINS = ("constant", "saturating", "headroom")
PARAMETERS = ("l0", "d", "g", "alpha", "lam", "beta", "c", "m")


def _kernel(tau, kernel, alpha, lam, beta):
    """f(τ) for τ >= 1 (the caller masks τ <= 0)."""
    if kernel == "power":
        return tau ** -alpha
    if kernel == "exponential":
        return np.exp(-(tau - 1) / lam)
    return np.clip(1 - beta * np.log10(tau), 0, None)


def _headroom_gains(encounters, g, m, kernel, alpha, lam, beta):
    """Per row and encounter k: g·max(0, 1 − L_k/m), L_k = Σ_{j<k} gain_j·f(t_k − t_j), the gain
    still held at t_k from the earlier encounters (n, K; 0 for NaN padding)."""
    gains = np.zeros(encounters.shape)
    for k in range(encounters.shape[1]):
        tau = encounters[:, k, None] - encounters[:, :k]
        f = _kernel(np.where(tau > 0, tau, 1.0), kernel, alpha, lam, beta)
        held = (np.where(tau > 0, f, 0) * gains[:, :k]).sum(axis=1)
        gains[:, k] = np.where(np.isfinite(encounters[:, k]), g * np.clip(1 - held / m, 0, None), 0)
    return gains


def _delta_logprob(t, encounters, l0=0.0, d=0.0, g=1.0, alpha=0.0, lam=1.0, beta=0.0, c=0.0,
                   m=1.0, kernel="power", gain="constant"):
    """Model Δℓ at steps t (n,), each with its schedule's encounter steps (n, K; NaN-padded)."""
    tau = t[:, None] - encounters
    active = tau > 0  # NaN padding compares False
    f = _kernel(np.where(active, tau, 1.0), kernel, alpha, lam, beta)
    if gain == "headroom":
        gains = _headroom_gains(encounters, g, m, kernel, alpha, lam, beta)
    else:  # constant: c stays 0
        gains = g / (1 + c * np.arange(encounters.shape[1]))
    return l0 + d * (t - encounters[:, 0]) + (np.where(active, f, 0) * gains).sum(axis=1)


@dataclass
class Trajectory:
    """Mean Δℓ at `steps` of items sharing `encounters`; `items` (n_items × n_steps, NaN = not
    probed) and `item_ids` are optional, for bootstrap CIs over items."""

    steps: np.ndarray
    encounters: np.ndarray
    mean: np.ndarray
    items: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    name: str = ""


def _trajectories(trajectories, where: str) -> list[Trajectory]:
    if trajectories is None or len(trajectories) == 0:
        raise FactacqError(f"{where}: trajectories is empty, need at least one "
                           f"(steps, encounter_steps, mean Δℓ)")
    out = []
    for i, tr in enumerate(trajectories):
        if not isinstance(tr, Trajectory):
            if len(tr) != 3:
                raise FactacqError(f"{where}: trajectories[{i}] must be a Trajectory or "
                                   f"(steps, encounter_steps, mean Δℓ), got {len(tr)} values")
            tr = Trajectory(*tr)
        steps, mean = np.asarray(tr.steps, float), np.asarray(tr.mean, float)
        enc = np.sort(np.asarray(tr.encounters, float).ravel())
        if steps.ndim != 1 or steps.shape != mean.shape:
            raise FactacqError(f"{where}: trajectories[{i}] has {steps.size} steps but "
                               f"{mean.size} mean values")
        if enc.size == 0 or not np.isfinite(enc).all():
            raise FactacqError(f"{where}: trajectories[{i}] encounter_steps must be finite and "
                               f"non-empty, got {list(enc)}")
        if tr.items is not None and np.shape(tr.items)[-1] != steps.size:
            raise FactacqError(f"{where}: trajectories[{i}] items have {np.shape(tr.items)[-1]} "
                               f"steps, not {steps.size}")
        out.append(Trajectory(steps, enc, mean, tr.items, tr.item_ids, tr.name or str(i)))
    return out


def _encounter_matrix(schedules: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    width = max(len(s) for s in schedules)
    rows = [np.pad(s, (0, width - len(s)), constant_values=np.nan) for s in schedules]
    return np.repeat(np.array(rows), sizes, axis=0)


class SuperpositionModel:
    """The superposition Δℓ model for one kernel and gain; `.model` is its lmfit.Model."""

    def __init__(self, kernel: str = "power", gain: str = "saturating"):
        for name, value, options in (("kernel", kernel, KERNELS), ("gain", gain, GAINS)):
            if value not in options:
                raise FactacqError(f"SuperpositionModel: {name} must be one of "
                                   f"{', '.join(options)}, got {value!r}")
        self.kernel, self.gain = kernel, gain
        names = ["l0", "d", "g", KERNELS[kernel]] + {"saturating": ["c"], "headroom": ["m"]}.get(
            gain, [])
        self.model = lmfit.Model(_delta_logprob, independent_vars=["t", "encounters"],
                                 param_names=names, kernel=kernel, gain=gain,
                                 name=f"{kernel}/{gain}")

    def make_params(self, t, y, drift=None, offset=None) -> lmfit.Parameters:
        """Starting values and bounds; `drift` / `offset` fix d / ℓ0 to a value (None = free)."""
        span = max(float(np.ptp(t)), 2.0)
        params = self.model.make_params(
            l0=0.0 if offset is None else offset, d=0.0 if drift is None else drift,
            g=float(np.nanmax(np.abs(y))) or 1.0, alpha=dict(value=0.3, min=0, max=10),
            lam=dict(value=span / 4, min=1e-3, max=1e7), c=dict(value=0.1, min=0, max=1e3),
            m=dict(value=2 * (float(np.nanmax(np.abs(y))) or 1.0), min=1e-3, max=1e4),
            beta=dict(value=1 / np.log10(2 * span), min=0, max=10))
        params["d"].vary, params["l0"].vary = drift is None, offset is None
        return params

    def fit(self, trajectories, drift=None, offset=None) -> "SuperpositionFit":
        """Fit jointly the mean Δℓ of one or more trajectories (NaN means are left out)."""
        trs = _trajectories(trajectories, "fit_superposition")
        t = np.concatenate([tr.steps for tr in trs])
        y = np.concatenate([tr.mean for tr in trs])
        enc = _encounter_matrix([tr.encounters for tr in trs], [tr.steps.size for tr in trs])
        ok = np.isfinite(t) & np.isfinite(y)
        params = self.make_params(t[ok], y[ok], drift, offset)
        n_free = sum(p.vary for p in params.values())
        if ok.sum() <= n_free:
            raise FactacqError(f"fit_superposition: {int(ok.sum())} finite points for {n_free} "
                               f"free parameters of the {self.kernel}/{self.gain} model")
        result = self.model.fit(y[ok], params, t=t[ok], encounters=enc[ok])
        return SuperpositionFit(self, result)


@dataclass
class SuperpositionFit:
    """A fitted superposition model; `str(fit)` is one line, `fit.report()` lmfit's full report."""

    model: SuperpositionModel
    result: lmfit.model.ModelResult

    params = property(lambda self: {k: float(p.value) for k, p in self.result.params.items()})
    aic = property(lambda self: float(self.result.aic))
    bic = property(lambda self: float(self.result.bic))
    redchi = property(lambda self: float(self.result.redchi))

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors of the varying parameters (NaN where lmfit could not estimate one)."""
        return {k: float(p.stderr) if p.stderr is not None else np.nan
                for k, p in self.result.params.items() if p.vary}

    def predict(self, steps, encounter_steps) -> np.ndarray:
        steps = np.asarray(steps, float)
        enc = _encounter_matrix([np.sort(np.asarray(encounter_steps, float).ravel())],
                                [steps.size])
        return self.model.model.eval(self.result.params, t=steps, encounters=enc)

    def row(self) -> dict:
        out = {"kernel": self.model.kernel, "gain": self.model.gain,
               "n_points": int(self.result.ndata), "n_params": int(self.result.nvarys),
               "aic": self.aic, "bic": self.bic, "redchi": self.redchi}
        for name in PARAMETERS:
            out[name] = self.params.get(name, np.nan)
            out[f"{name}_stderr"] = self.stderr.get(name, np.nan)
        return out

    def __str__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}±{self.stderr[k]:.2g}" if k in self.stderr
                           else f"{k}={v:.4g} (fixed)" for k, v in self.params.items())
        return (f"superposition {self.model.kernel}/{self.model.gain}: {values}, "
                f"AIC={self.aic:.1f}, BIC={self.bic:.1f}, reduced χ²={self.redchi:.3g}")

    def report(self) -> str:
        return f"{self}\n{self.result.fit_report()}"


def fit_superposition(trajectories, kernel: str = "power", gain: str = "saturating",
                      drift: float | None = None, offset: float | None = None
                      ) -> SuperpositionFit:
    """Fit one (kernel, gain) model jointly to trajectories: Trajectory objects or
    (steps, encounter_steps, mean Δℓ) tuples. `drift`/`offset` fix d/ℓ0 (None = fitted)."""
    return SuperpositionModel(kernel, gain).fit(trajectories, drift, offset)


def compare_kernels(trajectories, kernels=tuple(KERNELS), gains=GAINS, drift=None,
                    offset=None) -> pd.DataFrame:
    """One row per (kernel, gain): parameters, stderr, AIC, BIC, reduced χ², `delta_aic` (to the
    best), `best`, `note` (why a fit failed; its other columns are then empty)."""
    rows = []
    for kernel in kernels:
        for gain in gains:
            try:
                rows.append({**fit_superposition(trajectories, kernel, gain, drift, offset).row(),
                             "note": ""})
            except FactacqError as exc:
                rows.append({"kernel": kernel, "gain": gain, "note": str(exc)})
    table = pd.DataFrame(rows)
    if "aic" not in table:
        table["aic"] = np.nan
    table["delta_aic"] = table["aic"] - table["aic"].min()
    table["best"] = table["delta_aic"] == 0
    return table


def predict(fit: SuperpositionFit, steps, encounter_steps) -> np.ndarray:
    """The fitted model's mean Δℓ at `steps` for a (held-out) schedule, without refitting."""
    return fit.predict(steps, encounter_steps)


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of draws (NaN dropped; ±inf kept: draws that never cross)."""
    samples = np.clip(samples[~np.isnan(samples)], -1e300, 1e300)
    if samples.size == 0:
        return np.nan, np.nan
    ends = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
    lo, hi = np.where(np.abs(ends) >= 1e300, np.copysign(np.inf, ends), ends)
    return float(lo), float(hi)


def _item_samples(values: np.ndarray, ids, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap means of per-item values (resampling items; replicates too for pooled ids)."""
    if n_boot <= 0 or values.size == 0:
        return np.full(max(n_boot, 0), np.nan)
    clusters = clusters_of(ids) if ids is not None else None
    return resampled_means(values, np.ones_like(values), n_boot, seed, clusters)


def prediction_error(fit: SuperpositionFit, held_out, tolerance: float = 0.2,
                     n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per held-out trajectory: RMSE of the predicted mean Δℓ, the final Δℓ (last step) measured
    and predicted, `rel_error` = (predicted − measured)/|measured|, `within_tolerance`
    (|rel_error| ≤ tolerance), and with per-item values a bootstrap CI of the measured final Δℓ
    (`final_lo`, `final_hi`) and whether the prediction lies inside it (else NaN)."""
    rows = []
    for i, tr in enumerate(_trajectories(held_out, "prediction_error")):
        pred = fit.predict(tr.steps, tr.encounters)
        ok = np.isfinite(tr.mean)
        last = np.flatnonzero(ok)[np.argmax(tr.steps[ok])]
        measured, predicted = float(tr.mean[last]), float(pred[last])
        row = {"schedule": tr.name, "n_encounters": tr.encounters.size, "n_points": int(ok.sum()),
               "rmse": float(np.sqrt(np.mean((pred[ok] - tr.mean[ok]) ** 2))),
               "final_step": float(tr.steps[last]), "final_measured": measured,
               "final_predicted": predicted, "rel_error": (predicted - measured) / abs(measured)}
        row["within_tolerance"] = bool(abs(row["rel_error"]) <= tolerance)
        row["final_lo"] = row["final_hi"] = np.nan
        if tr.items is not None:
            finals = np.asarray(tr.items, float)[:, last]
            keep = np.isfinite(finals)
            ids = None if tr.item_ids is None else np.asarray(tr.item_ids)[keep]
            samples = _item_samples(finals[keep], ids, n_boot, seed + i)
            row["final_lo"], row["final_hi"] = percentile_interval(samples, ci)
        row["predicted_in_ci"] = (bool(row["final_lo"] <= predicted <= row["final_hi"])
                                  if tr.items is not None else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _per_item(per_item: pd.DataFrame, value: str, by: str, where: str) -> pd.DataFrame:
    """Items × steps of `value` per `by` label (rows of an item at one step averaged)."""
    missing = [c for c in ("item_id", by, "step", value) if c not in per_item.columns]
    if missing:
        raise FactacqError(f"{where}: per_item is missing columns {missing}")
    steps = per_item["step"].astype(float)
    return per_item.groupby([by, "item_id", steps])[value].mean().unstack("step")


def trajectories_from_items(per_item: pd.DataFrame, encounter_steps: dict,
                            value: str = "delta_logprob", by: str = "interval"
                            ) -> list[Trajectory]:
    """One Trajectory per `by` label (with per-item values) from rows (item_id, `by`, step,
    `value`); `encounter_steps` maps each label to the encounter steps its items share. Several
    rows of an item at one step (probes, kinds) are averaged."""
    wide, out = _per_item(per_item, value, by, "trajectories_from_items"), []
    for label, block in wide.groupby(level=0):
        if label not in encounter_steps:
            raise FactacqError(f"trajectories_from_items: encounter_steps has no schedule for "
                               f"{by} {label!r}")
        block = block.dropna(axis=1, how="all")
        out.append(Trajectory(block.columns.to_numpy(float), np.asarray(encounter_steps[label]),
                              block.mean().to_numpy(), block.to_numpy(),
                              block.index.get_level_values("item_id").to_numpy(), str(label)))
    return out


def net_acquisition(per_item: pd.DataFrame, encounter_steps: dict, horizon: int,
                    reference=None, value: str = "delta_logprob", n_boot: int = 1000,
                    ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per interval: net = Δℓ(t_last + h) − Δℓ_1(t_1 + h) (module docstring), from per-item rows
    (item_id, interval, step, `value`) and `encounter_steps` {interval: steps its items share;
    align staggered items on t − t_pre}. Paired (each item's own t_first + h) by default; with
    `reference` (a label whose schedule is one encounter) the single-encounter Δℓ is that group's
    mean, resampled independently. No interpolation: items not probed at both steps are `missing`.
    Columns: interval, count, horizon, n_items, missing, net, lo, hi, note, samples (the bootstrap
    draws, for :func:`net_acquisition_threshold`)."""
    wide = _per_item(per_item, value, "interval", "net_acquisition")

    def at(label, step) -> pd.Series:  # the label's items' values at one step (probed ones)
        items = wide.loc[label]
        values = items[step] if step in items.columns else pd.Series(np.nan, index=items.index)
        return values.dropna()

    if reference is not None:
        if len(encounter_steps.get(reference, ())) != 1 or reference not in wide.index:
            raise FactacqError(f"net_acquisition: reference {reference!r} must be a label of the "
                               f"frame with exactly one encounter step")
        ref = at(reference, encounter_steps[reference][0] + horizon)
        ref_samples = _item_samples(ref.to_numpy(), ref.index, n_boot, seed + 7919)
    labels = wide.index.get_level_values(0).unique()
    unknown = [label for label in labels if label not in encounter_steps]
    if unknown:
        raise FactacqError(f"net_acquisition: encounter_steps has no schedule for interval "
                           f"{unknown[0]!r}")
    rows = []  # one row per label of 2 or more encounters (single ones can only be references)
    for i, label in enumerate(sorted(x for x in labels if len(encounter_steps[x]) > 1)):
        enc = np.sort(np.asarray(encounter_steps[label], float))
        last, n = at(label, enc[-1] + horizon), wide.loc[label].shape[0]
        row = {"interval": label, "count": enc.size, "horizon": horizon, "note": ""}
        if reference is not None:  # the k-encounter items' Δℓ(t_last + h), less the reference
            used = last
            samples = _item_samples(last.to_numpy(), last.index, n_boot, seed + i)
            row.update(net=last.mean() - ref.mean(), samples=samples - ref_samples)
        elif enc[0] + horizon > enc[1]:
            used = last.iloc[:0]
            row.update(net=np.nan, samples=np.full(n_boot, np.nan),
                       note=f"horizon {horizon} > interval: t_first + h already follows the 2nd "
                            f"encounter; pass a single-encounter reference")
        else:  # paired: each item's Δℓ(t_last + h) − Δℓ(t_first + h)
            used = (last - at(label, enc[0] + horizon)).dropna()
            row.update(net=used.mean(), samples=_item_samples(used.to_numpy(), used.index,
                                                              n_boot, seed + i))
        row.update(n_items=len(used), missing=n - len(used))
        row["lo"], row["hi"] = percentile_interval(row["samples"], ci)
        rows.append(row)
    return pd.DataFrame(rows)[["interval", "count", "horizon", "n_items", "missing", "net", "lo",
                               "hi", "note", "samples"]]


def _up_to_first_nonpositive(net: np.ndarray) -> np.ndarray:
    """Rows of net (by increasing interval) with the values after the first ≤ 0 set to NaN."""
    after = np.cumsum(np.nan_to_num(net, nan=1.0) <= 0, axis=-1) - (net <= 0) > 0
    return np.where(after, np.nan, net)


def _crossing(a, b, horizon):
    """Δ* = 10^(−A/B) − h of net = A + B·log10(Δ + h); inf when net never falls to 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.where(b < 0, -a / np.where(b < 0, b, -1), np.where(a > 0, np.inf, -np.inf))
        delta = np.maximum(10 ** np.clip(x, None, 300) - horizon, 0)  # 0: net ≤ 0 everywhere
        return np.where(np.isnan(a) | np.isnan(b), np.nan, delta)


def net_acquisition_threshold(net_table: pd.DataFrame, ci: float = 0.95,
                           extrapolation: float = 2.0) -> dict:
    """The interval Δ* where net acquisition crosses 0 (module docstring), from a
    :func:`net_acquisition` table: `threshold` (NaN with a `reason` when net does not fall, or the
    crossing lies beyond the measured intervals by more than the factor `extrapolation`), `lo`,
    `hi` (percentile CI over bootstrap draws, each refitted; inf = draws that never cross),
    `A`, `B` with stderr, `n_fitted` intervals, `fit` (the lmfit result)."""
    table = net_table.dropna(subset=["net"]).sort_values("interval")
    h = float(table["horizon"].iloc[0]) if len(table) else 0.0
    out = {"threshold": np.nan, "lo": np.nan, "hi": np.nan, "reason": "", "fit": None}
    net = _up_to_first_nonpositive(table["net"].to_numpy(float))
    used = np.isfinite(net)
    if used.sum() < 2:
        return {**out, "reason": f"{int(used.sum())} interval(s) up to the first net ≤ 0, need 2"}
    x = np.log10(table["interval"].to_numpy(float) + h)
    model = lmfit.Model(lambda x, A, B: A + B * x, independent_vars=["x"])
    fit = model.fit(net[used], model.make_params(A=float(net[used].max()), B=-0.1), x=x[used])
    A, B = fit.params["A"], fit.params["B"]
    out.update(fit=fit, n_fitted=int(used.sum()), A=A.value, B=B.value, A_stderr=A.stderr,
               B_stderr=B.stderr)
    samples = np.stack(table["samples"].to_numpy()).T
    neg_slope, intercept = loglinear_batch(x[None, :], _up_to_first_nonpositive(samples))
    draws = _crossing(intercept, -neg_slope, h)
    out["lo"], out["hi"] = percentile_interval(draws, ci)
    out["defined"] = float(np.isfinite(draws).mean()) if draws.size else np.nan
    lowest = table["interval"].min() / extrapolation
    highest = table["interval"].max() * extrapolation
    threshold = float(_crossing(np.array(A.value), np.array(B.value), h))
    if B.value >= 0:
        out["reason"] = f"net acquisition does not fall with the interval (B = {B.value:+.3g})"
    elif not lowest <= threshold <= highest:
        out["reason"] = (f"the crossing ({threshold:.4g}) lies outside the measured intervals "
                         f"[{lowest:.4g}, {highest:.4g}] (× {extrapolation:g} either side)")
    else:
        out["threshold"] = threshold
    return out


def model_net_acquisition(fit: SuperpositionFit, count: int, horizon: float, intervals
                          ) -> np.ndarray:
    """The fitted model's net(Δ) = Δℓ_k(t_last + h) − Δℓ_1(t_1 + h) for k = `count` encounters
    spaced by each interval (Δ may be fractional: the model is continuous in t)."""
    enc = np.atleast_1d(np.asarray(intervals, float))[:, None] * np.arange(count)
    with_k = fit.model.model.eval(fit.result.params, t=enc[:, -1] + horizon, encounters=enc)
    single = fit.model.model.eval(fit.result.params, t=np.array([horizon]),
                                  encounters=np.zeros((1, 1)))
    return with_k - single


def model_threshold(fit: SuperpositionFit, count: int, horizon: float, intervals,
                    extrapolation: float = 2.0) -> dict:
    """The interval where the fitted model's net acquisition first falls to 0, searched over the
    measured `intervals` widened by `extrapolation` either side: `threshold` (NaN with a `reason`
    when there is no crossing there), `net` (the model's net at `intervals`)."""
    intervals = np.asarray(intervals, float)
    net = lambda u: model_net_acquisition(fit, count, horizon, 10 ** u)  # noqa: E731
    grid = np.linspace(np.log10(intervals.min() / extrapolation),
                       np.log10(intervals.max() * extrapolation), 400)
    values = net(grid)
    tol = 1e-9 * max(float(np.abs(values).max()), 1e-300)
    out = {"threshold": np.nan, "reason": "", "net": model_net_acquisition(fit, count, horizon,
                                                                           intervals)}
    below = np.flatnonzero(values <= tol)
    if below.size == 0:
        return {**out, "reason": f"the model's net acquisition stays > 0 up to Δ = "
                                 f"{10 ** grid[-1]:.4g}"}
    if below[0] == 0:
        return {**out, "reason": f"the model's net acquisition is ≤ 0 already at Δ = "
                                 f"{10 ** grid[0]:.4g}"}
    u = brentq(lambda u: net(np.array([u]))[0] - tol, grid[below[0] - 1], grid[below[0]])
    return {**out, "threshold": float(10 ** u)}


__all__ = ["KERNELS", "GAINS", "SuperpositionModel", "SuperpositionFit", "Trajectory",
           "fit_superposition", "compare_kernels", "predict", "prediction_error",
           "trajectories_from_items", "net_acquisition", "net_acquisition_threshold",
           "model_net_acquisition", "model_threshold", "percentile_interval"]
