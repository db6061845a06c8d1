"""The prepared GPU check (issue 13): one script, nothing from the hub, under 8 minutes on one H200.

    bash benchmarks/gpu_check.sh             # on a GPU machine
    bash benchmarks/gpu_check.sh --dry-run   # the same code path on the CPU, at toy shapes

It measures, and prints as one table (also written to ``--out``, default gpu_check.md):
1. training throughput of an OLMo-1B-shaped model (random init; hidden 2048, 16 layers, 16 heads,
   vocab 50,304) at seq 2048 in micro-batches, bf16 autocast over fp32 master weights with AdamW, as
   ``factacq.train`` trains; MFU = 6 N tokens/s / the GPU's dense bf16 peak (N: unique parameters);
2. probe-scoring throughput: ``factacq.probe.score`` on random probes of the paper's probe lengths;
3. one 2-rank training step under torchrun: FSDP over NCCL when there are two GPUs; on one GPU NCCL
   refuses two ranks on one device, so it runs DDP over gloo (which takes CUDA tensors) instead.
The dry run uses toy shapes, the CPU and gloo, so its figures say only that the path works.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
os.environ.setdefault("FACTACQ_PROGRESS", "0")

from bench_train import gemm_peak  # noqa: E402
from factacq.models import count_parameters  # noqa: E402
from factacq.probe import EncodedProbes, score  # noqa: E402
from transformers import OlmoConfig, OlmoForCausalLM  # noqa: E402

OLMO_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16,
               vocab_size=50304, seq_len=2048)
TOY = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
           vocab_size=4096, seq_len=128)
# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets; others: the measured GEMM peak
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


def build(shape: dict, device: str) -> OlmoForCausalLM:
    cfg = OlmoConfig(tie_word_embeddings=False, use_cache=False, max_position_embeddings=shape["seq_len"],
                     bos_token_id=None, eos_token_id=None, pad_token_id=None,
                     **{k: v for k, v in shape.items() if k != "seq_len"})
    return OlmoForCausalLM(cfg).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_train(shape: dict, device: str, micro: int, accum: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build(shape, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=device.startswith("cuda"))
    kind = "cuda" if device.startswith("cuda") else "cpu"

    def step():
        for _ in range(accum):
            x = torch.randint(0, shape["vocab_size"], (micro, shape["seq_len"]), device=device)
            with torch.autocast(kind, dtype=torch.bfloat16):
                loss = model(input_ids=x, labels=x).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (allocator, kernels)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    n = count_parameters(model)
    tokens = micro * accum * shape["seq_len"]
    mem = torch.cuda.max_memory_allocated() / 2**30 if kind == "cuda" else float("nan")
    del model, opt
    return {"params": n, "tokens_per_step": tokens, "s_per_step": dt, "tokens_per_s": tokens / dt,
            "model_flops_per_s": 6 * n * tokens / dt, "peak_mem_gib": mem}


def bench_probe(shape: dict, device: str, n_probes: int, batch_size: int) -> dict:
    """factacq.probe.score on random probes: prompts of 20-60 tokens and targets of 2-6 (the paper's
    cloze probes), four first-token foils each."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build(shape, device)
    ids, starts, foils = [], [], []
    for _ in range(n_probes):
        p, t = int(rng.integers(20, 61)), int(rng.integers(2, 7))
        ids.append(rng.integers(0, shape["vocab_size"], 1 + p + t).astype(np.int64))
        starts.append(1 + p)
        foils.append(rng.integers(0, shape["vocab_size"], 4).astype(np.int64))
    enc = EncodedProbes(keys=[(f"i{i}", "memorization", 0) for i in range(n_probes)], ids=ids,
                        target_start=np.array(starts), foil_first_ids=foils)
    with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
        score(model, enc.subset(range(min(n_probes, batch_size))), batch_size=batch_size, device=device)
        sync(device)
        t0 = time.perf_counter()
        score(model, enc, batch_size=batch_size, device=device)
        sync(device)
    dt = time.perf_counter() - t0
    del model
    return {"probes": n_probes, "seconds": dt, "probes_per_s": n_probes / dt}


