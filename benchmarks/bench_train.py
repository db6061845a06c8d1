"""Training throughput of the default preset and its MFU against this machine's own fp32 GEMM peak.

    python benchmarks/bench_train.py [--params params/default.yaml] [--steps 5] [--rounds 4]
                                     [--variants eager,compile] [--threads N] [--json]

MFU = 6 * N * tokens/s / peak, with N the model's unique parameters (the tied embedding counted once,
as the lm_head matmul; attention score FLOPs are left out, as usual) and peak the best fp32 matmul
rate measured here, in the same run, on the same threads (before and after every round). Batches
are random tokens of the default shape (speed does not depend on the token values), so no corpus
needs building.

Variants are timed side by side, interleaved round by round, so a busy machine slows them alike:
``eager`` is the default training path (factacq.train.train_step as `factacq pretrain` runs it);
``compile`` is the same step with params ``compile: true``: the whole loss through ``torch.compile``
(inductor; opt-in: fused elementwise kernels change the fp32 rounding, so its numerics are not
bit-identical to eager).
The figure per variant is the median over rounds of the mean s/step of a round (and the best).

Like ``factacq.train.train``, the benchmark first calls ``keep_freed_memory`` (glibc keeps freed
buffers for reuse). That is process-wide and cannot be undone, so the step without it is measured in
a separate run: ``FACTACQ_KEEP_FREED_MEMORY=0 python benchmarks/bench_train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FACTACQ_PROGRESS", "0")

from factacq.models import build_model, count_parameters  # noqa: E402
from factacq.params import load_params  # noqa: E402
from factacq.train import (Batch, TrainState, keep_freed_memory, make_optimizer,  # noqa: E402
                           make_scheduler, train_step)

VARIANTS = ("eager", "compile")


def gemm_peak(sizes=(1024, 2048, 3072), repeats: int = 5, device: str = "cpu",
              dtype: torch.dtype = torch.float32) -> float:
    """Best matmul FLOP/s over a few square sizes (fp32 on the CPU unless told)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm up
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t0))
    return best


def make_state(params, variant: str) -> TrainState:
    if variant not in VARIANTS:
        raise SystemExit(f"--variants: unknown variant {variant!r} (choose from {VARIANTS})")
    torch.manual_seed(0)
    model = build_model(params.model, params.tokenizer.vocab_size, params.pretrain.seq_len,
                        eos_token_id=0)
    optimizer = make_optimizer(model, params.optim)
    return TrainState(model, optimizer, make_scheduler(optimizer, params.optim, 10**6))


def bench(params_path: str, steps: int, rounds: int = 4, variants=("eager",), warmup: int = 3) -> dict:
    kept = keep_freed_memory()
    params = load_params(params_path)
    pp, vocab = params.pretrain, params.tokenizer.vocab_size
    batch = Batch(torch.randint(0, vocab, (pp.batch_size, pp.seq_len)),
                  torch.ones(pp.batch_size, dtype=torch.bool))
    states = {v: make_state(params, v) for v in variants}
    for v, state in states.items():  # warm up (and, for compile, compile)
        for _ in range(warmup):
            train_step(state, batch, micro_batch_size=pp.micro_batch_size, compile=v == "compile")
    seconds = {v: [] for v in variants}
    peak = gemm_peak()
    for _ in range(rounds):
        for v, state in states.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                train_step(state, batch, micro_batch_size=pp.micro_batch_size, compile=v == "compile")
            seconds[v].append((time.perf_counter() - t0) / steps)
        peak = max(peak, gemm_peak())
    n_params = count_parameters(next(iter(states.values())).model)
    tokens = pp.batch_size * pp.seq_len
    out = {"preset": params.model.preset, "parameters": n_params, "batch": pp.batch_size,
           "seq_len": pp.seq_len, "vocab": vocab, "threads": torch.get_num_threads(),
           "keep_freed_memory": kept,
           "gemm_peak_gflops": round(peak / 1e9, 1), "variants": {}}
    for v, s in seconds.items():
        median, best = statistics.median(s), min(s)
        out["variants"][v] = {
            "s_per_step": round(median, 4), "tokens_per_s": round(tokens / median, 1),
            "achieved_gflops": round(6 * n_params * tokens / median / 1e9, 1),
            "mfu": round(6 * n_params * tokens / median / peak, 3),
            "best_mfu": round(6 * n_params * tokens / best / peak, 3),
            "rounds_s_per_step": [round(x, 4) for x in s]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--params", default=str(root / "params" / "default.yaml"))
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--variants", default="eager", help=f"comma-separated, of {','.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench(args.params, args.steps, args.rounds, tuple(args.variants.split(",")))
    if args.json:
        print(json.dumps(result))
        return 0
    for v, r in result["variants"].items():
        print(f"train {result['preset']} {v} ({result['parameters'] / 1e6:.2f}M params, batch "
              f"{result['batch']}x{result['seq_len']}, {result['threads']} threads, keep_freed_memory "
              f"{result['keep_freed_memory']}): "
              f"{r['tokens_per_s']:.0f} tokens/s, {r['s_per_step']:.3f} s/step; "
              f"{r['achieved_gflops']:.0f} GFLOP/s of {result['gemm_peak_gflops']:.0f} fp32 "
              f"GEMM peak = MFU {100 * r['mfu']:.1f}% (best round {100 * r['best_mfu']:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
