"""`factacq analyze RUN_DIR`: the metric and fit tables, the figures and a printed summary.

Every metric is computed on each *measure* the run supports, and every table says which:
`measure` is `logprob` (ℓ), `contrast` (ℓ − foils, full foil scoring) or `first_contrast` (first
target token − foils), `adjustment` is `raw` or `control-adjusted` (minus the control group's mean
at the same step and probe kind; only when the run has control items), and `iqr_factor` is the IQR
outlier factor applied (params analysis.iqr_factor).

Writes into RUN_DIR (each file through a temp file + rename):
  tables/effectivity.csv           per probe x encounter: t_i, t_LAM, E, missing steps
  tables/effectivity_summary.csv   per scenario x kind: mean E (IQR-filtered) with bootstrap CI
  tables/retainability_points.csv  per probe and probed step after t_LAM(q,N): t, R
  tables/retainability_mean.csv    mean R per t cell (exact t or log bins; see metrics)
  tables/retainability_counts.csv  probes used / excluded (non-positive denominator, missing)
  tables/fits.csv                  log-linear decay: a, x-intercept (steps, tokens), bootstrap CIs
  tables/model_comparison.csv      log-linear vs power law vs exponential: AIC, BIC, R²
  tables/comparisons.csv           a and E of each scenario minus paraphrase, with CIs
  tables/summary.csv, summary.json the printed summary (summary.json: paths relative to RUN_DIR)
  figures/*.png, *.pdf             Fig. 2-5 analogues and the background loss

Reading them back (for the notebooks): :func:`load_tables` (every table of a run folder, by name),
:func:`gather_tables` (one table of several conditions), :func:`gather_pooled` (one per-probe
table of several conditions, each pooled over its seeds) and :func:`compare_decay` (the decay
constant across the conditions of a sweep, with the runs' own analysis options).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from factacq import figures, fits, metrics
from factacq.atomic import atomic_path
from factacq.errors import FactacqError
from factacq.files import read_run_table
from factacq.params import SCENARIOS, AnalysisParams, Params, parse_params
from factacq.replicates import pool_tables
from factacq.report import RunReport, run_report
from factacq.runlog import load_run, load_sidecar, write_json_atomic

RAW, ADJUSTED = "raw", "control-adjusted"


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def measures(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(value column, measure, adjustment) for every measure the run log supports."""
    bases = ["logprob"] + [c for c in [metrics.contrast_column(frame)] if c]
    out = [(c, c, RAW) for c in bases]
    if metrics.has_control(frame):
        out += [(f"{c}_adj", c, ADJUSTED) for c in bases]
    return out


def _label(table: pd.DataFrame, measure: str, adjustment: str, iqr_factor) -> pd.DataFrame:
    table = table.copy()
    table.insert(0, "measure", measure)
    table.insert(1, "adjustment", adjustment)
    table["iqr_factor"] = iqr_factor
    return table


def run_params(run_dir: Path, sidecar: dict) -> Params:
    """The params a run was made with, as its run.json (``sidecar``) records them."""
    if "params" not in sidecar:
        raise FactacqError(f"{run_dir / 'run.json'}: no 'params' entry")
    return parse_params(sidecar["params"], str(run_dir / "run.json"))


