"""The paper's figures as functions of DataFrames (seaborn style, one palette per probe kind).

Each function returns a matplotlib Figure (or a dict of them, by file name); :func:`save_figure`
writes one as PNG and PDF, :func:`save_figures` a dict of them.
ℓ is a mean log-probability per target token, in nats.

- :func:`fig_dynamics`            Fig. 2: mean Δℓ vs step, a panel per scenario, a line per kind
- :func:`fig_effectivity`         Fig. 3: mean effectivity by condition with CIs
- :func:`fig_effectivity_conditions`  Fig. 3 across conditions: one per comparison and scenario
- :func:`fig_retention`           Fig. 4: mean R vs t (log axis) with the log-linear fits
- :func:`fig_retention_tokens`    Fig. 5: mean R vs tokens for several conditions, x-intercepts
- :func:`fig_probe_trajectories`  ℓ of every probe of one item (for notebooks)
- :func:`fig_stationarity`        background loss over the run
- :func:`fig_loss_curve`          pretraining loss with the stage checkpoints
- :func:`fig_net_acquisition`     issue 12 §1: net acquisition vs interval, its crossing and the
                                  paper's reading (factacq.beyond.interval_experiment)
- :func:`fig_frequency`           §2: final Δ and fraction acquired vs count
                                  (beyond.frequency_experiment)
- :func:`fig_dedup`               §3: E and a without vs with duplicates (beyond.dedup_comparison)
- :func:`fig_predictive`          §4: measured vs predicted cohort trajectories
                                  (beyond.predictive_model)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from factacq.atomic import atomic_path
from factacq.errors import FactacqError
from factacq.metrics import encounters, mean_trajectories, probe_rows
from factacq.params import GROUPS, SCENARIOS
from factacq.schema import PROBE_KINDS

KIND_COLORS = dict(zip(PROBE_KINDS, sns.color_palette("colorblind", len(PROBE_KINDS))))
DELTA_LABEL = "Δℓ = ℓ(t) − ℓ(t_pre) (nats/token)"
STEP_LABEL = "step (optimizer updates)"
INJECTION_COLOR = "#b2182b"  # injection steps (dotted vertical lines)


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind")


def _color(kind: str):
    return KIND_COLORS.get(kind, "0.3")


def _ordered(values) -> list:
    values = list(dict.fromkeys(values))
    order = list(GROUPS) + list(PROBE_KINDS)
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _panels(n: int, width: float = 3.6, height: float = 3.0, sharey: bool = True):
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), sharey=sharey,
                             squeeze=False, layout="constrained")
    return fig, axes[0]


def save_figure(fig, directory: str | Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into `directory` (temp file + rename, never half-written)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = directory / f"{name}.{ext}"
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150)
        paths.append(path)
    return paths


def save_figures(figs: dict, directory: str | Path) -> list[Path]:
    """:func:`save_figure` for each ``{name: figure}`` of ``figs``."""
    return [path for name, fig in figs.items() for path in save_figure(fig, directory, name)]


def fig_dynamics(frame: pd.DataFrame, value: str = "logprob", scenarios=None,
                 label: str = DELTA_LABEL):
    """Fig. 2: mean Δ(value) vs step with a ±1 SEM band, one panel per scenario, one line per
    probe kind; the scenario's injection steps are dotted vertical lines."""
    _theme()
    mean = mean_trajectories(frame, value)
    scenarios = _ordered(scenarios or mean["scenario"].unique())
    enc = encounters(frame)
    fig, axes = _panels(len(scenarios))
    for ax, scenario in zip(axes, scenarios):
        for t in np.unique(enc.loc[enc["scenario"] == scenario, "t_i"]):
            ax.axvline(t, color=INJECTION_COLOR, lw=0.8, ls=":", zorder=0)
        part = mean[mean["scenario"] == scenario]
        for kind in _ordered(part["kind"].unique()):
            line = part[part["kind"] == kind].sort_values("step")
            ax.plot(line["step"], line["mean"], color=_color(kind), lw=1.2, label=kind)
            sem = line["sem"].fillna(0)
            ax.fill_between(line["step"], line["mean"] - sem, line["mean"] + sem,
                            color=_color(kind), alpha=0.2, lw=0)
        ax.set_title(scenario)
        ax.set_xlabel(STEP_LABEL)
    axes[0].set_ylabel(label)
    axes[0].legend(title="probe kind", fontsize="small")
    return fig


