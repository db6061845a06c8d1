"""Decay models for retainability, their comparison, and uncertainty over items.

The paper's model: mean R falls linearly in log10 t, R = b − a·log10 t; a is the decay constant and
the x-intercept t0 = 10**(b/a) is the number of steps after which the gain is gone (tokens = t0 ×
tokens per step). Alternatives fitted on the same points: a power law R = amplitude·t**(−exponent)
and an exponential R = amplitude·exp(−rate·t) (+ offset). All are lmfit `Model`s; AIC/BIC use
lmfit's definitions (unit weights), so they compare models fitted to the same points.

Uncertainty: :func:`bootstrap` resamples items (all probes of an item together) and refits, giving
percentile CIs of a, the x-intercept and mean effectivity; :func:`compare_conditions` turns two
conditions' bootstrap samples into a CI of their difference, e.g. a(duplicate) − a(paraphrase).
On points pooled over replicates (factacq.replicates) every resample draws the replicates first,
then items within them, so the CIs cover seeds as well as items.
"""

from __future__ import annotations

from dataclasses import dataclass
import lmfit
import numpy as np
import pandas as pd

from factacq.errors import FactacqError
from factacq.metrics import (PROBE_KEY, assign_t_cells, bootstrap_mean, bootstrap_samples,
                             encounters, iqr_filter, probe_rows, resampled_means)
from factacq.replicates import clusters_of


def _loglinear(t, a, b):
    return b - a * np.log10(t)


def _powerlaw(t, amplitude, exponent):
    return amplitude * np.power(t, -exponent)


def _exponential(t, amplitude, rate, offset):
    return amplitude * np.exp(-rate * t) + offset


MODELS = {
    "loglinear": lmfit.Model(_loglinear, independent_vars=["t"], name="loglinear"),
    "powerlaw": lmfit.Model(_powerlaw, independent_vars=["t"], name="powerlaw"),
    "exponential": lmfit.Model(_exponential, independent_vars=["t"], name="exponential"),
}
PARAMETERS = ("a", "b", "amplitude", "exponent", "rate", "offset")


@dataclass
class DecayFit:
    """One fitted decay model; `str(fit)` is a one-line report, `fit.report()` lmfit's full one."""

    model: str
    result: lmfit.model.ModelResult
    r2: float
    x_intercept: float  # steps at which the fitted R reaches 0 (nan if it never does)
    tokens_per_step: float | None = None

    @property
    def params(self) -> dict[str, float]:
        return {k: float(p.value) for k, p in self.result.params.items() if p.vary}

    @property
    def stderr(self) -> dict[str, float]:
        return {k: float(p.stderr) if p.stderr is not None else np.nan
                for k, p in self.result.params.items() if p.vary}

    @property
    def x_intercept_tokens(self) -> float:
        return self.x_intercept * self.tokens_per_step if self.tokens_per_step else np.nan

    def row(self) -> dict:
        out = {"model": self.model, "n_points": int(self.result.ndata), "aic": self.result.aic,
               "bic": self.result.bic, "r2": self.r2, "x_intercept_steps": self.x_intercept,
               "x_intercept_tokens": self.x_intercept_tokens}
        for name in PARAMETERS:
            out[name] = self.params.get(name, np.nan)
            out[f"{name}_stderr"] = self.stderr.get(name, np.nan)
        return out

    def __str__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}±{self.stderr[k]:.2g}" for k, v in self.params.items())
        text = f"{self.model}: {values}, R²={self.r2:.3f}, AIC={self.result.aic:.1f}"
        if np.isfinite(self.x_intercept):
            text += f", x-intercept {self.x_intercept:.4g} steps"
            if self.tokens_per_step:
                text += f" ({self.x_intercept_tokens:.4g} tokens)"
        return text

    def report(self) -> str:
        return f"{self}\n{self.result.fit_report()}"


