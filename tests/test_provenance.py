"""factacq.provenance: what every run records about itself (package versions, git commit, device)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from factacq import provenance as prov

ROOT = Path(__file__).resolve().parents[1]
SHA = re.compile(r"[0-9a-f]{40}")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c",
                           "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_package_versions_name_the_installed_builds():
    versions = prov.package_versions()
    assert set(versions) == {"python", *prov.PACKAGES}
    assert {"factacq", "torch", "transformers", "numpy"} <= set(versions)
    assert versions["torch"] == torch.__version__ and versions["torch"].startswith("2.13.0")
    assert versions["numpy"] == np.__version__
    assert versions["python"] == platform.python_version()
    assert "not installed" not in versions.values()


def test_a_missing_package_is_recorded_not_raised(monkeypatch):
    monkeypatch.setattr(prov, "PACKAGES", ("torch", "no-such-package-factacq"))
    assert prov.package_versions()["no-such-package-factacq"] == "not installed"


def test_git_commit_of_a_checkout_clean_dirty_and_untracked(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert SHA.fullmatch(head) and prov.git_commit(repo) == head
    (repo / "new.txt").write_text("untracked\n")  # untracked files do not make the tree dirty
    assert prov.git_commit(repo) == head
    (repo / "a.txt").write_text("two\n")
    assert prov.git_commit(repo) == head + "+dirty"
    assert prov.git_commit(repo / "..") != head  # the commit of the folder asked about, not of cwd


def test_git_commit_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never look above tmp_path
    assert prov.git_commit(plain) == "unknown"
    assert prov.git_commit(tmp_path / "does-not-exist") == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git program at all
    assert prov.git_commit(ROOT) == "unknown"


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="factacq is not running from a git checkout")
def test_git_commit_defaults_to_the_checkout_factacq_runs_from():
    recorded = prov.git_commit()
    assert recorded.removesuffix("+dirty") == _git(ROOT, "rev-parse", "HEAD")


def test_device_description(monkeypatch):
    cpu = prov.device_description("cpu")
    assert cpu.startswith("cpu:") and len(cpu) > len("cpu:")
    assert prov.device_description() == cpu
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    assert prov.device_description("cuda") == "cuda:NVIDIA H200"
    assert prov.device_description("cuda:1") == "cuda:NVIDIA H200"


def test_provenance_is_json_and_complete():
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    record = prov.provenance("cpu")
    assert set(record) == {"versions", "git_commit", "device", "created", "host"}
    assert json.loads(json.dumps(record)) == record  # what run.json stores reads back the same
    assert record["versions"] == prov.package_versions()
    assert record["device"] == prov.device_description("cpu")
    assert record["git_commit"] == "unknown" or SHA.fullmatch(record["git_commit"].removesuffix("+dirty"))
    created = dt.datetime.fromisoformat(record["created"])
    assert created.tzinfo is not None and before <= created <= dt.datetime.now(dt.timezone.utc)
    assert record["host"] == platform.node()
