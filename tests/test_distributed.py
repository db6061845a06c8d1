"""The injection loop under torchrun: 2 CPU processes (gloo), with DDP or with FSDP2, give the
probe values of 1 process, one run log, and (FSDP) the checkpoint a 1-process run writes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from factacq.params import dump_params
from factacq.runlog import load_sidecar
from test_resume import micro_params

ROOT = Path(__file__).resolve().parents[1]
KEY = ["record", "step", "item_id", "kind", "probe_index", "text_index", "row"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The micro condition run by 1 process (keeping its step-8 checkpoint), then at the same time
    by 2 torchrun processes with DDP, with FSDP, and resumed with FSDP from that step-8 checkpoint:
    {"one", "ddp", "fsdp", "resumed"} run dirs and {name}_stdout."""
    from factacq import checkpoint
    from factacq.inject import run_inject
    from factacq.runlog import chunk_paths

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("micro")
    saved = root / "step-8"

    def save_and_keep_step_8(state, path, extra=None, **kwargs):
        save_checkpoint(state, path, extra, **kwargs)
        if extra and extra.get("run_step") == 8:
            shutil.copytree(path, saved)

    save_checkpoint = checkpoint.save_checkpoint
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "save_checkpoint", save_and_keep_step_8)
        out = {"one": run_inject(micro_params(root), root / "one")}
    # a run killed after step 8 (the 1-process checkpoint format), to be resumed under FSDP
    resumed = root / "resumed"
    shutil.copytree(out["one"], resumed)
    shutil.rmtree(resumed / "checkpoints" / "latest")
    shutil.copytree(saved, resumed / "checkpoints" / "latest")
    n_chunks = json.loads((saved / "state.json").read_text())["extra"]["n_chunks"]
    for chunk in chunk_paths(resumed)[n_chunks:]:  # written after the checkpoint: resume redoes them
        chunk.unlink()
    sidecar = json.loads((resumed / "run.json").read_text())
    sidecar["complete"] = False
    sidecar["params"]["inject"]["parallel"] = "fsdp"
    (resumed / "run.json").write_text(json.dumps(sidecar))

    procs = {name: torchrun_two(root, name, parallel=name) for name in ("ddp", "fsdp")}
    procs["resumed"] = torchrun_two(root, "resumed")
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            out[name], out[f"{name}_stdout"] = root / name, stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def torchrun_two(root: Path, name: str, **inject) -> subprocess.Popen:
    """``factacq inject`` (with ``inject`` settings) or, with none, ``factacq resume`` of
    root/name on 2 gloo processes."""
    if inject:
        params_file = root / f"micro-{name}.yaml"
        params_file.write_text(dump_params(micro_params(root, **inject)))
        args = ["inject", str(params_file), "--out", str(root / name)]
    else:
        args = ["resume", str(root / name)]
    env = dict(os.environ, FACTACQ_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "factacq.cli", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_same_log(one_dir: Path, two_dir: Path) -> None:
    from factacq.runlog import chunk_paths, load_run

    one, two = load_run(one_dir), load_run(two_dir)
    assert len(chunk_paths(two_dir)) == len(chunk_paths(one_dir))  # one log, rank 0's
    assert len(two) == len(one) and (two["record"].value_counts() == one["record"].value_counts()).all()
    a = one.sort_values(KEY, na_position="first").reset_index(drop=True)
    b = two.sort_values(KEY, na_position="first").reset_index(drop=True)
    for column in ("record", "step", "item_id", "scenario", "kind", "probe_index", "text_index", "row"):
        assert a[column].equals(b[column]), column
    probes = a["record"] == "probe"
    assert probes.sum() > 100
    # fp32: 2 ranks reduce the gradients (and FSDP the shards) in another order than 1 process, about
    # an ulp per update over the 16 updates. |ℓ| < 8, where an fp32 ulp is 4.8e-7; measured: at most
    # 1.4e-6 (3 ulps) on ℓ, 4.8e-7 on the loss. 1e-5 (~20 ulps) leaves a 7x margin; one update more
    # or less moves ℓ by ~1e-2 (the median per-step change of ℓ in this run).
    for column in ("logprob", "first_logprob", "seq_logprob", "first_foil_logprob"):
        np.testing.assert_allclose(b.loc[probes, column], a.loc[probes, column], atol=1e-5, rtol=0)
    train = a["record"] == "train"
    for column in ("loss", "bg_loss", "grad_norm"):
        np.testing.assert_allclose(b.loc[train, column], a.loc[train, column], atol=1e-5, rtol=0)
    assert b.loc[train, "lr"].equals(a.loc[train, "lr"])  # the same schedule, computed the same way


def test_two_gloo_processes_with_ddp_match_one_process_and_write_one_log(runs):
    assert "fsdp:" not in runs["ddp_stdout"]
    assert load_sidecar(runs["ddp"])["world_size"] == 2
    assert_same_log(runs["one"], runs["ddp"])


def test_two_gloo_processes_with_fsdp_match_one_process_and_save_a_full_checkpoint(runs):
    from factacq.checkpoint import load_checkpoint

    assert "fsdp: 2 decoder layers + the root sharded over 2 ranks" in runs["fsdp_stdout"]
    one = runs["one"]
    assert load_sidecar(runs["fsdp"])["world_size"] == 2
    assert_same_log(one, runs["fsdp"])
    # the checkpoint is gathered onto rank 0 in the 1-process format: it loads as one
    a, extra_a = load_checkpoint(one / "checkpoints" / "latest")
    b, extra_b = load_checkpoint(runs["fsdp"] / "checkpoints" / "latest")
    assert extra_a == extra_b and (a.step, a.data_position) == (b.step, b.data_position)
    saved = lambda run: load_file(run / "checkpoints" / "latest" / "model.safetensors").keys()  # noqa: E731
    assert saved(runs["fsdp"]) == saved(one)  # the same tensors saved (a tied weight once)
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert wa.keys() == wb.keys()
    # the same fp32 reduction-order differences: measured at most 3e-8 on weights and moments; an
    # update lost or doubled would move a weight by about lr = 1e-2
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=0)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["state"].keys() == sb["state"].keys() and len(sa["state"]) == len(list(a.model.parameters()))
    for i, moments in sa["state"].items():
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sb["state"][i][k], moments[k], atol=1e-5, rtol=0)
    assert [g["params"] for g in sa["param_groups"]] == [g["params"] for g in sb["param_groups"]]


def test_a_one_process_checkpoint_resumes_under_fsdp_to_the_same_log(runs):
    """The step-8 checkpoint of the 1-process run is scattered onto 2 FSDP ranks (model and
    optimizer moments); steps 9-16 then give the 1-process log and run.json is completed."""
    assert "fsdp: 2 decoder layers + the root sharded over 2 ranks" in runs["resumed_stdout"]
    assert_same_log(runs["one"], runs["resumed"])
    assert load_sidecar(runs["resumed"])["complete"] is True
    a = load_file(runs["one"] / "checkpoints" / "latest" / "model.safetensors")
    b = load_file(runs["resumed"] / "checkpoints" / "latest" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0)
