"""The training loop, checkpoints (exact resume) and `factacq pretrain`."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_corpus import small_params  # noqa: E402  (tests/ is on sys.path under pytest)
from torch._dynamo.utils import counters  # what dynamo captured (frames, graphs, graph breaks)

from factacq.cli import main
from factacq.corpus import prepare_corpus
from factacq.errors import FactacqError
from factacq.params import OptimParams, load_params, parse_params
from factacq.checkpoint import load_checkpoint, save_checkpoint
from factacq.pretrain import base_complete, base_dir, base_key, pretrain, stage_path
from factacq.train import (Batch, TrainState, lr_ratio, make_optimizer, make_scheduler, new_state,
                           row_losses, stream_batches, train, train_step)


ROOT = Path(__file__).resolve().parents[1]


def _setup(tmp_path, **sections):
    params = small_params(tmp_path, **sections)
    corpus = prepare_corpus(params)
    tok, stream = corpus.tokenizer, corpus.stream
    state = new_state(params, len(tok), tok.eos_token_id, "cpu")
    return params, stream, state


def test_schedule_warmup_cosine_floor_and_decay_groups():
    op = OptimParams(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    assert lr_ratio(0, op, 100) == pytest.approx(0.1)
    assert lr_ratio(9, op, 100) == pytest.approx(1.0)
    assert lr_ratio(55, op, 100) == pytest.approx(0.55)
    assert lr_ratio(100, op, 100) == pytest.approx(0.1) == lr_ratio(500, op, 100)  # held, never 0
    lin = op.model_copy(update={"schedule": "linear"})
    assert lr_ratio(55, lin, 100) == pytest.approx(0.55)
    # warmup-stable-decay: constant after the warmup, then linear to the floor over the last
    # decay_fraction of the horizon (here steps 60..110), held there afterwards
    wsd = OptimParams(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.5)
    assert [lr_ratio(s, wsd, 110) for s in (0, 9, 10, 59, 60)] == pytest.approx([0.1, 1, 1, 1, 1])
    assert lr_ratio(85, wsd, 110) == pytest.approx(0.55)
    assert lr_ratio(110, wsd, 110) == pytest.approx(0.1) == lr_ratio(999, wsd, 110)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = make_optimizer(model, op)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert [g["weight_decay"] for g in opt.param_groups] == [op.weight_decay, 0.0]
    sched = make_scheduler(opt, op, 100, constant_lr=2e-4)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_accumulation_matches_full_batch_and_bg_loss(tmp_path):
    params, stream, state = _setup(tmp_path)
    ids = stream.rows(0, 4)
    background = torch.tensor([True, False, True, True])
    with torch.no_grad():
        rl = row_losses(state.model, ids)
    full = {k: v.clone() for k, v in state.model.state_dict().items()}
    m1 = train_step(state, Batch(ids, background))
    after_full = {k: v.clone() for k, v in state.model.state_dict().items()}
    _, _, state2 = _setup(tmp_path)
    assert all(torch.equal(full[k], v) for k, v in state2.model.state_dict().items())
    m2 = train_step(state2, Batch(ids, background), micro_batch_size=1)
    # fp32, summed in another order (per micro-batch, then accumulated): each value within a few ulps
    # (measured: loss and grad norm bit-equal, weights 3.6e-7 apart after the AdamW step, whose
    # update is ~±lr = 3e-3 per weight); a wrong micro-batch scale moves the grad norm by 4x
    assert m1["loss"] == pytest.approx(float(rl.mean()), rel=1e-5)
    assert m1["bg_loss"] == pytest.approx(float(rl[background].mean()), rel=1e-5)
    assert m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-4)
    for k, v in state2.model.state_dict().items():
        torch.testing.assert_close(v, after_full[k], rtol=1e-4, atol=1e-6)
    assert state2.step == 1 and state2.tokens == 4 * 32
    m3 = train_step(state2, Batch(ids, torch.zeros(4, dtype=torch.bool)))
    assert math.isnan(m3["bg_loss"]) and m3["lr"] > m2["lr"]  # warmup


def _snapshot(state: TrainState):
    weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    opt = state.optimizer.state_dict()
    moments = [(i, k, t.clone()) for i, s in opt["state"].items() for k, t in s.items()]
    lr = state.optimizer.param_groups[0]["lr"]
    return weights, moments, [state.step, state.data_position, state.tokens, lr]


def test_k_steps_stop_resume_k_equals_2k_exactly(tmp_path):
    params, stream, state = _setup(tmp_path)
    get_batch = stream_batches(stream, 4)
    train(state, 6, get_batch)
    weights, moments, counters = _snapshot(state)

    _, _, state = _setup(tmp_path)
    train(state, 3, get_batch)
    save_checkpoint(state, tmp_path / "ckpt", extra={"note": "half"})
    torch.manual_seed(1234)  # disturb RNG; load restores it
    resumed, extra = load_checkpoint(tmp_path / "ckpt")
    assert extra == {"note": "half"}
    train(resumed, 3, get_batch)
    weights2, moments2, counters2 = _snapshot(resumed)
    assert counters2 == counters and counters[:3] == [6, 24, 6 * 4 * 32]  # incl. the next update's lr
    assert weights.keys() == weights2.keys()
    assert all(torch.equal(weights[k], weights2[k]) for k in weights)
    assert len(moments) == len(moments2) > 0
    assert all(a[:2] == b[:2] and torch.equal(a[2], b[2]) for a, b in zip(moments, moments2))


def test_checkpoint_save_load_identical_logits_and_rng(tmp_path):
    params, stream, state = _setup(tmp_path)
    train(state, 2, stream_batches(stream, 4))
    torch.manual_seed(7)
    save_checkpoint(state, tmp_path / "ck" / "c")
    expected_draw = torch.rand(3)
    loaded, _ = load_checkpoint(tmp_path / "ck" / "c")
    assert torch.equal(torch.rand(3), expected_draw)
    ids = stream.rows(10, 3)
    state.model.eval(), loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(state.model(ids).logits, loaded.model(ids).logits)
    # saving over an existing checkpoint replaces it whole, leaving no temp folders
    save_checkpoint(loaded, tmp_path / "ck" / "c")
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["c"]
    with pytest.raises(FactacqError, match="not a factacq checkpoint"):
        load_checkpoint(tmp_path / "corpus")


def test_pretrain_writes_stages_log_and_reuses_cached_base(tmp_path, capsys):
    params = small_params(tmp_path)
    out = pretrain(params)
    assert out == base_dir(params)
    log = pd.read_parquet(out / "pretrain_log.parquet")
    assert list(log.columns) == ["step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"]
    assert log.step.tolist() == list(range(1, 7)) and log.loss.iloc[-1] < log.loss.iloc[0]
    for stage, step in params.pretrain.stages.items():
        state, extra = load_checkpoint(stage_path(params, stage))
        assert state.step == step and state.data_position == step * 4 and extra["stage"] == stage
    assert (out / "stages" / "late" / "tokenizer.json").is_file()
    assert (out / "params.yaml").is_file() and (out / "run.json").is_file()
    mtime = (out / "run.json").stat().st_mtime_ns
    assert pretrain(params) == out and (out / "run.json").stat().st_mtime_ns == mtime  # reused
    # a stage checkpoint equals the matching point of a longer run (the stream is shared)
    longer = small_params(tmp_path, pretrain={"steps": 8, "stages": {"early": 2, "late": 8}},
                          optim={"total_steps": 6})
    out2 = pretrain(longer)
    assert out2 != out
    a, _ = load_checkpoint(stage_path(params, "early"))
    b, _ = load_checkpoint(stage_path(longer, "early"))
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(),
                                                  b.model.state_dict().values()))
    # two stages at one step are both saved (the base was incomplete, and retrained, without one)
    aliased = small_params(tmp_path, pretrain={"steps": 6, "stages": {"early": 2, "late": 6,
                                                                       "final": 6}})
    out3 = pretrain(aliased)
    assert base_complete(out3, aliased)
    assert all(load_checkpoint(stage_path(aliased, s))[0].step == 6 for s in ("late", "final"))
    # the CLI prints where the stages are; bad params are one-line errors with exit status 2
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text((out / "params.yaml").read_text())
    assert load_params(yaml_path) == params
    assert main(["pretrain", str(yaml_path)]) == 0
    assert str(out / "stages" / "late") in capsys.readouterr().out
    yaml_path.write_text("pretrain:\n  stages: {late: 99}\n  steps: 10\n")
    assert main(["pretrain", str(yaml_path)]) == 2
    assert "outside 1..10" in capsys.readouterr().err
    with pytest.raises(FactacqError, match="unknown stage 'final'"):
        stage_path(params, "final")


def test_load_checkpoint_options_for_injection_runs(tmp_path):
    params, stream, state = _setup(tmp_path)
    train(state, 3, stream_batches(stream, 4))
    save_checkpoint(state, tmp_path / "ck")
    held, _ = load_checkpoint(tmp_path / "ck", constant_lr=1e-4)
    assert train_step(held, Batch(stream.rows(12, 4), torch.ones(4, dtype=torch.bool)))["lr"] == 1e-4
    assert len(held.optimizer.state) > 0  # moments restored
    fresh, _ = load_checkpoint(tmp_path / "ck", reset_optimizer=True)
    assert len(fresh.optimizer.state) == 0 and fresh.step == 3 and fresh.data_position == 12
    # past the schedule's horizon (pretrain.steps = 6) the LR stays at the floor, never zero
    restored, _ = load_checkpoint(tmp_path / "ck")
    lrs = []
    train(restored, 6, stream_batches(stream, 4), on_step=lambda s, m: lrs.append(m["lr"]))
    floor = params.optim.lr * params.optim.min_lr_ratio
    assert lrs[-3:] == pytest.approx([floor] * 3) and lrs[0] > floor


def test_compile_option_trains_like_eager(tmp_path):
    """params `compile: true` (the whole loss through inductor) matches the eager step to 1e-5."""
    _, stream, eager = _setup(tmp_path)
    _, _, compiled = _setup(tmp_path)
    ids = stream.rows(0, 4)
    background = torch.ones(4, dtype=torch.bool)
    torch._dynamo.reset()  # compile afresh here (an earlier test may have), and count what dynamo does
    counters.clear()
    for _ in range(2):
        m_eager = train_step(eager, Batch(ids, background))
        m_compiled = train_step(compiled, Batch(ids, background), compile=True)
        # inductor fuses and reorders the fp32 reductions: a few ulps per op (measured: loss and grad
        # norm bit-equal here, weights 2e-6 apart after 2 AdamW steps of ~±lr = 3e-3)
        assert m_compiled["loss"] == pytest.approx(m_eager["loss"], rel=1e-5)
        assert m_compiled["grad_norm"] == pytest.approx(m_eager["grad_norm"], rel=1e-4)
    # the whole loss went through inductor: dynamo captured one frame as one graph, with no graph
    # break that would run part of it eagerly, and handed it to inductor (eager runs capture nothing)
    assert counters["frames"]["ok"] == 1 and counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"] and counters["inductor"]
    weights = compiled.model.state_dict()
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(weights[k], v, rtol=1e-4, atol=1e-5)


def test_compile_option_keys_its_own_base_and_refuses_ddp(tmp_path):
    # the base sections of params/default.yaml as they were until issue 10 (a cosine base of 1000
    # steps): eager hashes of the params sections are those from before the option (and before the
    # fields added since, params.ADDED_FIELDS): d48443889139 keyed the base of the reference
    # render made at 2def393 (keyed by these sections alone then; pretrain.base_key adds the
    # documents and the tokenizer)
    params = parse_params({
        "tokenizer": {"vocab_size": 4096}, "model": {"preset": "tiny"},
        "optim": {"lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1, "warmup_steps": 50,
                  "schedule": "cosine", "min_lr_ratio": 0.033, "total_steps": None},
        "pretrain": {"seq_len": 128, "batch_size": 32, "steps": 1000,
                     "stages": {"early": 150, "mid": 400, "late": 1000}, "log_every": 1, "seed": 0}})
    compiled = params.model_copy(update={"compile": True})
    assert params.section_hash("corpus", "tokenizer", "model", "optim", "pretrain", "compile") == "d48443889139"
    assert base_key(compiled, "docs", "tok") != base_key(params, "docs", "tok")
    assert compiled.section_hash() != params.section_hash()

    class FakeDDP(torch.nn.Module):
        def no_sync(self):
            raise AssertionError("not reached")

    state = TrainState(FakeDDP(), None, None)
    with pytest.raises(FactacqError, match="compile: true is for single-process"):
        train_step(state, Batch(torch.zeros(1, 8, dtype=torch.long), torch.ones(1, dtype=torch.bool)),
                   compile=True)


_TRAIN_SCRIPT = """
import hashlib, torch
from factacq.models import build_model
from factacq.params import ModelParams, OptimParams
from factacq.train import (Batch, TrainState, keep_freed_memory, make_optimizer, make_scheduler,
                           train_step)
kept = keep_freed_memory()
torch.manual_seed(0)
model = build_model(ModelParams(preset="micro"), 4096, 64, eos_token_id=0)
opt = make_optimizer(model, OptimParams())
state = TrainState(model, opt, make_scheduler(opt, OptimParams(), 100))
ids = torch.randint(0, 4096, (8, 64))  # logits of 8 MB: over glibc's initial mmap threshold
losses = [train_step(state, Batch(ids, torch.ones(8, dtype=torch.bool)))["loss"] for _ in range(3)]
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
print(kept, [x.hex() for x in losses], digest.hexdigest())
"""


def test_keep_freed_memory_is_on_by_default_and_bit_identical():
    """The glibc allocator setting only moves buffers: losses and weights match bit for bit."""
    import os
    import subprocess
    import sys

    out = {}
    for flag in ("1", "0"):
        env = dict(os.environ, FACTACQ_KEEP_FREED_MEMORY=flag)
        run = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT], env=env, capture_output=True,
                             text=True, check=True)
        out[flag] = run.stdout.split(" ", 1)
    assert out["1"][0] == "True" and out["0"][0] == "False"
    assert out["1"][1] == out["0"][1]