def analyze(run_dir: str | Path, params: Params | None = None) -> dict:
    """Compute every table and figure of a run folder (see the module docstring); return the
    summary (also written to tables/summary.csv and tables/summary.json)."""
    run_dir = Path(run_dir)
    frame = load_run(run_dir)
    sidecar = load_sidecar(run_dir)
    params = params or run_params(run_dir, sidecar)
    opts = params.analysis
    window = params.analysis_window
    tokens_per_step = sidecar.get("tokens_per_step")
    if tokens_per_step is not None and (isinstance(tokens_per_step, bool)
                                        or not isinstance(tokens_per_step, int) or tokens_per_step < 1):
        raise FactacqError(f"{run_dir / 'run.json'}: field 'tokens_per_step' must be a positive "
                           f"integer, got {tokens_per_step!r}")
    iqr = opts.iqr_factor

    frame = metrics.add_contrast(frame)
    control_missing = None
    if metrics.has_control(frame):
        for base in ["logprob"] + [c for c in [metrics.contrast_column(frame)] if c]:
            frame = metrics.control_adjusted(frame, base)
            if base == "logprob":  # injected-item probe records with no control value at that step
                injected = (frame["record"] == "probe") & (frame["scenario"] != "control")
                control_missing = int((injected & (frame["control_n"] == 0)).sum())
            frame = frame.drop(columns="control_n")
    tables: dict[str, list[pd.DataFrame]] = {}
    figure_inputs = {}
    for column, measure, adjustment in measures(frame):
        parts = _measure_tables(frame, column, window, opts, tokens_per_step)
        for name, table in parts.items():
            tables.setdefault(name, []).append(_label(table, measure, adjustment, iqr))
        figure_inputs[(measure, adjustment)] = (parts["effectivity_summary"],
                                                parts["retainability_mean"], parts["fits"])

    out_tables = {name: _concat(parts) for name, parts in tables.items()}
    result = _summary(run_dir, frame, out_tables, window, iqr, tokens_per_step, params)
    result["control_missing"] = control_missing
    written = [_write_csv(table, run_dir / "tables" / f"{name}.csv")
               for name, table in out_tables.items()]
    written.append(_write_csv(_summary_rows(result), run_dir / "tables" / "summary.csv"))
    result["figures"] = [str(p) for p in _figures(run_dir, frame, figure_inputs, tokens_per_step,
                                                  sidecar)]
    result["tables"] = [str(p) for p in written]
    write_json_atomic(run_dir / "tables" / "summary.json", _relative_paths(result, run_dir))  # NaN -> null
    return result


def _relative_paths(result: dict, run_dir: Path) -> dict:
    """The summary as summary.json records it: ``run_dir`` is "." and the figure and table paths
    are relative to the run folder (so a copied or moved folder stays right and records no
    machine's absolute paths); the returned summary keeps them under ``run_dir`` as given."""
    def rel(path) -> str:
        return Path(path).relative_to(run_dir).as_posix()

    return {**result, "run_dir": ".", "figures": [rel(p) for p in result["figures"]],
            "tables": [rel(p) for p in result["tables"]]}


