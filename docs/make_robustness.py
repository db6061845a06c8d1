"""Write docs/robustness.md: every bad input in CASES, run through the real `factacq` command in a
scratch project, with the exit status and the one line it printed.

    .venv/bin/python docs/make_robustness.py            # ~3 minutes on 2 cores

The scratch project lives in a temporary folder (deleted at the end): params/smoke.yaml, one
finished smoke injection run (for the analyze / resume cases) and the damaged copies the cases
need. Nothing is written into this repository except docs/robustness.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FACTACQ = [sys.executable, "-m", "factacq.cli"]


def params(text: str):
    """A case whose input is a params file extending the smoke preset."""
    def make(proj: Path) -> Path:
        path = proj / "params" / "bad.yaml"
        path.write_text("extends: smoke.yaml\n" + text)
        return path
    return make


def file_with(name: str, content: bytes | str):
    def make(proj: Path) -> Path:
        path = proj / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path
    return make


def damaged_run(damage):
    """A copy of the finished smoke run with `damage(run_dir)` applied."""
    def make(proj: Path) -> Path:
        run = proj / "outputs" / f"damaged-{len(list((proj / 'outputs').glob('damaged-*')))}"
        shutil.copytree(proj / "outputs" / "good", run)
        damage(run)
        return run
    return make


def truncate(rel: str, keep: int = 100):
    def damage(run: Path) -> None:
        path = sorted(run.glob(rel))[0]
        path.write_bytes(path.read_bytes()[:keep])
    return damage


def user_folder(proj: Path) -> Path:
    (proj / "v" / "log").mkdir(parents=True, exist_ok=True)
    (proj / "v" / "log" / "a.txt").write_text("x\n")
    return proj / "v"


# (category, case, argv with {input} standing for what make(proj) returns, make)
CASES = [
    ("data loss", "`name: \"\"`, `run --force`", ["run", "--force", "{input}"], params('name: ""\n')),
    ("data loss", "`name: \"..\"`, `run --force`", ["run", "--force", "{input}"], params('name: ".."\n')),
    ("data loss", "`name: \"../x\"`, `run --force`", ["run", "--force", "{input}"], params('name: "../x"\n')),
    ("data loss", "`name: /some/absolute/dir`, `run --force`", ["run", "--force", "{input}"],
     params("name: /some/absolute/dir\n")),
    ("data loss", "`name: .hidden`, `run --dry-run`", ["run", "--dry-run", "{input}"], params("name: .hidden\n")),
    ("data loss", "`run --force` on `outputs/mine`, a folder factacq did not make", ["run", "--force", "{input}"],
     params("name: mine\n")),
    ("data loss", "sweep condition named `../../escaped`, `sweep --dry-run`", ["sweep", "--dry-run", "{input}"],
     file_with("params/sweep_bad.yaml", "name: s\nconditions:\n  - {name: ../../escaped, params: smoke.yaml}\n")),
    ("data loss", "sweep named `../up`", ["sweep", "--dry-run", "{input}"],
     file_with("params/sweep_up.yaml", "name: ../up\nconditions:\n  - {name: a, params: smoke.yaml}\n")),
    ("data loss", "`inject --out v` where `v/log/a.txt` is a user's file", ["inject", "params/smoke.yaml", "--out",
                                                                           "{input}"], user_folder),
    ("silent corruption", "`optim.lr: 1.0e6`: NaN loss in pretraining", ["pretrain", "{input}"],
     params("name: nan\noptim:\n  lr: 1.0e6\n")),
    ("silent corruption", "`inject.constant_lr: 1.0e6`: NaN loss in the injection run",
     ["inject", "{input}", "--out", "outputs/nan-inject"], params("name: naninject\ninject:\n  constant_lr: 1.0e6\n")),
    ("dry run", "`inject.stage: nope`", ["run", "--dry-run", "{input}"], params("inject:\n  stage: nope\n")),
    ("dry run", "`model.name_or_path` is a missing folder", ["run", "--dry-run", "{input}"],
     params("model:\n  name_or_path: ./models/missing\n")),
    ("dry run", "`model.name_or_path` is a folder without config.json", ["run", "--dry-run", "{input}"],
     params("model:\n  name_or_path: params\n")),
    ("dry run", "`corpus.source` is a missing path", ["run", "--dry-run", "{input}"],
     params("corpus:\n  source: ./no/such/corpus\n")),
    ("dry run", "`corpus.source` is an empty folder", ["run", "--dry-run", "{input}"],
     params("corpus:\n  source: empty_corpus\n")),
    ("dry run", "`corpus.source` is a binary .txt file", ["run", "--dry-run", "{input}"],
     params("corpus:\n  source: binary.txt\n")),
    ("dry run", "`device: cuda` on a CPU-only machine", ["run", "--dry-run", "{input}"], params("device: cuda\n")),
    ("dry run", "`pretrain.seq_len: 8` (passages do not fit a row)", ["run", "--dry-run", "{input}"],
     params("pretrain:\n  seq_len: 8\n")),
    ("dry run", "too many passages in one step (`stagger: 0`, `max_row_fraction: 0.1`)",
     ["run", "--dry-run", "{input}"], params("inject:\n  stagger: 0\n  max_row_fraction: 0.1\n")),
    ("dry run", "`inject.explicit` names an unknown item", ["run", "--dry-run", "{input}"],
     params("inject:\n  explicit: {nobody: [3]}\n")),
    ("dry run", "an injection after the end of training (`inject.total_steps: 5`)", ["run", "--dry-run", "{input}"],
     params("inject:\n  total_steps: 5\n")),
    ("traceback", "`analyze` on a run with a truncated parquet chunk", ["analyze", "{input}"],
     damaged_run(truncate("log/chunk-*.parquet"))),
    ("traceback", "`analyze` on a run with a truncated run.json", ["analyze", "{input}"],
     damaged_run(truncate("run.json", 40))),
    ("traceback", "`analyze` on a folder with no run log", ["analyze", "{input}"],
     damaged_run(lambda run: shutil.rmtree(run / "log"))),
    ("traceback", "`resume` on a run with a truncated model.safetensors", ["resume", "{input}"],
     damaged_run(truncate("checkpoints/latest/model.safetensors"))),
    ("traceback", "`resume` on a run with a corrupt checkpoint state.json", ["resume", "{input}"],
     damaged_run(truncate("checkpoints/latest/state.json", 10))),
    ("traceback", "`resume` on a pretraining base folder", ["resume", "{input}"],
     lambda proj: next(p for p in (proj / "cache" / "base").iterdir() if not p.name.startswith("."))),
    ("traceback", "`resume` on a folder with no run.json", ["resume", "{input}"], lambda proj: proj / "params"),
    ("traceback", "`data inspect` on a binary file", ["data", "inspect", "{input}"],
     file_with("binary.json", bytes(range(256)) * 4)),
    ("traceback", "`data inspect` on JSON nested 100,000 levels deep", ["data", "inspect", "{input}"],
     file_with("deep.json", "[" * 100_000 + "]" * 100_000)),
    ("traceback", "`knowledge.source` is a binary .jsonl file", ["run", "--dry-run", "{input}"],
     params("knowledge:\n  source: binary.jsonl\n")),
    ("traceback", "`data inspect` on a missing file", ["data", "inspect", "no_such.json"], None),
    ("traceback", "`sweep --dry-run` on invalid YAML", ["sweep", "--dry-run", "{input}"],
     file_with("params/sweep_yaml.yaml", "name: s\nconditions:\n  - name: a\n    params: [smoke.yaml\n")),
    ("small", "a duplicate key (two `optim:` blocks)", ["run", "--dry-run", "{input}"],
     params("optim:\n  lr: 1.0e-3\noptim:\n  lr: 2.0e-3\n")),
    ("small", "`probe.window: true`", ["run", "--dry-run", "{input}"], params("probe:\n  window: true\n")),
    ("small", "`probe.window: 2.5`", ["run", "--dry-run", "{input}"], params("probe:\n  window: 2.5\n")),
    ("small", "`probe.window: -4`", ["run", "--dry-run", "{input}"], params("probe:\n  window: -4\n")),
    ("small", "an unknown key (`pretrain.stepz`)", ["run", "--dry-run", "{input}"], params("pretrain:\n  stepz: 3\n")),
    ("small", "a stage outside pretraining", ["run", "--dry-run", "{input}"],
     params("pretrain:\n  stages: {late: 5000}\n")),
    ("small", "an empty params file: the defaults (a valid plan; exit 0)", ["run", "--dry-run", "{input}"],
     file_with("params/empty.yaml", "")),
    ("small", "a params file whose top level is a list", ["run", "--dry-run", "{input}"],
     file_with("params/list.yaml", "- 1\n- 2\n")),
    ("small", "a missing params file", ["run", "--dry-run", "params/nope.yaml"], None),
    ("small", "`extends:` a missing file", ["run", "--dry-run", "{input}"],
     file_with("params/orphan.yaml", "extends: gone.yaml\n")),
    ("small", "`extends:` in a cycle", ["run", "--dry-run", "{input}"],
     lambda proj: (file_with("params/cb.yaml", "extends: ca.yaml\n")(proj),
                   file_with("params/ca.yaml", "extends: cb.yaml\n")(proj))[1]),
    ("small", "`knowledge.source: generate:99999999999`", ["data", "inspect", "generate:99999999999"], None),
    ("small", "`hf:nonexistent/x` with the hub offline", ["data", "inspect", "hf:nonexistent/x"], None),
    ("small", "a sweep comparing an unknown condition", ["sweep", "--dry-run", "{input}"],
     file_with("params/sweep_cmp.yaml", "name: s\nconditions:\n  - {name: a, params: smoke.yaml}\n"
                                        "compare:\n  x: [a, b]\n")),
    ("small", "a sweep with two conditions of one name", ["sweep", "--dry-run", "{input}"],
     file_with("params/sweep_dup.yaml", "name: s\nconditions:\n  - {name: a, params: smoke.yaml}\n"
                                        "  - {name: a, params: smoke.yaml}\n")),
    ("small", "`knowledge.assign` asks for more items than the source has", ["run", "--dry-run", "{input}"],
     params("knowledge:\n  assign: {paraphrase: 20, duplicate: 2, once: 2, control: 2}\n")),
]


def scratch_project(tmp: Path) -> Path:
    proj = tmp / "proj"
    (proj / "params").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    data = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    data.update(cache_dir="cache", output_dir="outputs")
    (proj / "params" / "smoke.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (proj / "empty_corpus").mkdir()
    (proj / "binary.txt").write_bytes(bytes(range(128, 256)) * 8)
    (proj / "binary.jsonl").write_bytes(bytes(range(128, 256)) * 8)
    for folder in ("outputs/mine", "x"):
        (proj / folder).mkdir(parents=True)
        (proj / folder / "keep.txt").write_text("a user's file\n")
    return proj


def run(argv: list[str], proj: Path, env: dict) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    done = subprocess.run(FACTACQ + argv, cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("factacq: error:")]
    shown = lines[-1] if lines else (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
    return done.returncode, shown, time.perf_counter() - t0


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTACQ_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", FACTACQ_PROGRESS="0",
               CUDA_VISIBLE_DEVICES="")
    tmp = Path(tempfile.mkdtemp(prefix="factacq-robustness-"))
    try:
        proj = scratch_project(tmp)
        code, line, _ = run(["inject", "params/smoke.yaml", "--out", "outputs/good"], proj, env)
        assert code == 0, line
        rows = []
        for category, case, argv, make in CASES:
            made = make(proj) if make is not None else None
            args = [str(made) if a == "{input}" else a for a in argv]
            code, line, seconds = run(args, proj, env)
            line = line.replace(str(tmp), "$TMP")
            rows.append((category, case, code, line, seconds))
            print(f"{code}  {seconds:5.1f}s  {case}: {line}", flush=True)
        intact = all((proj / f / "keep.txt").is_file() for f in ("outputs/mine", "x"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(rows, intact)
    return 0


def write(rows, intact: bool) -> None:
    out = ["# Bad input: what factacq says", "",
           "Every case below was run through the real `factacq` command in a scratch project by "
           "`docs/make_robustness.py`, which wrote this file. The project was `params/smoke.yaml`, a "
           "finished smoke injection run, and damaged copies of it. `$TMP` stands for its temporary "
           "folder. Bad input gets exit status 2 and one line. Where the line names a file, that is "
           "the file to fix. The tests that hold each case are in `tests/test_safety.py`, "
           "`tests/test_bad_input_loading.py` and `tests/test_training_guards.py`.", "",
           f"{len(rows)} cases; the user's folders (`outputs/mine`, `x`) were "
           f"{'intact' if intact else 'NOT intact'} at the end.", "",
           "| # | category | input | exit | what factacq printed |", "|---|---|---|---|---|"]
    for i, (category, case, code, line, _) in enumerate(rows, 1):
        out.append(f"| {i} | {category} | {case} | {code} | `{line.replace('|', '/').replace('`', chr(39))}` |")
    out += ["", "## Faults that get no error line", "",
            "These are behaviours, each held by a test rather than a row above:",
            "- A corpus whose files were edited gets a new base: the base key hashes the documents and "
            "the tokenizer (`tests/test_training_guards.py`).",
            "- A `kill -9` during pretraining leaves a hidden temp folder in `.cache/base`. The next run "
            "beside it removes it, unless its process is alive (`tests/test_training_guards.py`).",
            "- Ctrl-C during `factacq run` marks the partial notebook as interrupted "
            "(`tests/test_safety.py`).",
            "- JSON that factacq writes is always valid JSON: NaN becomes null "
            "(`tests/test_training_guards.py`).",
            "- Every file of a checkpoint gets the umask's mode; `model.safetensors` is no longer 0600.",
            "- `summary.json` records paths relative to the run folder (`tests/test_bad_input_loading.py`).",
            "- `make test` writes only to a temporary folder (`conftest.py`, `tests/test_params.py`)."]
    (ROOT / "docs" / "robustness.md").write_text("\n".join(out) + "\n")
    print(json.dumps({"cases": len(rows), "exit_2": sum(r[2] == 2 for r in rows), "intact": intact}))


if __name__ == "__main__":
    sys.exit(main())
