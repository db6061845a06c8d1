import json

import pandas as pd
import pytest

from factacq.errors import FactacqError
from factacq.runlog import RunLogWriter, chunk_paths, load_run, write_json_atomic


def _probe(step, value):
    return {"run_id": "r", "record": "probe", "step": step, "item_id": "a", "scenario": "once",
            "kind": "memorization", "probe_index": 0, "logprob": value}


def test_append_and_load_round_trip(tmp_path):
    w = RunLogWriter(tmp_path)
    w.append([_probe(0, -3.0), _probe(1, -2.5)])
    w.append([{"run_id": "r", "record": "train", "step": 1, "loss": 4.0, "bg_loss": 4.1}])
    df = load_run(tmp_path)
    assert list(df["record"]) == ["probe", "probe", "train"]
    assert df.loc[1, "logprob"] == -2.5
    assert pd.isna(df.loc[2, "logprob"]) and df.loc[2, "loss"] == 4.0
    assert list(load_run(tmp_path, record="train")["step"]) == [1]


def test_a_chunk_from_before_the_cohort_column_loads_with_null_cohorts(tmp_path):
    import pyarrow.parquet as pq

    from factacq.runlog import SCHEMA, to_table

    RunLogWriter(tmp_path)  # makes log/
    old = to_table([{"run_id": "r", "record": "injection", "step": 3, "item_id": "a", "scenario": "once",
                     "text_index": 0, "row": 5}]).drop_columns(["cohort"])
    pq.write_table(old, tmp_path / "log" / "chunk-000000.parquet")  # a log written before the column
    RunLogWriter(tmp_path).append([{"run_id": "r", "record": "injection", "step": 4, "item_id": "b",
                                    "scenario": "duplicate", "text_index": 0, "row": 1, "cohort": "3x5"}])
    df = load_run(tmp_path)
    assert list(df.columns) == SCHEMA.names
    assert pd.isna(df.loc[0, "cohort"]) and df.loc[1, "cohort"] == "3x5"
    assert list(df["row"]) == [5, 1]


def test_writer_continues_numbering_and_truncates(tmp_path):
    RunLogWriter(tmp_path).append([_probe(0, -1.0)])
    w = RunLogWriter(tmp_path)
    w.append([_probe(1, -1.0)])
    w.append([_probe(2, -1.0)])
    assert [p.name for p in chunk_paths(tmp_path)] == [
        "chunk-000000.parquet", "chunk-000001.parquet", "chunk-000002.parquet"]
    w.truncate_after(1)
    assert list(load_run(tmp_path)["step"]) == [0]


def test_no_temp_files_left_and_unknown_column_refused(tmp_path):
    w = RunLogWriter(tmp_path)
    with pytest.raises(FactacqError, match="unknown column"):
        w.append([{"record": "probe", "bogus": 1}])
    assert list((tmp_path / "log").iterdir()) == []


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(FactacqError, match="no run log"):
        load_run(tmp_path)


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "run.json", {"a": 1})
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_atomic_writes_get_the_mode_open_would_give(tmp_path):
    import os
    import stat

    from factacq.atomic import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("a\n1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
