"""Acquisition and forgetting metrics on a run log (Chang et al. 2024, section 3.2).

Every function takes the long-format run-log DataFrame of docs/architecture.md (or a part of it that
still holds the probe and injection records it needs) and returns a new DataFrame; nothing is changed
in place. Step conventions (docs/architecture.md, "Steps"): an injection at step t_i is in update
t_i+1, so ℓ(t_i) is the value just before the encounter; t_pre is an item's first injection step.

Probe steps are sparse (t_pre, each window (t_i, t_i+t_w], then log-spaced), so nothing assumes a
value at every step: a step that was not probed (or whose value is null) is *missing*, and the
tables count or flag missing steps instead of inventing values.

- Δℓ(q,t) = ℓ(q,t) − ℓ(q,t_pre)                                   :func:`delta_logprob`
- t_LAM(q,i) = argmax of ℓ over the probed steps in (t_i, t_i+t_w] :func:`t_lam`
- E(q,i) = ℓ(q,t_LAM(q,i)) − ℓ(q,t_i)                              :func:`effectivity`
- R(q,t) = [ℓ(t_LAM(q,N)+t) − ℓ(t_pre)] / [ℓ(t_LAM(q,N)) − ℓ(t_pre)], N the last encounter,
  at every probed step after t_LAM(q,N)                            :func:`retainability`

Any value column works (``value=``): ``logprob``, the contrasts of :func:`add_contrast`, or the
control-adjusted ``*_adj`` columns of :func:`control_adjusted`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from factacq.errors import FactacqError
from factacq.replicates import clusters_of

PROBE_KEY = ["item_id", "kind", "probe_index"]
PROBE_COLUMNS = ["item_id", "scenario", "kind", "probe_index"]


# ---------------------------------------------------------------------------------------------
# record access


def probe_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The probe records of a run log (a frame without a `record` column is taken as probes)."""
    if "record" in frame.columns:
        frame = frame[frame["record"] == "probe"]
    frame = frame.reset_index(drop=True)
    if "probe_index" in frame.columns and frame["probe_index"].notna().all():
        frame["probe_index"] = frame["probe_index"].astype("int64")  # float after a null-padded load
    return frame


def encounters(frame: pd.DataFrame) -> pd.DataFrame:
    """Per item and encounter: `encounter` i (1-based), `t_i`, `n_encounters`, `t_pre`.

    Read from the injection records (one encounter per distinct injection step of an item).
    Control items have no injection records and so no rows here.
    """
    if "record" not in frame.columns:
        raise FactacqError("run log: no `record` column, cannot find the injection records")
    inj = frame.loc[frame["record"] == "injection", ["item_id", "scenario", "step"]]
    inj = inj.drop_duplicates(["item_id", "step"]).sort_values(["item_id", "step"])
    out = inj.rename(columns={"step": "t_i"}).reset_index(drop=True)
    out["t_i"] = out["t_i"].astype("int64")
    out["encounter"] = out.groupby("item_id").cumcount().astype("int64") + 1
    out["n_encounters"] = out.groupby("item_id")["t_i"].transform("size").astype("int64")
    out["t_pre"] = out.groupby("item_id")["t_i"].transform("min").astype("int64")
    return out[["item_id", "scenario", "encounter", "t_i", "n_encounters", "t_pre"]]