def _measure_tables(frame, column, window, opts, tokens_per_step) -> dict[str, pd.DataFrame]:
    """Every table of one value column: effectivity (per probe x encounter and summarized),
    retainability (points, cell means, counts), the decay fits with bootstrap CIs, the model
    comparison and the scenario comparisons. Rows left out by the IQR filter are flagged
    `iqr_outlier` in the per-probe tables."""
    iqr, bins = opts.iqr_factor, opts.retention_bins
    boot = dict(n_boot=opts.bootstrap, ci=opts.ci, seed=opts.seed)
    eff = metrics.effectivity(frame, window, column)
    eff_kept, _ = metrics.iqr_filter(eff, "effectivity", iqr)
    eff["iqr_outlier"] = ~eff.index.isin(eff_kept.index)
    points, counts = metrics.retainability(frame, window, column)
    mean_points = metrics.mean_retainability(points, n_bins=bins, iqr_factor=iqr)
    points = _flag_point_outliers(points, bins, iqr)
    key = ["scenario", "kind"]
    ci = (fits.bootstrap(points, eff_kept, tokens_per_step=tokens_per_step, n_bins=bins,
                         iqr_factor=iqr, **boot) if len(points) else pd.DataFrame(columns=key))
    models = (fits.compare_models(mean_points, tokens_per_step=tokens_per_step)
              if len(mean_points) else pd.DataFrame())
    decay = models[models["model"] == "loglinear"] if len(models) else models
    if len(decay):
        extra = [c for c in ci.columns if c.endswith(("_lo", "_hi")) or c in (
            "n_items", "n_boot", "ci", "mean_effectivity", "x_intercept_defined")]
        decay = decay.drop(columns="iqr_factor").merge(ci[key + extra], on=key, how="left")
    summary = metrics.summarize_effectivity(eff, iqr_factor=iqr).drop(columns="iqr_factor")
    if "mean_effectivity_lo" in ci:
        summary = summary.merge(ci[key + ["mean_effectivity_lo", "mean_effectivity_hi"]].rename(
            columns={"mean_effectivity_lo": "lo", "mean_effectivity_hi": "hi"}), on=key, how="left")
    else:
        summary = summary.assign(lo=np.nan, hi=np.nan)
    return {
        "effectivity": eff.drop(columns="value"),
        "effectivity_summary": summary,
        "retainability_points": points.drop(columns="value"),
        "retainability_mean": mean_points.drop(columns="iqr_factor"),
        "retainability_counts": pd.DataFrame([counts]),
        "fits": decay,
        "model_comparison": models.drop(columns="iqr_factor") if len(models) else models,
        "comparisons": _scenario_comparisons(points, eff_kept, opts, iqr),
    }


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [t for t in parts if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _flag_point_outliers(points: pd.DataFrame, n_bins: int, iqr: float) -> pd.DataFrame:
    """Add `t_cell` (where a point is averaged) and `iqr_outlier` (left out of that mean)."""
    if points.empty:
        return points.assign(t_cell=pd.Series(dtype=float), iqr_outlier=pd.Series(dtype=bool))
    cells = metrics.assign_t_cells(points, n_bins=n_bins)
    kept, _ = metrics.iqr_filter(cells, "retainability", iqr, ["scenario", "kind", "t_cell"])
    return points.assign(t_cell=cells["t_cell"], iqr_outlier=~cells.index.isin(kept.index))


def _scenario_comparisons(points, eff, opts, iqr) -> pd.DataFrame:
    """a(scenario) − a(paraphrase) and E(scenario) − E(paraphrase) per kind, with CIs."""
    scenarios = [s for s in SCENARIOS if s in set(points["scenario"])]
    if "paraphrase" not in scenarios or len(scenarios) < 2:
        return pd.DataFrame()
    boot = dict(n_boot=opts.bootstrap, ci=opts.ci, seed=opts.seed)
    parts = [fits.compare_conditions({s: points[points["scenario"] == s] for s in scenarios},
                                     "a", n_bins=opts.retention_bins, iqr_factor=iqr, **boot),
             fits.compare_conditions({s: eff[eff["scenario"] == s] for s in scenarios},
                                     "effectivity", **boot)]
    return pd.concat(parts, ignore_index=True)


def _records(table: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
             for k, v in row.items()} for row in table.to_dict("records")]


def _summary(run_dir, frame, tables, window, iqr, tokens_per_step, params) -> dict:
    """The summary: the effectivity and decay tables in short, the retainability counts, and the
    run's report (factacq.report: specificity, contrastive effectivity, stationarity)."""
    eff = tables["effectivity_summary"]
    decay = tables["fits"]
    result = {
        "run_dir": str(run_dir), "window": window, "iqr_factor": iqr,
        "tokens_per_step": tokens_per_step,
        "effectivity": _records(eff[["measure", "adjustment", "scenario", "kind", "mean", "lo",
                                     "hi", "n", "removed", "missing"]]) if len(eff) else [],
        "decay": _records(decay[["measure", "adjustment", "scenario", "kind", "a", "a_stderr",
                                 "a_lo", "a_hi", "r2", "x_intercept_steps",
                                 "x_intercept_tokens"]]) if len(decay) else [],
        "retainability_counts": _records(tables["retainability_counts"]),
    }
    return {**result, **run_report(frame, params).to_dict()}


def _summary_rows(result: dict) -> pd.DataFrame:
    """The summary as one long table: section, measure, adjustment, scenario, kind, quantity,
    value, lo, hi."""
    rows = []
    for r in result["effectivity"]:
        rows.append({"section": "effectivity", **{k: r[k] for k in (
            "measure", "adjustment", "scenario", "kind")}, "quantity": "mean effectivity",
            "value": r["mean"], "lo": r["lo"], "hi": r["hi"]})
    for r in result["decay"]:
        for q, lo, hi in (("a", "a_lo", "a_hi"), ("x_intercept_tokens", None, None)):
            rows.append({"section": "decay", **{k: r[k] for k in (
                "measure", "adjustment", "scenario", "kind")}, "quantity": q, "value": r[q],
                "lo": r[lo] if lo else None, "hi": r[hi] if hi else None})
    if result["specificity"]:
        rows.append({"section": "specificity", "measure": result["specificity"]["value"],
                     "adjustment": RAW, "kind": result["specificity"]["kind"],
                     "quantity": "specificity", "value": result["specificity"]["specificity"]})
    if result["contrastive_effectivity"]:
        c = result["contrastive_effectivity"]
        rows.append({"section": "contrastive effectivity", "measure": c["column"],
                     "adjustment": RAW, "kind": "memorization", "quantity": "mean effectivity",
                     "value": c["mean"], "lo": c["lo"], "hi": c["hi"]})
    if result["stationarity"]:
        s = result["stationarity"]
        rows.append({"section": "stationarity", "measure": s["column"], "adjustment": RAW,
                     "quantity": f"change over first/last {s['n']} updates", "value": s["change"]})
    table = pd.DataFrame(rows)
    table["iqr_factor"] = result["iqr_factor"]
    return table


