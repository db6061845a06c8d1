"""Hardening of training, checkpoints and caches: a diverging loss stops a run (and nothing is marked
complete), factacq's JSON is always valid JSON, the base is keyed on the corpus text, a checkpoint
resumes in the params' dtype, checkpoint files get the umask's mode, a killed run's temp folders are
cleaned, and FACTACQ_PROGRESS=terminal sends the bar to the real stderr."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_resume import micro_params  # noqa: E402  (tests/ is on sys.path under pytest)

from factacq.errors import FactacqError
from factacq.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"


def smoke(root: Path, **overrides):
    """The smoke params with their cache and outputs under ``root``."""
    return load_params(SMOKE, {"cache_dir": str(root / "c"), "output_dir": str(root / "o"), **overrides})


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    """One cache for this module's smoke runs: the healthy smoke base is pretrained once."""
    return tmp_path_factory.mktemp("smoke")


def _refuse_constant(name):
    raise ValueError(f"not JSON: {name}")


def strict_json(path: Path):
    """Parse as RFC 8259 JSON: NaN / Infinity literals raise."""
    return json.loads(path.read_text(), parse_constant=_refuse_constant)


def _complete_bases(params) -> list[Path]:
    from factacq.pretrain import base_complete

    root = Path(params.cache_dir) / "base"
    return [d for d in root.iterdir() if base_complete(d, params)] if root.is_dir() else []


# --------------------------------------------------------------------------- 1. NaN / inf guard


def test_pretraining_stops_at_the_first_nonfinite_loss_and_caches_no_base(smoke_root):
    from factacq.pretrain import base_dir, pretrain

    params = smoke(smoke_root, optim={"lr": 1.0e6})
    with pytest.raises(FactacqError) as err:
        pretrain(params)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("pretraining: non-finite loss nan at step 3, lr 600000:"), msg
    assert "no base was saved; lower optim.lr (now 1e+06)" in msg
    assert _complete_bases(params) == [] and not base_dir(params).exists()
    base = Path(params.cache_dir) / "base"
    assert not base.is_dir() or not [p for p in base.iterdir() if p.name.startswith(".")]  # no temp
    # a healthy lr trains its base (the next tests reuse it)
    healthy = smoke(smoke_root)
    assert pretrain(healthy) in _complete_bases(healthy)


def test_injection_run_stops_incomplete_keeps_its_last_good_checkpoint_and_valid_json(smoke_root, tmp_path):
    from factacq.inject import run_inject

    params = smoke(smoke_root, inject={"constant_lr": 1.0e6, "checkpoint_every": 1})
    run_dir = tmp_path / "run"
    with pytest.raises(FactacqError) as err:
        run_inject(params, run_dir)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("injection run: non-finite loss nan at step 2 (global step 32), lr 1e+06:"), msg
    assert "run.json complete: false" in msg and "lower optim.lr (now 0.003) or inject.constant_lr" in msg
    sidecar = strict_json(run_dir / "run.json")
    assert sidecar["complete"] is False and "report" not in sidecar
    latest = run_dir / "checkpoints" / "latest"
    state = strict_json(latest / "state.json")
    assert state["extra"]["run_step"] == 1 and state["step"] == 31  # the last finite step
    weights = load_file(latest / "model.safetensors")
    assert weights and all(bool(torch.isfinite(w).all()) for w in weights.values())
    assert list((run_dir / "checkpoints").iterdir()) == [latest]  # no temp folder left
    assert len(_complete_bases(params)) == 1  # the healthy base it started from


def test_a_nonfinite_gradient_norm_with_a_finite_loss_stops_training_too():
    from factacq.train import check_finite

    check_finite(5.0, 1e30, 1e-3, 7)  # large is not non-finite
    with pytest.raises(FactacqError, match=r"^pretraining: non-finite gradient norm inf \(loss 5\) at "
                                           r"step 7, lr 0.001: .*lower optim.lr \(now 0.003\)$"):
        check_finite(5.0, float("inf"), 1e-3, 7, "pretrain", base_lr=3e-3)
    with pytest.raises(FactacqError, match=r"^injection run: non-finite loss -inf at step 2 \(global "
                                           r"step 12\), lr 0.001: .*complete: false"):
        check_finite(float("-inf"), 1.0, 1e-3, 12, "inject", step_offset=10)


