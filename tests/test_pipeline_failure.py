"""A failed notebook is kept rendered with its error, no COMPLETE marker is written, and the CLI exits nonzero."""

from __future__ import annotations

import json

import nbformat
import pytest

from factacq import cli, pipeline
from factacq.errors import FactacqError


def _notebook(code: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('params_path = ""\nrun_dir = ""\nroot = ".."')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def failing_notebooks(tmp_path, monkeypatch):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for i, name in enumerate(pipeline.CONDITION_NOTEBOOKS):
        code = "raise RuntimeError('boom in notebook two')" if i == 1 else "print('fine')"
        nbformat.write(_notebook(code), nb_dir / name)
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", nb_dir)
    params = tmp_path / "p.yaml"
    params.write_text(f"name: failing\noutput_dir: {tmp_path / 'out'}\n")
    return nb_dir, params, tmp_path / "out" / "failing"


def test_failed_notebook_is_rendered_with_its_error(failing_notebooks):
    nb_dir, params, run_dir = failing_notebooks
    with pytest.raises(FactacqError, match=r"02_inject.ipynb failed .*RuntimeError: boom in notebook two"):
        pipeline.run_condition(params, notebooks_dir=nb_dir, echo=lambda *_: None)
    rendered = nbformat.read(run_dir / "notebooks" / "02_inject.ipynb", as_version=4)
    errors = [o for c in rendered.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "boom in notebook two"
    assert (run_dir / "notebooks" / "01_pretrain.ipynb").is_file()
    assert not (run_dir / "notebooks" / "03_acquisition.ipynb").exists()
    assert not (run_dir / pipeline.COMPLETE).exists()


def test_cli_run_exits_nonzero_on_failure(failing_notebooks, capsys):
    _, params, _ = failing_notebooks
    assert cli.main(["run", str(params)]) == 2
    assert "boom in notebook two" in capsys.readouterr().err


def test_complete_condition_is_skipped(tmp_path, monkeypatch):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for name in pipeline.CONDITION_NOTEBOOKS:
        nbformat.write(_notebook("print('ran')"), nb_dir / name)
    params = tmp_path / "p.yaml"
    params.write_text(f"name: ok\noutput_dir: {tmp_path / 'out'}\n")
    lines = []
    run_dir = pipeline.run_condition(params, notebooks_dir=nb_dir, echo=lines.append)
    marker = json.loads((run_dir / pipeline.COMPLETE).read_text())
    assert len(marker["params_hash"]) == 12
    lines.clear()
    pipeline.run_condition(params, notebooks_dir=nb_dir, echo=lines.append)
    assert lines == [f"[factacq] ok: complete, skipping ({run_dir})"]
    # a changed params file is not complete any more
    params.write_text(f"name: ok\noutput_dir: {tmp_path / 'out'}\nnotes: changed\n")
    lines.clear()
    pipeline.run_condition(params, notebooks_dir=nb_dir, echo=lines.append)
    assert any("01_pretrain.ipynb done" in line for line in lines)