def _figures(run_dir, frame, inputs, tokens_per_step, sidecar) -> list[Path]:
    out = run_dir / "figures"
    paths = []

    def save(fig, name):
        paths.extend(figures.save_figure(fig, out, name))
        plt.close(fig)

    save(figures.fig_dynamics(frame, "logprob"), "dynamics")
    if metrics.has_control(frame):
        save(figures.fig_dynamics(frame, "logprob_adj",
                                  label="control-adjusted Δℓ (nats/token)"), "dynamics_adjusted")
    summary, mean_points, decay = inputs[("logprob", RAW)]
    if len(summary):
        save(figures.fig_effectivity(summary), "effectivity")
    if len(mean_points):
        save(figures.fig_retention(mean_points, decay), "retention")
        if tokens_per_step:
            label = f"{sidecar.get('params', {}).get('name', 'run')} ({tokens_per_step} tokens/step)"
            save(figures.fig_retention_tokens({label: (mean_points, decay, tokens_per_step)}),
                 "retention_tokens")
    if (frame["record"] == "train").any():
        save(figures.fig_stationarity(frame), "stationarity")
    return paths


def format_summary(result: dict) -> str:
    """The short summary table `factacq analyze` prints (also from a summary.json, whose
    run_dir is "." for the run folder itself)."""
    here = result["run_dir"] in (".", "")
    lines = [f"factacq analyze{'' if here else ' ' + str(result['run_dir'])}: "
             f"t_w = {result['window']} steps, IQR factor "
             f"{result['iqr_factor']}, {result['tokens_per_step']} tokens/step"]
    eff = pd.DataFrame(result["effectivity"])
    if len(eff):
        eff = eff[eff["measure"] == "logprob"]
        table = eff.pivot_table(index=["scenario", "kind"], columns="adjustment", values="mean")
        lines += ["", "effectivity E (mean, nats/token):", table.to_string(float_format="%.4f")]
    decay = pd.DataFrame(result["decay"])
    if len(decay):
        decay = decay[(decay["measure"] == "logprob") & (decay["adjustment"] == RAW)]
        decay = decay.set_index(["scenario", "kind"])[["a", "a_lo", "a_hi", "r2",
                                                       "x_intercept_tokens"]]
        lines += ["", "decay constant a (R = b − a·log10 t, raw ℓ, bootstrap CI):",
                  decay.to_string(float_format="%.4g")]
    counts = [c for c in result["retainability_counts"]
              if c["measure"] == "logprob" and c["adjustment"] == RAW]
    if counts:
        c = counts[0]
        lines += ["", f"retainability: {c['used']} of {c['probes']} probes used; excluded "
                      f"{c['excluded_nonpositive_denominator']} (denominator <= 0), "
                      f"{c['excluded_missing_t_pre']} (t_pre not probed), "
                      f"{c['excluded_missing_window']} (no probe in the last window)"]
    missing = int(eff.loc[eff["adjustment"] == RAW, "missing"].sum()) if len(eff) else 0
    if missing:
        lines += [f"effectivity: {missing} probe x encounter values missing (t_i or the whole "
                  f"window not probed; see tables/effectivity.csv)"]
    if result.get("control_missing"):
        lines += [f"control adjustment: {result['control_missing']} probe records of injected "
                  f"items have no control value at their step (adjusted value null)"]
    lines += RunReport.from_dict(result).report().splitlines()
    lines += [f"wrote {len(result['tables'])} tables and {len(result['figures'])} figure files "
              f"into {'the run folder' if here else result['run_dir']}"]
    return "\n".join(lines)


