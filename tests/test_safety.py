"""Nothing a user made is lost to a typo; dry runs refuse what the run would; bad params are one line.

Each test builds a scratch project (pyproject.toml, params/, outputs/ with a sentinel file) in
tmp_path and drives the CLI as a user would; a refusal is exit 2 with one line on stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml

from factacq import cli, pipeline
from factacq.errors import FactacqError
from factacq.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project: params/smoke.yaml (cache in the session's test cache), outputs/ holding a
    user's folder with a sentinel, and a folder beside the project."""
    proj = tmp_path / "proj"
    (proj / "params").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    data = dict(SMOKE, cache_dir=os.environ.get("FACTACQ_CACHE_DIR", str(tmp_path / "cache")))
    (proj / "params" / "smoke.yaml").write_text(yaml.safe_dump(data))
    for folder in (proj / "outputs" / "mine", tmp_path / "x", proj / "outputs" / "reference"):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("a user's file\n")
    monkeypatch.delenv("FACTACQ_OUTPUT_DIR", raising=False)  # outputs/ of the scratch project itself
    monkeypatch.chdir(proj)
    return proj


def _params(proj: Path, text: str, name: str = "bad.yaml") -> Path:
    path = proj / "params" / name
    path.write_text("extends: smoke.yaml\n" + text)
    return path


def _refused(capsys, argv: list[str], *fragments: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("factacq: error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def _intact(proj: Path) -> None:
    for folder in (proj / "outputs" / "mine", proj.parent / "x", proj / "outputs" / "reference"):
        assert (folder / "keep.txt").read_text() == "a user's file\n", folder
    assert (proj / "pyproject.toml").is_file()


# ------------------------------------------------------------------------- data loss


@pytest.mark.parametrize("name", ["", "..", "../x", "/some/absolute/dir", ".hidden", "a/b", "outputs/.."])
def test_run_force_refuses_unsafe_names(project, capsys, name):
    path = _params(project, f"name: {json.dumps(name)}\n")
    _refused(capsys, ["run", "--force", str(path)], "bad.yaml", "field 'name'")
    _refused(capsys, ["run", "--dry-run", str(path)], "field 'name'")
    _intact(project)


def test_run_force_refuses_a_folder_factacq_did_not_make(project, capsys):
    path = _params(project, "name: mine\n")  # outputs/mine holds a user's file, no sidecar
    _refused(capsys, ["run", "--force", str(path)], "outputs/mine", "not made by factacq")
    _intact(project)


def test_run_force_refuses_a_symlinked_run_folder(project, capsys, tmp_path):
    (project / "outputs" / "linked").symlink_to(tmp_path / "x")
    path = _params(project, "name: linked\n")
    _refused(capsys, ["run", "--force", str(path)], "refusing to delete")
    _intact(project)


def test_sweep_refuses_condition_names_that_escape(project, capsys, tmp_path):
    sweep = project / "params" / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "conditions": [
        {"name": "../../escaped", "params": "smoke.yaml"}]}))
    _refused(capsys, ["sweep", "--dry-run", str(sweep)], "sweep.yaml", "conditions.0.name")
    assert not list(tmp_path.rglob("escaped*"))
    sweep.write_text(yaml.safe_dump({"name": "../up", "conditions": [{"name": "a", "params": "smoke.yaml"}]}))
    _refused(capsys, ["sweep", "--dry-run", str(sweep)], "field 'name'")
    assert not (project / "up").exists() and not (tmp_path / "up").exists()


def test_inject_out_refuses_a_folder_factacq_did_not_make(project, capsys):
    victim = project / "v"
    (victim / "log").mkdir(parents=True)
    (victim / "log" / "a.txt").write_text("x\n")
    (victim / "params.yaml").write_text("mine\n")
    _refused(capsys, ["inject", str(project / "params" / "smoke.yaml"), "--out", str(victim)],
             str(victim), "not made by factacq")
    assert (victim / "log" / "a.txt").read_text() == "x\n"
    assert (victim / "params.yaml").read_text() == "mine\n"
    assert sorted(p.name for p in victim.iterdir()) == ["log", "params.yaml"]


