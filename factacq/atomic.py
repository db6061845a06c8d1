"""Atomic file writes: write to a temp file beside the target, rename it into place on success.

A crash or an error never leaves a half-written file at the target path, and the temp file is
removed on failure. Folders (checkpoints, the base, the tokenizer) are written the same way with
:func:`atomic_dir` and swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yield a temp path to write; on success it replaces `path`, on error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # the mode open() would give, not mkstemp's private 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# atomic_dir's temp folders: .<name>.tmp-<host>-<pid>-<random>, so a later run can tell a stale one
_TMP_DIR = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[^/]*")


def _pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this machine (a process of another user counts)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is another user's
        return True
    return True


def remove_stale_temp_dirs(parent: str | Path) -> list[Path]:
    """Delete the temp folders of :func:`atomic_dir` in ``parent`` whose process is gone (a kill -9
    leaves its temp folder behind): those made on this machine by a pid that is no longer alive.
    A live process's temp folder, another machine's, and any other name are left alone."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_DIR.fullmatch(entry.name)
        if (m and m["host"] == _HOST and entry.is_dir(follow_symlinks=False)
                and not _pid_alive(int(m["pid"]))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _chmod_tree(root: Path, umask: int) -> None:
    """Give every file and folder under ``root`` the mode open() / mkdir would (some writers, such as
    safetensors, create private 0600 files)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~umask)
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                executable = os.stat(file).st_mode & 0o100
                os.chmod(file, (0o777 if executable else 0o666) & ~umask)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp folder beside `path` to fill; on success it replaces `path` (an existing folder
    is first renamed to `<name>.old-<pid>`, then removed), on error it is deleted. Every file in it
    gets the umask's mode. The temp folder is named `.<name>.tmp-<host>-<pid>-<random>`; stale ones
    beside it (their process killed, so never deleted) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(path.parent)
    umask = _umask()
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-{_HOST}-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~umask)  # the mode mkdir would give, not mkdtemp's private 0700
    try:
        yield tmp
        _chmod_tree(tmp, umask)
        old = None
        if path.exists():
            old = path.with_name(f"{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finite_json(data):
    """A JSON-safe copy of ``data``: NaN and +-inf become None (null), recursively through dicts,
    lists and tuples; numpy scalars become Python numbers."""
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def json_text(data, **kwargs) -> str:
    """``json.dumps`` that always gives valid JSON (RFC 8259 has no NaN or Infinity): non-finite
    floats become null (:func:`finite_json`), and ``allow_nan=False`` refuses any left."""
    return json.dumps(finite_json(data), allow_nan=False, **kwargs)