def fig_effectivity(table: pd.DataFrame, by: str = "scenario", hue: str = "kind",
                    column: str = "mean", ylabel: str = "effectivity E (nats/token)"):
    """Fig. 3: bars of `column` per `by` (x) and `hue`, with error bars from `<column>_lo` /
    `<column>_hi` (or `lo` / `hi`) when present, else ±1 `sem`."""
    _theme()
    lo_col = next((c for c in (f"{column}_lo", "lo") if c in table), None)
    hi_col = next((c for c in (f"{column}_hi", "hi") if c in table), None)
    xs = _ordered(table[by].unique())
    hues = _ordered(table[hue].unique())
    width = 0.8 / max(len(hues), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(xs), 3.0), layout="constrained")
    for j, h in enumerate(hues):
        part = table[table[hue] == h].set_index(by).reindex(xs)
        x = np.arange(len(xs)) + (j - (len(hues) - 1) / 2) * width
        y = part[column].to_numpy(dtype=float)
        if lo_col and hi_col:
            err = np.vstack([y - part[lo_col].to_numpy(dtype=float),
                             part[hi_col].to_numpy(dtype=float) - y])
        elif "sem" in part:
            err = part["sem"].fillna(0).to_numpy(dtype=float)
        else:
            err = None
        ax.bar(x, y, width=width, yerr=err, capsize=2, color=_color(h) if hue == "kind" else None,
               label=str(h))
    ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs])
    ax.set_xlabel(by)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="0.3", lw=0.6)
    ax.legend(title=hue, fontsize="small")
    return fig


def fig_effectivity_conditions(table: pd.DataFrame, compare: dict, scenarios=SCENARIOS) -> dict:
    """Fig. 3 across conditions: for each comparison (label -> condition names) and scenario, the
    :func:`fig_effectivity` bars of its conditions (x) per probe kind, titled "label: scenario".
    ``table`` is the effectivity summary of several runs with a `condition` column, one measure
    and adjustment (e.g. ``analyze.select_raw`` of ``analyze.gather_tables(runs,
    "effectivity_summary")``). Returns ``{"fig3_<label>_<scenario>": figure}``."""
    figs = {}
    for label, members in compare.items():
        for scenario in scenarios:
            rows = table[table["condition"].isin(list(members)) & (table["scenario"] == scenario)]
            fig = fig_effectivity(rows, by="condition")
            fig.suptitle(f"{label}: {scenario}")
            figs[f"fig3_{label}_{scenario}"] = fig
    return figs


def _fit_line(fits: pd.DataFrame | None, match: dict):
    if fits is None or fits.empty:
        return None
    rows = fits[fits["model"] == "loglinear"] if "model" in fits else fits
    for key, val in match.items():
        if key in rows:
            rows = rows[rows[key] == val]
    rows = rows.dropna(subset=["a", "b"]) if {"a", "b"} <= set(rows.columns) else rows.iloc[:0]
    return rows.iloc[0] if len(rows) else None