def test_a_factacq_folder_is_recognised_by_its_sidecar(tmp_path):
    from factacq.inject import check_replaceable, made_by_factacq

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "pretrain"}))  # a base folder is not a run
    assert not made_by_factacq(run)
    with pytest.raises(FactacqError, match="not made by factacq"):
        check_replaceable(run)
    (run / "run.json").write_text(json.dumps({"kind": "inject"}))
    assert made_by_factacq(run)
    check_replaceable(run)
    check_replaceable(tmp_path / "new")  # missing: fine
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")


def test_notebook_setup_refuses_a_foreign_folder_and_marks_its_own(project):
    with pytest.raises(FactacqError, match="not made by factacq"):
        pipeline.notebook_setup(str(project / "params" / "smoke.yaml"), str(project / "outputs" / "mine"),
                                str(project))
    params, run_dir = pipeline.notebook_setup(str(project / "params" / "smoke.yaml"), None, str(project))
    assert run_dir == (project / "outputs" / "smoke").resolve()
    assert json.loads((run_dir / "condition.json").read_text())["kind"] == "condition"


def test_notebook_setup_works_from_the_root_only_where_the_kernel_is_not_there(project, monkeypatch):
    """papermill starts the kernel in the root: nothing moves. A kernel JupyterLab starts in
    notebooks/ moves to root = ".." (relative to where it started), once: a second run of the
    first cell does not climb further."""
    params_path = "params/smoke.yaml"
    pipeline.notebook_setup(params_path, None, str(project))
    assert Path.cwd() == project
    (project / "notebooks").mkdir()
    monkeypatch.chdir(project / "notebooks")
    monkeypatch.setattr(pipeline, "START_DIR", project / "notebooks")
    for _ in range(2):
        params, run_dir = pipeline.notebook_setup(params_path, None, "..")
        assert Path.cwd() == project and run_dir == (project / "outputs" / "smoke").resolve()


# ------------------------------------------------------------------------- honest dry runs


@pytest.mark.parametrize("text, fragments", [
    ("inject:\n  stage: nope\n", ["inject.stage", "'nope'"]),
    ("model:\n  name_or_path: ./no/such/model\n", ["model.name_or_path", "folder not found"]),
    ("model:\n  name_or_path: params/missing-model\n", ["model.name_or_path", "folder not found"]),
    ("corpus:\n  source: ./no/such/corpus\n", ["corpus.source", "no/such/corpus"]),
    ("corpus:\n  source: empty_corpus\n", ["empty_corpus", "no .txt, .jsonl or .parquet"]),
    ("pretrain:\n  seq_len: 8\n", ["bad.yaml", "pretrain.seq_len=8"]),
    ("inject:\n  stagger: 0\n  max_row_fraction: 0.1\n", ["bad.yaml", "inject.max_row_fraction"]),
])
def test_dry_run_refuses_what_the_run_would(project, capsys, text, fragments):
    (project / "empty_corpus").mkdir()
    path = _params(project, text)
    _refused(capsys, ["run", "--dry-run", str(path)], *fragments)


