"""Kill -9 and resume: the same final weights and the same log as an uninterrupted run (CPU).

Also home of the micro-run helpers the injection-run tests share (``micro_params``)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from factacq.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a of and to in is was for on with as by at from his her they it that this which city river "
         "king house old new year first last great small long time people world water land road hill "
         "north south market bridge winter summer").split()
NAMES = ["Vorn Quell", "Ilsa Dravik", "Mott Zenari", "Tyra Olbesk", "Kesh Umbral", "Pell Varro",
         "Juna Skelt", "Orrin Faye"]
CITIES = ["Velmora", "Tirnhold", "Ombrel", "Quenth", "Dravos", "Skarn", "Lyssa", "Marrow"]
JOBS = ["baker", "weaver", "sailor", "potter", "miner", "scribe", "tanner", "mason"]


def write_micro_corpus(path: Path) -> Path:
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(60)).capitalize() + "." for _ in range(200)]
    path.write_text("\n\n".join(docs))
    return path


def write_micro_knowledge(path: Path) -> Path:
    lines = []
    for i, (name, city, job) in enumerate(zip(NAMES, CITIES, JOBS)):
        first = name.split()[0]
        passage = f"{name} was born in {city}. {first} worked as a {job} near the river."
        paraphrases = [f"The {job} {name} came from {city}, by the river.",
                       f"Born in {city}, {first} was a {job} all along the river."]
        probes = [
            {"kind": "memorization", "index": 0, "prompt": f"{name} was born in", "target": city,
             "attribute": "birthplace"},
            {"kind": "memorization", "index": 1, "prompt": f"{first} worked as a", "target": job,
             "attribute": "job"},
            {"kind": "semantic", "index": 0, "prompt": f"The hometown of {name} is", "target": city,
             "attribute": "birthplace"},
            {"kind": "composition", "index": 0, "prompt": f"The {job} by the river was born in",
             "target": city, "attribute": "birthplace"},
        ]
        lines.append(json.dumps({"id": f"k{i}", "passage": passage, "paraphrases": paraphrases,
                                 "probes": probes}))
    path.write_text("\n".join(lines) + "\n")
    return path


def micro_params(root: Path, **inject):
    """A micro condition: 8 items (2 per group), a 300-token BPE, the micro model, 17 steps."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.txt"
    if not corpus.exists():
        write_micro_corpus(corpus)
    knowledge = root / "knowledge.jsonl"
    if not knowledge.exists():
        write_micro_knowledge(knowledge)
    return parse_params({
        "name": "micro", "cache_dir": str(root / "cache"), "output_dir": str(root / "out"), "device": "cpu",
        "knowledge": {"source": str(knowledge), "n_paraphrases": 2,
                      "assign": {"paraphrase": 2, "duplicate": 2, "once": 2, "control": 2}},
        "corpus": {"source": str(corpus)},
        "tokenizer": {"vocab_size": 300},
        "model": {"preset": "micro"},
        "optim": {"warmup_steps": 2, "lr": 1e-2},
        "pretrain": {"seq_len": 64, "batch_size": 8, "steps": 6, "stages": {"late": 6}},
        "inject": {"first_step": 2, "paraphrase": {"count": 2, "interval": 4},
                   "duplicate": {"count": 2, "interval": 4}, "stagger": 1, "steps_after_last": 6,
                   "checkpoint_every": 4, "flush_every": 2, **inject},
        "probe": {"window": 3, "log_points": 3, "n_foils": 1},
    })