class _Wide:
    """Probe values as a matrix: one row per probe, one column per probed step (NaN = missing)."""

    def __init__(self, frame: pd.DataFrame, value: str):
        probes = probe_rows(frame)
        if value not in probes.columns:
            raise FactacqError(f"run log: no column {value!r}")
        dup = probes.duplicated(PROBE_KEY + ["step"])
        if dup.any():
            row = probes[dup].iloc[0]
            raise FactacqError(
                f"run log: probe ({row['item_id']}, {row['kind']}, {row['probe_index']}) has two "
                f"records at step {row['step']}")
        table = probes.pivot(index=PROBE_COLUMNS, columns="step", values=value)
        self.probes = table.index.to_frame(index=False)
        self.steps = table.columns.to_numpy(dtype="int64")
        self.values = table.to_numpy(dtype="float64")

    def at(self, rows: np.ndarray, step: int) -> np.ndarray:
        """Values of the given probe rows at one step (NaN where not probed)."""
        col = np.searchsorted(self.steps, step)
        if col < len(self.steps) and self.steps[col] == step:
            return self.values[rows, col]
        return np.full(len(rows), np.nan)

    def at_steps(self, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Value of probe row rows[k] at step steps[k] (NaN where not probed)."""
        cols = np.clip(np.searchsorted(self.steps, steps), 0, len(self.steps) - 1)
        return np.where(self.steps[cols] == steps, self.values[rows, cols], np.nan)

    def interpolated(self, rows: np.ndarray, step: int) -> np.ndarray:
        """Values of the given probe rows at one step: the value where the row was probed there,
        else linear in step between its nearest probed steps before and after (NaN outside its
        probed range). Control items probed at every k-th step (probe.control_every) are read so."""
        vals = self.values[rows]
        ok = np.isfinite(vals)
        before = ok & (self.steps <= step)[None, :]
        after = ok & (self.steps >= step)[None, :]
        n = len(self.steps)
        left = np.where(before.any(1), n - 1 - np.argmax(before[:, ::-1], axis=1), -1)
        right = np.where(after.any(1), np.argmax(after, axis=1), -1)
        out = np.full(len(rows), np.nan)
        both = (left >= 0) & (right >= 0)
        r = np.flatnonzero(both)
        s_l, s_r = self.steps[left[r]], self.steps[right[r]]
        v_l, v_r = vals[r, left[r]], vals[r, right[r]]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(s_r > s_l, (step - s_l) / np.maximum(s_r - s_l, 1), 0.0)
        out[r] = v_l + w * (v_r - v_l)
        return out

    def window(self, rows: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps in (start, stop] that were probed and the values there (rows x steps)."""
        mask = (self.steps > start) & (self.steps <= stop)
        return self.steps[mask], self.values[np.ix_(rows, mask)]


# ---------------------------------------------------------------------------------------------
# derived value columns


def add_contrast(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `contrast` = logprob − foil_logprob and `first_contrast` = first_logprob −
    first_foil_logprob (null where the run scored no foils)."""
    out = frame.copy()
    out["contrast"] = out["logprob"] - out["foil_logprob"]
    out["first_contrast"] = out["first_logprob"] - out["first_foil_logprob"]
    return out


def contrast_column(frame: pd.DataFrame) -> str | None:
    """The contrast to report: full foils when the run has them, else first-token, else None."""
    probes = probe_rows(frame)
    for column, source in (("contrast", "foil_logprob"), ("first_contrast", "first_foil_logprob")):
        if source in probes.columns and probes[source].notna().any():
            return column
    return None


def has_control(frame: pd.DataFrame) -> bool:
    probes = probe_rows(frame)
    return bool((probes["scenario"] == "control").any())


def control_adjusted(frame: pd.DataFrame, value: str = "logprob") -> pd.DataFrame:
    """Add f"{value}_adj" = value − mean value of the control group's probes of the same kind at
    the same step (linear in step between the control group's nearest probed steps, when the
    controls are probed at every k-th step only: probe.control_every), and `control_n` (how many
    control probes that mean has, the fewer of its two neighbours' when interpolated; 0 = outside
    the control group's probed steps, so the adjusted value is null there). In a pooled frame (a `replicate` column,
    factacq.replicates) the control mean is that of the same replicate.

    Differences of the adjusted value are changes minus the control group's change over the same
    steps, which removes non-specific drift (the passages' style, background loss moving)."""
    probes = probe_rows(frame)
    control = probes[(probes["scenario"] == "control") & probes[value].notna()]
    if control.empty:
        raise FactacqError(f"run log: no control probes with a {value!r} value to adjust against")
    group = ["kind"] + (["replicate"] if "replicate" in probes.columns else [])  # pooled seeds
    stats = control.groupby(group + ["step"])[value].agg(["mean", "size"]).reset_index()
    out = frame.copy()
    mean = np.full(len(out), np.nan)
    size = np.zeros(len(out))
    keys = out[group].astype(object).to_numpy()
    steps = out["step"].to_numpy(dtype="float64")
    for key, curve in stats.groupby(group):
        key = key if isinstance(key, tuple) else (key,)
        rows = np.flatnonzero((keys == np.asarray(key, dtype=object)).all(axis=1))
        at, m, n = (curve[c].to_numpy() for c in ("step", "mean", "size"))
        inside = (steps[rows] >= at[0]) & (steps[rows] <= at[-1])
        rows = rows[inside]
        mean[rows] = np.interp(steps[rows], at, m)
        right = np.clip(np.searchsorted(at, steps[rows]), 0, len(at) - 1)
        left = np.clip(np.searchsorted(at, steps[rows], side="right") - 1, 0, len(at) - 1)
        size[rows] = np.minimum(n[left], n[right])
    is_probe = (out["record"] == "probe").to_numpy() if "record" in out.columns else True
    out[f"{value}_adj"] = np.where(is_probe, out[value].to_numpy() - mean, np.nan)
    out["control_n"] = np.where(is_probe, size, np.nan)
    return out


def delta_logprob(frame: pd.DataFrame, value: str = "logprob") -> pd.DataFrame:
    """Probe records with `t_pre` and f"delta_{value}" = value(t) − value(t_pre) per probe.

    t_pre is the item's first injection step; control items use the run's first injection step.
    `baseline_missing` is True for probes with no value at their t_pre (their delta is null)."""
    probes = probe_rows(frame)
    enc = encounters(frame)
    if enc.empty:
        raise FactacqError("run log: no injection records, so no t_pre")
    t_pre = enc.groupby("item_id")["t_pre"].first()
    probes["t_pre"] = probes["item_id"].map(t_pre).fillna(enc["t_i"].min()).astype("int64")
    base = probes.loc[probes["step"] == probes["t_pre"], PROBE_KEY + [value]]
    base = base.rename(columns={value: "_base"})
    out = probes.merge(base, on=PROBE_KEY, how="left")
    out[f"delta_{value}"] = out[value] - out["_base"]
    out["baseline_missing"] = out["_base"].isna()
    return out.drop(columns="_base")


def mean_trajectories(frame: pd.DataFrame, value: str = "logprob") -> pd.DataFrame:
    """Mean Δ(value) per scenario x kind x step: columns `mean`, `sem`, `n` (probes with a value)."""
    delta = delta_logprob(frame, value)
    column = f"delta_{value}"
    grouped = delta.dropna(subset=[column]).groupby(["scenario", "kind", "step"])[column]
    out = grouped.agg(mean="mean", sem="sem", n="size").reset_index()
    out["value"] = value
    return out


# ---------------------------------------------------------------------------------------------
# acquisition


def t_lam(frame: pd.DataFrame, window: int, value: str = "logprob") -> pd.DataFrame:
    """Per probe x encounter: `t_i`, `t_lam` (argmax of value over the probed steps in
    (t_i, t_i + window]; the first on ties; null when none was probed), `l_t_i`, `l_t_lam`,
    `window_probed` and `window_missing` (steps of the window with / without a value),
    `t_i_missing` (no value at t_i)."""
    return _t_lam(_Wide(frame, value), encounters(frame), window, value).drop(columns="_row")


def _t_lam(wide: _Wide, enc: pd.DataFrame, window: int, value: str) -> pd.DataFrame:
    if window < 1:
        raise FactacqError(f"analysis window must be >= 1 step, got {window}")
    # one row per (probe, encounter): probe rows of the wide matrix joined to the item's encounters
    probes = wide.probes.reset_index().rename(columns={"index": "_row"})
    pairs = probes.merge(enc.drop(columns="scenario"), on="item_id")
    if pairs.empty:
        raise FactacqError(f"run log: no probes of injected items with a {value!r} value")
    rows, t_i = pairs["_row"].to_numpy(), pairs["t_i"].to_numpy()
    vals = wide.values[rows]  # pairs x steps
    steps = wide.steps[None, :]
    in_window = (steps > t_i[:, None]) & (steps <= t_i[:, None] + window)
    probed = in_window & np.isfinite(vals)
    best = np.argmax(np.where(probed, vals, -np.inf), axis=1)
    has_any = probed.any(axis=1)
    pairs["t_lam"] = pd.array(np.where(has_any, wide.steps[best], 0), dtype="Int64")
    pairs.loc[~has_any, "t_lam"] = pd.NA
    pairs["l_t_i"] = wide.at_steps(rows, t_i)
    pairs["l_t_lam"] = np.where(has_any, vals[np.arange(len(rows)), best], np.nan)
    pairs["window_probed"] = probed.sum(axis=1)
    pairs["window_missing"] = window - pairs["window_probed"]
    pairs["t_i_missing"] = np.isnan(pairs["l_t_i"].to_numpy())
    pairs["value"] = value
    order = PROBE_COLUMNS + ["_row", "encounter", "n_encounters", "t_i", "t_pre", "t_lam", "l_t_i",
                             "l_t_lam", "window_probed", "window_missing", "t_i_missing", "value"]
    return pairs.sort_values(["item_id", "encounter", "kind", "probe_index"])[order].reset_index(
        drop=True)


def effectivity(frame: pd.DataFrame, window: int, value: str = "logprob") -> pd.DataFrame:
    """:func:`t_lam` plus `effectivity` = l_t_lam − l_t_i (null where either step is missing)."""
    out = t_lam(frame, window, value)
    out["effectivity"] = out["l_t_lam"] - out["l_t_i"]
    return out


def summarize_effectivity(table: pd.DataFrame, by=("scenario", "kind"),
                          iqr_factor: float | None = None) -> pd.DataFrame:
    """Mean effectivity per group over probes x encounters: `mean`, `sem`, `n`, `removed` (IQR
    outliers dropped with `iqr_factor`; None keeps all), `missing` (rows with a null effectivity)."""
    by = list(by)
    rows = []
    for key, group in table.groupby(by):
        valid = group.dropna(subset=["effectivity"])
        kept, removed = (iqr_filter(valid, "effectivity", iqr_factor, by=()) if iqr_factor
                         else (valid, 0))
        rows.append({**dict(zip(by, key)), "mean": kept["effectivity"].mean(),
                     "sem": kept["effectivity"].sem(), "n": len(kept), "removed": removed,
                     "missing": len(group) - len(valid), "iqr_factor": iqr_factor})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# retention


def retainability(frame: pd.DataFrame, window: int,
                  value: str = "logprob") -> tuple[pd.DataFrame, dict]:
    """R(q,t) at every probed step s > t_LAM(q,N), t = s − t_LAM(q,N), N the item's last encounter.

    Returns the points (one row per probe and step: probe columns, `t_lam`, `step`, `t`,
    `retainability`, `denominator`) and counts: `probes` (probes of injected items), `used`,
    `excluded_nonpositive_denominator` (ℓ(t_LAM) − ℓ(t_pre) <= 0), `excluded_missing_t_pre` (no
    value at t_pre) and `excluded_missing_window` (no probed step in the last window)."""
    wide = _Wide(frame, value)
    lam = _t_lam(wide, encounters(frame), window, value)
    last = lam[lam["encounter"] == lam["n_encounters"]].reset_index(drop=True)
    rows = last["_row"].to_numpy()
    base = wide.at_steps(rows, last["t_pre"].to_numpy())
    no_window = last["t_lam"].isna().to_numpy()
    no_base = np.isnan(base) & ~no_window
    denominator = last["l_t_lam"].to_numpy() - base
    nonpositive = ~no_window & ~no_base & ~(denominator > 0)
    used = ~(no_window | no_base | nonpositive)
    counts = {"probes": len(last), "used": int(used.sum()),
              "excluded_nonpositive_denominator": int(nonpositive.sum()),
              "excluded_missing_t_pre": int(no_base.sum()),
              "excluded_missing_window": int(no_window.sum())}
    keep = last[used].reset_index(drop=True)
    t_lam_used = keep["t_lam"].to_numpy(dtype="int64")
    vals = wide.values[rows[used]]
    after = (wide.steps[None, :] > t_lam_used[:, None]) & np.isfinite(vals)
    i, j = np.nonzero(after)
    points = keep.loc[i, PROBE_COLUMNS].reset_index(drop=True)
    points["t_lam"] = t_lam_used[i]
    points["step"] = wide.steps[j]
    points["t"] = points["step"] - points["t_lam"]
    points["retainability"] = (vals[i, j] - base[used][i]) / denominator[used][i]
    points["denominator"] = denominator[used][i]
    points["value"] = value
    return points, counts


def assign_t_cells(points: pd.DataFrame, by=("scenario", "kind"), n_bins: int = 20) -> pd.DataFrame:
    """Add `t_cell` (the t a point is averaged at) and `t_rule` per group.

    Rule: when every probe of a group was measured at exactly the same set of t, each t is its own
    cell (`exact`). Otherwise t is grouped into `n_bins` log-spaced bins between the group's
    smallest and largest t, and a bin's t is the geometric mean of the t values in it
    (`log_bins`): the fits are linear in log10 t, so that is where a bin's mean R belongs."""
    out = points.copy()
    out["t_cell"] = np.nan
    out["t_rule"] = ""
    for _, group in (out.groupby(list(by)) if by else [(None, out)]):
        per_probe = group.groupby(PROBE_KEY)["t"].apply(frozenset)
        if per_probe.nunique() == 1:
            out.loc[group.index, "t_cell"] = group["t"].astype(float)
            out.loc[group.index, "t_rule"] = "exact"
            continue
        t = group["t"].to_numpy(dtype=float)
        lo, hi = t.min(), t.max()
        edges = np.geomspace(lo, hi, n_bins + 1) if hi > lo else np.array([lo, lo])
        bins = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, max(len(edges) - 2, 0))
        log_t = pd.Series(np.log10(t), index=group.index)
        centers = 10 ** log_t.groupby(bins).transform("mean")
        out.loc[group.index, "t_cell"] = centers.to_numpy()
        out.loc[group.index, "t_rule"] = "log_bins"
    return out


def mean_retainability(points: pd.DataFrame, by=("scenario", "kind"), n_bins: int = 20,
                       iqr_factor: float | None = None) -> pd.DataFrame:
    """Mean R vs t per group (cells from :func:`assign_t_cells`): columns by.., `t`, `retainability`
    (mean), `sem`, `n`, `removed` (IQR outliers dropped within each cell), `t_rule`, `iqr_factor`."""
    by = list(by)
    cells = assign_t_cells(points, by, n_bins)
    kept, _ = (iqr_filter(cells, "retainability", iqr_factor, by + ["t_cell"]) if iqr_factor
               else (cells, 0))
    keys = by + ["t_cell", "t_rule"]
    out = kept.groupby(keys)["retainability"].agg(retainability="mean", sem="sem", n="size")
    before = cells.groupby(keys).size()
    out["removed"] = (before.reindex(out.index) - out["n"]).astype("int64")
    out = out.reset_index().rename(columns={"t_cell": "t"})
    out["iqr_factor"] = iqr_factor
    return out[by + ["t", "retainability", "sem", "n", "removed", "t_rule", "iqr_factor"]]


# ---------------------------------------------------------------------------------------------
# outliers, specificity, contrast, stationarity


def iqr_filter(values_frame: pd.DataFrame, column: str, factor: float = 1.5,
               by=("scenario", "kind")) -> tuple[pd.DataFrame, int]:
    """Drop rows whose `column` is outside [Q1 − factor·IQR, Q3 + factor·IQR] within each group
    (quartiles by linear interpolation, numpy's default). The paper states factor 1.5, its code
    uses 2.0. Rows with a null value are kept and not counted. Returns (kept rows, removed count)."""
    if not factor > 0:
        raise FactacqError(f"iqr factor must be > 0, got {factor}")
    by = list(by or [])
    values = values_frame[column]
    groups = values.groupby([values_frame[c] for c in by]) if by else values.groupby(
        np.zeros(len(values)))
    q1 = groups.transform("quantile", 0.25)
    q3 = groups.transform("quantile", 0.75)
    spread = factor * (q3 - q1)
    outlier = (values < q1 - spread) | (values > q3 + spread)
    return values_frame[~outlier.to_numpy()], int(outlier.sum())


def resampled_means(sums: np.ndarray, sizes: np.ndarray, n_boot: int, seed: int,
                    clusters: np.ndarray | None = None) -> np.ndarray:
    """The item bootstrap, written once: ``n_boot`` resamples (with replacement, from
    ``default_rng(seed)``) of the items, the rows of ``sums`` / ``sizes`` (per item: the sum of a
    value and how many values; 2-D for one column per t cell), and each resample's pooled mean
    sum / size (shape [n_boot] or [n_boot, cells]).

    ``clusters`` (one integer label per row: the item's replicate, replicates.clusters_of) makes it
    two-level: each resample draws the clusters with replacement, then the rows of each drawn
    cluster with replacement, so the interval covers the spread between replicates (seeds) too."""
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, len(sums), (n_boot, len(sums)))
        return sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    label = np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)
    if len(label) != len(sums):
        raise FactacqError(f"resampled_means: {len(label)} cluster labels for {len(sums)} rows")
    n_clusters = int(label.max()) + 1
    picks = rng.integers(0, n_clusters, (n_boot, n_clusters))
    total = np.zeros((n_boot,) + sums.shape[1:])
    size = np.zeros((n_boot,) + sizes.shape[1:])
    for k in range(n_clusters):
        rows = np.flatnonzero(label == k)
        draw = np.nonzero(picks == k)[0]  # the resample of each slot that drew cluster k
        idx = rows[rng.integers(0, len(rows), (len(draw), len(rows)))]
        np.add.at(total, draw, sums[idx].sum(axis=1))
        np.add.at(size, draw, sizes[idx].sum(axis=1))
    return total / size