def fig_retention(points: pd.DataFrame, fits: pd.DataFrame | None = None, by: str = "scenario",
                  hue: str = "kind"):
    """Fig. 4: mean R vs t (log x) per `by` panel, one colour per `hue`, with the log-linear fit
    R = b − a·log10 t drawn over the points' range and its decay constant a in the legend."""
    _theme()
    panels = _ordered(points[by].unique())
    fig, axes = _panels(len(panels))
    for ax, panel in zip(axes, panels):
        part = points[points[by] == panel]
        for h in _ordered(part[hue].unique()):
            line = part[part[hue] == h].sort_values("t")
            color = _color(h) if hue == "kind" else None
            fit = _fit_line(fits, {by: panel, hue: h})
            name = str(h) if fit is None else f"{h} (a = {fit['a']:.3f})"
            ax.errorbar(line["t"], line["retainability"], yerr=line.get("sem"), fmt="o", ms=3,
                        color=color, alpha=0.8, lw=0.8, label=name)
            if fit is not None:
                t = np.geomspace(line["t"].min(), line["t"].max(), 50)
                ax.plot(t, fit["b"] - fit["a"] * np.log10(t), color=color, lw=1.2)
        ax.set_xscale("log")
        ax.axhline(0, color="0.3", lw=0.6)
        ax.set_title(str(panel))
        ax.set_xlabel("t: steps after t_LAM of the last encounter")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("retainability R (fraction of the gain kept)")
    return fig


def fig_retention_tokens(conditions: dict, kind: str = "memorization", scenario: str | None = None):
    """Fig. 5: mean R vs tokens seen since t_LAM (log x), one colour per condition (e.g. batch
    size), with the log-linear fit extended to its x-intercept (where R reaches 0), which is
    marked by a dashed vertical line.

    `conditions` maps a label to (mean points, fits table or None, tokens per step). `scenario`
    None: the first of paraphrase / duplicate / once in the points."""
    _theme()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), layout="constrained")
    palette = sns.color_palette("colorblind", max(len(conditions), 1))
    shown = scenario
    for color, (label, (points, fits, tokens_per_step)) in zip(palette, conditions.items()):
        part = points[points["kind"] == kind]
        if "scenario" in part and len(part):
            shown = scenario or _ordered(part["scenario"].unique())[0]
            part = part[part["scenario"] == shown]
        part = part.sort_values("t")
        ax.plot(part["t"] * tokens_per_step, part["retainability"], "o", ms=3, color=color,
                alpha=0.8)
        fit = _fit_line(fits, {"kind": kind, "scenario": shown})
        name = str(label)
        if fit is not None and len(part):
            x_int = fit.get("x_intercept_steps", np.nan)
            stop = max(part["t"].max(), x_int if np.isfinite(x_int) else 0)
            t = np.geomspace(part["t"].min(), min(stop, 1e12), 100)
            ax.plot(t * tokens_per_step, fit["b"] - fit["a"] * np.log10(t), color=color, lw=1.2)
            if np.isfinite(x_int):
                ax.axvline(x_int * tokens_per_step, color=color, ls="--", lw=0.8)
                name += f" (x-intercept {x_int * tokens_per_step:.3g} tokens)"
        ax.plot([], [], color=color, label=name)
    ax.set_xscale("log")
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_title(f"{shown}, {kind}" if shown else kind)
    ax.set_xlabel("tokens trained since t_LAM of the last encounter")
    ax.set_ylabel("retainability R (fraction of the gain kept)")
    ax.legend(fontsize="small")
    return fig


def fig_probe_trajectories(frame: pd.DataFrame, item_id: str, value: str = "logprob"):
    """ℓ (or another value column) of every probe of one item vs step, a panel per probe kind,
    the item's injection steps as dotted vertical lines."""
    _theme()
    probes = probe_rows(frame)
    probes = probes[probes["item_id"] == item_id]
    if probes.empty:
        raise FactacqError(f"run log: no probes of item {item_id!r}")
    kinds = _ordered(probes["kind"].unique())
    steps = encounters(frame)
    steps = steps.loc[steps["item_id"] == item_id, "t_i"]
    fig, axes = _panels(len(kinds), sharey=False)
    for ax, kind in zip(axes, kinds):
        for t in steps:
            ax.axvline(t, color=INJECTION_COLOR, lw=0.8, ls=":", zorder=0)
        part = probes[probes["kind"] == kind]
        for index, line in part.groupby("probe_index"):
            line = line.sort_values("step")
            ax.plot(line["step"], line[value], lw=1, marker=".", ms=2, label=f"probe {index}")
        ax.set_title(f"{item_id}: {kind}")
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(f"{value} (nats/token)")
        ax.legend(fontsize="x-small")
    return fig