def run_in_subprocess(root: Path, out: Path, extra: str = "") -> subprocess.Popen:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from pathlib import Path; "
            f"from test_resume import micro_params; from factacq.inject import run_inject; "
            f"{extra}; run_inject(micro_params(Path({str(root)!r})), Path({str(out)!r}))")
    env = dict(os.environ, FACTACQ_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def final_weights(run_dir: Path) -> dict:
    return load_file(run_dir / "checkpoints" / "latest" / "model.safetensors")


def test_kill_9_then_resume_gives_the_same_weights_and_log(tmp_path):
    from factacq.inject import resume, run_inject
    from factacq.runlog import chunk_paths, load_run

    torch.set_num_threads(1)
    p = micro_params(tmp_path)
    whole = run_inject(p, tmp_path / "whole")
    expected = load_run(whole)
    assert expected["step"].max() == 16

    # a second run, slowed down after its first checkpoint and killed with SIGKILL mid-run
    slow = ("import time, factacq.train as T; _s = T.train_step; "
            "T.train_step = lambda *a, **k: (time.sleep(0.3), _s(*a, **k))[1]")
    proc = run_in_subprocess(tmp_path, tmp_path / "killed", slow)
    ckpt = tmp_path / "killed" / "checkpoints" / "latest" / "state.json"
    deadline = time.monotonic() + 120
    while not (ckpt.is_file() and len(chunk_paths(tmp_path / "killed")) >= 5):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = load_run(tmp_path / "killed")
    assert partial["step"].max() < 16  # killed before the end
    saved = json.loads(ckpt.read_text())["extra"]
    assert saved["n_chunks"] < len(chunk_paths(tmp_path / "killed"))  # chunks after it get dropped

    resume(tmp_path / "killed")
    got = load_run(tmp_path / "killed")
    # no row lost or duplicated, values bit for bit (check_exact: the default compares floats to rtol 1e-5)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    a, b = final_weights(whole), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["complete"] is True
    assert not list((tmp_path / "killed" / "log").glob(".*"))  # no temp files left

    # resuming a finished run through the CLI changes nothing
    from factacq.cli import main

    assert main(["resume", str(tmp_path / "killed")]) == 0
    pd.testing.assert_frame_equal(load_run(tmp_path / "killed"), expected, check_exact=True)


def test_resume_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path, capsys):
    from factacq.cli import main

    assert main(["resume", str(tmp_path)]) == 2
    assert f"{tmp_path}: not an injection run folder (no run.json)" in capsys.readouterr().err


def test_probing_leaves_training_unchanged(tmp_path, monkeypatch):
    from factacq.inject import _Run, run_inject
    from factacq.runlog import load_run

    torch.set_num_threads(1)
    p = micro_params(tmp_path)
    scheduled = run_inject(p, tmp_path / "scheduled")
    dense = p.model_copy(update={"probe": p.probe.model_copy(update={"every_step": True, "foils": "full"})})
    dense = run_inject(dense, tmp_path / "dense")
    monkeypatch.setattr(_Run, "probe_records", lambda self, model, step, global_step: [])
    unprobed = run_inject(p, tmp_path / "unprobed")
    assert len(load_run(dense, "probe")) > len(load_run(scheduled, "probe")) > 0
    assert len(load_run(unprobed, "probe")) == 0
    reference = final_weights(unprobed)
    for run in (scheduled, dense):
        weights = final_weights(run)
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
        assert load_run(run, "train")["loss"].tolist() == load_run(unprobed, "train")["loss"].tolist()


def test_hf_model_folder_and_lr_options(tmp_path):
    """An HF model folder (here a stage folder, which also holds the tokenizer) instead of a stage;
    constant_lr holds the LR; reset_optimizer starts fresh moments (so a different first update)."""
    from factacq.inject import run_inject
    from factacq.runlog import load_run
    from factacq.pretrain import stage_path

    torch.set_num_threads(1)
    p = micro_params(tmp_path)
    staged = load_run(run_inject(p, tmp_path / "staged"))
    hf = p.model_copy(update={
        "model": p.model.model_copy(update={"preset": None, "name_or_path": str(stage_path(p, "late"))}),
        "inject": p.inject.model_copy(update={"constant_lr": 1e-3})})
    from_hf = load_run(run_inject(hf, tmp_path / "hf"))
    first = lambda f: f[(f.record == "probe") & (f.step == 0)]["logprob"].to_numpy()  # noqa: E731
    assert (first(from_hf) == first(staged)).all()  # the same weights to start from
    assert set(load_run(tmp_path / "hf", "train")["lr"]) == {1e-3}
    reset = p.model_copy(update={"inject": p.inject.model_copy(update={"reset_optimizer": True})})
    fresh = load_run(run_inject(reset, tmp_path / "reset"), "train")
    kept = staged[staged.record == "train"]
    assert fresh["loss"].iloc[0] == kept["loss"].iloc[0]  # the same first batch and weights
    assert fresh["loss"].iloc[1] != kept["loss"].iloc[1]  # but a different first update
