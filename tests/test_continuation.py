"""Continuing a hub checkpoint faithfully (issue 13 §3): the run trains at the LR its published
schedule had at the revision's step (optim.start_step), after re-warming the fresh AdamW
(optim.rewarm_steps) on plain rows before the first injection. The GPU presets are checked against
OLMo's own schedule formulas; the path itself runs on the CPU from a tiny OLMo-architecture model
saved with save_pretrained (a plain HF folder: no optimizer state, no factacq checkpoint files)."""
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from factacq.errors import FactacqError
from factacq.params import load_params, parse_params
from factacq.train import run_lr_ratio

ROOT = Path(__file__).resolve().parents[1]


def olmo_lr(step: int, peak: float, warmup: int, max_steps: int, kind: str, alpha_f=0.1) -> float:
    """allenai/OLMo olmo/optim.py CosWithWarmup / LinearWithWarmup.get_lr, written out here."""
    eta_min = peak * alpha_f
    if step >= max_steps:
        return eta_min
    frac = (step - warmup) / (max_steps - warmup)
    if kind == "cosine":
        return eta_min + (peak - eta_min) * (1 + math.cos(math.pi * frac)) / 2
    return peak - (peak - eta_min) * frac


@pytest.mark.parametrize("preset, revision_step, peak, warmup, horizon, kind", [
    ("olmo1b_early", 5000, 4e-4, 2000, 739_328, "cosine"),
    ("olmo1b_mid", 330_000, 4e-4, 2000, 739_328, "cosine"),
    ("olmo1b_late", 738_000, 4e-4, 2000, 739_328, "cosine"),
    ("olmo1b_late_bs128", 738_000, 4e-4, 2000, 739_328, "cosine"),
    ("olmo7b_late", 476_000, 3e-4, 5000, 476_837, "linear"),
])
def test_gpu_presets_continue_their_published_schedule(preset, revision_step, peak, warmup,
                                                       horizon, kind):
    p = load_params(ROOT / "params" / "gpu" / f"{preset}.yaml")
    op = p.optim
    assert op.start_step == revision_step and p.model.revision.startswith(f"step{revision_step}-")
    lr = lambda s: op.lr * run_lr_ratio(s, op, op.total_steps)  # noqa: E731
    # after the re-warm, every step trains at the published schedule's LR for its global step
    for s in (op.rewarm_steps, p.inject.first_step, p.inject.first_step + 1000):
        assert lr(s) == pytest.approx(olmo_lr(revision_step + s, peak, warmup, horizon, kind), rel=1e-9)
    # the re-warm: a linear ramp up to it, and the first injection only after it
    assert op.rewarm_steps >= 50 and p.inject.first_step >= 2 * op.rewarm_steps
    schedule = lambda s: olmo_lr(revision_step + s, peak, warmup, horizon, kind)  # noqa: E731
    assert lr(0) == pytest.approx(schedule(0) / op.rewarm_steps, rel=1e-9)
    half = op.rewarm_steps // 2 - 1
    assert lr(half) == pytest.approx(schedule(half) / 2, rel=1e-9)
    assert p.inject.constant_lr is None and op.schedule == kind


def test_the_late_revision_trains_at_the_schedule_floor_not_the_peak():
    late = load_params(ROOT / "params" / "gpu" / "olmo1b_late.yaml").optim
    mid = load_params(ROOT / "params" / "gpu" / "olmo1b_mid.yaml").optim
    at = lambda op: op.lr * run_lr_ratio(op.rewarm_steps, op, op.total_steps)  # noqa: E731
    assert at(late) == pytest.approx(4.0e-5, rel=1e-3)  # 10% of the peak, not 4e-4
    assert at(mid) == pytest.approx(2.51e-4, rel=1e-2)


