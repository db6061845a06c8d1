"""Shared fixtures. Tests never touch the network; the paper's dataset is read from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FK = ROOT.parent / "shared" / "fictional_knowledge"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def paper_json() -> Path:
    path = SHARED_FK / "fictional_knowledge.json"
    assert path.is_file(), f"the paper's dataset is expected at {path}"
    return path


@pytest.fixture(scope="session")
def paper_paraphrased_json() -> Path:
    path = SHARED_FK / "fictional_knowledge_paraphrased.json"
    assert path.is_file(), f"the paper's dataset is expected at {path}"
    return path
