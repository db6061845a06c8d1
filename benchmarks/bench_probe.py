"""Probe scoring and probe schedule of the default run, against the paper's protocol.

    python benchmarks/bench_probe.py [--params params/default.yaml] [--repeats 3] [--json]

1. Scoring: factacq's one forward pass per padded, length-bucketed batch (ℓ, first-token ℓ, sequence
   ℓ and the first-token foil contrast together) vs the paper's protocol of three separate forward
   passes per probe batch (one per value, each batch padded to its longest probe, probes in file
   order), on the same model, tokenizer and probes (the default knowledge: every probed item).
   Both compute the same values; the benchmark checks they agree to 1e-4.
2. Schedule: probe evaluations (probe x step) of the default schedule vs probing every step.
3. Share of run time: the probing of the whole run (every probe step of the schedule scored as the
   run scores it: the probes due at that step in one call of probe.score) against the run's
   training updates (a few updates of the run's batch shape timed and scaled by its steps), side by
   side in one process. Target (issue 10): probing <= 15% of the run's time.

The model is the default preset, freshly initialised (speed does not depend on the weights); the
tokenizer is the run's (trained on the background corpus and cached under params.cache_dir).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FACTACQ_PROGRESS", "0")

from factacq.corpus import prepare_corpus  # noqa: E402
from factacq.plan import describe_plan, preflight, probed_probes  # noqa: E402
from factacq.probe import probe_schedule  # noqa: E402
from factacq.train import Batch, new_state, train_step  # noqa: E402
from factacq.knowledge import knowledge_from_params  # noqa: E402
from factacq.models import build_model  # noqa: E402
from factacq.params import load_params  # noqa: E402
from factacq.probe import choose_foils, encode_probes, score  # noqa: E402


def paper_protocol(model, encoded, batch_size: int) -> dict[str, np.ndarray]:
    """Three forward passes per batch of probes in file order: target ℓ, first-token ℓ, sequence ℓ."""
    n = len(encoded)
    out = {k: np.zeros(n) for k in ("logprob", "first_logprob", "seq_logprob")}
    model.eval()
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            idx = np.arange(lo, min(lo + batch_size, n))
            lengths = [len(encoded.ids[i]) for i in idx]
            ids = torch.zeros((len(idx), max(lengths)), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):
                ids[r, : lengths[r]] = torch.from_numpy(encoded.ids[i])
                mask[r, : lengths[r]] = 1
            pos = torch.arange(1, ids.size(1))[None, :]
            starts = torch.as_tensor(encoded.target_start[idx])[:, None]
            valid = mask[:, 1:].bool()
            selections = {"logprob": valid & (pos >= starts), "first_logprob": valid & (pos == starts),
                          "seq_logprob": valid}
            for name, sel in selections.items():  # one full forward pass per value, as the paper does
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                labels = ids[:, 1:].masked_fill(~sel, -100)
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels,
                                                        ignore_index=-100, reduction="none")
                out[name][idx] = (-(nll * sel).sum(1) / sel.sum(1)).numpy()
    return out


def timed(fn, repeats: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_share(params, model, encoded, batch_size: int, repeats: int) -> dict:
    """Seconds of the run's probing (every probe step, as the run scores it) and of its training
    updates (median of a few timed updates x steps), and probing's share of their sum: the median
    of ``repeats`` rounds, each timing both side by side."""
    ks, groups, plan, _ = preflight(params)
    schedule = probe_schedule(plan, params.probe, groups)
    by_item: dict[str, list[int]] = {}
    for i, (item_id, _, _) in enumerate(encoded.keys):
        by_item.setdefault(item_id, []).append(i)
    at: dict[int, list[int]] = {}
    for item_id, steps in schedule.items():
        for step in steps.tolist():
            at.setdefault(step, []).extend(by_item.get(item_id, []))
    subsets = [encoded.subset(np.sort(np.asarray(at[step]))) for step in sorted(at)]
    vocab, rows, seq = params.tokenizer.vocab_size, params.run_batch_size, params.pretrain.seq_len
    state = new_state(params, vocab, None, "cpu")
    batch = Batch(torch.randint(0, vocab, (rows, seq)), torch.ones(rows, dtype=torch.bool))
    train_step(state, batch, micro_batch_size=params.pretrain.micro_batch_size)  # warm-up
    rounds = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for sub in subsets:
            score(model, sub, batch_size)
        probe_seconds = time.perf_counter() - t0
        per_step = []
        for _ in range(5):
            t1 = time.perf_counter()
            train_step(state, batch, micro_batch_size=params.pretrain.micro_batch_size)
            per_step.append(time.perf_counter() - t1)
        train_seconds = float(np.median(per_step)) * plan.total_steps
        rounds.append((probe_seconds / (probe_seconds + train_seconds), probe_seconds, train_seconds))
    share, probe_seconds, train_seconds = sorted(rounds)[len(rounds) // 2]
    return {"probe_seconds": round(probe_seconds, 2), "train_seconds": round(train_seconds, 2),
            "probe_share": round(share, 4), "probe_share_rounds": [round(r[0], 4) for r in rounds],
            "probe_step_count": len(at)}


def bench(params_path: str, repeats: int = 3) -> dict:
    params = load_params(params_path)
    torch.manual_seed(0)
    ks, groups = knowledge_from_params(params)
    tokenizer = prepare_corpus(params).tokenizer
    foils = choose_foils(ks, groups, params.probe.n_foils, params.probe.foil_seed)
    encoded = encode_probes(probed_probes(ks, groups), tokenizer, foils)
    model = build_model(params.model, len(tokenizer), params.pretrain.seq_len, tokenizer.eos_token_id)
    bs = params.probe.batch_size
    ours = score(model, encoded, bs)
    paper = paper_protocol(model, encoded, bs)
    for k in paper:
        np.testing.assert_allclose(ours[k], paper[k], atol=1e-4)
    t_ours = timed(lambda: score(model, encoded, bs), repeats)
    t_paper = timed(lambda: paper_protocol(model, encoded, bs), repeats)
    plan = describe_plan(params)
    share = run_share(params, model, encoded, bs, repeats)
    return {**share,
        "probes": len(encoded), "threads": torch.get_num_threads(), "batch_size": bs,
        "one_pass_seconds": round(t_ours, 4), "paper_three_pass_seconds": round(t_paper, 4),
        "scoring_speedup": round(t_paper / t_ours, 2),
        "probe_evaluations_schedule": plan["probe_evaluations"],
        "probe_evaluations_every_step": plan["probe_evaluations_every_step"],
        "schedule_reduction": plan["probe_evaluation_ratio"],
        "run_steps": plan["steps"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = bench(args.params, args.repeats)
    if args.json:
        print(json.dumps(result))
        return
    print(f"probe scoring, {result['probes']} probes ({result['threads']} threads): one pass "
          f"{result['one_pass_seconds']:.3f} s vs paper's three passes {result['paper_three_pass_seconds']:.3f} s"
          f" -> {result['scoring_speedup']:.2f}x faster")
    print(f"probe schedule, {result['run_steps']} steps: {result['probe_evaluations_schedule']} evaluations vs "
          f"{result['probe_evaluations_every_step']} every step -> {result['schedule_reduction']:.1f}x fewer")
    print(f"probing's share of the run: {result['probe_seconds']:.1f} s of probing at "
          f"{result['probe_step_count']} steps vs {result['train_seconds']:.1f} s of training "
          f"updates -> {result['probe_share']:.1%} of the run (median of rounds "
          f"{', '.join(f'{r:.1%}' for r in result['probe_share_rounds'])}; target <= 15%)")


if __name__ == "__main__":
    main()
