"""The beyond-the-paper sweep's run folders, read into factacq.beyond's statistics (notebook 06).

`make beyond` (params/sweep_beyond.yaml) runs an interval condition, a long-tail condition and the
default with and without duplicated background rows, each over its seeds. Here each condition's
run folders become one pooled run log and item-schedule table (:func:`load_condition`), each
experiment runs on every measure with the runs' own analysis options (:func:`interval_results`,
:func:`frequency_results`, :func:`dedup_results`, :func:`predictive_results`: {measure: result}),
and :func:`summary` puts every result into one table (tables/beyond.csv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from factacq import beyond
from factacq.analyze import run_params
from factacq.errors import FactacqError
from factacq.plan import item_schedules
from factacq.replicates import run_labels
from factacq.runlog import load_run, load_sidecar


def load_condition(run_dirs, name: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pooled run log, pooled schedules) of one condition's run folders (its seeds): each run's
    log (runlog.load_run) and item schedules (plan.item_schedules of its run.json plan), pooled by
    beyond.pool_replicates (replicates named by their folders). With `name`, cohort labels become
    f"{name}:{label}", so that the cohorts of different conditions stay apart when they are
    analysed together (beyond.predictive_model)."""
    runs = {label: (load_run(d), item_schedules(load_sidecar(d)["plan"]))
            for label, d in run_labels(run_dirs)}
    frame, schedules = beyond.pool_replicates(runs)
    if name is not None:
        named = frame["cohort"].notna()
        frame.loc[named, "cohort"] = name + ":" + frame.loc[named, "cohort"].astype(str)
        schedules = schedules.assign(cohort=name + ":" + schedules["cohort"].astype(str))
    return frame, schedules


def analysis_options(run_dir) -> dict:
    """The analysis options of a run (its params' analysis section, as run.json records them):
    window (t_w), n_bins, iqr_factor, n_boot, ci, seed."""
    params = run_params(Path(run_dir), load_sidecar(run_dir))
    opts = params.analysis
    return {"window": params.analysis_window, "n_bins": opts.retention_bins,
            "iqr_factor": opts.iqr_factor, "n_boot": opts.bootstrap, "ci": opts.ci,
            "seed": opts.seed}


def _options(run_dirs, *names) -> dict:
    if not run_dirs:
        raise FactacqError("beyond: a condition without run folders")
    opts = analysis_options(list(run_dirs)[0])
    return {k: opts[k] for k in names}


def describe_cohorts(schedules: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and cohort: items, encounters, mean interval, and the first and last
    encounter steps over its items (a pooled table: over every replicate)."""
    sched = beyond.check_schedules(schedules)
    return (sched.groupby(["scenario", "cohort"], sort=False)
            .agg(items=("item_id", "size"), count=("count", "first"),
                 interval=("interval", "first"), first_step=("first_step", "min"),
                 last_step=("last_step", "max"))
            .reset_index())


def interval_results(run_dirs, horizon: int, measures, scenarios=("duplicate",),
                     kind: str = "memorization") -> dict:
    """§1 on one condition's runs, for each scenario group whose cohorts are spaced (the same
    passage, or its paraphrases): {scenario: {measure: beyond.interval_experiment(...)}}."""
    frame, schedules = load_condition(run_dirs)
    opts = _options(run_dirs, "window", "n_bins", "iqr_factor", "n_boot", "ci", "seed")
    return {s: {m: beyond.interval_experiment(frame, schedules, horizon, kind, m, s, **opts)
                for m in measures} for s in scenarios}


def frequency_results(run_dirs, measures, scenario: str | None = None,
                      kind: str = "memorization") -> dict:
    """§2 on one condition's runs: {measure: beyond.frequency_experiment(...)} (read at the
    run's last probed step)."""
    frame, schedules = load_condition(run_dirs)
    opts = _options(run_dirs, "n_boot", "ci", "seed")
    return {m: beyond.frequency_experiment(frame, schedules, kind, m, scenario, **opts)
            for m in measures}


def dedup_results(without_dirs, with_dirs, measures, labels=("dedup_off", "dedup_on"),
                  kind: str = "memorization") -> dict:
    """§3 on two conditions' runs (background without, with duplicated rows):
    {measure: beyond.dedup_comparison(...)}."""
    opts = _options(without_dirs, "window", "n_bins", "iqr_factor", "n_boot", "ci", "seed")
    without = {label: load_run(d) for label, d in run_labels(without_dirs)}
    with_duplicates = {label: load_run(d) for label, d in run_labels(with_dirs)}
    return {m: beyond.dedup_comparison(without, with_duplicates, kind=kind, measure=m,
                                       labels=tuple(labels), **opts) for m in measures}


