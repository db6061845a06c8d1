"""Issue 12's experiments through the pipeline: a beyond sweep on the smoke model renders notebook
06, its tables and figures; the sweep's notebook parameters are checked; beyond_runs reads run
folders as the statistics expect."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from factacq import beyond_runs, cli, pipeline
from factacq.errors import FactacqError
from factacq.runlog import load_sidecar

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "beyond" / "smoke.yaml"


def _sweep(tmp_path: Path, **fields) -> Path:
    """A beyond sweep of the smoke beyond condition: interval = longtail = dedup_off (one run), and
    dedup_on (the same with 20% of its background rows copies of 4 rows), with the notebook's
    smoke parameters."""
    data = yaml.safe_load(SMOKE.read_text())
    data["extends"] = str(ROOT / "params" / "smoke.yaml")
    data.update(output_dir=str(tmp_path / "outputs"), cache_dir=os.environ["FACTACQ_CACHE_DIR"])
    (tmp_path / "beyond.yaml").write_text(yaml.safe_dump(data))
    sweep = {"name": "bsweep", "output_dir": str(tmp_path / "outputs"),
             "notebook": "06_beyond.ipynb",
             "conditions": [
                 {"name": "interval", "params": "beyond.yaml"},
                 {"name": "dedup_on", "params": "beyond.yaml", "overrides": {
                     "inject": {"duplicate_background": {"fraction": 0.2, "pool": 4}}}}],
             "compare": {"dedup": ["interval", "dedup_on"]},
             "notebook_parameters": {"longtail": "interval", "horizon": 4,
                                     "frequency_scenario": "paraphrase", "interval_scenarios": ["duplicate"],
                                     "fit_cohorts": ["interval:1x", "interval:3x2"],
                                     "heldout_cohorts": ["interval:3x4"]},
             **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_beyond_sweep_renders_notebook_06_with_every_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTACQ_PROGRESS", "0")
    path = _sweep(tmp_path)
    assert cli.main(["sweep", str(path)]) == 0
    sweep_dir = tmp_path / "outputs" / "bsweep"
    rendered = nbformat.read(sweep_dir / "notebooks" / pipeline.BEYOND_NOTEBOOK, as_version=4)
    errors = [o for c in rendered.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert not (sweep_dir / "notebooks" / pipeline.CONDITIONS_NOTEBOOK).exists()
    results = pd.read_csv(sweep_dir / "tables" / "beyond.csv")
    assert set(results["experiment"]) == {"§1 interval", "§2 long tail", "§3 dedup", "§4 model"}
    assert set(results["measure"]) == {"adjusted", "contrast", "raw"}
    for name in ("net_acquisition_duplicate", "frequency", "dedup", "predictive"):
        assert (sweep_dir / "figures" / f"{name}_adjusted.png").is_file()
    # the table holds what the statistics give for the same run folders
    interval = [sweep_dir / "interval"]
    again = beyond_runs.interval_results(interval, 4, ["contrast"])["duplicate"]["contrast"]
    row = results[(results["measure"] == "contrast")
                  & results["quantity"].str.startswith("duplicate: threshold, paper reading")].iloc[0]
    assert np.isclose(row["value"], again["paper"]["prediction"], rtol=1e-12, equal_nan=True)
    # the duplicated background of dedup_on was used, and recorded
    background = load_sidecar(sweep_dir / "dedup_on")["background"]
    assert 0 < background["replaced_rows"] < background["rows"]
    assert "background" not in load_sidecar(sweep_dir / "interval")


def test_load_condition_prefixes_items_by_run_and_cohorts_by_condition(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTACQ_PROGRESS", "0")
    sweep_dir, replicates = pipeline.beyond_setup(
        None, {"interval": [None]}, str(ROOT), str(_smoke_params(tmp_path)))
    run = replicates["interval"][0]
    frame, schedules = beyond_runs.load_condition([run], name="iv")
    # a single encounter is "1x" in either group (the paraphrase group's 1 of 8 over its span too)
    assert set(schedules["cohort"]) == {"iv:1x", "iv:3x2", "iv:3x4", "iv:2/8", "iv:4/8"}
    assert schedules["item_id"].str.startswith(f"{run.name}::").all()
    injected = frame[frame["record"] == "injection"]
    assert injected["cohort"].str.startswith("iv:").all()
    cohorts = beyond_runs.describe_cohorts(schedules)
    assert cohorts.set_index("cohort").loc["iv:3x4", "count"] == 3
    # every duplicate cohort ends on the same step (align: end)
    dup = schedules[schedules["scenario"] == "duplicate"]
    ends = dup.assign(shift=dup["last_step"] - dup["first_step"]).groupby("cohort")["shift"]
    assert ends.first().to_dict()["iv:3x4"] == 8 and ends.first().to_dict()["iv:3x2"] == 4


def _smoke_params(tmp_path: Path) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    data["extends"] = str(ROOT / "params" / "smoke.yaml")
    data.update(output_dir=str(tmp_path / "outputs"), cache_dir=os.environ["FACTACQ_CACHE_DIR"])
    path = tmp_path / "smoke_beyond.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("parameters, message", [
    ({"replicates": {}}, r"notebook_parameters\.replicates: set by factacq sweep itself"),
    ({"horizonn": 4}, r"notebook_parameters\.horizonn: not a parameter of 06_beyond\.ipynb"),
])
def test_sweep_notebook_parameters_are_checked(tmp_path, parameters, message):
    path = _sweep(tmp_path, notebook_parameters=parameters)
    with pytest.raises(FactacqError, match=message):
        pipeline.load_sweep(path)


def test_sweep_notebook_must_be_a_cross_condition_notebook(tmp_path, capsys):
    path = _sweep(tmp_path, notebook="02_inject.ipynb")
    assert cli.main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notebook" in err and "02_inject.ipynb" in err
