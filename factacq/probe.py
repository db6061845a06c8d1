"""Probes: encoding by character offsets, the one-pass scorer, foils, and the probe schedule.

A probe is a cloze prompt and a short target. It is tokenized once as ``prompt + " " + target``
(after a start token), and its target tokens are the tokens whose character span reaches into the
target (offsets, not token counts, so a BPE merge of the space with the target's first word cannot
shift them). One forward pass per padded, length-bucketed batch gives every probe's

- ``logprob``       ℓ: mean log-prob of the target tokens given everything before them,
- ``first_logprob`` log-prob of the first target token,
- ``seq_logprob``   mean log-prob of all tokens of prompt + " " + target,
- ``first_foil_logprob`` mean first-token log-prob of the foil targets (same pass, same position),

and, with full foil scoring, ``foil_logprob`` (one more sequence per foil in the same batches).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from factacq.errors import FactacqError
from factacq.params import GROUPS

VALUES = ("logprob", "first_logprob", "seq_logprob", "foil_logprob", "first_foil_logprob")


@dataclass
class EncodedProbes:
    """Probes tokenized once. Row i describes probe i; sequences include the start token."""

    keys: list[tuple[str, str, int]]  # (item_id, kind, probe index)
    ids: list[np.ndarray]  # token ids of [start] + prompt + " " + target
    target_start: np.ndarray  # index in ids of the first target token
    # first-token foils: for probe i, the first token id of each foil target after the same prefix
    foil_first_ids: list[np.ndarray] = field(default_factory=list)
    # full foils: for probe i, (ids, target_start) of each foil sequence
    foil_seqs: list[list[tuple[np.ndarray, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, indices) -> "EncodedProbes":
        indices = list(indices)
        return EncodedProbes(
            keys=[self.keys[i] for i in indices],
            ids=[self.ids[i] for i in indices],
            target_start=self.target_start[indices] if indices else np.zeros(0, dtype=np.int64),
            foil_first_ids=[self.foil_first_ids[i] for i in indices] if self.foil_first_ids else [],
            foil_seqs=[self.foil_seqs[i] for i in indices] if self.foil_seqs else [],
        )


def start_token_id(tokenizer) -> int:
    """The token that starts every probe: BOS if the tokenizer has one, else EOS (the document
    separator of the packed stream, so the prompt's first token is predicted as at a document start)."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise FactacqError("tokenizer: has neither a bos_token nor an eos_token to start probes with")
    return int(tid)


def encode_text(prompt: str, target: str, tokenizer, start_id: int) -> tuple[np.ndarray, int]:
    """Token ids of [start] + prompt + " " + target and the index of the first target token."""
    if not target.strip():
        raise FactacqError(f"probe: empty target after prompt {prompt!r}")
    text = prompt + " " + target
    boundary = len(prompt) + 1  # first character of the target
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    first = next((j for j, (_, end) in enumerate(offsets) if end > boundary), None)
    if first is None:
        raise FactacqError(f"probe: target {target!r} has no tokens after prompt {prompt!r}")
    return np.asarray([start_id] + list(ids), dtype=np.int64), first + 1


def encode_probes(probes, tokenizer, foils: dict | None = None, full_foils: bool = False) -> EncodedProbes:
    """Tokenize each probe once; ``foils`` maps (item_id, kind, index) -> foil target strings.

    First-token foils are kept only when the foil's tokens before the boundary equal the probe's
    (then its first token is predicted at the same position of the same forward pass)."""
    start = start_token_id(tokenizer)
    keys, ids, starts, foil_first, foil_seqs = [], [], [], [], []
    for p in probes:
        key = (p.item_id, p.kind, int(p.index))
        seq, ts = encode_text(p.prompt, p.target, tokenizer, start)
        keys.append(key)
        ids.append(seq)
        starts.append(ts)
        firsts, seqs = [], []
        for foil in (foils or {}).get(key, ()):
            fseq, fts = encode_text(p.prompt, foil, tokenizer, start)
            if fts == ts and np.array_equal(fseq[:fts], seq[:ts]):
                firsts.append(int(fseq[fts]))
            if full_foils:
                seqs.append((fseq, fts))
        foil_first.append(np.asarray(firsts, dtype=np.int64))
        foil_seqs.append(seqs)
    return EncodedProbes(keys, ids, np.asarray(starts, dtype=np.int64), foil_first,
                         foil_seqs if full_foils else [])


def _length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _score_sequences(model, seqs: list[np.ndarray], starts: np.ndarray, batch_size: int, device,
                     foil_first: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Mean target / first-target / whole-sequence log-probs of token sequences, one forward per
    length-bucketed batch (and the mean first-token log-prob of foil tokens at the target position)."""
    n = len(seqs)
    out = {k: np.full(n, np.nan) for k in ("logprob", "first_logprob", "seq_logprob", "first_foil_logprob")}
    lengths = np.asarray([len(s) for s in seqs])
    for idx in _length_batches(lengths, batch_size):
        width = int(lengths[idx].max())
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : lengths[i]] = torch.from_numpy(seqs[i])
            mask[r, : lengths[i]] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # j-1 predicts j
        lse = torch.logsumexp(logits, dim=-1)  # log-softmax without a second [b, width, vocab] tensor
        token_logp = logits.gather(-1, ids[:, 1:, None]).squeeze(-1) - lse  # [b, width-1]
        pos = torch.arange(1, width, device=device)[None, :]
        valid = mask[:, 1:].bool()
        ts = torch.as_tensor(starts[idx], device=device)[:, None]
        target = valid & (pos >= ts)
        out["logprob"][idx] = ((token_logp * target).sum(1) / target.sum(1)).cpu().numpy()
        out["seq_logprob"][idx] = ((token_logp * valid).sum(1) / valid.sum(1)).cpu().numpy()
        rows = torch.arange(len(idx), device=device)
        out["first_logprob"][idx] = token_logp[rows, ts[:, 0] - 1].cpu().numpy()
        if foil_first is not None:
            # [b, vocab]: log-probs of every token as the first target token
            at_boundary = logits[rows, ts[:, 0] - 1] - lse[rows, ts[:, 0] - 1, None]
            for r, i in enumerate(idx):
                if len(foil_first[i]):
                    tok = torch.as_tensor(foil_first[i], device=device)
                    out["first_foil_logprob"][i] = at_boundary[r, tok].mean().item()
    return out


def score(model, encoded: EncodedProbes, batch_size: int = 256, device="cpu") -> dict[str, np.ndarray]:
    """Score every probe: arrays aligned with ``encoded.keys`` for each name in :data:`VALUES`.

    No grad, eval mode, then the model's previous mode again; the torch RNG state is restored, so
    probing never changes training."""
    n = len(encoded)
    if n == 0:
        return {k: np.zeros(0) for k in VALUES}
    was_training = model.training
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    model.eval()
    try:
        with torch.no_grad():
            seqs = list(encoded.ids)
            starts = list(encoded.target_start)
            owner = []  # for each foil sequence, the probe it belongs to
            for i, foils in enumerate(encoded.foil_seqs):
                for fseq, fts in foils:
                    seqs.append(fseq)
                    starts.append(fts)
                    owner.append(i)
            foil_first = list(encoded.foil_first_ids) + [np.zeros(0, np.int64)] * len(owner) \
                if encoded.foil_first_ids else None
            res = _score_sequences(model, seqs, np.asarray(starts), batch_size, device, foil_first)
    finally:
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    out = {k: res[k][:n] for k in ("logprob", "first_logprob", "seq_logprob", "first_foil_logprob")}
    out["foil_logprob"] = np.full(n, np.nan)
    if owner:
        owner = np.asarray(owner)
        foil_lp = res["logprob"][n:]
        sums = np.bincount(owner, weights=foil_lp, minlength=n)
        counts = np.bincount(owner, minlength=n)
        has = counts > 0
        out["foil_logprob"][has] = sums[has] / counts[has]
    return out


def choose_foils(ks, groups: dict[str, str], n_foils: int, seed: int = 0) -> dict[tuple, tuple[str, ...]]:
    """Per probe (item_id, kind, index) of a probed item: up to ``n_foils`` distinct targets of the
    same kind (and the same attribute, when the probe has one) taken from CONTROL items other than
    its own, chosen deterministically from ``seed`` (a run passes ``probe.foil_seed``) and the
    probe's key."""
    control = [item for item in ks if groups.get(item.id) == "control"]
    pools: dict[tuple, list[tuple[str, str]]] = {}
    for item in control:
        for p in item.probes:
            pools.setdefault((p.kind, p.attribute), []).append((item.id, p.target))
            if p.attribute is not None:
                pools.setdefault((p.kind, None), []).append((item.id, p.target))
    out = {}
    for item in ks:
        if groups.get(item.id) in (None, "spare"):
            continue
        for p in item.probes:
            key = (p.item_id, p.kind, int(p.index))
            if n_foils == 0:
                out[key] = ()
                continue
            pool = pools.get((p.kind, p.attribute)) or pools.get((p.kind, None)) or []
            seen, cands = {p.target.strip().lower()}, []
            for owner, target in pool:
                norm = target.strip().lower()
                if owner != item.id and norm not in seen:
                    seen.add(norm)
                    cands.append(target)
            rng = np.random.default_rng([seed, zlib.crc32(f"{key}".encode())])
            pick = rng.permutation(len(cands))[:n_foils]
            out[key] = tuple(cands[j] for j in sorted(pick))
    return out


def window_offsets(pp) -> np.ndarray:
    """The steps after an injection probed in its window (t_i, t_i + window]: every one (the
    paper's), or with ``pp.window_points`` that many log-spaced ones, always 1 and ``window``."""
    if pp.window_points is None or pp.window_points >= pp.window:
        return np.arange(1, pp.window + 1)
    return np.unique(np.round(np.geomspace(1, pp.window, pp.window_points)).astype(np.int64))


def probe_schedule(plan, pp, groups: dict[str, str]) -> dict[str, np.ndarray]:
    """Steps at which each probed item is evaluated (sorted, unique, within 0..plan.total_steps).

    Per injected item: step 0, every injection step t_i (t_pre is the first), every step of each
    window (t_i, t_i + window] (or its :func:`window_offsets`), then the points after its last window of one log-spaced grid of
    ``log_points`` steps shared by all items (from the earliest end of any item's last window to the
    end of the run). Control items are probed at the union of the injected items'
    steps, so every injected probe value has a control value at the same step (control adjustment),
    or with ``pp.control_every`` k at every k-th step of it (the metrics interpolate).
    ``pp.every_step`` probes every step."""
    total = plan.total_steps
    probed = [i for i, g in groups.items() if g in GROUPS]
    if pp.every_step:
        steps = np.arange(total + 1, dtype=np.int64)
        return {i: steps for i in probed}
    by_item: dict[str, list[int]] = {}
    for ev in plan.events:
        by_item.setdefault(ev.item_id, []).append(ev.step)

    offsets = window_offsets(pp)

    def dense(inj_steps) -> set[int]:
        s = {0}
        for t in inj_steps:
            s.add(t)
            s.update(t + o for o in offsets if t + o <= total)
        return s

    # one log-spaced grid shared by all items, from the earliest end of an item's last window to the
    # end of the run; each item is probed on the grid points after its own last window. A shared grid
    # keeps the control items' schedule (the union) nearly as small as one item's.
    last_window_ends = [min(max(v) + pp.window, total) for v in by_item.values()] or [0]
    grid_start = min(last_window_ends)
    grid = {total}
    if pp.log_points > 0 and grid_start < total:
        grid |= {int(grid_start + round(o)) for o in np.geomspace(1, total - grid_start, pp.log_points)}

    def tail(last: int) -> set[int]:
        start = min(last + pp.window, total)
        return {g for g in grid if g > start} | {total}

    out = {}
    for item_id in probed:
        if groups[item_id] != "control":
            inj = sorted(by_item.get(item_id, []))
            steps = dense(inj) | (tail(inj[-1]) if inj else tail(0))
            out[item_id] = np.asarray(sorted(s for s in steps if 0 <= s <= total), dtype=np.int64)
    # control items are compared with every injected item at that item's steps: probe them on the
    # union, or on every k-th step of it (probe.control_every; always its first and last, step 0
    # and the run's first injection, t_pre), the metrics interpolating between them
    union = set().union(*(set(v.tolist()) for v in out.values())) if out else dense([]) | tail(0)
    control = sorted(union)
    every = getattr(pp, "control_every", 1)
    if every > 1 and control:
        first = min((t for v in by_item.values() for t in v), default=0)
        control = sorted(set(control[::every]) | {control[0], control[-1], 0, first})
    control = np.asarray(control, dtype=np.int64)
    for item_id in probed:
        if groups[item_id] == "control":
            out[item_id] = control
    return {i: out[i] for i in probed}


def schedule_evaluations(schedule: dict[str, np.ndarray], probes_per_item: dict[str, int]) -> int:
    """Number of probe evaluations (probe x step) a schedule asks for."""
    return int(sum(len(steps) * probes_per_item.get(i, 0) for i, steps in schedule.items()))
