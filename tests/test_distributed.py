"""The injection loop under torchrun: 2 CPU processes (gloo) give the probe values of 1 process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from factacq.params import dump_params
from test_resume import micro_params

ROOT = Path(__file__).resolve().parents[1]
KEY = ["record", "step", "item_id", "kind", "probe_index", "text_index", "row"]


def test_two_gloo_processes_match_one_process_and_write_one_log(tmp_path):
    from factacq.inject import run_inject
    from factacq.runlog import chunk_paths, load_run, load_sidecar

    torch.set_num_threads(1)
    p = micro_params(tmp_path)
    one = load_run(run_inject(p, tmp_path / "one"))
    params_file = tmp_path / "micro.yaml"
    params_file.write_text(dump_params(p))
    env = dict(os.environ, FACTACQ_PROGRESS="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "factacq.cli", "inject", str(params_file), "--out", str(tmp_path / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_run(tmp_path / "two")
    assert load_sidecar(tmp_path / "two")["world_size"] == 2
    assert len(chunk_paths(tmp_path / "two")) == len(chunk_paths(tmp_path / "one"))  # one log, rank 0's
    assert len(two) == len(one) and (two["record"].value_counts() == one["record"].value_counts()).all()
    a = one.sort_values(KEY, na_position="first").reset_index(drop=True)
    b = two.sort_values(KEY, na_position="first").reset_index(drop=True)
    for column in ("record", "step", "item_id", "scenario", "kind", "probe_index", "text_index", "row"):
        assert a[column].equals(b[column]), column
    probes = a["record"] == "probe"
    assert probes.sum() > 100
    for column in ("logprob", "first_logprob", "seq_logprob", "first_foil_logprob"):
        np.testing.assert_allclose(b.loc[probes, column], a.loc[probes, column], atol=1e-5, rtol=0)
    train = a["record"] == "train"
    for column in ("loss", "bg_loss", "grad_norm", "lr"):
        np.testing.assert_allclose(b.loc[train, column], a.loc[train, column], atol=1e-5, rtol=0)
