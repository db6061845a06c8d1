"""Training throughput of the default preset and its MFU against this machine's own fp32 GEMM peak.

    python benchmarks/bench_train.py [--params params/default.yaml] [--steps 20] [--json]

MFU = 6 * N * tokens/s / peak, with N the model's unique parameters (the tied embedding counted once,
as the lm_head matmul; attention score FLOPs are left out, as usual) and peak the best fp32 matmul
rate measured here, in the same run, on the same threads. Batches are random tokens of the default
shape (speed does not depend on the token values), so no corpus needs building.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FACTACQ_PROGRESS", "0")

from factacq.models import build_model, count_parameters  # noqa: E402
from factacq.params import load_params  # noqa: E402
from factacq.train import Batch, TrainState, make_optimizer, make_scheduler, train_step  # noqa: E402


def gemm_peak(sizes=(1024, 2048, 3072), repeats: int = 5) -> float:
    """Best fp32 matmul FLOP/s over a few square sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm up
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t0))
    return best


def bench(params_path: str, steps: int, warmup: int = 3) -> dict:
    params = load_params(params_path)
    pp, vocab = params.pretrain, params.tokenizer.vocab_size
    torch.manual_seed(0)
    model = build_model(params.model, vocab, pp.seq_len, eos_token_id=0)
    optimizer = make_optimizer(model, params.optim)
    state = TrainState(model, optimizer, make_scheduler(optimizer, params.optim, 10**6))
    batch = Batch(torch.randint(0, vocab, (pp.batch_size, pp.seq_len)),
                  torch.ones(pp.batch_size, dtype=torch.bool))
    peak_before = gemm_peak()
    for _ in range(warmup):
        train_step(state, batch, micro_batch_size=pp.micro_batch_size)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state, batch, micro_batch_size=pp.micro_batch_size)
    seconds = (time.perf_counter() - t0) / steps
    peak = max(peak_before, gemm_peak())
    n_params = count_parameters(model)
    tokens_per_s = pp.batch_size * pp.seq_len / seconds
    achieved = 6 * n_params * tokens_per_s
    return {"preset": params.model.preset, "parameters": n_params, "batch": pp.batch_size,
            "seq_len": pp.seq_len, "vocab": vocab, "threads": torch.get_num_threads(),
            "s_per_step": round(seconds, 4), "tokens_per_s": round(tokens_per_s, 1),
            "achieved_gflops": round(achieved / 1e9, 1), "gemm_peak_gflops": round(peak / 1e9, 1),
            "mfu": round(achieved / peak, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--params", default=str(root / "params" / "default.yaml"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench(args.params, args.steps)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"train {result['preset']} ({result['parameters'] / 1e6:.2f}M params, batch "
              f"{result['batch']}x{result['seq_len']}, {result['threads']} threads): "
              f"{result['tokens_per_s']:.0f} tokens/s, {result['s_per_step']:.3f} s/step; "
              f"{result['achieved_gflops']:.0f} GFLOP/s of {result['gemm_peak_gflops']:.0f} fp32 "
              f"GEMM peak = MFU {100 * result['mfu']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