def test_dry_run_refuses_cuda_on_a_cpu_machine(project, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = _params(project, "device: cuda\n")
    _refused(capsys, ["run", "--dry-run", str(path)], "device", "CUDA is not available")


def test_run_refuses_before_pretraining(project, capsys):
    """The real run checks what the dry run checks before it trains anything."""
    path = _params(project, "pretrain:\n  seq_len: 8\n")
    _refused(capsys, ["inject", str(path), "--out", str(project / "outputs" / "run8")], "pretrain.seq_len=8")
    base = Path(load_params(path).cache_dir) / "base"
    trained = [yaml.safe_load((b / "params.yaml").read_text())["pretrain"]["seq_len"]
               for b in (base.iterdir() if base.is_dir() else []) if (b / "params.yaml").is_file()]
    assert 8 not in trained
    assert not (project / "outputs" / "run8").exists()


def test_empty_params_are_the_defaults_and_a_valid_plan(project, capsys):
    path = project / "params" / "empty.yaml"
    path.write_text("")
    plan = pipeline.dry_run_plan(load_params(path), calibrate=False)
    assert plan["injections"] > 0 and plan["knowledge_row_share_max"] <= 0.5


# ------------------------------------------------------------------------- params files


@pytest.mark.parametrize("text, fragments", [
    ("optim:\n  lr: 1.0e-3\noptim:\n  lr: 2.0e-3\n", ["bad.yaml", "duplicate key 'optim'", "line 4"]),
    ("probe:\n  window: true\n", ["field 'probe.window'", "valid integer", "True"]),
    ("probe:\n  window: 2.5\n", ["field 'probe.window'", "2.5"]),
    ("name: 7\n", ["field 'name'"]),
    ("optim: [\n", ["bad.yaml", "not valid YAML at line"]),
])
def test_params_file_errors_are_one_line(project, capsys, text, fragments):
    path = _params(project, text)
    _refused(capsys, ["run", "--dry-run", str(path)], *fragments)


def test_exponent_floats_are_floats(project):
    assert load_params(_params(project, "optim:\n  lr: 1e-3\n")).optim.lr == 1e-3


def test_invalid_sweep_yaml_is_one_line(project, capsys):
    sweep = project / "params" / "sweep.yaml"
    sweep.write_text("name: s\nconditions:\n  - name: a\n    params: [smoke.yaml\n")
    _refused(capsys, ["sweep", "--dry-run", str(sweep)], "sweep.yaml", "not valid YAML")


def test_relative_paths_resolve_against_the_project_root(project, capsys, tmp_path, monkeypatch):
    from factacq import generate, knowledge

    (project / "data").mkdir()
    knowledge.save_jsonl(generate.generate_knowledge(8, n_paraphrases=3), project / "data" / "x.jsonl")
    path = _params(project, "name: rel\nknowledge:\n  source: data/x.jsonl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["run", "--dry-run", str(path)]) == 0, capsys.readouterr().err
    assert pipeline.project_root(path) == project
    monkeypatch.setenv("FACTACQ_ROOT", str(elsewhere))
    _refused(capsys, ["run", "--dry-run", str(path)], "data/x.jsonl")


# ------------------------------------------------------------------------- notebooks


def test_an_interrupted_render_is_marked_interrupted(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("b = 2")]
    nb.cells[0].execution_count = 1
    for cell in nb.cells:
        cell.metadata["papermill"] = {"status": "completed"}
    target = tmp_path / "02_inject.ipynb"
    nbformat.write(nb, str(target))
    pipeline.mark_interrupted(target)
    out = nbformat.read(str(target), as_version=4)
    assert out.metadata["factacq"]["status"] == "interrupted"
    assert "Interrupted" in out.cells[0].source
    assert out.cells[2].metadata["papermill"]["status"] == "pending"


def test_the_kernel_reports_progress_to_the_terminal_not_the_notebook(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, time\nfrom factacq.train import _progress_bar\n"
        "print(os.environ.get('FACTACQ_PROGRESS'))\n"
        "bar, stream = _progress_bar(3, 'progress-line')\n"
        "for _ in range(3):\n    bar.update(1)\n"
        "bar.close()\ntime.sleep(1.0)  # time for a forwarded copy to reach the notebook, if any")]
    nb.cells[0].metadata["tags"] = []
    source = tmp_path / "nbs"
    source.mkdir()
    nbformat.write(nb, str(source / "t.ipynb"))
    target = pipeline.execute_notebook("t.ipynb", tmp_path / "out", {}, notebooks_dir=source)
    outputs = json.dumps(nbformat.read(str(target), as_version=4).cells[0].outputs)
    assert "terminal" in outputs and "progress-line" not in outputs
    assert "progress-line" in capfd.readouterr().err
