"""The findings table: the paper's findings F1-F8 (Chang et al. 2024) computed from run logs, each
with a bootstrap CI and a verdict from a stated rule (issue 10, section 4). No verdict is written
by hand: :func:`verdict` and :func:`joint` turn the intervals into one of VERDICTS.

Inputs: ``replicates`` (condition -> run folders of its seeds; one folder without seeds) and
``compare`` (label -> condition names, from the sweep). Several folders are pooled
(replicates.pool_runs), so every item bootstrap resamples seeds, then items. The analysis options
(t_w, iqr_factor, bootstrap, ci, seed, retention_bins) are each run's own (run.json) unless
``params`` is given; the conditions of a comparison must agree on them. Effectivity is
IQR-filtered per scenario x kind, retainability per t cell, as `factacq analyze` does. Each
finding is given on raw ℓ (`logprob`) and on the contrast against foils (metrics.contrast_column;
"not run" without foils); a finding with two statistics (F1, F4, F8) has a row for each, both with
the finding's verdict (`verdict`) and each with its own statistic's (`statistic_verdict`). Paired differences (F7, F8) take both quantities from one item resample.

Rules (the `rule` column states them too; "CI above 0" = its lower end > 0):
- F1: ℓ(t_N) − ℓ(t_1) (fits.accumulation) and mean E, memorization probes of items with >= 2
  encounters: holds if both CIs lie above 0; reversed if the accumulation CI lies below 0; else
  not detected. `detail`: mean E at encounter k = 1..K.
- F2: per kind, R² of the log-linear fit to mean R with all injected scenarios pooled (a mean of
  log-linear curves is log-linear; one row per kind): holds if the CI's lower end >= 0.8
  (memorization, semantic) or 0.65 (composition); reversed if its upper end < that; else not
  detected. `detail`: the model with the lowest AIC (fits.compare_models) and its ΔAIC.
- F3: a(duplicate) − a(paraphrase), memorization: holds if the CI lies above 0; reversed if below.
- F4: compare["batch_size"] by run batch size, memorization: holds if the CI of a(larger) −
  a(smaller) lies below 0 and that of the x-intercept in tokens (larger − smaller) above 0;
  reversed if the a difference CI lies above 0; else not detected.
- F5: compare["stage"] (each stage at its own LR) and compare["stage_matched_lr"] (one LR), by
  stage step: E(latest) − E(earliest), memorization. A negative claim, so asymmetric: holds if
  the CI's lower end <= 0 (no increase detected); reversed if the CI lies above 0.
- F6: compare["model_size"] by run.json n_parameters (else preset order): E(larger) − E(smaller),
  memorization: holds if the CI lies above 0; reversed if below 0.
- F7: a(composition) − min(a(memorization), a(semantic)), main condition: holds if the CI lies
  below 0; reversed if above 0.
- F8: E_mem − E_sem and E_sem − E_comp, main condition: holds if both CIs lie above 0; reversed if
  either lies below 0.
Otherwise not detected. "not run" (reason in `detail`): the comparison is missing from
``compare``, its data are missing, or no interval could be drawn (analysis.bootstrap = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from factacq import fits, metrics
from factacq.analyze import run_params
from factacq.errors import FactacqError
from factacq.params import Params
from factacq.runlog import load_run, load_sidecar
from factacq.schema import PROBE_KINDS

HOLDS, NOT_DETECTED, REVERSED, NOT_RUN = "holds", "not detected", "reversed", "not run"
VERDICTS = (HOLDS, NOT_DETECTED, REVERSED, NOT_RUN)
COLUMNS = ["finding", "claim", "measure", "conditions", "statistic", "value", "lo", "hi",
           "n_items", "verdict", "statistic_verdict", "rule", "detail"]
FINDINGS = tuple(f"F{i}" for i in range(1, 9))
R2_THRESHOLD = {"memorization": 0.8, "semantic": 0.8, "composition": 0.65}
PRESET_ORDER = ("micro", "mini", "tiny", "small", "base")  # models.PRESETS, ascending size
MEM = "memorization"

CLAIMS = {
    "F1": "ℓ jumps at each encounter and accumulates over encounters",
    "F2": "mean retainability R is linear in log t",
    "F3": "duplicated knowledge is forgotten faster than paraphrased knowledge",
    "F4": "a larger batch forgets slower (smaller a, larger x-intercept in tokens)",
    "F5": "later pretraining stages do not raise effectivity",
    "F6": "a larger model has higher effectivity",
    "F7": "composition probes have the smallest decay constant a",
    "F8": "effectivity: memorization > semantic > composition",
}
RULES = {
    "F1": "accumulation ℓ(t_N) − ℓ(t_1) and mean E, memorization probes of items with >= 2 "
          "encounters: holds if both CIs lie above 0; reversed if the accumulation CI lies below "
          "0; else not detected",
    "F2": "R² of the log-linear fit to mean R per kind, injected scenarios pooled: holds if the "
          "CI's lower end >= the threshold (0.8 memorization, semantic; 0.65 composition); "
          "reversed if its upper end < the threshold; else not detected",
    "F3": "a(duplicate) − a(paraphrase), memorization: holds if the CI lies above 0; reversed if "
          "below 0; else not detected",
    "F4": "larger minus smaller run batch size, memorization: holds if the CI of the a "
          "difference lies below 0 and that of the x-intercept in tokens above 0; reversed if "
          "the a difference CI lies above 0; else not detected",
    "F5": "E(latest stage) − E(earliest stage), memorization; a negative claim, so asymmetric: "
          "holds if the CI's lower end <= 0 (no increase detected); reversed if the CI lies "
          "above 0",
    "F6": "E(larger) − E(smaller) by parameter count, memorization: holds if the CI lies above "
          "0; reversed if below 0; else not detected",
    "F7": "a(composition) − min(a(memorization), a(semantic)), paired item bootstrap: holds if "
          "the CI lies below 0; reversed if above 0; else not detected",
    "F8": "E_mem − E_sem and E_sem − E_comp, paired item bootstrap: holds if both CIs lie above "
          "0; reversed if either lies below 0; else not detected",
}


# ---------------------------------------------------------------------------------------------
# verdicts


def verdict(lo: float, hi: float, expect: str = "above", threshold: float = 0.0) -> str:
    """The verdict of one interval [lo, hi] against ``threshold``. ``expect`` "above": holds if
    lo > threshold, reversed if hi < threshold; "at_least": holds if lo >= threshold, reversed if
    hi < threshold; "below": holds if hi < threshold, reversed if lo > threshold; "no_increase"
    (a negative claim): holds if lo <= threshold, else reversed. Otherwise not detected; not run
    when the interval is not finite."""
    rules = {"above": (lo > threshold, hi < threshold), "at_least": (lo >= threshold, hi < threshold),
             "below": (hi < threshold, lo > threshold), "no_increase": (lo <= threshold, lo > threshold)}
    if expect not in rules:
        raise FactacqError(f"verdict: expect must be one of {list(rules)}, got {expect!r}")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return NOT_RUN
    holds, reversed_ = rules[expect]
    return HOLDS if holds else REVERSED if reversed_ else NOT_DETECTED


def joint(verdicts, reversing=None) -> str:
    """Several statistics' verdicts as the finding's: reversed if any of those at the positions
    ``reversing`` (default: all) is reversed; else not run if any is not run; holds if all hold;
    else not detected."""
    verdicts = list(verdicts)
    reversing = range(len(verdicts)) if reversing is None else reversing
    if any(verdicts[i] == REVERSED for i in reversing):
        return REVERSED
    if NOT_RUN in verdicts:
        return NOT_RUN
    return HOLDS if all(v == HOLDS for v in verdicts) else NOT_DETECTED


# ---------------------------------------------------------------------------------------------
# a condition and the bootstrap helpers


@dataclass
class Condition:
    """One condition's (pooled) run log, its params, and the analysis options its findings use
    (``analysis``: params whose analysis options replace the run's own)."""

    name: str
    frame: pd.DataFrame
    params: Params
    analysis: Params | None = None
    tokens_per_step: float | None = None
    n_parameters: int | None = None
    n_runs: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        frame = self.frame.copy()
        for column in ("foil_logprob", "first_logprob", "first_foil_logprob"):
            if column not in frame.columns:
                frame[column] = np.nan
        self.frame = metrics.add_contrast(frame)
        source = self.analysis or self.params
        self.window, self.opts = source.analysis_window, source.analysis
        self.contrast = metrics.contrast_column(self.frame)
        self.boot = dict(n_boot=self.opts.bootstrap, ci=self.opts.ci, seed=self.opts.seed)
        self.label = self.name + (f" ({self.n_runs} seeds)" if self.n_runs > 1 else "")

    @property
    def options(self) -> tuple:
        o = self.opts
        return (self.window, o.retention_bins, o.iqr_factor, o.bootstrap, o.ci, o.seed)

    def effectivity(self, value: str) -> pd.DataFrame:
        """Per probe x encounter effectivity on ``value``, IQR outliers dropped per scenario x kind."""
        if ("eff", value) not in self._cache:
            eff = metrics.effectivity(self.frame, self.window, value)
            self._cache["eff", value] = metrics.iqr_filter(eff, "effectivity", self.opts.iqr_factor)[0]
        return self._cache["eff", value]

    def points(self, value: str, kind: str | None = None) -> pd.DataFrame:
        """Per-probe retainability points on ``value`` (optionally of one probe kind)."""
        if ("points", value) not in self._cache:
            self._cache["points", value] = metrics.retainability(self.frame, self.window, value)[0]
        points = self._cache["points", value]
        return points if kind is None else points[points["kind"] == kind]


def load_condition(name: str, run_dirs, params: Params | None = None) -> Condition:
    """A condition from the run folders of its replicates (pooled when there are several)."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise FactacqError(f"findings: condition {name!r} has no run folders")
    sidecar = load_sidecar(run_dirs[0])
    own = run_params(run_dirs[0], sidecar)
    if len(run_dirs) == 1:
        frame = load_run(run_dirs[0])
    else:
        from factacq.replicates import pool_runs  # deferred: written alongside this module
        frame = pool_runs(run_dirs)
    tokens = sidecar.get("tokens_per_step") or own.run_batch_size * own.pretrain.seq_len
    return Condition(name, frame, own, params, tokens, sidecar.get("n_parameters"), len(run_dirs))


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _matrix(table: pd.DataFrame, column: str, keys: list[str]):
    """Per item (rows) and group `keys` (columns): the sum and count of ``column``."""
    grouped = table.dropna(subset=[column]).groupby(["item_id", *keys])[column]
    sums = grouped.sum().unstack(keys, fill_value=0.0)
    sizes = grouped.size().unstack(keys, fill_value=0).reindex_like(sums).fillna(0)
    return sums.index, sums.columns, sums.to_numpy(float), sizes.to_numpy(float)


def _means(sums, sizes, items, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Column means of the full data [1, columns] and of ``n_boot`` item resamples (metrics'
    bootstrap: seeds, then items, for pooled item ids), one resample for every column (paired)."""
    try:
        from factacq.replicates import clusters_of  # deferred: written alongside this module
        clusters = clusters_of(items)
    except ImportError:
        clusters = None
    with np.errstate(invalid="ignore", divide="ignore"):
        full = sums.sum(0, keepdims=True) / sizes.sum(0, keepdims=True)
        if n_boot == 0:
            return full, np.zeros((0, sums.shape[1]))
        extra = () if clusters is None else (clusters,)
        return full, metrics.resampled_means(sums, sizes, n_boot, seed, *extra)


def _curves(points: pd.DataFrame, c: Condition) -> dict:
    """Per probe kind (injected scenarios pooled): log10 t of the t cells [1, cells], mean R per
    cell of the full data [1, cells] and of the item resamples [n_boot, cells], and the items.
    The t cells and the IQR filter are those of fits.retention_samples; every kind is taken from
    the same resample of the items."""
    parts = []
    for _, group in points.groupby("kind"):
        cells = metrics.assign_t_cells(group, by=(), n_bins=c.opts.retention_bins)
        if c.opts.iqr_factor:
            cells, _ = metrics.iqr_filter(cells, "retainability", c.opts.iqr_factor, by=["t_cell"])
        parts.append(cells)
    if not parts:
        raise FactacqError("no retainability points (no probe gained over its last window)")
    cells = pd.concat(parts, ignore_index=True)
    items, columns, sums, sizes = _matrix(cells, "retainability", ["kind", "t_cell"])
    full, boot = _means(sums, sizes, items, c.opts.bootstrap, c.opts.seed)
    out = {}
    for kind in cells["kind"].unique():
        sel = np.asarray(columns.get_level_values("kind") == kind)
        x = np.log10(columns[sel].get_level_values("t_cell").to_numpy(float))[None, :]
        out[kind] = (x, full[:, sel], boot[:, sel], cells.loc[cells["kind"] == kind, "item_id"].nunique())
    return out


def _r2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² of the least-squares line y = b − a·x for each row of y (NaN = no point)."""
    a, b = fits.loglinear_batch(x, y)
    w = np.isfinite(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(w, y, 0).sum(1, keepdims=True) / w.sum(1, keepdims=True)
        ss_res = np.where(w, (y - (b[:, None] - a[:, None] * x)) ** 2, 0).sum(1)
        ss_tot = np.where(w, (y - mean) ** 2, 0).sum(1)
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)


def _stat(statistic: str, value, lo, hi, n_items, verdict_: str, detail: str = "",
          own: str | None = None, **extra) -> dict:
    """One statistic's row: ``verdict_`` is its finding's verdict, ``own`` the statistic's alone
    (they differ only for findings with two statistics: F1, F4, F8)."""
    return {"statistic": statistic, "value": float(value), "lo": float(lo), "hi": float(hi),
            "n_items": int(n_items), "verdict": verdict_,
            "statistic_verdict": verdict_ if own is None else own, "detail": detail, **extra}


# ---------------------------------------------------------------------------------------------
# the findings of one condition (F1, F2, F3, F7, F8)


def f1_accumulation(c: Condition, value: str) -> list[dict]:
    acc = fits.accumulation(c.frame, value, MEM, **c.boot)
    eff = c.effectivity(value)
    eff = eff[(eff["kind"] == MEM) & (eff["n_encounters"] >= 2)]
    e = metrics.bootstrap_mean(eff, "effectivity", **c.boot)
    own = [verdict(acc["lo"], acc["hi"]), verdict(e["lo"], e["hi"])]
    v = joint(own, reversing=[0])
    per_k = eff.groupby("encounter")["effectivity"].mean()
    detail = "mean E at encounter " + ", ".join(f"k={k}: {m:.3g}" for k, m in per_k.items())
    where = f"{c.label}: memorization, items with >= 2 encounters"
    return [_stat(name, x["mean"], x["lo"], x["hi"], x["n_items"], v, detail, o, conditions=where)
            for (name, x), o in zip((("accumulation ℓ(t_N) − ℓ(t_1)", acc),
                                     ("mean effectivity E", e)), own)]


def f2_loglinear(c: Condition, value: str) -> list[dict]:
    curves, rows = _curves(c.points(value), c), []
    for kind in PROBE_KINDS:
        where, threshold = f"{c.label}: {kind}, injected scenarios pooled", R2_THRESHOLD[kind]
        name = f"R² of log-linear fit, {kind} (threshold {threshold})"
        if kind not in curves:
            rows.append(_stat(name, np.nan, np.nan, np.nan, 0, NOT_RUN,
                              f"no retainability points of kind {kind}", conditions=where))
            continue
        x, full, boot, n = curves[kind]
        lo, hi = _interval(_r2(x, boot), c.opts.ci)
        mean = pd.DataFrame({"kind": kind, "t": 10 ** x[0], "retainability": full[0]})
        aic = fits.compare_models(mean, by=("kind",)).set_index("model")["aic"].dropna()
        if "loglinear" not in aic or len(aic) < 2:
            detail = "model comparison: fewer than 2 models could be fitted"
        elif aic.idxmin() == "loglinear":
            nxt = aic.drop("loglinear").idxmin()
            detail = f"lowest AIC: loglinear; AIC({nxt}) − AIC(loglinear) = {aic[nxt] - aic.min():.3g}"
        else:
            detail = (f"lowest AIC: {aic.idxmin()}; AIC(loglinear) − AIC({aic.idxmin()}) = "
                      f"{aic['loglinear'] - aic.min():.3g}")
        rows.append(_stat(name, _r2(x, full)[0], lo, hi, n, verdict(lo, hi, "at_least", threshold),
                          detail, conditions=where))
    return rows


def f3_duplicate(c: Condition, value: str) -> list[dict]:
    points = c.points(value, MEM)
    groups = {s: points[points["scenario"] == s] for s in ("paraphrase", "duplicate")}
    missing = [s for s, g in groups.items() if g.empty]
    if missing:
        raise FactacqError(f"no memorization retainability points of scenario(s) {missing}")
    t = fits.compare_conditions(groups, "a", by=("kind",), reference="paraphrase",
                                n_bins=c.opts.retention_bins, iqr_factor=c.opts.iqr_factor,
                                **c.boot).iloc[0]
    lo, hi = t["difference_lo"], t["difference_hi"]
    return [_stat("a(duplicate) − a(paraphrase)", t["difference"], lo, hi,
                  sum(g["item_id"].nunique() for g in groups.values()), verdict(lo, hi),
                  f"a(duplicate) = {t['value']:.3g}, a(paraphrase) = {t['reference_value']:.3g}",
                  conditions=f"{c.label}: memorization, duplicate vs paraphrase")]


def f7_composition(c: Condition, value: str) -> list[dict]:
    curves = _curves(c.points(value), c)
    missing = [k for k in PROBE_KINDS if k not in curves]
    if missing:
        raise FactacqError(f"no retainability points of kind(s) {missing}")
    a = {k: (fits.loglinear_batch(x, full)[0], fits.loglinear_batch(x, boot)[0])
         for k, (x, full, boot, _) in curves.items()}
    diff = [a["composition"][i] - np.minimum(a[MEM][i], a["semantic"][i]) for i in (0, 1)]
    lo, hi = _interval(diff[1], c.opts.ci)
    detail = ", ".join(f"a({k}) = {a[k][0][0]:.3g}" for k in PROBE_KINDS)
    n = len(set().union(*(c.points(value, k)["item_id"] for k in PROBE_KINDS)))
    return [_stat("a(composition) − min(a(memorization), a(semantic))", diff[0][0], lo, hi, n,
                  verdict(lo, hi, "below"), detail,
                  conditions=f"{c.label}: all kinds, injected scenarios pooled")]


def f8_ordering(c: Condition, value: str) -> list[dict]:
    items, columns, sums, sizes = _matrix(c.effectivity(value), "effectivity", ["kind"])
    missing = [k for k in PROBE_KINDS if k not in columns]
    if missing:
        raise FactacqError(f"no effectivity values of kind(s) {missing}")
    full, boot = _means(sums, sizes, items, c.opts.bootstrap, c.opts.seed)
    col = {k: list(columns).index(k) for k in PROBE_KINDS}
    pairs = [(MEM, "semantic"), ("semantic", "composition")]
    stats = []
    for hi_kind, lo_kind in pairs:
        d_full, d_boot = (m[:, col[hi_kind]] - m[:, col[lo_kind]] for m in (full, boot))
        stats.append((d_full[0], *_interval(d_boot, c.opts.ci)))
    own = [verdict(lo, hi) for _, lo, hi in stats]
    v = joint(own)
    detail = ", ".join(f"E({k}) = {full[0, col[k]]:.3g}" for k in PROBE_KINDS)
    where = f"{c.label}: all kinds, injected scenarios, all encounters"
    return [_stat(f"E({a_}) − E({b_})", d, lo, hi, len(items), v, detail, o, conditions=where)
            for (a_, b_), (d, lo, hi), o in zip(pairs, stats, own)]


# ---------------------------------------------------------------------------------------------
# the findings across conditions (F4, F5, F6)


def f4_batch(small: Condition, large: Condition, value: str) -> list[dict]:
    s = {}
    for i, c in enumerate((small, large)):  # independent resamples, seeds as compare_conditions'
        points = c.points(value, MEM)
        if points.empty or not c.tokens_per_step:
            raise FactacqError(f"{c.name}: no memorization retainability points or tokens per step")
        s[i] = fits.retention_samples(points, c.opts.bootstrap, c.opts.seed + 7919 * i,
                                      c.opts.retention_bins, c.opts.iqr_factor)
        s[i]["n"] = points["item_id"].nunique()
    ci, n = small.opts.ci, s[0]["n"] + s[1]["n"]
    a_lo, a_hi = _interval(s[1]["a_samples"] - s[0]["a_samples"], ci)
    tokens = [large.tokens_per_step, small.tokens_per_step]
    x_diff = s[1]["x_intercept"] * tokens[0] - s[0]["x_intercept"] * tokens[1]
    x_lo, x_hi = _interval(s[1]["x_intercept_samples"] * tokens[0]
                           - s[0]["x_intercept_samples"] * tokens[1], ci)
    own = [verdict(a_lo, a_hi, "below"), verdict(x_lo, x_hi, "above")]
    v = joint(own, reversing=[0])
    defined = np.isfinite(s[1]["x_intercept_samples"] - s[0]["x_intercept_samples"])
    detail = (f"a = {s[1]['a']:.3g} ({large.name}) vs {s[0]['a']:.3g} ({small.name}); "
              f"x-intercept {s[1]['x_intercept'] * tokens[0]:.3g} vs "
              f"{s[0]['x_intercept'] * tokens[1]:.3g} tokens"
              + (f" (both defined in {defined.mean():.0%} of resamples)" if defined.size else ""))
    return [_stat("a(larger) − a(smaller)", s[1]["a"] - s[0]["a"], a_lo, a_hi, n, v, detail,
                  own[0]),
            _stat("x-intercept tokens, larger − smaller", x_diff, x_lo, x_hi, n, v, detail,
                  own[1])]


def _effectivity_gain(expect: str, statistic: str):
    def gain(low: Condition, high: Condition, value: str) -> list[dict]:
        tables = {c.name: c.effectivity(value) for c in (low, high)}
        tables = {name: tab[tab["kind"] == MEM] for name, tab in tables.items()}
        table = fits.compare_conditions(tables, "effectivity", by=("kind",), reference=low.name,
                                        **low.boot)
        if table.empty:
            raise FactacqError(f"no memorization effectivity in {list(tables)}")
        t = table.iloc[0]
        lo, hi = t["difference_lo"], t["difference_hi"]
        return [_stat(statistic, t["difference"], lo, hi,
                      sum(tab["item_id"].nunique() for tab in tables.values()),
                      verdict(lo, hi, expect),
                      f"E = {t['value']:.3g} ({high.name}) vs {t['reference_value']:.3g} ({low.name}); "
                      f"LR at the first injection {_lr(high):.3g} ({high.name}) vs {_lr(low):.3g} "
                      f"({low.name})")]
    return gain


def _lr(c: Condition) -> float:
    """The LR of the update that trained the condition's first injection (its first seed's)."""
    return metrics.lr_at_first_injection(c.frame)


def _stage_step(c: Condition) -> int:
    stage, stages = c.params.inject.stage, c.params.pretrain.stages
    if stage not in stages:
        raise FactacqError(f"{c.name}: inject.stage {stage!r} is not a pretrain stage")
    return stages[stage]


def _sizes(conds: list[Condition]) -> list:
    if all(c.n_parameters for c in conds):
        return [c.n_parameters for c in conds]
    if all(c.params.model.preset in PRESET_ORDER for c in conds):
        return [PRESET_ORDER.index(c.params.model.preset) for c in conds]
    raise FactacqError("no n_parameters in run.json and not every model is a preset")


COMPARISONS = [  # finding, compare label, order of the conditions, statistics
    ("F4", "batch_size", lambda cs: [c.params.run_batch_size for c in cs], f4_batch),
    ("F5", "stage", lambda cs: [_stage_step(c) for c in cs],
     _effectivity_gain("no_increase", "E(latest stage) − E(earliest), own LR")),
    ("F5", "stage_matched_lr", lambda cs: [_stage_step(c) for c in cs],
     _effectivity_gain("no_increase", "E(latest stage) − E(earliest), matched LR")),
    ("F6", "model_size", _sizes, _effectivity_gain("above", "E(larger) − E(smaller)")),
]


def _compare_rows(finding, label, order, fn, compare: dict, conds: dict) -> list[dict]:
    members = list(compare.get(label) or [])
    where = f"compare.{label}: {', '.join(members)}" if members else f"compare.{label}"
    missing = [m for m in members if m not in conds]
    reason = (f"no compare.{label} in the sweep" if not members else
              f"conditions without runs: {missing}" if missing else
              f"compare.{label} needs 2 or more conditions" if len(members) < 2 else "")
    if not reason:
        try:
            keys = order([conds[m] for m in members])
            ranked = [m for _, m in sorted(zip(keys, members))]
            low, high = conds[ranked[0]], conds[ranked[-1]]
            reason = ("its conditions do not differ" if min(keys) == max(keys) else
                      "its conditions differ in analysis options" if low.options != high.options
                      else "")
        except FactacqError as exc:
            reason = str(exc)
    if reason:
        return [_row(finding, "any", where, detail=reason)]
    return _measures(finding, [low, high], fn, f"{label}: {high.label} vs {low.label}")


# ---------------------------------------------------------------------------------------------
# the table


def _row(finding, measure, conditions, statistic="", value=np.nan, lo=np.nan, hi=np.nan,
         n_items=0, verdict=NOT_RUN, detail="", statistic_verdict=None) -> dict:
    if verdict == NOT_RUN and not (np.isfinite(lo) and np.isfinite(hi)) and statistic:
        detail = "no interval (too few points, or analysis.bootstrap = 0)" + (
            f"; {detail}" if detail else "")
    return {"finding": finding, "claim": CLAIMS[finding], "measure": measure,
            "conditions": conditions, "statistic": statistic, "value": value, "lo": lo, "hi": hi,
            "n_items": n_items, "verdict": verdict,
            "statistic_verdict": verdict if statistic_verdict is None else statistic_verdict,
            "rule": RULES[finding], "detail": detail}


def _measures(finding, conds: list[Condition], fn, where: str) -> list[dict]:
    """The rows of one finding on raw ℓ and on the contrast; a failing one is not run."""
    rows = []
    for fact_specific in (False, True):
        columns = {c.contrast if fact_specific else "logprob" for c in conds}
        if None in columns or len(columns) > 1:
            reason = ("no foil log-probs in the run log (probe.foils: none), so no contrast"
                      if None in columns else f"the conditions score different contrasts {columns}")
            rows.append(_row(finding, "contrast", where, detail=reason))
            continue
        column = columns.pop()
        try:
            rows += [_row(finding, column, **{"conditions": where, **part})
                     for part in fn(*conds, column)]
        except FactacqError as exc:
            rows.append(_row(finding, column, where, detail=str(exc)))
    return rows


SINGLE = {"F1": f1_accumulation, "F2": f2_loglinear, "F3": f3_duplicate, "F7": f7_composition,
          "F8": f8_ordering}


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["order"] = table["finding"].map(FINDINGS.index)
    return table.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)


def _single_rows(c: Condition) -> list[dict]:
    return [row for finding, fn in SINGLE.items() for row in _measures(finding, [c], fn, c.label)]


def run_findings(frame: pd.DataFrame, params: Params, name: str | None = None) -> pd.DataFrame:
    """The findings of one run log (F1, F2, F3, F7, F8) under the run's ``params``."""
    return _table(_single_rows(Condition(name or params.name, frame, params)))