def bootstrap_samples(frame: pd.DataFrame, column: str, n_boot: int, seed: int = 0,
                      unit: str = "item_id") -> dict:
    """Mean of `column` (over its non-null rows) and :func:`resampled_means` of its `unit`s
    (items; replicates, then their items, when the item ids are pooled ones, see factacq.replicates):
    `mean`, `samples` (NaN for no data), `n` (values), `n_items`."""
    data = frame.dropna(subset=[column])
    if data.empty:
        return {"mean": np.nan, "samples": np.full(n_boot, np.nan), "n": 0, "n_items": 0}
    per_unit = data.groupby(unit)[column].agg(["sum", "size"])
    sums, sizes = per_unit["sum"].to_numpy(), per_unit["size"].to_numpy()
    clusters = clusters_of(per_unit.index)  # pooled replicates: resample them too
    samples = resampled_means(sums, sizes, n_boot, seed, clusters) if n_boot > 0 else np.zeros(0)
    return {"mean": float(sums.sum() / sizes.sum()), "samples": samples, "n": int(sizes.sum()),
            "n_items": len(sums)}


def bootstrap_mean(frame: pd.DataFrame, column: str, n_boot: int = 1000, ci: float = 0.95,
                   seed: int = 0, unit: str = "item_id") -> dict:
    """Mean of `column` with a percentile CI from resampling `unit`s (items) with replacement."""
    stats = bootstrap_samples(frame, column, n_boot, seed, unit)
    lo = hi = np.nan
    if n_boot > 0 and stats["n_items"]:
        lo, hi = np.quantile(stats["samples"], [(1 - ci) / 2, (1 + ci) / 2])
    return {"mean": stats["mean"], "lo": float(lo), "hi": float(hi), "n": stats["n"],
            "n_items": stats["n_items"]}


