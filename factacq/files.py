"""Reading the files factacq is handed (text, JSON, JSONL) with one-line errors.

A missing, unreadable, binary, truncated or too deeply nested file is one :class:`FactacqError`
line that names it: ``<path>: <reason>`` for the user's input files (knowledge, corpus) and
``<path>: corrupt <what> (<reason>)`` for the files factacq wrote itself (run.json, checkpoints).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from factacq.errors import FactacqError, first_line


class _Unparsable(Exception):
    """What is wrong with a file's content, as one phrase; the caller names the file."""


def _loads(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unparsable(f"not valid JSON: {first_line(exc)}") from None
    except RecursionError:
        raise _Unparsable("not valid JSON: nested too deeply") from None


def _not_utf8(exc: UnicodeDecodeError, where: bool = True) -> _Unparsable:
    at = f"byte {exc.start}: " if where else ""
    return _Unparsable(f"not a UTF-8 text file ({at}{exc.reason})")


def _cannot_read(path: Path, what: str, exc: OSError) -> FactacqError:
    return FactacqError(f"{path}: cannot read the {what}: {exc.strerror or exc}")


def _text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FactacqError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None
    except OSError as exc:
        raise _cannot_read(path, what, exc) from None


def read_text(path: str | Path, what: str) -> str:
    """The text of a UTF-8 file; ``what`` names it in errors (e.g. "corpus file")."""
    path = Path(path)
    try:
        return _text(path, what)
    except _Unparsable as exc:
        raise FactacqError(f"{path}: {exc}") from None


def read_json(path: str | Path, what: str):
    """The parsed content of a JSON file the user gave (any top level)."""
    path = Path(path)
    try:
        return _loads(_text(path, what))
    except _Unparsable as exc:
        raise FactacqError(f"{path}: {exc}") from None


def iter_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, object]]:
    """(line number from 1, parsed value) of each non-blank line of a JSONL file the user gave,
    read as it is iterated (a bad line is reported when it is reached)."""
    path = Path(path)
    if not path.is_file():
        raise FactacqError(f"{path}: {what} not found")
    try:
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = _loads(line)
                except _Unparsable as exc:
                    raise FactacqError(f"{path}: line {line_no}: {exc}") from None
                yield line_no, value
    except UnicodeDecodeError as exc:  # read in chunks: the byte offset would mislead
        raise FactacqError(f"{path}: {_not_utf8(exc, where=False)}") from None
    except OSError as exc:
        raise _cannot_read(path, what, exc) from None


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON file factacq wrote whose top level is an object; a truncated, binary or too deeply
    nested file is one line: ``<path>: corrupt <what> (...)``."""
    path = Path(path)
    try:
        data = _loads(_text(path, what))
    except _Unparsable as exc:
        raise FactacqError(f"{path}: corrupt {what} ({exc})") from None
    if not isinstance(data, dict):
        raise FactacqError(f"{path}: corrupt {what} (top level must be an object, got "
                           f"{type(data).__name__})")
    return data


def read_run_table(run_dir: str | Path, name: str):
    """tables/<name>.csv of a run folder as written by `factacq analyze` (an empty table, written
    as an empty line with no header, is an empty frame); a missing one names the command to run."""
    import pandas as pd  # deferred: the other readers here need only the standard library

    path = Path(run_dir) / "tables" / f"{name}.csv"
    if not path.is_file():
        raise FactacqError(f"{path}: table not found; run `factacq analyze {run_dir}` first")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