def findings_table(replicates: dict, compare: dict, main: str | None = None,
                   params: Params | None = None, conditions: list[str] | None = None
                   ) -> pd.DataFrame:
    """The findings table F1-F8 of a sweep: F1, F2, F3, F7, F8 on the ``main`` condition
    (default: "default" if there is one, else the first) and on each of ``conditions`` (e.g. the
    paper's data beside the generator's; the column "conditions" says whose row it is), F4-F6
    from ``compare``; ``params`` (optional) replaces every run's analysis options."""
    if not replicates:
        raise FactacqError("findings_table: no conditions")
    main = main or ("default" if "default" in replicates else next(iter(replicates)))
    if main not in replicates:
        raise FactacqError(f"findings_table: main condition {main!r} is not one of {list(replicates)}")
    singles = list(dict.fromkeys([main, *(conditions or [])]))
    unknown = [name for name in singles if name not in replicates]
    if unknown:
        raise FactacqError(f"findings_table: conditions {unknown} are not among {list(replicates)}")
    needed = set(singles) | {m for _, label, _, _ in COMPARISONS for m in compare.get(label) or []}
    conds = {name: load_condition(name, dirs, params) for name, dirs in replicates.items()
             if name in needed}  # only the conditions a finding uses are loaded
    rows = [row for name in singles for row in _single_rows(conds[name])]
    for finding, label, order, fn in COMPARISONS:
        rows += _compare_rows(finding, label, order, fn, compare, conds)
    return _table(rows)