def cmd_analyze(args) -> int:
    result = analyze(args.run_dir)
    print(format_summary(result))
    return 0


# ---------------------------------------------------------------- reading the tables back


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RunTables:
    """The tables :func:`analyze` wrote into a run folder, one DataFrame per tables/<field>.csv
    (see the module docstring); a table the run had nothing for is an empty DataFrame."""

    effectivity: pd.DataFrame
    effectivity_summary: pd.DataFrame
    retainability_points: pd.DataFrame
    retainability_mean: pd.DataFrame
    retainability_counts: pd.DataFrame
    fits: pd.DataFrame
    model_comparison: pd.DataFrame
    comparisons: pd.DataFrame
    summary: pd.DataFrame

    def __repr__(self) -> str:
        return "RunTables(" + ", ".join(f"{name}: {len(getattr(self, name))} rows"
                                        for name in TABLES) + ")"


TABLES = tuple(f.name for f in dataclasses.fields(RunTables))


def load_table(run_dir: str | Path, name: str) -> pd.DataFrame:
    """One table of :data:`TABLES` from a run folder's tables/."""
    if name not in TABLES:
        raise FactacqError(f"load_table: unknown table {name!r} (one of {', '.join(TABLES)})")
    return read_run_table(run_dir, name)


def load_tables(run_dir: str | Path) -> RunTables:
    """Every table of a run folder (written by :func:`analyze`), by name: ``load_tables(d).fits``."""
    return RunTables(**{name: load_table(run_dir, name) for name in TABLES})


def save_table(table: pd.DataFrame, directory: str | Path, name: str) -> Path:
    """Write ``table`` as `name`.csv into ``directory`` (temp file + rename), as analyze does."""
    return _write_csv(table, Path(directory) / f"{name}.csv")


def select_raw(table: pd.DataFrame, conditions=None, measure: str = "logprob",
               scenario: str | None = None) -> pd.DataFrame:
    """Rows of the raw (not control-adjusted) `measure`, optionally of some conditions / one scenario."""
    rows = table[(table["measure"] == measure) & (table["adjustment"] == RAW)]
    if conditions is not None:
        rows = rows[rows["condition"].isin(list(conditions))]
    if scenario is not None:
        rows = rows[rows["scenario"] == scenario]
    return rows.reset_index(drop=True)


# ---------------------------------------------------------------- comparing conditions


def gather_tables(runs: dict[str, Path], name: str) -> pd.DataFrame:
    """One table (e.g. "fits") of every condition ``{condition: run folder}``, with a
    `condition` column first."""
    parts = []
    for condition, run_dir in runs.items():
        part = load_table(run_dir, name)
        part.insert(0, "condition", condition)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def gather_pooled(replicates: dict[str, list[Path]], name: str) -> pd.DataFrame:
    """One per-probe table (e.g. "retainability_points") of every condition ``{condition: run
    folders of its replicates}``, pooled over the replicates (replicates.pool_tables: item ids
    prefixed with the replicate, a `replicate` column), with a `condition` column first."""
    parts = []
    for condition, run_dirs in replicates.items():
        part = pool_tables(run_dirs, name)
        part.insert(0, "condition", condition)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def pooled_effectivity_summary(replicates: dict[str, list[Path]]) -> pd.DataFrame:
    """The effectivity summary (mean E per scenario x kind with its CI) of every condition
    ``{condition: run folders of its seeds}``, each pooled over its seeds: the runs' per-probe
    effectivity tables without the rows their IQR filter left out, and a bootstrap that resamples
    seeds, then items (metrics.bootstrap_mean on pooled item ids), with the first run's analysis
    options. Columns as effectivity_summary's, plus `condition` and `n_seeds`."""
    rows = []
    for condition, run_dirs in replicates.items():
        opts = run_params(Path(run_dirs[0]), load_sidecar(Path(run_dirs[0]))).analysis
        table = pool_tables(run_dirs, "effectivity")
        table = table[~table["iqr_outlier"].astype(bool)]
        for key, group in table.groupby(["measure", "adjustment", "scenario", "kind"]):
            stats = metrics.bootstrap_mean(group, "effectivity", opts.bootstrap, opts.ci, opts.seed)
            rows.append({"condition": condition, **dict(zip(["measure", "adjustment", "scenario",
                                                             "kind"], key)),
                         "mean": stats["mean"], "lo": stats["lo"], "hi": stats["hi"],
                         "n": stats["n"], "n_items": stats["n_items"], "n_seeds": len(run_dirs)})
    return pd.DataFrame(rows)