def test_bg_loss_nan_without_background_rows_is_not_a_divergence(smoke_root):
    from factacq.corpus import prepare_corpus
    from factacq.train import Batch, new_state, train_step

    params = smoke(smoke_root)
    corpus = prepare_corpus(params)
    tok, stream = corpus.tokenizer, corpus.stream
    state = new_state(params, len(tok), tok.eos_token_id, "cpu")
    m = train_step(state, Batch(stream.rows(0, 4), torch.zeros(4, dtype=torch.bool)))
    assert math.isnan(m["bg_loss"]) and math.isfinite(m["loss"]) and state.step == 1


def test_json_written_by_factacq_is_always_valid_json(tmp_path):
    from factacq.runlog import write_json_atomic

    data = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (np.float32("nan"), 2),
            "e": np.float64(0.5), "f": "text", "g": None, "h": Path("x")}
    write_json_atomic(tmp_path / "x.json", data)
    back = strict_json(tmp_path / "x.json")
    assert back == {"a": None, "b": [1.0, None, {"c": None}], "d": [None, 2], "e": 0.5, "f": "text",
                    "g": None, "h": "x"}
    from factacq.atomic import json_text  # what train.py writes state.json and a base's run.json with

    assert json.loads(json_text({"x": [float("nan")]}), parse_constant=_refuse_constant) == {"x": [None]}
    assert data["a"] != data["a"]  # the caller's data is left as it was


# --------------------------------------------------------------------------- 2. base key: corpus text


def _folder_params(tmp_path: Path, folder: Path):
    return parse_params({
        "corpus": {"source": str(folder)}, "tokenizer": {"vocab_size": 300}, "model": {"preset": "micro"},
        "pretrain": {"seq_len": 32, "batch_size": 4, "steps": 2, "stages": {"late": 2}, "log_every": 1},
        "optim": {"warmup_steps": 1}, "device": "cpu", "cache_dir": str(tmp_path / "cache")})