def format_findings(table: pd.DataFrame, detail: bool = True) -> str:
    """The table as compact markdown: one line per row, value [CI], then the claims."""
    def text(x) -> str:
        return "" if pd.isna(x) else str(x).replace("|", "\\|")

    def number(x) -> str:
        return f"{x:.3g}" if pd.notna(x) and np.isfinite(x) else "—"

    head = ["finding", "measure", "statistic", "value [CI]", "n", "verdict"] + ["detail"] * detail
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        estimate = number(r["value"]) + (f" [{number(r['lo'])}, {number(r['hi'])}]"
                                         if pd.notna(r["lo"]) else "")
        n = str(int(r["n_items"])) if pd.notna(r["n_items"]) else ""
        own = r.get("statistic_verdict", r["verdict"])
        shown = f"**{r['verdict']}**" + (f" (this statistic: {own})" if own != r["verdict"] else "")
        cells = [r["finding"], r["measure"], r["statistic"], estimate, n, shown]
        lines.append("| " + " | ".join(text(x) for x in cells + [r["detail"]] * detail) + " |")
    claims = table.drop_duplicates("finding")
    lines += [""] + [f"{r['finding']}: {r['claim']}." for r in claims.to_dict("records")]
    return "\n".join(lines)


__all__ = ["VERDICTS", "COLUMNS", "CLAIMS", "RULES", "verdict", "joint", "Condition",
           "load_condition", "run_findings", "findings_table", "format_findings"]