def retention_by_condition(runs: dict[str, Path], conditions, measure: str = "logprob") -> dict:
    """{condition: (mean retainability points, fits, tokens per step)} for
    figures.fig_retention_tokens."""
    return {name: (select_raw(load_table(runs[name], "retainability_mean"), measure=measure),
                   select_raw(load_table(runs[name], "fits"), measure=measure),
                   load_sidecar(runs[name]).get("tokens_per_step"))
            for name in conditions}


def batch_size_comparisons(runs: dict[str, Path], compare: dict) -> list[str]:
    """The comparison labels whose conditions differ in tokens per step (Fig. 5 candidates)."""
    return [label for label, members in compare.items()
            if len({load_sidecar(runs[m]).get("tokens_per_step") for m in members}) > 1]


# the analysis options a decay comparison draws on: its conditions must agree on them
DECAY_OPTIONS = ("retention_bins", "iqr_factor", "bootstrap", "ci", "seed")


def compare_decay(runs: dict[str, Path], compare: dict, measure: str = "logprob",
                  replicates: dict[str, list[Path]] | None = None) -> pd.DataFrame:
    """Decay constant a of each condition minus the first condition of its comparison (label ->
    condition names), per scenario and probe kind, with bootstrap CIs over items (from each run's
    retainability points). The t bins, IQR factor and bootstrap (analysis :data:`DECAY_OPTIONS`)
    are the runs' own (their run.json params), so each value is the a of that run's fits.csv and
    its interval is drawn as the run's own are; the conditions of one comparison must agree on them.

    ``replicates`` (condition -> run folders of its seeds, as `factacq sweep` passes them) pools
    each condition's points over its seeds (replicates.pool_tables), so a is fitted to the pooled
    points and its CI resamples seeds, then items; a condition with one run folder, or one it
    does not name (then ``runs``), is used as it is."""
    folders = {m: [Path(d)] for m, d in runs.items()}
    folders.update({m: [Path(d) for d in ds] for m, ds in (replicates or {}).items()})
    empty = sorted(m for m, ds in folders.items() if not ds)
    if empty:
        raise FactacqError(f"compare_decay: no run folders for condition(s) {empty}")
    rows = []
    for label, members in compare.items():
        opts = _shared_analysis(label, {m if len(folders[m]) == 1 else f"{m} ({d.name})": d
                                        for m in members for d in folders[m]})
        points = {m: select_raw(_points(folders[m]), measure=measure) for m in members}
        table = fits.compare_conditions(points, quantity="a", by=("scenario", "kind"),
                                        reference=members[0], n_boot=opts.bootstrap, ci=opts.ci,
                                        seed=opts.seed, n_bins=opts.retention_bins,
                                        iqr_factor=opts.iqr_factor)
        table.insert(0, "comparison", label)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _points(run_dirs: list[Path]) -> pd.DataFrame:
    """A condition's retainability points: those of its one run as they are (so a sweep without
    seeds draws exactly the intervals it drew before), else pooled over its replicates."""
    if len(run_dirs) == 1:
        return load_table(run_dirs[0], "retainability_points")
    return pool_tables(run_dirs, "retainability_points")


def _shared_analysis(label: str, runs: dict[str, Path]) -> AnalysisParams:
    """The analysis params the runs of comparison ``label`` were made with; they must agree on
    :data:`DECAY_OPTIONS`."""
    options = {m: run_params(Path(d), load_sidecar(d)).analysis for m, d in runs.items()}
    for field in DECAY_OPTIONS:
        values = {m: getattr(o, field) for m, o in options.items()}
        if len(set(values.values())) > 1:
            raise FactacqError(f"compare.{label}: the conditions differ in analysis.{field}: {values}")
    return next(iter(options.values()))