def specificity(frame: pd.DataFrame, window: int, kind: str = "memorization",
                value: str = "logprob") -> dict:
    """1 − (mean gain of control probes after the injection steps) / (mean effectivity of the
    injected probes), both for probes of `kind`.

    A control probe's gain at an injection step t is computed like effectivity, over the same
    steps: the max of its value at the steps in (t, t+window] at which the items injected at t
    were probed, minus its value at t, for every distinct injection step of the run. Where a
    control was not probed at such a step (probe.control_every) its value there is interpolated
    between its nearest probed steps. The max is then over as many steps as the injected probes'
    (with probe.window_points, fewer than the window's: a max over every step would bias the
    control gain up). 1 = the injections raise only the injected facts; 0 = the control facts rise
    as much (only non-specific learning). `control_missing` counts (probe, step) pairs left out
    because no value could be had."""
    enc = encounters(frame)
    if enc.empty:
        raise FactacqError("run log: no injection records, so no specificity")
    injected = effectivity(frame, window, value)
    injected = injected[injected["kind"] == kind]["effectivity"].dropna()
    wide = _Wide(frame, value)
    control = wide.probes.index[(wide.probes["scenario"] == "control")
                                & (wide.probes["kind"] == kind)].to_numpy()
    if control.size == 0:
        raise FactacqError(f"run log: no control probes of kind {kind!r}, so no specificity")
    injected_rows = wide.probes.index[wide.probes["scenario"] != "control"].to_numpy()
    gains, missing = [], 0
    for t in np.unique(enc["t_i"]):
        items = enc.loc[enc["t_i"] == t, "item_id"].unique()
        rows = injected_rows[wide.probes.loc[injected_rows, "item_id"].isin(items).to_numpy()]
        steps, vals = wide.window(rows, t, t + window)
        steps = steps[np.isfinite(vals).any(axis=0)]  # the steps the items injected at t were probed
        vals = np.stack([wide.interpolated(control, u) for u in steps], axis=1) if steps.size else (
            np.empty((len(control), 0)))
        gain = np.max(np.where(np.isfinite(vals), vals, -np.inf), axis=1,
                      initial=-np.inf) - wide.interpolated(control, t)
        ok = np.isfinite(gain)
        missing += int((~ok).sum())
        gains.append(gain[ok])
    gains = np.concatenate(gains)
    control_gain = float(gains.mean()) if gains.size else np.nan
    mean_eff = float(injected.mean()) if len(injected) else np.nan
    return {"specificity": 1 - control_gain / mean_eff if mean_eff else np.nan,
            "control_gain": control_gain, "effectivity": mean_eff, "kind": kind, "value": value,
            "n_control": int(gains.size), "n_injected": int(len(injected)),
            "control_missing": missing}