def worker(shape: dict, out: str) -> None:
    """One rank of the 2-rank step (run by torchrun)."""
    import torch.distributed as dist

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available()
    two_gpus = cuda and torch.cuda.device_count() >= size
    device = f"cuda:{rank if two_gpus else 0}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if two_gpus else "gloo"
    dist.init_process_group(backend)
    torch.manual_seed(0)
    model = build(shape, device)
    if two_gpus:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        model, mode = FSDP(model, use_orig_params=True), "FSDP"
    else:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model, mode = DDP(model), "DDP"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, shape["vocab_size"], (2, shape["seq_len"]), device=device,
                      generator=torch.Generator(device).manual_seed(rank))
    times = []
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    losses = [torch.zeros(1, device=device) for _ in range(size)]
    dist.all_gather(losses, loss.detach().float().reshape(1))
    if rank == 0:
        Path(out).write_text(json.dumps({"mode": f"{mode} over {backend}", "ranks": size, "device": device,
                                         "s_per_step": min(times[1:]),
                                         "losses": [float(v) for v in losses]}))
    dist.destroy_process_group()


def two_rank(shape_name: str, tmp: Path, dry_run: bool) -> dict:
    result = tmp / "two_rank.json"
    result.unlink(missing_ok=True)
    # on the CPU two ranks share its cores: one thread each (more oversubscribes them and stalls gloo)
    env = dict(os.environ, OMP_NUM_THREADS="1") if dry_run else None
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, "--worker", "--shape", shape_name, "--worker-out", str(result)]
    log = tmp / "two_rank.log"
    with open(log, "w") as fh:  # a file, not a pipe: torchrun's ranks inherit it
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, timeout=120, env=env)
    if proc.returncode != 0 or not result.is_file():
        return {"mode": "failed", "error": log.read_text()[-400:]}
    return json.loads(result.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="toy shapes on the CPU: checks the path only")
    ap.add_argument("--out", default="gpu_check.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shape", default="olmo1b", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = {"olmo1b": OLMO_1B, "toy": TOY}
    if args.worker:
        worker(shapes[args.shape], args.worker_out)
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run for the CPU path check)", file=sys.stderr)
        return 1
    device = "cpu" if args.dry_run else "cuda"
    shape, shape_name = (TOY, "toy") if args.dry_run else (OLMO_1B, "olmo1b")
    name = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name()
    measured = gemm_peak((512,) if args.dry_run else (8192,), repeats=10, device=device, dtype=torch.bfloat16)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), measured)
    t0 = time.perf_counter()
    train = bench_train(shape, device, micro=2 if args.dry_run else 8, accum=2 if args.dry_run else 4,
                        steps=2 if args.dry_run else 5)
    probe = bench_probe(shape, device, n_probes=64 if args.dry_run else 4096, batch_size=32 if args.dry_run else 256)
    out = Path(args.out)
    ranks = two_rank(shape_name, out.parent, args.dry_run)
    rows = [
        ("device", name),
        ("model", f"{'toy' if args.dry_run else 'OLMo-1B-shaped'}: {train['params'] / 1e6:.1f}M parameters, "
                  f"seq {shape['seq_len']}, vocab {shape['vocab_size']}"),
        ("bf16 peak (data sheet / measured GEMM)", f"{peak / 1e12:.1f} / {measured / 1e12:.1f} TFLOP/s"),
        ("training: tokens per step (micro-batches)", f"{train['tokens_per_step']:,}"),
        ("training: s/step", f"{train['s_per_step']:.3f}"),
        ("training: tokens/s", f"{train['tokens_per_s']:,.0f}"),
        ("training: MFU", f"{100 * train['model_flops_per_s'] / peak:.1f}%"),
        ("training: peak GPU memory", "n/a (CPU)" if args.dry_run else f"{train['peak_mem_gib']:.1f} GiB"),
        ("probe scoring (factacq.probe.score)", f"{probe['probes_per_s']:,.0f} probes/s ({probe['probes']} probes)"),
        ("2-rank step under torchrun", f"{ranks['mode']}: " + (f"{ranks['s_per_step']:.3f} s/step, losses "
                                                              + ", ".join(f"{v:.4f}" for v in ranks["losses"])
                                                              if "s_per_step" in ranks else ranks.get("error", ""))),
        ("wall time", f"{time.perf_counter() - t0:.0f} s"),
    ]
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    print(table)
    out.write_text(table)
    print(f"written to {out}")
    return 0 if ranks["mode"] != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
