"""Project files agree: environment.yml with pyproject.toml, the docs with the paths they name."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pip_deps_from_environment() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip, "environment.yml has no pip section"
    return {d for d in pip[0] if not d.startswith("-e")}


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert _pip_deps_from_environment() == wanted


def test_torch_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]


def test_paths_named_in_the_docs_exist():
    """Every committed path the README, docs/architecture.md and DEVELOPERS.md name is there."""
    import re

    pattern = re.compile(r"(?:outputs/reference[a-z_]*|params|notebooks|benchmarks|docs|factacq)/[A-Za-z0-9_./*-]+")
    missing = []
    for doc in ("README.md", "docs/architecture.md", "DEVELOPERS.md"):
        for path in set(pattern.findall((ROOT / doc).read_text())):
            path = path.rstrip(".")
            if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
                missing.append(f"{doc}: {path}")
    assert not missing, missing
