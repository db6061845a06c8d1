"""The papermill pipeline end to end on the smoke params, dry runs of every shipped params file, sweeps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from factacq import analyze, cli, knowledge, pipeline, schema
from factacq.params import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = sorted((ROOT / "params").glob("**/*.yaml"))
SWEEPS = [p for p in PARAMS if p.name.startswith("sweep")]
CONDITIONS = [p for p in PARAMS if p not in SWEEPS]


def _smoke_copy(tmp_path: Path, name: str = "smoke", **overrides) -> Path:
    data = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    # the session's temporary cache (conftest.py): the smoke base is pretrained once per session and
    # shared with the nbval notebooks; never the project's .cache/
    data.update(name=name, output_dir=str(tmp_path / "outputs"), cache_dir=os.environ["FACTACQ_CACHE_DIR"],
                **overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def offline_hub(monkeypatch, paper_paraphrased_json):
    """The hub dataset kaist-ai/fictional-knowledge, stood in for by the same data read from ../shared."""
    real = knowledge.load_paper_json(paper_paraphrased_json)

    def fake_load_hf(dataset_id, split="train"):
        assert dataset_id == "kaist-ai/fictional-knowledge", dataset_id
        return schema.KnowledgeSet(items=real.items, source=f"hf:{dataset_id}")

    monkeypatch.setattr(knowledge, "load_hf", fake_load_hf)


@pytest.mark.parametrize("path", CONDITIONS, ids=lambda p: str(p.relative_to(ROOT / "params")))
def test_every_params_file_validates_and_dry_runs(path, offline_hub, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    params = load_params(path)
    if params.device == "cuda":  # a GPU preset: dry-run it as on a machine with CUDA
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plan = pipeline.dry_run_plan(params, calibrate=False)
    assert plan["steps"] > plan["last_injection"] >= plan["first_injection"] >= 1
    assert plan["injections"] > 0 and plan["probe_evaluations"] > 0
    assert plan["knowledge_row_share_max"] <= params.inject.max_row_fraction
    assert plan["train_tokens"] == plan["steps"] * plan["tokens_per_step"]


def test_dry_run_cli_prints_the_plan_with_a_time_estimate(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["run", "params/smoke.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for key in ("steps", "injected_rows_per_step_max", "probe_evaluations", "train_tokens", "train_flops",
                "seconds_per_step", "estimated_seconds"):
        assert key in out, key


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_validates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # condition params are written under the sweep's output folder
    sweep = pipeline.load_sweep(path)
    for cond in sweep.conditions:
        written, params = pipeline.condition_params(path, sweep, cond)
        assert params.name == cond.name and written.is_file()


def test_factacq_run_smoke_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FACTACQ_PROGRESS", "0")
    params_path = _smoke_copy(tmp_path)
    assert cli.main(["run", str(params_path)]) == 0
    run_dir = tmp_path / "outputs" / "smoke"
    for name in pipeline.CONDITION_NOTEBOOKS:
        rendered = nbformat.read(run_dir / "notebooks" / name, as_version=4)
        errors = [o for c in rendered.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, (name, errors)
        assert any(c.get("outputs") for c in rendered.cells if c.cell_type == "code"), name
    for table in ("effectivity_summary.csv", "fits.csv", "retainability_points.csv", "summary.csv"):
        assert len(pd.read_csv(run_dir / "tables" / table)) > 0, table
    for fig in ("dynamics", "retention", "stationarity", "pretrain_loss"):
        for ext in ("png", "pdf"):
            assert (run_dir / "figures" / f"{fig}.{ext}").stat().st_size > 1000, (fig, ext)
    sidecar = json.loads((run_dir / "run.json").read_text())
    assert sidecar["complete"] and sidecar["provenance"]["versions"]["torch"].startswith("2.13.0")
    out = capsys.readouterr().out
    assert "=== factacq: smoke ===" in out and "effectivity E" in out and str(run_dir / "figures") in out
    # a second run is skipped: the condition is complete
    assert cli.main(["run", str(params_path)]) == 0
    assert "complete, skipping" in capsys.readouterr().out


def test_sweep_runs_conditions_once_and_renders_the_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FACTACQ_PROGRESS", "0")
    base = _smoke_copy(tmp_path)
    analysis = {"iqr_factor": 0.5, "retention_bins": 8}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "mini", "output_dir": str(tmp_path / "outputs"),
        # non-default analysis options, which the cross-condition comparison must use too
        "conditions": [{"name": "bs8", "params": base.name, "overrides": {"analysis": analysis}},
                       {"name": "bs16", "params": base.name,
                        "overrides": {"inject": {"batch_size": 16}, "analysis": analysis}}],
        "compare": {"batch_size": ["bs8", "bs16"]}}))
    assert cli.main(["sweep", str(sweep)]) == 0
    sweep_dir = tmp_path / "outputs" / "mini"
    assert (sweep_dir / "bs8" / pipeline.COMPLETE).is_file() and (sweep_dir / "bs16" / pipeline.COMPLETE).is_file()
    rendered = nbformat.read(sweep_dir / "notebooks" / pipeline.CONDITIONS_NOTEBOOK, as_version=4)
    assert not [o for c in rendered.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    assert (sweep_dir / "figures" / "fig5_batch_size.png").is_file()
    assert (sweep_dir / "figures" / "fig3_batch_size_duplicate.png").is_file()
    # the cross-condition a is each run's own fitted a (same t bins and IQR factor as its fits.csv)
    runs = {m: sweep_dir / m for m in ("bs8", "bs16")}
    table = analyze.compare_decay(runs, {"batch_size": ["bs8", "bs16"]})
    # the notebook saved the same comparison as a table of the sweep
    saved = pd.read_csv(sweep_dir / "tables" / "decay_comparison.csv")
    pd.testing.assert_frame_equal(saved, table, check_exact=True)
    fitted = pd.read_csv(sweep_dir / "bs16" / "tables" / "fits.csv").query(
        "measure == 'logprob' and adjustment == 'raw' and model == 'loglinear'")
    merged = table.merge(fitted, on=["scenario", "kind"])
    assert len(merged) == len(table) > 0
    # Two code paths: compare_decay's a is the closed-form least-squares slope (fits._loglinear_batch);
    # fits.csv's is lmfit's leastsq (MINPACK: xtol = ftol = 1.5e-8, relative to the whole parameter
    # vector (a, b), with a forward-difference Jacobian) started from np.polyfit's solution. They agree
    # to ~1.5e-8 * max(|a|, |b|) (at most 1.6e-8 in 3000 random fits); rel=1e-9 was tighter than
    # lmfit's own stopping rule (a fresh clone failed it at 1.65e-9, once/memorization), and relative
    # to a alone is no bound where a is near 0. 1e-6 * max(|a|, |b|) leaves a 60x margin; the default
    # t bins or IQR factor instead of the runs' own move some cells by 0.6 to 2 times max(|a|, |b|).
    scale = np.maximum(merged["a"].abs(), merged["b"].abs()).to_numpy()
    error = (merged["value"] - merged["a"]).abs().to_numpy()
    assert (error <= 1e-6 * scale).all(), (error / scale).max()
    capsys.readouterr()
    assert cli.main(["sweep", str(sweep)]) == 0  # idempotent: both conditions are skipped
    out = capsys.readouterr().out
    assert out.count("complete, skipping") == 2


def test_bad_sweep_is_one_clear_error(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: s\nconditions:\n  - {name: a, params: a.yaml}\n  - {name: a, params: b.yaml}\n")
    assert cli.main(["sweep", str(sweep)]) == 2
    assert "duplicate condition name(s) ['a']" in capsys.readouterr().err