def _points(t, R, name: str) -> tuple[np.ndarray, np.ndarray]:
    t, R = np.asarray(t, dtype=float), np.asarray(R, dtype=float)
    ok = np.isfinite(t) & np.isfinite(R)
    t, R = t[ok], R[ok]
    if (t <= 0).any():
        raise FactacqError(f"{name}: t must be > 0 steps, got {t[t <= 0][0]:g}")
    if len(t) < 3 or np.unique(t).size < 2:
        raise FactacqError(f"{name}: need at least 3 points at 2 or more distinct t, got {len(t)}")
    return t, R


def _finish(model: str, result, R: np.ndarray, x_intercept: float, tokens_per_step) -> DecayFit:
    ss_tot = float(((R - R.mean()) ** 2).sum())
    r2 = 1 - float((result.residual ** 2).sum()) / ss_tot if ss_tot > 0 else np.nan
    return DecayFit(model, result, r2, x_intercept, tokens_per_step)


def fit_loglinear(t, R, tokens_per_step: float | None = None) -> DecayFit:
    """R = b − a·log10 t; x-intercept 10**(b/a) steps when a > 0."""
    t, R = _points(t, R, "fit_loglinear")
    slope, intercept = np.polyfit(np.log10(t), R, 1)
    params = MODELS["loglinear"].make_params(a=-slope, b=intercept)
    result = MODELS["loglinear"].fit(R, params, t=t)
    a, b = result.params["a"].value, result.params["b"].value
    x_int = 10 ** (b / a) if a > 0 and b / a < 300 else np.nan
    return _finish("loglinear", result, R, x_int, tokens_per_step)


def fit_powerlaw(t, R, tokens_per_step: float | None = None) -> DecayFit:
    """R = amplitude·t**(−exponent); never reaches 0, so no x-intercept."""
    t, R = _points(t, R, "fit_powerlaw")
    positive = R > 0
    if positive.sum() >= 2 and np.unique(t[positive]).size >= 2:
        slope, log_amp = np.polyfit(np.log(t[positive]), np.log(R[positive]), 1)
        guess = {"amplitude": float(np.exp(log_amp)), "exponent": float(-slope)}
    else:
        guess = {"amplitude": float(R.max()), "exponent": 0.5}
    params = MODELS["powerlaw"].make_params(**guess)
    result = MODELS["powerlaw"].fit(R, params, t=t)
    return _finish("powerlaw", result, R, np.nan, tokens_per_step)


def fit_exponential(t, R, offset: bool = True, tokens_per_step: float | None = None) -> DecayFit:
    """R = amplitude·exp(−rate·t) (+ offset); x-intercept ln(−amplitude/offset)/rate when the
    curve crosses 0 (offset < 0 < amplitude)."""
    t, R = _points(t, R, "fit_exponential")
    order = np.argsort(t)
    end = float(R[order[-1]]) if offset else 0.0
    params = MODELS["exponential"].make_params(
        amplitude=float(R[order[0]]) - end or 1.0, rate=1.0 / float(np.median(t)), offset=end)
    params["rate"].set(min=0)
    if not offset:
        params["offset"].set(value=0.0, vary=False)
    result = MODELS["exponential"].fit(R, params, t=t)
    amp, rate, off = (result.params[k].value for k in ("amplitude", "rate", "offset"))
    x_int = np.log(-amp / off) / rate if off < 0 < amp and rate > 0 and -amp / off > 1 else np.nan
    return _finish("exponential", result, R, x_int, tokens_per_step)


FITTERS = {"loglinear": fit_loglinear, "powerlaw": fit_powerlaw, "exponential": fit_exponential}


