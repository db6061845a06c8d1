"""Run logs: one long-format table per run, stored as parquet chunks appended atomically.

A chunk is written to a temporary file in the same folder and renamed into place, so a crash never
leaves a corrupt chunk and a reader can load a run while it trains. The JSON sidecar `run.json`
records params, seeds, package versions, git commit and device. The schema is documented in
docs/architecture.md ("Run log schema").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from factacq.atomic import atomic_path, json_text
from factacq.errors import FactacqError, first_line
from factacq.files import read_json_object

RECORDS = ("probe", "injection", "train")

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("record", pa.string()),
        ("step", pa.int64()),
        ("global_step", pa.int64()),
        ("item_id", pa.string()),
        ("scenario", pa.string()),
        ("kind", pa.string()),
        ("probe_index", pa.int64()),
        ("logprob", pa.float64()),
        ("first_logprob", pa.float64()),
        ("seq_logprob", pa.float64()),
        ("foil_logprob", pa.float64()),
        ("first_foil_logprob", pa.float64()),
        ("text_index", pa.int64()),
        ("row", pa.int64()),
        ("cohort", pa.string()),
        ("loss", pa.float64()),
        ("bg_loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("tokens", pa.int64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
CHUNK_PREFIX = "chunk-"


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON to `path` through a temp file + rename (never a half-written file). Always valid
    JSON: NaN and +-inf are written as null (:func:`factacq.atomic.json_text`)."""
    text = json_text(data, indent=2, sort_keys=True, default=str)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def to_table(records: list[dict] | pd.DataFrame) -> pa.Table:
    """Records (dicts or a DataFrame with any subset of the columns) as a table of the full schema."""
    frame = pd.DataFrame(records) if not isinstance(records, pd.DataFrame) else records
    unknown = set(frame.columns) - set(COLUMNS)
    if unknown:
        raise FactacqError(f"run log: unknown column(s) {sorted(unknown)}")
    bad = set(frame.get("record", pd.Series(dtype=str)).dropna()) - set(RECORDS)
    if bad:
        raise FactacqError(f"run log: unknown record kind(s) {sorted(bad)}")
    arrays = []
    for field in SCHEMA:
        if field.name in frame.columns:
            values = frame[field.name].tolist()
            values = [None if (isinstance(v, float) and v != v) else v for v in values]
            arrays.append(pa.array(values, type=field.type))
        else:
            arrays.append(pa.nulls(len(frame), type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


class RunLogWriter:
    """Appends chunks `log/chunk-NNNNNN.parquet` to a run folder.

    `next_chunk` continues after the chunks already on disk, so a resumed run appends to its log;
    `truncate_after(n)` deletes chunks with index >= n (used by resume to drop chunks written after
    the checkpoint it restarts from).
    """

    def __init__(self, run_dir: str | Path):
        self.log_dir = Path(run_dir) / "log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.next_chunk = len(chunk_paths(self.log_dir.parent))

    def append(self, records: list[dict] | pd.DataFrame) -> Path | None:
        table = to_table(records)
        if table.num_rows == 0:
            return None
        path = self.log_dir / f"{CHUNK_PREFIX}{self.next_chunk:06d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self.next_chunk += 1
        return path

    def truncate_after(self, n_chunks: int) -> None:
        for path in chunk_paths(self.log_dir.parent)[n_chunks:]:
            path.unlink()
        self.next_chunk = len(chunk_paths(self.log_dir.parent))


def chunk_paths(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / "log").glob(f"{CHUNK_PREFIX}*.parquet"))


def load_run(run_dir: str | Path, record: str | None = None) -> pd.DataFrame:
    """The run log as one DataFrame (optionally only one record kind), sorted as written."""
    run_dir = Path(run_dir)
    paths = chunk_paths(run_dir)
    if not paths:
        raise FactacqError(f"{run_dir}: no run log (expected {run_dir / 'log'}/{CHUNK_PREFIX}*.parquet)")
    frame = pa.concat_tables([_read_chunk(p) for p in paths]).to_pandas()
    if record is not None:
        if record not in RECORDS:
            raise FactacqError(f"record must be one of {RECORDS}, got {record!r}")
        frame = frame[frame["record"] == record].reset_index(drop=True)
    return frame


def _read_chunk(path: Path) -> pa.Table:
    """One log chunk; a truncated or foreign file is one line naming it."""
    try:
        return pq.read_table(path, schema=SCHEMA)
    except (pa.ArrowException, OSError) as exc:
        reason = first_line(exc).replace(f" '{path}'", "")  # pyarrow repeats the path
        raise FactacqError(f"{path}: unreadable run-log chunk: {reason}") from None


def load_sidecar(run_dir: str | Path) -> dict:
    """The run.json sidecar of a run folder (or a pretraining base folder) as a dict."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FactacqError(f"{run_dir}: no run.json sidecar")
    return read_json_object(path, "run.json sidecar")


def probes(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["record"] == "probe"].reset_index(drop=True)


def injections(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["record"] == "injection"].reset_index(drop=True)


def train_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["record"] == "train"].reset_index(drop=True)