def fig_stationarity(frame: pd.DataFrame):
    """Background loss (and whole-batch loss) per update over the run."""
    _theme()
    train = frame[frame["record"] == "train"].sort_values("step")
    fig, ax = plt.subplots(figsize=(4.6, 3.0), layout="constrained")
    for column, name in (("bg_loss", "background rows"), ("loss", "whole batch")):
        if column in train and train[column].notna().any():
            ax.plot(train["step"], train[column], lw=0.8, label=name)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel("training loss (nats/token)")
    ax.legend(fontsize="small")
    return fig


def fig_loss_curve(log: pd.DataFrame, stages: dict[str, int] | None = None):
    """Pretraining loss per logged step, with the stage checkpoints marked (dashed lines)."""
    _theme()
    log = log.sort_values("step")
    fig, ax = plt.subplots(figsize=(4.6, 3.0), layout="constrained")
    ax.plot(log["step"], log["loss"], lw=1.0, label="training loss")
    for name, step in (stages or {}).items():
        ax.axvline(step, color="0.4", ls="--", lw=0.8)
        ax.annotate(name, (step, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize="x-small", color="0.3")
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("base pretraining")
    return fig


# ----------------------------------------------------------------- issue 12 (factacq.beyond)


def _errorbar(ax, x, table, column, lo="lo", hi="hi", **kwargs):
    y = table[column].to_numpy(dtype=float)
    err = np.vstack([y - table[lo].to_numpy(dtype=float), table[hi].to_numpy(dtype=float) - y])
    return ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), fmt="o-", ms=4, lw=1,
                       capsize=2, **kwargs)


def _log_ticks(ax, values):
    """Log x axis ticked at the measured values, labelled as plain numbers."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(values)), [f"{v:g}" for v in sorted(set(values))])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def _mark(ax, value, lo, hi, color, style, label):
    """A vertical line at an estimate with its CI as a band (ends that are not finite: no band)."""
    if not np.isfinite(value):
        return
    ax.axvline(value, color=color, ls=style, lw=1.2, label=label)
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axvspan(lo, hi, color=color, alpha=0.12, lw=0)


def fig_net_acquisition(result: dict):
    """§1: net acquisition Δ(t_last + h) − Δ(t_first + h) vs interval (log x) with its CIs, the 0
    line, the fitted net = A + B·log10(Δ + h) and its crossing (dashed, CI band), and the paper's
    reading of the decay fit, x-intercept − h (dotted, CI band). `result`:
    beyond.interval_experiment's dict."""
    _theme()
    net = result["net"].dropna(subset=["net"]).sort_values("interval")
    threshold, paper, h = result["threshold"], result["paper"], result["horizon"]
    fig, ax = plt.subplots(figsize=(4.8, 3.2), layout="constrained")
    _errorbar(ax, net["interval"], net, "net", color="0.2", label="measured (CI)")
    if threshold.get("fit") is not None:
        top = max(net["interval"].max(), np.nan_to_num(threshold["threshold"]))
        x = np.geomspace(net["interval"].min(), top, 100)
        ax.plot(x, threshold["A"] + threshold["B"] * np.log10(x + h), color=INJECTION_COLOR,
                lw=1, label="fit A + B·log10(Δ + h)")
    _mark(ax, threshold["threshold"], threshold["lo"], threshold["hi"], INJECTION_COLOR, "--",
          f"crossing {threshold['threshold']:.3g}")
    _mark(ax, paper["prediction"], paper["lo"], paper["hi"], "#2166ac", ":",
          f"paper reading {paper['prediction']:.3g}")
    ax.axhline(0, color="0.3", lw=0.6)
    _log_ticks(ax, net["interval"])
    ax.set_xlabel("interval Δ between encounters (steps)")
    ax.set_ylabel(f"net acquisition at h = {h} ({result['measure']})")
    ax.set_title(f"{result.get('scenario', '')} x{result['count']}, reference: "
                 f"{result['reference']}".strip())
    ax.legend(fontsize="x-small")
    return fig