def compare_models(points: pd.DataFrame, by=("scenario", "kind"), tokens_per_step=None,
                   models=("loglinear", "powerlaw", "exponential"),
                   column: str = "retainability") -> pd.DataFrame:
    """Fit every model to each group's (t, column) points. One row per group x model: parameters
    and standard errors, AIC, BIC, R², x-intercept (steps, tokens), `delta_aic` (to the group's
    best), `best` (lowest AIC), `iqr_factor` (carried from the points; null = no IQR filter) and
    `note` (why a fit is missing)."""
    by = list(by)
    rows = []
    for key, group in points.groupby(by):
        head = dict(zip(by, key))
        iqr = group["iqr_factor"].dropna().unique() if "iqr_factor" in group else []
        head["iqr_factor"] = float(iqr[0]) if len(iqr) else np.nan
        for model in models:
            try:
                fit = FITTERS[model](group["t"], group[column], tokens_per_step=tokens_per_step)
                rows.append({**head, **fit.row(), "note": ""})
            except FactacqError as exc:
                rows.append({**head, "model": model, "note": str(exc)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    best = table.groupby(by)["aic"].transform("min")
    table["delta_aic"] = table["aic"] - best
    table["best"] = table["delta_aic"] == 0
    return table


# ---------------------------------------------------------------------------------------------
# bootstrap over items


def loglinear_batch(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares a, b of y = b − a·x for each row of y (NaN = no point); same solution as
    :func:`fit_loglinear`, vectorized for bootstrap samples."""
    w = np.isfinite(y)
    n = w.sum(axis=1)
    xs = np.where(w, x, 0.0)
    ys = np.where(w, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xs.sum(1) / n, ys.sum(1) / n
        sxx = (np.where(w, (x - mx[:, None]) ** 2, 0)).sum(1)
        sxy = (np.where(w, (x - mx[:, None]) * (ys - my[:, None]), 0)).sum(1)
        slope = np.where(n >= 2, sxy / sxx, np.nan)
    return -slope, my - slope * mx


def _x_intercept(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return np.where((a > 0) & (b / a < 300), 10 ** np.clip(b / a, None, 300), np.nan)


def retention_samples(points: pd.DataFrame, n_boot: int = 1000, seed: int = 0, n_bins: int = 20,
                      iqr_factor: float | None = None) -> dict:
    """For one group's per-probe retainability points: the log-linear a and x-intercept of the
    full data and of `n_boot` resamples of its items (the t cells are fixed from the full data;
    pooled replicates, factacq.replicates: resamples of the replicates, then of their items)."""
    cells = assign_t_cells(points, by=(), n_bins=n_bins)
    if iqr_factor:
        cells, _ = iqr_filter(cells, "retainability", iqr_factor, by=["t_cell"])
    grid = np.sort(cells["t_cell"].unique())
    items = np.sort(cells["item_id"].unique())
    col = np.searchsorted(grid, cells["t_cell"].to_numpy())
    row = np.searchsorted(items, cells["item_id"].to_numpy())
    sums = np.zeros((len(items), len(grid)))
    sizes = np.zeros((len(items), len(grid)))
    np.add.at(sums, (row, col), cells["retainability"].to_numpy())
    np.add.at(sizes, (row, col), 1)
    x = np.log10(grid)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        full = sums.sum(0, keepdims=True) / sizes.sum(0, keepdims=True)
        boot = resampled_means(sums, sizes, n_boot, seed, clusters_of(items))
    a, b = loglinear_batch(x, full)
    a_s, b_s = loglinear_batch(x, boot) if n_boot else (np.array([]), np.array([]))
    return {"a": float(a[0]), "x_intercept": float(_x_intercept(a, b)[0]), "a_samples": a_s,
            "x_intercept_samples": _x_intercept(a_s, b_s), "n_items": len(items)}


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap(points: pd.DataFrame, effectivity_table: pd.DataFrame | None = None,
              by=("scenario", "kind"), n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
              tokens_per_step: float | None = None, n_bins: int = 20,
              iqr_factor: float | None = None) -> pd.DataFrame:
    """Per group: a and the x-intercept (steps, tokens) of the log-linear fit to mean R, and mean
    effectivity, each with a percentile CI from resampling items. An x-intercept sample is
    undefined (dropped from its CI) when the resampled a <= 0; `x_intercept_defined` says how
    often it was defined."""
    by = list(by)
    rows = []
    for key, group in points.groupby(by):
        s = retention_samples(group, n_boot, seed, n_bins, iqr_factor)
        row = {**dict(zip(by, key)), "n_items": s["n_items"], "n_boot": n_boot, "ci": ci,
               "iqr_factor": iqr_factor, "a": s["a"]}
        row["a_lo"], row["a_hi"] = _interval(s["a_samples"], ci)
        row["x_intercept_steps"] = s["x_intercept"]
        row["x_intercept_steps_lo"], row["x_intercept_steps_hi"] = _interval(
            s["x_intercept_samples"], ci)
        row["x_intercept_defined"] = (float(np.isfinite(s["x_intercept_samples"]).mean())
                                      if n_boot else np.nan)
        scale = tokens_per_step or np.nan
        for end in ("", "_lo", "_hi"):
            row[f"x_intercept_tokens{end}"] = row[f"x_intercept_steps{end}"] * scale
        rows.append(row)
    table = pd.DataFrame(rows)
    if effectivity_table is not None and not table.empty:
        eff = []
        for key, group in effectivity_table.groupby(by):
            stats = bootstrap_mean(group, "effectivity", n_boot, ci, seed)
            eff.append({**dict(zip(by, key)), "mean_effectivity": stats["mean"],
                        "mean_effectivity_lo": stats["lo"], "mean_effectivity_hi": stats["hi"]})
        table = table.merge(pd.DataFrame(eff), on=by, how="left")
    return table


def _effectivity_samples(frame: pd.DataFrame, n_boot: int, seed: int) -> dict:
    stats = bootstrap_samples(frame, "effectivity", n_boot, seed)
    return {"effectivity": stats["mean"], "effectivity_samples": stats["samples"]}


def compare_conditions(results: dict[str, pd.DataFrame], quantity: str = "a", by=("kind",),
                       reference: str | None = None, n_boot: int = 1000, ci: float = 0.95,
                       seed: int = 0, n_bins: int = 20, iqr_factor: float | None = None,
                       ) -> pd.DataFrame:
    """Differences between conditions, each with a bootstrap CI.

    `results` maps a condition label (a scenario, a batch size, a stage, a model size) to its
    per-probe retainability points (quantity "a" or "x_intercept") or its effectivity table
    (quantity "effectivity"). Every condition is compared with `reference` (default: the first):
    one row per group and condition with the value, the reference value and value − reference,
    with percentile CIs from independent item resamples of the two conditions."""
    if quantity not in ("a", "x_intercept", "effectivity"):
        raise FactacqError(f"compare_conditions: quantity must be a, x_intercept or effectivity, "
                           f"got {quantity!r}")
    if len(results) < 2:
        raise FactacqError(f"compare_conditions: need 2 or more conditions, got {list(results)}")
    labels = list(results)
    reference = labels[0] if reference is None else reference
    if reference not in results:
        raise FactacqError(f"compare_conditions: reference {reference!r} is not one of {labels}")
    by = list(by)

    def samples(frame: pd.DataFrame, offset: int) -> dict:
        out = {}
        for key, group in frame.groupby(by):
            if quantity == "effectivity":
                s = _effectivity_samples(group, n_boot, seed + offset)
            else:
                s = retention_samples(group, n_boot, seed + offset, n_bins, iqr_factor)
            out[key] = (s[quantity], s[f"{quantity}_samples"])
        return out

    per = {label: samples(results[label], 7919 * i) for i, label in enumerate(labels)}
    rows = []
    for label in labels:
        if label == reference:
            continue
        for key, (value, draws) in per[label].items():
            if key not in per[reference]:
                continue
            ref_value, ref_draws = per[reference][key]
            key = key if isinstance(key, tuple) else (key,)
            row = {**dict(zip(by, key)), "quantity": quantity, "condition": label,
                   "reference": reference, "value": value, "reference_value": ref_value,
                   "difference": value - ref_value, "ci": ci}
            row["value_lo"], row["value_hi"] = _interval(draws, ci)
            row["difference_lo"], row["difference_hi"] = _interval(draws - ref_draws, ci)
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# learnability threshold


def accumulation(frame: pd.DataFrame, value: str = "logprob", kind: str = "memorization",
                 n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """How much ℓ accumulates across encounters: per probe of items with 2 or more encounters,
    ℓ(t_N) − ℓ(t_1) (just before the last encounter minus just before the first, i.e. what the
    first N−1 encounters left behind), averaged with a bootstrap-over-items CI. `missing` counts
    probes with no value at t_1 or t_N."""
    enc = encounters(frame)
    enc = enc[enc["n_encounters"] >= 2]
    ends = enc[(enc["encounter"] == 1) | (enc["encounter"] == enc["n_encounters"])]
    probes = probe_rows(frame)
    probes = probes[probes["kind"] == kind]
    merged = probes.merge(ends[["item_id", "encounter", "t_i", "n_encounters"]],
                          left_on=["item_id", "step"], right_on=["item_id", "t_i"])
    first = merged[merged["encounter"] == 1].set_index(PROBE_KEY)[value]
    last = merged[merged["encounter"] == merged["n_encounters"]].set_index(PROBE_KEY)[value]
    n_probes = probes[probes["item_id"].isin(enc["item_id"])].groupby(PROBE_KEY).ngroups
    gain = (last - first).dropna().rename("accumulation").reset_index()
    stats = bootstrap_mean(gain, "accumulation", n_boot, ci, seed)
    return {**stats, "missing": n_probes - len(gain)}


def learnability_threshold(source, tokens_per_step: float | None = None, value: str = "logprob",
                           kind: str = "memorization", n_boot: int = 1000, ci: float = 0.95,
                           seed: int = 0):
    """The learnability reading of the decay fits, in one of two forms.

    - `source` a :class:`DecayFit` (log-linear): its x-intercept in tokens (steps x
      `tokens_per_step`); a compare_models table: its log-linear rows with the x-intercepts.
    - `source` a dict interval -> run-log frame (an injection-interval sweep): a dict with `table`
      (per interval: :func:`accumulation` with its CI; `accumulates` = the CI's lower end > 0)
      and `threshold_interval`, the largest interval at which ℓ still accumulates (None if none).

    The sweep form is net acquisition at horizon 0 (ℓ(t_N) − ℓ(t_1) = Δℓ(t_last) − Δℓ(t_first),
    paired within items), one run per interval, read as the last interval whose CI lies above 0.
    factacq.beyond.interval_experiment is the same statistic inside one run (cohorts of different
    intervals) at any horizon h (superposition.net_acquisition), with the crossing fitted between
    intervals; at h = 0 its per-interval net is this table's mean (for items with equal numbers of
    probes; tests/test_beyond.py) and its `last_positive_interval` this `threshold_interval`.
    beyond.paper_reading_threshold turns the DecayFit form into an interval (x-intercept +
    t_LAM − t_i − h).
    This one stays here because fits cannot import superposition (superposition imports fits).
    """
    if isinstance(source, DecayFit):
        if not tokens_per_step:
            raise FactacqError("learnability_threshold: tokens_per_step is needed for tokens")
        return source.x_intercept * tokens_per_step
    if isinstance(source, pd.DataFrame):
        rows = source[source["model"] == "loglinear"].copy()
        if tokens_per_step:
            rows["x_intercept_tokens"] = rows["x_intercept_steps"] * tokens_per_step
        return rows
    if isinstance(source, dict):
        rows = []
        for interval, frame in sorted(source.items()):
            stats = accumulation(frame, value, kind, n_boot, ci, seed)
            rows.append({"interval": interval, **stats,
                         "accumulates": bool(stats["lo"] > 0 if n_boot else stats["mean"] > 0)})
        table = pd.DataFrame(rows)
        yes = table.loc[table["accumulates"], "interval"]
        return {"table": table, "threshold_interval": yes.max().item() if len(yes) else None}
    raise FactacqError(f"learnability_threshold: expected a DecayFit, a compare_models table or a "
                       f"dict interval -> run log, got {type(source).__name__}")


__all__ = ["DecayFit", "MODELS", "fit_loglinear", "fit_powerlaw", "fit_exponential",
           "compare_models", "bootstrap", "retention_samples", "compare_conditions",
           "accumulation", "learnability_threshold", "loglinear_batch"]
