"""Loaded first by every pytest run in this project (`make test` = `pytest tests notebooks --nbval-lax`,
or `pytest notebooks` alone): everything a test or a notebook writes goes to one temporary folder.

`factacq.params.load_params` reads FACTACQ_CACHE_DIR / FACTACQ_OUTPUT_DIR in place of the default
cache_dir / output_dir, so the smoke params the notebooks run with (and any test that keeps the
defaults) use this folder, never the project's .cache/ and outputs/. They are set here, at import,
before any test runs or any nbval kernel starts (a kernel inherits this process's environment),
and set unconditionally: a user's own FACTACQ_* folders are not written into either. The cache is
one per session, so the smoke base is pretrained once and shared by the tests and the notebooks.
The folder is deleted when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SESSION_DIR = Path(tempfile.mkdtemp(prefix="factacq-tests-"))
os.environ["FACTACQ_CACHE_DIR"] = str(SESSION_DIR / "cache")
os.environ["FACTACQ_OUTPUT_DIR"] = str(SESSION_DIR / "outputs")


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)