def fig_frequency(result: dict):
    """§2: final Δ (left) and the fraction of items acquired (right; the chance level, 1 −
    quantile, dashed) vs the number of encounters (log x), with CIs, a line per scenario. `result`:
    beyond.frequency_experiment's dict."""
    _theme()
    table = result["table"].sort_values("count")
    fig, (left, right) = _panels(2, width=3.4, sharey=False)
    for scenario in _ordered(table["scenario"].unique()):
        part = table[table["scenario"] == scenario]
        _errorbar(left, part["count"], part, "final_delta", label=scenario)
        _errorbar(right, part["count"], part, "acquired", "acquired_lo", "acquired_hi",
                  label=scenario)
    left.axhline(0, color="0.3", lw=0.6)
    left.set_ylabel(f"final Δ ({result['measure']})")
    right.axhline(result["chance"], color="0.4", ls="--", lw=0.8, label="chance (controls)")
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel("fraction acquired")
    right.set_title(f"contrast above the controls' q{result['quantile']:g}", fontsize="small")
    right.legend(fontsize="x-small")
    for ax in (left, right):
        _log_ticks(ax, table["count"])
        ax.set_xlabel("encounters (count)")
    at = result["at"]
    fig.suptitle("at the run's last step" if at == "final"
                 else f"{at} steps after the last encounter")
    return fig


def fig_dedup(result: dict):
    """§3: mean effectivity E (left) and decay constant a (right) per condition, one bar group per
    scenario, with CIs. `result`: beyond.dedup_comparison's dict."""
    _theme()
    table = result["conditions"]
    conditions = list(dict.fromkeys(table["condition"]))
    scenarios = _ordered(table["scenario"].unique())
    fig, axes = _panels(2, width=3.2, sharey=False)
    width = 0.8 / max(len(scenarios), 1)
    for ax, (column, label) in zip(axes, (("mean_effectivity", "effectivity E"),
                                          ("a", "decay constant a"))):
        for j, scenario in enumerate(scenarios):
            part = table[table["scenario"] == scenario].set_index("condition").reindex(conditions)
            y = part[column].to_numpy(dtype=float)
            err = np.vstack([y - part[f"{column}_lo"].to_numpy(dtype=float),
                             part[f"{column}_hi"].to_numpy(dtype=float) - y])
            x = np.arange(len(conditions)) + (j - (len(scenarios) - 1) / 2) * width
            ax.bar(x, y, width=width, yerr=np.where(np.isfinite(err), err, 0), capsize=2,
                   label=str(scenario))
        ax.set_xticks(np.arange(len(conditions)), conditions)
        ax.set_ylabel(f"{label} ({result['measure']})")
        ax.axhline(0, color="0.3", lw=0.6)
    axes[0].legend(title="scenario", fontsize="x-small")
    return fig


def fig_predictive(result: dict):
    """§4: measured mean Δ (points) and the best superposition model's prediction (lines) vs steps
    since the first encounter, fit cohorts (left) and held-out cohorts (right).
    `result`: beyond.predictive_model's dict."""
    _theme()
    curves = result["curves"]
    fig, axes = _panels(2, width=4.0)
    for ax, role in zip(axes, ("fit", "held-out")):
        part = curves[curves["role"] == role]
        names = list(dict.fromkeys(part["cohort"]))
        for color, name in zip(sns.color_palette("colorblind", max(len(names), 1)), names):
            line = part[part["cohort"] == name].sort_values("since_first")
            ax.plot(line["since_first"], line["measured"], "o", ms=2.5, color=color, alpha=0.7)
            ax.plot(line["since_first"], line["predicted"], "-", lw=1.2, color=color, label=name)
        ax.set_title(f"{role} cohorts")
        ax.set_xlabel("steps since the first encounter")
        ax.legend(fontsize="x-small")
    best = result["best"]
    axes[0].set_ylabel(f"mean Δ ({result['measure']})")
    fig.suptitle(f"superposition model {best['kernel']}/{best['gain']}: points measured, "
                 f"lines predicted")
    return fig
