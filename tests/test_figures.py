"""Figures: the right panels, lines, marks and labels, and PNG + PDF files (kept cheap)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from factacq import figures
from factacq.errors import FactacqError


def small_log():
    rows = []
    for scenario, item in (("once", "o"), ("duplicate", "d"), ("control", "c")):
        steps = {"once": [0], "duplicate": [0, 3], "control": []}[scenario]
        rows += [{"record": "injection", "step": s, "item_id": item, "scenario": scenario}
                 for s in steps]
        for kind in ("memorization", "semantic"):
            for step in range(6):
                rows.append({"record": "probe", "step": step, "item_id": item,
                             "scenario": scenario, "kind": kind, "probe_index": 0,
                             "logprob": -5 + 0.1 * step * (scenario != "control")})
    rows += [{"record": "train", "step": s, "loss": 4.0, "bg_loss": 4.1} for s in range(1, 6)]
    return pd.DataFrame(rows)


def vlines(ax):
    return [ln for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1 and ln.get_linestyle() == ":"]


def test_dynamics_panels_lines_and_injection_marks():
    fig = figures.fig_dynamics(small_log())
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["duplicate", "once", "control"]
    assert len(vlines(axes[0])) == 2 and len(vlines(axes[1])) == 1 and not vlines(axes[2])
    data_lines = [ln for ln in axes[0].get_lines() if ln not in vlines(axes[0])]
    assert len(data_lines) == 2  # one per kind
    assert np.allclose(data_lines[0].get_ydata(), 0.1 * np.arange(6))  # Δℓ from t_pre = 0
    assert "nats" in axes[0].get_ylabel() and "step" in axes[0].get_xlabel()
    plt.close(fig)


def test_retention_fit_line_and_decay_constant_in_legend():
    points = pd.DataFrame({"scenario": "once", "kind": "memorization", "t": [1, 10, 100],
                           "retainability": [1.0, 0.8, 0.6], "sem": 0.01})
    fit = pd.DataFrame([{"scenario": "once", "kind": "memorization", "model": "loglinear",
                         "a": 0.2, "b": 1.0, "x_intercept_steps": 1e5}])
    fig = figures.fig_retention(points, fit)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "a = 0.200" in [t.get_text() for t in ax.get_legend().get_texts()][0]
    fitted = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 50][0]
    assert np.allclose(fitted.get_ydata(), 1.0 - 0.2 * np.log10(fitted.get_xdata()))
    plt.close(fig)
    fig = figures.fig_retention_tokens({"B=16": (points, fit, 2048), "B=32": (points, fit, 4096)})
    ax = fig.axes[0]
    marks = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(marks) == [1e5 * 2048, 1e5 * 4096]
    fitted = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 100]
    assert [ln.get_xdata()[-1] for ln in fitted] == pytest.approx([1e5 * 2048, 1e5 * 4096])
    assert ax.get_title() == "once, memorization"
    assert "tokens" in ax.get_xlabel()
    plt.close(fig)


def test_effectivity_bars_with_intervals_and_save(tmp_path):
    table = pd.DataFrame({"scenario": ["once", "once", "duplicate", "duplicate"],
                          "kind": ["memorization", "semantic"] * 2, "mean": [1.0, 0.5, 0.9, 0.4],
                          "lo": [0.8, 0.4, 0.7, 0.3], "hi": [1.2, 0.6, 1.1, 0.5]})
    fig = figures.fig_effectivity(table)
    ax = fig.axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx([0.4, 0.5, 0.9, 1.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["duplicate", "once"]
    paths = figures.save_figure(fig, tmp_path / "figs", "effectivity")
    plt.close(fig)
    assert [p.name for p in paths] == ["effectivity.png", "effectivity.pdf"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["effectivity.pdf",
                                                                     "effectivity.png"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"



def test_effectivity_across_conditions_one_figure_per_comparison_and_scenario(tmp_path):
    rows = [{"condition": c, "scenario": s, "kind": k, "mean": m, "lo": m - 0.1, "hi": m + 0.1}
            for c, m in (("early", 1.0), ("late", 0.8), ("other", 5.0))
            for s in ("paraphrase", "once") for k in ("memorization", "semantic")]
    figs = figures.fig_effectivity_conditions(pd.DataFrame(rows), {"stage": ["early", "late"]},
                                              scenarios=("paraphrase", "once"))
    assert list(figs) == ["fig3_stage_paraphrase", "fig3_stage_once"]
    ax = figs["fig3_stage_once"].axes[0]
    assert figs["fig3_stage_once"]._suptitle.get_text() == "stage: once"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["early", "late"]  # not "other"
    assert sorted(p.get_height() for p in ax.patches) == pytest.approx([0.8, 0.8, 1.0, 1.0])
    paths = figures.save_figures(figs, tmp_path)
    for fig in figs.values():
        plt.close(fig)
    assert sorted(p.name for p in paths) == sorted(f"fig3_stage_{s}.{e}" for s in ("once", "paraphrase")
                                                   for e in ("png", "pdf"))


def test_probe_trajectories_and_unknown_item():
    fig = figures.fig_probe_trajectories(small_log(), "d")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "d: memorization"
    assert len(vlines(fig.axes[0])) == 2
    plt.close(fig)
    with pytest.raises(FactacqError, match="no probes of item 'zz'"):
        figures.fig_probe_trajectories(small_log(), "zz")


def test_loss_curve_marks_the_stages(tmp_path):
    import pandas as pd

    from factacq import figures

    log = pd.DataFrame({"step": [10, 20, 30, 40], "loss": [6.0, 5.0, 4.6, 4.5]})
    fig = figures.fig_loss_curve(log, stages={"early": 10, "late": 40})
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [6.0, 5.0, 4.6, 4.5]
    assert sorted(line.get_xdata()[0] for line in ax.lines[1:]) == [10, 40]
    assert [p.suffix for p in figures.save_figure(fig, tmp_path, "loss")] == [".png", ".pdf"]