def predictive_results(conditions: dict, fit_cohorts, heldout_cohorts, measures,
                       scenario: str | None = None, horizon: int | None = None,
                       kind: str = "memorization") -> dict:
    """§4: {measure: beyond.predictive_model(...)} on the cohorts named "<condition>:<label>" of
    `conditions` ({name: run folders}); only the conditions those names use are read."""
    wanted = {c.split(":", 1)[0] for c in [*fit_cohorts, *heldout_cohorts]}
    unknown = sorted(wanted - set(conditions))
    if unknown:
        raise FactacqError(f"predictive_results: cohorts of unknown condition(s) {unknown}; "
                           f"name cohorts '<condition>:<label>' of {sorted(conditions)}")
    runs = [load_condition(conditions[name], name) for name in sorted(wanted)]
    opts = _options(conditions[sorted(wanted)[0]], "n_boot", "ci", "seed")
    return {m: beyond.predictive_model(runs, fit_cohorts, heldout_cohorts, kind, m, scenario,
                                       horizon=horizon, **opts) for m in measures}


def _row(experiment, quantity, measure, value=np.nan, lo=np.nan, hi=np.nan, detail="") -> dict:
    return {"experiment": experiment, "quantity": quantity, "measure": measure,
            "value": float(value), "lo": float(lo), "hi": float(hi), "detail": detail}


def summary(interval=None, frequency=None, dedup=None, predictive=None) -> pd.DataFrame:
    """One tidy table of every result of notebook 06 (tables/beyond.csv, quoted by the README):
    columns experiment, quantity, measure, value, lo, hi, detail. Each argument maps a measure to
    the dict its function returned (beyond.interval_experiment, frequency_experiment,
    dedup_comparison, predictive_model; `interval` one level deeper, by scenario first:
    :func:`interval_results`); None leaves the experiment out."""
    rows = []
    for scenario, by_measure in (interval or {}).items():
        for measure, r in by_measure.items():
            t, p = r["threshold"], r["paper"]
            rows.append(_row("§1 interval", f"{scenario}: threshold, net-acquisition crossing "
                             f"(steps)", measure, t["threshold"], t["lo"], t["hi"],
                             t["reason"] or r["agreement"]))
            rows.append(_row("§1 interval", f"{scenario}: threshold, paper reading x-intercept − h "
                             f"(steps)", measure, p["prediction"], p["lo"], p["hi"],
                             f"decay of the {p['decay_from']} items: a = {p['a']:.3g}, "
                             f"x-intercept defined in {p['defined']:.0%} of the draws"))
            for net in r["net"].itertuples():
                rows.append(_row("§1 interval", f"{scenario}: net acquisition at interval "
                                 f"{net.interval:g}", measure, net.net, net.lo, net.hi,
                                 f"h = {r['horizon']}, {r['reference']}, {net.n_items} items"))
    for measure, r in (frequency or {}).items():
        for f in r["table"].itertuples():
            rows.append(_row("§2 long tail", f"final Δ, {f.scenario} x{f.count}", measure,
                             f.final_delta, f.lo, f.hi, f"{f.n_items} items, read at {r['at']}"))
            rows.append(_row("§2 long tail", f"fraction acquired, {f.scenario} x{f.count}",
                             measure, f.acquired, f.acquired_lo, f.acquired_hi,
                             f"contrast above the controls' {r['quantile']:.0%} quantile "
                             f"(chance {r['chance']:.2f})"))
    for measure, r in (dedup or {}).items():
        for d in r["differences"].itertuples():
            rows.append(_row("§3 dedup", f"{d.quantity}, {d.scenario}: {d.condition} − "
                             f"{d.reference}", measure, d.difference, d.lo, d.hi,
                             f"{d.value:.4g} vs {d.reference_value:.4g}"))
    for measure, r in (predictive or {}).items():
        held = r["predictions"][r["predictions"]["role"] == "held-out"]
        for pred in held.itertuples():
            rows.append(_row("§4 model", f"held-out final Δ measured, {pred.schedule}", measure,
                             pred.final_measured, pred.final_lo, pred.final_hi,
                             f"predicted {pred.final_predicted:.4g}, relative error "
                             f"{pred.rel_error:+.0%}, RMSE {pred.rmse:.3g}"))
        rows.append(_row("§4 model", f"held-out cohorts within {r['tolerance']:.0%} (of "
                         f"{len(held)})", measure, held["within_tolerance"].sum(),
                         detail=r["verdict"]))
        t = r["threshold"]
        rows.append(_row("§4 model", "threshold: the fitted model's crossing (steps)", measure,
                         t["threshold"], detail=t.get("reason") or "within the measured intervals"))
    return pd.DataFrame(rows, columns=["experiment", "quantity", "measure", "value", "lo", "hi",
                                       "detail"])


