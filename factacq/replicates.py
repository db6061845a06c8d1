"""Replicates (seeds) of one condition pooled into one frame, with each item named by its replicate.

A sweep with `seeds` runs each condition once per seed (factacq.pipeline). To pool them, every
`item_id` becomes f"{replicate}{SEP}{item_id}", so items of different seeds stay distinct, and a
`replicate` column is added. The item bootstrap (metrics.resampled_means, through
metrics.bootstrap_samples and fits.retention_samples) reads the replicate back from the item ids
(:func:`clusters_of`) and then resamples replicates first and items within them, so its intervals
cover seeds as well as items.

This module imports only runlog, files and errors (metrics and fits import it); the analysis
tables are read by files.read_run_table, as analyze.load_table reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from factacq.errors import FactacqError
from factacq.files import read_run_table
from factacq.runlog import load_run

SEP = "::"


def pool_frames(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The frames (run logs or per-probe tables) of the replicates of one condition, one after the
    other: `item_id` prefixed with f"{replicate}{SEP}" (null ids, e.g. train records, stay null)
    and a `replicate` column (str). An empty frame without columns (an empty table) adds nothing."""
    parts = []
    for replicate, frame in frames.items():
        replicate = str(replicate)
        if SEP in replicate:
            raise FactacqError(f"replicate {replicate!r}: a replicate name must not contain {SEP!r}")
        if frame.empty and "item_id" not in frame.columns:
            continue
        if "item_id" not in frame.columns:
            raise FactacqError(f"replicate {replicate!r}: no `item_id` column to pool by")
        ids = frame["item_id"]
        named = ids.notna()
        text = ids[named].astype(str)
        clash = text[text.str.contains(SEP, regex=False)]
        if len(clash):
            raise FactacqError(f"replicate {replicate!r}: item_id {clash.iloc[0]!r} already "
                               f"contains {SEP!r}")
        pooled = ids.to_numpy(dtype=object).copy()
        pooled[named.to_numpy()] = (replicate + SEP + text).to_numpy()
        part = frame.copy()
        part["item_id"] = pooled
        part["replicate"] = replicate
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def clusters_of(item_ids) -> np.ndarray | None:
    """The replicate of each item id as an integer label (0, 1, ... in sorted replicate order) when
    every id is a pooled one (contains SEP); None otherwise (ids of one run, or none)."""
    ids = pd.Series(np.asarray(item_ids, dtype=object)).astype(str)
    if ids.empty or not ids.str.contains(SEP, regex=False).all():
        return None
    replicate = ids.str.split(SEP, n=1, regex=False).str[0].to_numpy()
    return np.unique(replicate, return_inverse=True)[1].astype(np.int64)


def run_labels(run_dirs) -> list[tuple[str, Path]]:
    """(replicate label = the run folder's name, folder) for each run folder; names must differ."""
    pairs = [(Path(d).name, Path(d)) for d in run_dirs]
    names = [name for name, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FactacqError(f"replicates: run folders with the same name {dupes}: a replicate is "
                           f"named by its folder")
    return pairs


def pool_runs(run_dirs: list[Path | str]) -> pd.DataFrame:
    """The run logs (runlog.load_run) of the replicates of one condition, pooled (:func:`pool_frames`)."""
    return pool_frames({name: load_run(d) for name, d in run_labels(run_dirs)})


def pool_tables(run_dirs: list[Path | str], name: str) -> pd.DataFrame:
    """One per-probe table of `factacq analyze` (tables/<name>.csv, e.g. retainability_points or
    effectivity) of the replicates of one condition, pooled (:func:`pool_frames`)."""
    return pool_frames({label: read_run_table(d, name) for label, d in run_labels(run_dirs)})