def contrastive_effectivity(frame: pd.DataFrame, window: int, ci: float = 0.95,
                            n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean effectivity of injected memorization probes on the contrast (full foils when the run
    scored them, else the first-token contrast), with a bootstrap-over-items CI."""
    frame = add_contrast(frame) if "contrast" not in frame.columns else frame
    column = contrast_column(frame)
    if column is None:
        raise FactacqError("run log: no foil log-probs (probe.foils: none), so no contrast")
    eff = effectivity(frame, window, column)
    eff = eff[eff["kind"] == "memorization"]
    stats = bootstrap_mean(eff, "effectivity", n_boot, ci, seed)
    return {"column": column, "ci": ci, **stats}


def stationarity(frame: pd.DataFrame, n: int = 100) -> dict:
    """Mean background loss of the run's first n and last n train records and the change.

    A run that continues pretraining on a stationary stream should change little (the injected
    facts, not a drifting loss, should drive ℓ). Uses `bg_loss`, or `loss` when it is null."""
    train = frame[frame["record"] == "train"].sort_values("step") if "record" in frame.columns else frame
    column = "bg_loss" if "bg_loss" in train.columns and train["bg_loss"].notna().any() else "loss"
    values = train[column].dropna().to_numpy() if column in train.columns else np.array([])
    if values.size == 0:
        raise FactacqError("run log: no train records with a loss, so no stationarity")
    first, last = values[:n].mean(), values[-n:].mean()
    return {"column": column, "n": int(min(n, values.size)), "first": float(first),
            "last": float(last), "change": float(last - first),
            "relative_change": float((last - first) / first) if first else np.nan,
            "overlap": bool(values.size < 2 * n),
            "lr_first_injection": lr_at_first_injection(frame, train)}


def lr_at_first_injection(frame: pd.DataFrame, train: pd.DataFrame | None = None) -> float:
    """The learning rate of the update that trains the run's first injection (an injection at
    step s trains in update s + 1, whose train record is step s + 1); NaN without injection
    records or a logged LR."""
    if "record" not in frame.columns or "lr" not in frame.columns:
        return np.nan
    injections = frame[frame["record"] == "injection"]
    if train is None:
        train = frame[frame["record"] == "train"]
    train = train.dropna(subset=["lr"])
    if injections.empty or train.empty:
        return np.nan
    after = train[train["step"] > injections["step"].min()].sort_values("step")
    return float(after["lr"].iloc[0]) if len(after) else np.nan