def _write_folder(folder: Path, word: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (folder / f"doc{i}.txt").write_text(" ".join(f"{word} number {j} of text {i}." for j in range(40)))
    return folder


def test_base_key_follows_the_corpus_text_and_the_tokenizer(tmp_path, monkeypatch):
    from factacq import pretrain as pretrain_module
    from factacq.pretrain import base_cached, base_dir, base_key, pretrain

    a = _folder_params(tmp_path, _write_folder(tmp_path / "a", "river"))
    b = _folder_params(tmp_path, _write_folder(tmp_path / "b", "mountain"))
    assert base_dir(a) != base_dir(b)
    before = base_dir(a)
    # nothing cached yet: the dry-run check answers without even loading the documents
    with monkeypatch.context() as m:
        m.setattr(pretrain_module, "load_documents", lambda cp: pytest.fail("documents loaded"))
        assert base_cached(a) is False
    out = pretrain(a)
    assert out == before and base_cached(a)
    run = json.loads((out / "run.json").read_text())
    assert run["base_key"] == out.name and run["params_hash"] == a.section_hash(
        "corpus", "tokenizer", "model", "optim", "pretrain")
    # editing a file of the folder keys a new base: the old one is not reused
    (tmp_path / "a" / "doc1.txt").write_text("an edited document about a river and a road. " * 30)
    edited = base_dir(a)
    assert edited != before and not base_cached(a)
    assert pretrain(a) == edited and base_cached(a)
    # the same documents with another tokenizer key another base too
    assert base_key(a, "docs", "tok1") != base_key(a, "docs", "tok2") != base_key(a, "docs2", "tok2")


# --------------------------------------------------------------------------- 3. resume in params.model.dtype


def test_checkpoint_loads_with_the_params_dtype_and_trust_remote_code(tmp_path, monkeypatch):
    from factacq import models
    from factacq.checkpoint import load_checkpoint
    from factacq.pretrain import pretrain, stage_path

    params = _folder_params(tmp_path, _write_folder(tmp_path / "a", "river"))
    pretrain(params)
    path = stage_path(params, "late")
    assert load_checkpoint(path)[0].model.dtype == torch.float32
    state, _ = load_checkpoint(path, dtype="bfloat16")
    assert {p.dtype for p in state.model.parameters()} == {torch.bfloat16}
    calls = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    load_checkpoint(path, trust_remote_code=True)
    assert calls[-1]["trust_remote_code"] is True


def test_bf16_injection_run_resumes_in_bf16(tmp_path, monkeypatch):
    from factacq import checkpoint as checkpoint_module
    from factacq.inject import resume, run_inject

    base = micro_params(tmp_path / "m")
    params = base.model_copy(update={"model": base.model.model_copy(update={"dtype": "bfloat16"})})
    run_dir = tmp_path / "run"
    run_inject(params, run_dir)
    weights = load_file(run_dir / "checkpoints" / "latest" / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.bfloat16}  # started from the stage in bf16
    loaded = []
    real = checkpoint_module.load_checkpoint
    monkeypatch.setattr(checkpoint_module, "load_checkpoint",
                        lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    resume(run_dir)
    assert len(loaded) == 1 and loaded[0][0].model.dtype == torch.bfloat16


# --------------------------------------------------------------------------- 4. file modes


def test_checkpoint_and_base_files_get_the_umask_mode(tmp_path):
    from factacq.pretrain import pretrain

    old = os.umask(0o022)
    try:
        out = pretrain(_folder_params(tmp_path, _write_folder(tmp_path / "a", "river")))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert modes["stages/late/model.safetensors"] == 0o644
    assert {m for p, m in modes.items() if (out / p).is_file()} == {0o644}, modes
    assert {m for p, m in modes.items() if (out / p).is_dir()} == {0o755}, modes


# --------------------------------------------------------------------------- 5. stale temp folders


def test_atomic_dir_removes_the_temp_folders_of_killed_processes_only(tmp_path):
    from factacq.atomic import atomic_dir

    target = tmp_path / "cache" / "base" / "abc123"
    code = ("import os, signal, sys; from factacq.atomic import atomic_dir\n"
            f"with atomic_dir({str(target)!r}) as tmp:\n"
            "    (tmp / 'half.bin').write_bytes(b'x'); print(tmp.name, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    stdout, _ = proc.communicate(timeout=120)  # also reaps it: its pid is no longer alive
    assert proc.returncode == -signal.SIGKILL
    stale = target.parent / stdout.strip()
    assert stale.is_dir() and f"-{proc.pid}-" in stale.name  # the temp name holds its pid
    live = target.parent / stale.name.replace(f"-{proc.pid}-", f"-{os.getpid()}-")
    live.mkdir()
    other_target = target.parent / stale.name.replace(".abc123.", ".other.")
    other_target.mkdir()  # a killed write of another folder in the same place is stale as well
    unrelated = target.parent / ".abc123.tmp-notours"
    unrelated.mkdir()
    with atomic_dir(target) as tmp:
        assert f"-{os.getpid()}-" in tmp.name
        (tmp / "done.txt").write_text("ok")
    assert not stale.exists() and not other_target.exists()
    assert live.is_dir() and unrelated.is_dir()  # a live process's temp folder, a foreign name
    assert (target / "done.txt").read_text() == "ok"


# --------------------------------------------------------------------------- 6. progress to the terminal


def _tiny_state(tmp_path):
    from factacq.corpus import prepare_corpus
    from factacq.train import new_state, stream_batches

    params = _folder_params(tmp_path, _write_folder(tmp_path / "a", "river"))
    corpus = prepare_corpus(params)
    tok, stream = corpus.tokenizer, corpus.stream
    return new_state(params, len(tok), tok.eos_token_id, "cpu"), stream_batches(stream, 4)


def test_progress_terminal_writes_the_bar_to_the_real_stderr_only(tmp_path, monkeypatch):
    from factacq.train import train

    state, batches = _tiny_state(tmp_path)
    real, captured = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", real)
    monkeypatch.setattr(sys, "stderr", captured)
    monkeypatch.setenv("FACTACQ_PROGRESS", "terminal")
    train(state, 3, batches, desc="pretrain")
    assert "pretrain: 100%" in real.getvalue() and "3/3" in real.getvalue()
    assert "loss=" in real.getvalue() and captured.getvalue() == ""
    # in a Jupyter kernel that captures fd 2, the bar goes to its copy of the original stderr
    read_fd, write_fd = os.pipe()

    class OutStream(io.StringIO):  # stands in for ipykernel.iostream.OutStream
        def fileno(self):
            return write_fd

    OutStream.__module__ = "ipykernel.iostream"
    kernel_stderr, real = OutStream(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", real)
    monkeypatch.setattr(sys, "stderr", kernel_stderr)
    train(state, 2, batches, desc="inject")
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        terminal = f.read()
    assert "inject: 100%" in terminal and "2/2" in terminal
    assert kernel_stderr.getvalue() == "" and real.getvalue() == ""
    # unset: today's tqdm.auto bar on sys.stderr; "0": no bar
    monkeypatch.setattr(sys, "stderr", captured)
    monkeypatch.delenv("FACTACQ_PROGRESS")
    train(state, 1, batches, desc="pretrain")
    assert "1/1" in captured.getvalue()
    monkeypatch.setenv("FACTACQ_PROGRESS", "0")
    captured.truncate(0)
    captured.seek(0)
    train(state, 1, batches, desc="pretrain")
    assert captured.getvalue() == ""