@pytest.mark.parametrize("optim, model, message", [
    ({"start_step": 5000}, {"name_or_path": "allenai/OLMo-1B-hf", "revision": "step738000-tokens3095B"},
     "field 'optim.start_step': model.revision 'step738000-tokens3095B' is at step 738000 (got 5000)"),
    ({"start_step": 10}, {"preset": "micro"}, "field 'optim.start_step': continues an HF checkpoint"),
    ({"rewarm_steps": 10}, {"preset": "micro"}, "field 'optim.rewarm_steps': continues an HF checkpoint"),
])
def test_schedule_continuation_errors_name_the_field(optim, model, message):
    with pytest.raises(FactacqError, match="^preset.yaml: " + message.replace("(", r"\(").replace(")", r"\)")):
        parse_params({"optim": optim, "model": model}, source="preset.yaml")


def test_hf_folder_fresh_optimizer_rewarm_inject_probe(tmp_path):
    """The GPU presets' path on the CPU: a save_pretrained folder, a fresh AdamW, the LR ramped over
    rewarm_steps to the schedule's LR at start_step + s, plain rows until the first injection, then
    injections and probes; the run's summary reports the LR at the first injection."""
    from test_resume import micro_params

    from factacq.inject import run_inject
    from factacq.metrics import lr_at_first_injection
    from factacq.pretrain import stage_path
    from factacq.runlog import load_run
    from factacq.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    p = micro_params(tmp_path / "base")
    run_inject(p, tmp_path / "staged")  # builds the micro base; its late stage becomes the "hub" model
    stage = stage_path(p, "late")
    folder = tmp_path / "hub_model"
    AutoModelForCausalLM.from_pretrained(stage).save_pretrained(folder)
    load_tokenizer(stage).save_pretrained(folder)
    assert not (folder / "optimizer.pt").exists() and not (folder / "state.json").exists()

    optim = {"lr": 1e-2, "schedule": "cosine", "warmup_steps": 10, "total_steps": 2000,
             "start_step": 1500, "rewarm_steps": 4, "min_lr_ratio": 0.1}
    data = p.model_dump(mode="json")
    data["model"] = {"name_or_path": str(folder), "preset": None}
    data["optim"] = {**data["optim"], **optim}
    data["inject"] = {**data["inject"], "first_step": 8}
    hf = parse_params(data)
    frame = load_run(run_inject(hf, tmp_path / "hf"))
    train = frame[frame.record == "train"].sort_values("step")
    expected = [1e-2 * run_lr_ratio(s - 1, hf.optim, 2000) for s in train["step"]]
    assert train["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    ramp = train["lr"].iloc[:5].to_numpy()
    assert ramp[0] == pytest.approx(ramp[4] / 4, rel=1e-2)  # 1/4 of the schedule's LR, then up
    assert ramp[4] == pytest.approx(olmo_lr(1504, 1e-2, 10, 2000, "cosine"), rel=1e-12)
    injections = frame[frame.record == "injection"]
    assert injections["step"].min() == 8  # plain rows during the re-warm
    probes = frame[frame.record == "probe"]
    assert probes["step"].min() == 0 and probes["step"].max() == train["step"].max()
    assert lr_at_first_injection(frame) == pytest.approx(olmo_lr(1508, 1e-2, 10, 2000, "cosine"))


def test_training_loads_the_named_gguf_file(monkeypatch):
    """new_state passes model.gguf_file to the loader (a hub id or a folder of several GGUF files
    needs the name; only a folder with a single one would load without it)."""
    from factacq import train

    seen = {}

    def fake_load_model(name, revision=None, trust_remote_code=False, dtype=None, gguf_file=None):
        seen.update(name=name, gguf_file=gguf_file)
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(train, "load_model", fake_load_model)
    p = parse_params({"model": {"name_or_path": "org/some-model-GGUF", "gguf_file": "model.Q4_1.gguf"}})
    train.new_state(p, vocab_size=10, eos_token_id=None, device="cpu")
    assert seen == {"name": "org/some-model-GGUF", "gguf_file": "model.Q4_1.gguf"}
