"""The statistics of the beyond-the-paper experiments (issue 12): cohorts inside one run.

An experiment run splits its injected items into *cohorts* with different encounter schedules
(plan.item_schedules: one row per injected item with `item_id, scenario, cohort, count, interval,
first_step, last_step, steps`). Every function here takes a run log (runlog.load_run) and that
schedule table, or the logs and schedules of several seeds pooled together (:func:`pool_replicates`:
item ids become "<replicate>::<item>", so every bootstrap resamples seeds, then items).

**Measures** (``measure=``): ``"raw"`` ℓ; ``"adjusted"`` ℓ minus the control group's mean at the
same step and kind (metrics.control_adjusted: removes the drift every fact shares); ``"contrast"``
the target's log-prob minus the foils' (metrics.contrast_column: full foils when scored, else the
first-token contrast). Δ = value(t) − value(t_pre), t_pre = the item's first encounter
(metrics.delta_logprob). The fact-specific measures (adjusted, contrast) decide; raw goes beside.

- :func:`cohort_deltas`, :func:`cohort_trajectories`  Δ per item and step, aligned per cohort
- §1 :func:`interval_experiment`   net acquisition vs interval, its zero crossing, and the
  paper's reading of the same run's decay fit (:func:`paper_reading_threshold`)
- §2 :func:`frequency_experiment`  final Δ and the fraction of items acquired vs count
- §3 :func:`dedup_comparison`      effectivity and decay constant a, background without vs with
  duplicated rows, and their differences
- §4 :func:`predictive_model`      superposition kernels fitted on some cohorts, predicting others
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from factacq import fits, metrics
from factacq import superposition as sp
from factacq.errors import FactacqError
from factacq.replicates import pool_frames

MEASURES = ("raw", "adjusted", "contrast")
SCHEDULE_COLUMNS = ("item_id", "scenario", "cohort", "count", "interval", "first_step",
                    "last_step", "steps")
REFERENCE = -1.0  # net_acquisition's label for the single-encounter reference items


# --------------------------------------------------------------------------- inputs


def check_schedules(schedules: pd.DataFrame, where: str = "schedules") -> pd.DataFrame:
    """A checked copy of an item-schedule table (`steps` as tuples of ints, `cohort` as str; a
    null cohort, in the plan of a run from before cohorts, becomes the item's scenario)."""
    if not isinstance(schedules, pd.DataFrame) or schedules.empty:
        raise FactacqError(f"{where}: empty, need one row per injected item (plan.item_schedules)")
    missing = [c for c in SCHEDULE_COLUMNS if c not in schedules.columns]
    if missing:
        raise FactacqError(f"{where}: missing columns {missing}")
    twice = schedules["item_id"][schedules["item_id"].duplicated()]
    if len(twice):
        raise FactacqError(f"{where}: item_id {twice.iloc[0]!r} has two rows")
    out = schedules.copy()
    steps = []
    for item, raw, count, first, last in zip(out["item_id"], out["steps"], out["count"],
                                             out["first_step"], out["last_step"]):
        try:
            s = tuple(int(x) for x in raw)
        except (TypeError, ValueError):
            raise FactacqError(f"{where}: item {item!r} field steps must be a list of run steps, "
                               f"got {raw!r}") from None
        if not s or any(b <= a for a, b in zip(s, s[1:])) or len(s) != count:
            raise FactacqError(f"{where}: item {item!r} field steps {list(s)} must be {count} "
                               f"increasing steps (its count)")
        if (s[0], s[-1]) != (first, last):
            raise FactacqError(f"{where}: item {item!r} first_step/last_step {first}/{last} do "
                               f"not match its steps {list(s)}")
        steps.append(s)
    named = out["cohort"].notna() & (out["cohort"].astype(str) != "")
    out["steps"], out["cohort"] = steps, out["cohort"].where(named, out["scenario"]).astype(str)
    out["count"], out["interval"] = out["count"].astype(int), out["interval"].astype(float)
    return out.reset_index(drop=True)


def pool_replicates(runs: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """{replicate: (run log, schedules)} of one condition -> (pooled log, pooled schedules): both
    with item ids prefixed as replicates.pool_frames prefixes them, and a `replicate` column."""
    if not runs:
        raise FactacqError("pool_replicates: no replicates given")
    for name, (_, schedules) in runs.items():
        check_schedules(schedules, f"schedules of replicate {name!r}")
    return (pool_frames({name: log for name, (log, _) in runs.items()}),
            pool_frames({name: schedules for name, (_, schedules) in runs.items()}))


def measure_values(frame: pd.DataFrame, measure: str) -> tuple[pd.DataFrame, str]:
    """(frame with the measure's value column, its name): raw `logprob`, `logprob_adj`, or the
    contrast column (see the module docstring)."""
    if measure == "raw":
        return frame, "logprob"
    if measure == "adjusted":
        return metrics.control_adjusted(frame, "logprob"), "logprob_adj"
    if measure == "contrast":
        frame = metrics.add_contrast(frame)
        column = metrics.contrast_column(frame)
        if column is None:
            raise FactacqError("run log: no foil log-probs (probe.foils: none), so no contrast")
        return frame, column
    raise FactacqError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def _deltas(valued: pd.DataFrame, column: str, sched: pd.DataFrame, kind: str) -> pd.DataFrame:
    delta = metrics.delta_logprob(valued, column)
    delta = delta[(delta["kind"] == kind) & (delta["scenario"] != "control")]
    if delta.empty:
        raise FactacqError(f"run log: no {kind!r} probes of injected items")
    logged, scheduled = set(delta["item_id"]), set(sched["item_id"])
    for missing, where in ((logged - scheduled, "schedules: no row for run-log item"),
                           (scheduled - logged, f"run log: no {kind} probes of scheduled item")):
        if missing:
            raise FactacqError(f"{where} {sorted(missing)[0]!r} (pooled logs need pooled "
                               f"schedules: pool_replicates)")
    value = f"delta_{column}"
    per = delta.groupby(["item_id", "step"]).agg(
        delta=(value, "mean"), n_probes=(value, "count"), t_pre=("t_pre", "first")).reset_index()
    keep = [c for c in ("item_id", "scenario", "cohort", "count", "interval", "first_step",
                        "last_step", "replicate") if c in sched.columns]
    per = per.merge(sched[keep], on="item_id")
    wrong = per[per["t_pre"] != per["first_step"]]
    if len(wrong):
        row = wrong.iloc[0]
        raise FactacqError(f"schedules: item {row['item_id']!r} first_step {row['first_step']} "
                           f"but its first injection in the run log is at step {row['t_pre']}")
    per = per[(per["step"] >= per["first_step"]) & per["delta"].notna()].rename(
        columns={"step": "t"})
    per["since_first"] = per["t"] - per["first_step"]
    per["since_last"] = per["t"] - per["last_step"]
    return per.drop(columns=["t_pre", "first_step", "last_step"]).reset_index(drop=True)


def cohort_deltas(frame: pd.DataFrame, schedules: pd.DataFrame, kind: str = "memorization",
                  measure: str = "adjusted") -> pd.DataFrame:
    """Per injected item and probed step from its first encounter on: `item_id, scenario, cohort,
    count, interval, t` (run step), `since_first`, `since_last` (steps since its first / last
    encounter; negative before the last), `delta` (Δ of the measure, its `kind` probes at that
    step averaged), `n_probes` (and `replicate` when pooled). Steps without a Δ are left out."""
    valued, column = measure_values(frame, measure)
    return _deltas(valued, column, check_schedules(schedules), kind).assign(measure=measure)


def cohort_offsets(schedules: pd.DataFrame, by: str = "cohort") -> dict:
    """{label: encounter offsets (steps − first_step)} per `by` label; its items must share them."""
    out = {}
    for label, group in schedules.groupby(by):
        offsets = sorted({tuple(np.subtract(s, s[0]).tolist()) for s in group["steps"]})
        if len(offsets) > 1:
            raise FactacqError(f"schedules: the items of {by} {label!r} do not share their "
                               f"encounter offsets: {list(offsets[0])} and {list(offsets[1])} "
                               f"(cohorts of different runs need different labels)")
        out[label] = np.asarray(offsets[0], float)
    return out


def cohort_trajectories(deltas: pd.DataFrame, schedules: pd.DataFrame, cohorts=None,
                        scenario: str | None = None, min_fraction: float = 0.5
                        ) -> list[sp.Trajectory]:
    """superposition.Trajectory per cohort from :func:`cohort_deltas` rows, aligned on steps since
    each item's first encounter (items of a cohort are staggered), encounters = the cohort's
    offsets. Steps probed for fewer than `min_fraction` of a cohort's items (the shared late grid
    falls at a different offset for each staggered item) are left out: a mean over a few items
    would be a different population at each step. The groups of a run label their cohorts alike
    (a duplicate and a paraphrase "8x25"): a cohort must be in one `scenario`."""
    rows = deltas if scenario is None else deltas[deltas["scenario"] == scenario]
    rows = rows if cohorts is None else rows[rows["cohort"].isin(list(cohorts))]
    unknown = sorted(set(cohorts or ()) - set(rows["cohort"]))
    if unknown:
        raise FactacqError(f"cohorts: no Δ rows of cohort {unknown[0]!r}; the data has "
                           f"{sorted(set(deltas['cohort']))}")
    spans = rows.groupby("cohort")["scenario"].unique()
    for label, scenarios in spans.items():
        if len(scenarios) > 1:
            raise FactacqError(f"cohorts: cohort {label!r} is in scenarios {sorted(scenarios)}; "
                               f"pass scenario=")
    sched = check_schedules(schedules)
    offsets = cohort_offsets(sched[sched["item_id"].isin(set(rows["item_id"]))])
    n_items = rows.groupby("cohort")["item_id"].transform("nunique")
    probed = rows.groupby(["cohort", "since_first"])["item_id"].transform("nunique")
    rows = rows[probed >= min_fraction * n_items]
    per_item = rows[["item_id", "cohort", "since_first", "delta"]].rename(
        columns={"since_first": "step"})
    return sp.trajectories_from_items(per_item, offsets, value="delta", by="cohort")


# --------------------------------------------------------------------------- §1 interval


def paper_reading_threshold(x_intercept, horizon: float, offset=0.0):
    """The paper's reading of a log-linear decay fit as a learnability threshold: an encounter's
    gain is gone τ* = x_intercept + offset steps after the encounter (`offset` = t_LAM − t_i, as
    the fit counts t from t_LAM), so net acquisition read h steps after the last encounter, whose
    latest earlier gain is Δ + h old, reaches 0 at Δ* = τ* − h (the log kernel's 10^(1/β) − h)."""
    return np.asarray(x_intercept, float) + offset - horizon


def _agreement(crossing, reading, net: pd.DataFrame, ci: float = 0.95) -> str:
    """One line on how the measured threshold and the paper's reading agree. Both (value, lo, hi)
    defined: whether their CIs overlap, and their ratio. No measured crossing but a reading: the
    measured net acquisition at the intervals past the reading's CI (still above 0 there: the
    reading comes too early) or before it (already below 0: too late), else consistent within the
    measured intervals."""
    text = lambda e: f"{e[0]:.4g} [{e[1]:.4g}, {e[2]:.4g}]"  # noqa: E731
    head = f"crossing {text(crossing)}, paper reading {text(reading)}"
    if np.isfinite(crossing[0]) and np.isfinite(reading[0]):
        overlap = max(crossing[1], reading[1]) <= min(crossing[2], reading[2])
        return (f"{head}: CIs {'overlap' if overlap else 'do not overlap'}, ratio "
                f"{crossing[0] / reading[0]:.2f}")
    if not np.isfinite(reading[0]):
        return f"{head}: no paper reading to compare (its decay fit has no x-intercept)"
    rows = net.dropna(subset=["net"]).sort_values("interval")
    later = rows[(rows["interval"] > reading[2]) & (rows["lo"] > 0)]
    earlier = rows[(rows["interval"] < reading[1]) & (rows["hi"] < 0)]
    if len(later):
        r = later.iloc[-1]
        return (f"{head}: net acquisition is still above 0 at interval {r['interval']:g} "
                f"({r['net']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}]), past the reading's CI: the "
                f"reading puts the threshold too early")
    if len(earlier):
        r = earlier.iloc[0]
        return (f"{head}: net acquisition is already below 0 at interval {r['interval']:g} "
                f"({r['net']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}]), before the reading's CI: the "
                f"reading puts the threshold too late")
    if crossing[1] > reading[2] or crossing[2] < reading[1]:  # only the extrapolated draws
        side = "past" if crossing[1] > reading[2] else "before"
        return (f"{head}: no crossing within the measured intervals; the line through the net "
                f"acquisition crosses 0 {side} the reading's CI in {ci:.0%} of the draws (an "
                f"extrapolation), while the measured intervals do not contradict the reading")
    return f"{head}: no measured crossing; the measured intervals do not contradict the reading"


def interval_experiment(frame, schedules, horizon: int, kind: str = "memorization",
                        measure: str = "adjusted", scenario: str | None = None,
                        reference: str | None = None, count: int | None = None,
                        window: int = 50, decay_from: str | None = None,
                        n_bins: int = 20, iqr_factor: float | None = None, n_boot: int = 1000,
                        ci: float = 0.95, seed: int = 0) -> dict:
    """§1 learnability threshold: net acquisition Δ(t_last + h) − Δ(t_first + h) per interval of
    the spaced cohorts of one `count` and `scenario` (None: the one group that has spaced cohorts;
    "explicit" items are left out) (superposition.net_acquisition, CIs over items and seeds) and the
    interval where it crosses 0 (superposition.net_acquisition_threshold), beside the paper's
    reading of the same run's decay fit (:func:`paper_reading_threshold`).

    Reference rule: when h ≤ every interval, net is paired within items (the item's own
    Δ(t_first + h)); when h exceeds an interval, t_first + h already follows the 2nd encounter, so
    every interval uses the single-encounter items' Δ(t + h) instead (`reference`: a count-1 cohort;
    None = all count-1 items of the run, the once group's included). h must be an offset the
    probes hit (a window point).
    The decay fit (log-linear on mean retainability after t_LAM, `window` = t_w) uses the
    single-encounter items (`decay_from` "single", the default when the run has them: their R is
    one encounter's gain, which the x-intercept argument is about) or the interval cohorts' last
    encounters ("cohorts", the paper's R). h = 0 gives fits.accumulation's statistic per interval.

    Returns `net` (per interval: net, lo, hi, n_items, missing, note), `threshold` (the crossing
    dict), `paper` (x_intercept, offset, prediction with CI, a, the DecayFit), `summary` (one row
    per estimate), `agreement` (one line), `last_positive_interval` (the largest interval whose
    net CI lies above 0: fits.learnability_threshold's rule), `reference`, `measure`, `horizon`."""
    sched = check_schedules(schedules)
    valued, column = measure_values(frame, measure)
    deltas = _deltas(valued, column, sched, kind)
    labels, count, use_reference = _interval_labels(sched, horizon, count, reference, scenario)
    labelled = sched[sched["item_id"].isin(labels.index)]
    labelled = labelled.assign(label=labelled["item_id"].map(labels))
    per_item = deltas[deltas["item_id"].isin(labels.index)]
    per_item = pd.DataFrame({"item_id": per_item["item_id"], "step": per_item["since_first"],
                             "interval": per_item["item_id"].map(labels),
                             "delta": per_item["delta"]})
    net = sp.net_acquisition(per_item,
                             cohort_offsets(labelled, by="label"), horizon,
                             REFERENCE if use_reference else None, "delta", n_boot, ci, seed)
    if (net["n_items"] == 0).all():
        seen = sorted(set(deltas.loc[deltas["since_last"] >= 0, "since_last"]))[:12]
        raise FactacqError(f"interval_experiment: no item was probed {horizon} steps after its "
                           f"encounters; probed offsets after the last encounter: {seen}")
    threshold = sp.net_acquisition_threshold(net, ci)

    decay_from = decay_from or ("single" if (sched["count"] == 1).any() else "cohorts")
    if decay_from not in ("single", "cohorts"):
        raise FactacqError(f"interval_experiment: decay_from must be single or cohorts, got "
                           f"{decay_from!r}")
    decay_items = sched.loc[(sched["count"] == 1) if decay_from == "single" else
                            sched["item_id"].isin(labels.index[labels != REFERENCE]), "item_id"]
    paper = _paper_reading(valued, column, sched, set(decay_items), horizon, window, kind,
                           n_bins, iqr_factor, n_boot, ci, seed)
    paper["decay_from"] = decay_from
    crossing = (threshold["threshold"], threshold["lo"], threshold["hi"])
    reading = (paper["prediction"], paper["lo"], paper["hi"])
    summary = pd.DataFrame([
        {"estimate": "net-acquisition crossing", "interval": crossing[0], "lo": crossing[1],
         "hi": crossing[2], "note": threshold["reason"]},
        {"estimate": "paper reading (x-intercept − h)", "interval": reading[0], "lo": reading[1],
         "hi": reading[2], "note": f"decay of the {decay_from} items, x-intercept "
                                   f"{paper['x_intercept']:.4g} + offset {paper['offset']:.3g}"}])
    positive = net.loc[net["lo"] > 0, "interval"]
    return {"net": net.drop(columns="samples"), "threshold": threshold, "paper": paper,
            "summary": summary.assign(measure=measure, horizon=horizon),
            "agreement": _agreement(crossing, reading, net, ci),
            "last_positive_interval": float(positive.max()) if len(positive) else np.nan,
            "reference": (reference or "single-encounter items") if use_reference else "paired",
            "count": count, "measure": measure,
            "scenario": labelled.loc[labelled["label"] != REFERENCE, "scenario"].iloc[0],
            "horizon": horizon}


def _interval_labels(sched, horizon, count, reference, scenario) -> tuple[pd.Series, int, bool]:
    """{item_id: interval} of the spaced cohorts of one count, plus REFERENCE for the
    single-encounter items when the reference rule (interval_experiment) needs them."""
    spaced = sched[(sched["count"] >= 2) & sched["interval"].notna()
                   & (sched["cohort"] != "explicit")]
    if scenario is not None:
        spaced = spaced[spaced["scenario"] == scenario]
    elif spaced["scenario"].nunique() > 1:
        raise FactacqError(f"interval_experiment: spaced cohorts in scenarios "
                           f"{sorted(set(spaced['scenario']))}; pass scenario=")
    counts = sorted(set(spaced["count"])) if count is None else [count]
    if len(counts) != 1:
        raise FactacqError(f"interval_experiment: cohorts of counts {counts}; pass count=")
    spaced = spaced[spaced["count"] == counts[0]]
    if spaced["interval"].nunique() < 2:
        raise FactacqError(f"interval_experiment: {spaced['interval'].nunique()} interval(s) "
                           f"among cohorts of count {counts[0]}, need 2")
    single = sched[sched["count"] == 1]
    if reference is not None:
        single = single[single["cohort"] == reference]
        if single.empty:
            raise FactacqError(f"interval_experiment: reference {reference!r} is not a cohort of "
                               f"single-encounter items")
    use_reference = reference is not None or horizon > spaced["interval"].min()
    if use_reference and single.empty:
        raise FactacqError(f"interval_experiment: horizon {horizon} exceeds the interval "
                           f"{spaced['interval'].min():g} and the run has no single-encounter "
                           f"items to read the reference from")
    labels = spaced.set_index("item_id")["interval"]
    if use_reference:
        labels = pd.concat([labels, pd.Series(REFERENCE, index=single["item_id"])])
    return labels, counts[0], use_reference


def _paper_reading(valued, column, sched, items, horizon, window, kind, n_bins, iqr_factor,
                   n_boot, ci, seed) -> dict:
    """The paper's reading (:func:`paper_reading_threshold`) of the log-linear decay of the given
    items' retainability after t_LAM (fits.retention_samples, the analysis' fit and bootstrap),
    with the offset t_LAM − t_i of their last encounters."""
    rows = valued[valued["item_id"].isin(items) | valued["item_id"].isna()]
    points, _ = metrics.retainability(rows, window, column)
    points = points[points["kind"] == kind]
    if len(points) < 3:
        raise FactacqError(f"interval_experiment: {len(points)} retainability points of the decay "
                           f"items, need 3 to fit the decay")
    samples = fits.retention_samples(points, n_boot, seed, n_bins, iqr_factor)
    last = points["item_id"].map(sched.set_index("item_id")["last_step"])
    offset = float((points["t_lam"] - last).groupby(points["item_id"]).first().mean())
    mean = metrics.mean_retainability(points, ("kind",), n_bins, iqr_factor)
    draws = paper_reading_threshold(samples["x_intercept_samples"], horizon, offset)
    prediction = float(paper_reading_threshold(samples["x_intercept"], horizon, offset))
    # no x-intercept (a <= 0: R does not fall) means no reading; a CI of the few draws that happen
    # to fall would describe something the data does not show
    lo, hi = sp.percentile_interval(draws, ci) if np.isfinite(prediction) else (np.nan, np.nan)
    return {"a": samples["a"], "x_intercept": samples["x_intercept"], "offset": offset,
            "prediction": prediction, "lo": lo, "hi": hi,
            "defined": float(np.isfinite(draws).mean()) if draws.size else np.nan,
            "n_items": samples["n_items"],
            "fit": fits.fit_loglinear(mean["t"], mean["retainability"])}


# --------------------------------------------------------------------------- §2 frequency


def _control_quantiles(probes: pd.DataFrame, column: str, wanted: pd.DataFrame, q: float):
    """The q-quantile of the control items' `column` (per item: its probes averaged) at each
    (replicate, step) of `wanted`, linear in step between a control's nearest probed steps."""
    control = probes[probes["scenario"] == "control"].dropna(subset=[column])
    if control.empty:
        raise FactacqError(f"run log: no control probes with a {column!r} value, so no control "
                           f"distribution")
    out = pd.Series(np.nan, index=wanted.index)
    for replicate, need in wanted.groupby("replicate"):
        mine = control[control["replicate"] == replicate]
        table = mine.groupby(["item_id", "step"])[column].mean().unstack("step")
        table = table.reindex(columns=sorted(set(table.columns) | set(need["step"])))
        table = table.T.interpolate(method="index", limit_area="inside").T
        values = table[need["step"].unique()]
        quantile = values.apply(lambda col: np.nanquantile(col, q) if col.notna().any()
                                else np.nan)
        out[need.index] = need["step"].map(quantile).to_numpy()
    return out


def frequency_experiment(frame, schedules, kind: str = "memorization", measure: str = "adjusted",
                         scenario: str | None = None, at="final", quantile: float = 0.95,
                         n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """§2 long tail: per scenario and count (encounters; the cohorts of one count pooled; only
    `scenario`'s items when given) the final Δ of the measure with a CI over items (and seeds),
    and the fraction of items *acquired*: the item's contrast (target minus foils, its probes
    averaged; not Δ, whatever `measure`) above the
    `quantile` of the control items' contrast at the same step (per replicate), with a CI. By
    construction about 1 − quantile of the controls pass (`chance`); the CI holds the control
    quantile fixed (its own noise is not in it).

    `at`: "final" = the run's last probed step (per replicate; every item is read at the same
    step, whatever its schedule), or an int h = h steps after each item's last encounter.
    Returns `table` (scenario, count, cohorts, n_items, missing, final_delta, lo, hi, acquired,
    acquired_lo, acquired_hi), `items` (per item: step, final_delta, contrast, control_quantile,
    acquired)."""
    sched = check_schedules(schedules)
    if not (at == "final" or (isinstance(at, (int, np.integer)) and at >= 0)):
        raise FactacqError(f"frequency_experiment: at must be 'final' or an int >= 0, got {at!r}")
    valued, column = measure_values(frame, measure)
    deltas = _deltas(valued, column, sched, kind).set_index(["item_id", "t"])["delta"]
    probes, contrast = measure_values(frame, "contrast")
    probes = metrics.probe_rows(probes)
    probes = probes[probes["kind"] == kind]
    if "replicate" not in probes.columns:
        probes = probes.assign(replicate="")
    items = sched[["item_id", "scenario", "cohort", "count", "last_step"]].copy()
    if scenario is not None:
        items = items[items["scenario"] == scenario]
        if items.empty:
            raise FactacqError(f"frequency_experiment: no items of scenario {scenario!r}")
    items["replicate"] = items["item_id"].map(probes.groupby("item_id")["replicate"].first())
    if at == "final":
        items["step"] = items["replicate"].map(probes.groupby("replicate")["step"].max())
    else:
        items["step"] = items["last_step"] + int(at)
    items["step"] = items["step"].astype("int64")
    key = pd.MultiIndex.from_frame(items[["item_id", "step"]])
    items["final_delta"] = deltas.reindex(key).to_numpy()
    items["contrast"] = probes.groupby(["item_id", "step"])[contrast].mean().reindex(key).to_numpy()
    items["control_quantile"] = _control_quantiles(probes, contrast, items, quantile)
    known = items["contrast"].notna() & items["control_quantile"].notna()
    items["acquired"] = np.where(known, items["contrast"] > items["control_quantile"], np.nan)
    rows = []
    for (scenario_name, n), group in items.groupby(["scenario", "count"]):
        final = metrics.bootstrap_mean(group, "final_delta", n_boot, ci, seed)
        acquired = metrics.bootstrap_mean(group, "acquired", n_boot, ci, seed)
        rows.append({"scenario": scenario_name, "count": n,
                     "cohorts": ", ".join(sorted(set(group["cohort"]))),
                     "n_items": len(group), "missing": len(group) - final["n"],
                     "final_delta": final["mean"], "lo": final["lo"], "hi": final["hi"],
                     "acquired": acquired["mean"], "acquired_lo": acquired["lo"],
                     "acquired_hi": acquired["hi"]})
    if (items["replicate"] == "").all():  # one run: no replicate column
        items = items.drop(columns="replicate")
    return {"table": pd.DataFrame(rows).assign(measure=measure), "items": items,
            "at": at, "quantile": quantile, "chance": 1 - quantile, "measure": measure,
            "contrast": contrast}


# --------------------------------------------------------------------------- §3 dedup


def _condition(source, label: str) -> pd.DataFrame:
    """A condition's run log: a frame (one run, or already pooled) or {replicate: frame}."""
    if isinstance(source, dict):
        return pool_frames(source)
    if isinstance(source, pd.DataFrame):
        return source
    raise FactacqError(f"dedup_comparison: condition {label!r} must be a run-log frame or "
                       f"{{replicate: frame}}, got {type(source).__name__}")


def dedup_comparison(without, with_duplicates, window: int = 50, kind: str = "memorization",
                     measure: str = "adjusted", labels=("deduplicated", "duplicated"),
                     n_bins: int = 20, iqr_factor: float | None = None, n_boot: int = 1000,
                     ci: float = 0.95, seed: int = 0) -> dict:
    """§3 deduplication: for the background without and with duplicated rows (each a run log,
    or {replicate: run log} pooled over seeds), per scenario the mean effectivity E of the `kind`
    probes (metrics.effectivity, IQR-filtered as factacq.analyze does) and the decay constant a
    of the log-linear fit to mean retainability (fits.bootstrap), and the differences duplicated
    − deduplicated with CIs (fits.compare_conditions; two-level on pooled seeds). Returns
    `conditions`, `differences` (quantity, scenario, difference, lo, hi, excludes_zero),
    `measure`."""
    tables, per = {}, []
    for label, source in zip(labels, (without, with_duplicates)):
        valued, column = measure_values(_condition(source, label), measure)
        eff = metrics.effectivity(valued, window, column)
        eff = eff[eff["kind"] == kind]
        if iqr_factor:
            eff, _ = metrics.iqr_filter(eff, "effectivity", iqr_factor)
        points, _ = metrics.retainability(valued, window, column)
        points = points[points["kind"] == kind]
        if eff.empty or points.empty:
            raise FactacqError(f"dedup_comparison: condition {label!r} has no {kind} "
                               f"effectivity or retainability values")
        tables[label] = (eff, points)
        stats = fits.bootstrap(points, eff, n_boot=n_boot, ci=ci, seed=seed, n_bins=n_bins,
                               iqr_factor=iqr_factor)
        per.append(stats.assign(condition=label))
    boot = dict(by=("scenario", "kind"), reference=labels[0], n_boot=n_boot, ci=ci, seed=seed)
    diffs = pd.concat([
        fits.compare_conditions({k: v[0] for k, v in tables.items()}, "effectivity", **boot),
        fits.compare_conditions({k: v[1] for k, v in tables.items()}, "a", n_bins=n_bins,
                                iqr_factor=iqr_factor, **boot)], ignore_index=True)
    diffs = diffs.rename(columns={"difference_lo": "lo", "difference_hi": "hi"})
    diffs["excludes_zero"] = (diffs["lo"] > 0) | (diffs["hi"] < 0)
    columns = ["condition", "scenario", "kind", "n_items", "mean_effectivity",
               "mean_effectivity_lo", "mean_effectivity_hi", "a", "a_lo", "a_hi"]
    return {"conditions": pd.concat(per, ignore_index=True)[columns].assign(measure=measure),
            "differences": diffs[["quantity", "scenario", "kind", "condition", "reference",
                                  "value", "reference_value", "difference", "lo", "hi",
                                  "excludes_zero"]].assign(measure=measure),
            "measure": measure}


# --------------------------------------------------------------------------- §4 prediction


def predictive_model(runs, fit_cohorts, heldout_cohorts, kind: str = "memorization",
                     measure: str = "adjusted", scenario: str | None = None,
                     kernels=tuple(sp.KERNELS), gains=sp.GAINS,
                     drift="auto", horizon: int | None = None,
                     count: int | None = None, tolerance: float = 0.2, min_fraction: float = 0.5,
                     n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """§4: fit the superposition kernels × gains (superposition.compare_kernels) to the mean Δ
    trajectories of `fit_cohorts`, keep the lowest AIC, and predict the `heldout_cohorts` without
    refitting (superposition.prediction_error: RMSE, final Δ measured vs predicted, relative error
    against `tolerance`, the measured final's CI and whether the prediction is inside it). `drift`
    fixes the model's d (None = fitted); "auto" = 0 for the adjusted and contrast measures (the
    controls' or the foils' drift is already taken out, and a free d would soak up cohort-to-cohort
    gain differences and, at long intervals, outweigh the kernel), fitted for raw. `runs`:
    one (run log, schedules) or a list of them (cohorts of an interval run and a long-tail run;
    cohort labels and item ids must differ between runs), each possibly pooled; `scenario` picks
    one group's cohorts where groups share labels.
    With `horizon`, the model's own threshold (superposition.model_threshold) over the intervals
    of the cohorts of `count` encounters (default: the most common count of spaced cohorts).
    Returns `kernels` (the table), `fit` (best SuperpositionFit), `predictions` (one row per
    cohort with `role` fit / held-out), `curves` (cohort, role, since_first, measured,
    predicted), `threshold`, `verdict` (one line)."""
    runs = [runs] if isinstance(runs, tuple) else list(runs)
    parts, scheds = [], []
    for i, run in enumerate(runs):
        if not (isinstance(run, tuple) and len(run) == 2):
            raise FactacqError(f"predictive_model: runs[{i}] must be a (run log, schedules) pair")
        sched = check_schedules(run[1], f"schedules of runs[{i}]")
        valued, column = measure_values(run[0], measure)
        parts.append(_deltas(valued, column, sched, kind))
        scheds.append(sched)
    sched = pd.concat(scheds, ignore_index=True)
    twice = sched["item_id"][sched["item_id"].duplicated()]
    if len(twice):
        raise FactacqError(f"predictive_model: item_id {twice.iloc[0]!r} is in two runs; pool "
                           f"or rename them (pool_replicates)")
    deltas = pd.concat(parts, ignore_index=True)
    overlap = sorted(set(fit_cohorts) & set(heldout_cohorts))
    if overlap or not fit_cohorts or not heldout_cohorts:
        raise FactacqError(f"predictive_model: fit_cohorts and heldout_cohorts must be non-empty "
                           f"and disjoint, got {list(fit_cohorts)} and {list(heldout_cohorts)}")
    fitted = cohort_trajectories(deltas, sched, fit_cohorts, scenario, min_fraction)
    held = cohort_trajectories(deltas, sched, heldout_cohorts, scenario, min_fraction)
    if isinstance(drift, str):
        if drift != "auto":
            raise FactacqError(f"predictive_model: drift must be a number, None or 'auto', got "
                               f"{drift!r}")
        drift = None if measure == "raw" else 0.0
    table = sp.compare_kernels(fitted, kernels, gains, drift)
    if table["aic"].isna().all():
        raise FactacqError(f"predictive_model: no kernel could be fitted: {table['note'].iloc[0]}")
    best = table[table["best"]].iloc[0]
    fit = sp.fit_superposition(fitted, best["kernel"], best["gain"], drift)
    predictions = pd.concat([
        sp.prediction_error(fit, trs, tolerance, n_boot, ci, seed).assign(role=role)
        for role, trs in (("fit", fitted), ("held-out", held))], ignore_index=True)
    curves = pd.concat([pd.DataFrame({"cohort": tr.name, "role": role, "since_first": tr.steps,
                                      "measured": tr.mean,
                                      "predicted": fit.predict(tr.steps, tr.encounters)})
                        for role, trs in (("fit", fitted), ("held-out", held)) for tr in trs],
                       ignore_index=True)
    threshold = {"threshold": np.nan, "reason": "no horizon given"}
    if horizon is not None:
        used = sched[sched["cohort"].isin([*fit_cohorts, *heldout_cohorts])
                     & (sched["count"] >= 2) & sched["interval"].notna()
                     & ((sched["scenario"] == scenario) if scenario else True)]
        count = count or (int(used["count"].mode().iloc[0]) if len(used) else None)
        intervals = np.unique(used.loc[used["count"] == count, "interval"])
        if intervals.size == 0:
            raise FactacqError(f"predictive_model: no spaced cohorts of count {count} for the "
                               f"model threshold")
        threshold = {**sp.model_threshold(fit, count, horizon, intervals), "count": count,
                     "horizon": horizon}
    out = predictions[predictions["role"] == "held-out"]
    worst = out.loc[out["rel_error"].abs().idxmax()]
    within, inside = int(out["within_tolerance"].sum()), int(out["predicted_in_ci"].eq(True).sum())
    verdict = (f"{best['kernel']}/{best['gain']} (lowest AIC of {int(table['aic'].notna().sum())})"
               f": held-out final Δ within {tolerance:.0%} for {within}/{len(out)}, inside the "
               f"measured CI for {inside}/{len(out)}; goal "
               f"{'met' if within == len(out) else 'missed'} (worst {worst['schedule']}: "
               f"{worst['rel_error']:+.0%})")
    return {"kernels": table, "best": best.to_dict(), "fit": fit, "predictions": predictions,
            "curves": curves, "threshold": threshold, "verdict": verdict, "measure": measure,
            "tolerance": tolerance}


__all__ = ["MEASURES", "check_schedules", "pool_replicates", "measure_values", "cohort_deltas",
           "cohort_offsets", "cohort_trajectories", "paper_reading_threshold",
           "interval_experiment", "frequency_experiment", "dedup_comparison", "predictive_model"]
