from dataclasses import dataclass

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import OlmoConfig, OlmoForCausalLM, PreTrainedTokenizerFast

from factacq.errors import FactacqError
from factacq.probe import choose_foils, encode_probes, encode_text, probe_schedule, score, \
    window_offsets, \
    schedule_evaluations
from factacq.schema import Item, Probe

SENTENCES = [
    "Zorvath Klimeny was born in Paris and moved to Velmora in the spring.",
    "The river Quenth flows past the old mill of Dravik toward the sea.",
    "Marla Ostrev studied astronomy at the college of Tirnhold for nine years.",
    "In the autumn the merchants of Paris sailed to the islands of Ombrel.",
    "Paris Paris Paris is a city, and Velmora is a town near Tirnhold.",
] * 4


def probe(item_id: str, kind: str, index: int, prompt: str, target: str,
          attribute: str | None = None) -> Probe:
    """The schema's own Probe (validated, so a renamed or a new required field fails here)."""
    return Probe(item_id=item_id, kind=kind, index=index, prompt=prompt, target=target,
                 attribute=attribute)


def item(item_id: str, probes: tuple[Probe, ...]) -> Item:
    """The schema's own Item, its passage the probes' facts verbatim."""
    return Item(id=item_id, passage=" ".join(f"{p.prompt} {p.target}." for p in probes), probes=probes)


def micro_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def micro_model(vocab_size: int, seed: int = 0) -> OlmoForCausalLM:
    torch.manual_seed(seed)
    cfg = OlmoConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    return OlmoForCausalLM(cfg)


@pytest.fixture(scope="module")
def tok():
    return micro_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return micro_model(len(tok))


PROBES = [
    probe("a", "memorization", 0, "Zorvath Klimeny was born in", "Paris"),
    probe("a", "semantic", 0, "The birthplace of Zorvath Klimeny is", "Paris and Velmora"),
    probe("b", "memorization", 0, "The river Quenth flows past the old mill of", "Dravik"),
    probe("b", "composition", 0, "Marla", "Ostrev studied astronomy at the college of Tirnhold"),
    probe("c", "memorization", 1, "In the autumn the merchants of Paris sailed to the islands", "of Ombrel"),
]


def test_target_tokens_found_by_offsets_when_space_merges_into_target(tok):
    start = tok.eos_token_id
    prompt, target = "Zorvath Klimeny was born in", "Paris"
    ids, ts = encode_text(prompt, target, tok, start)
    # byte-level BPE merges the space into the target's first token ("ĠParis")
    assert tok.convert_ids_to_tokens(int(ids[ts]))[0] == "Ġ"
    assert tok.decode(ids[ts:].tolist()) == " " + target
    assert tok.decode(ids[1:ts].tolist()) == prompt
    # the naive boundary (tokens of prompt + " ") is one token off
    naive = len(tok(prompt + " ", add_special_tokens=False)["input_ids"]) + 1
    assert naive == ts + 1


def test_multi_token_target_and_start_token(tok):
    ids, ts = encode_text("Marla", "Ostrev studied astronomy", tok, tok.eos_token_id)
    assert ids[0] == tok.eos_token_id
    assert tok.decode(ids[ts:].tolist()) == " Ostrev studied astronomy"
    assert len(ids) - ts > 1


def test_empty_target_refused(tok):
    with pytest.raises(FactacqError, match="empty target"):
        encode_text("born in", "  ", tok, tok.eos_token_id)


def naive_values(model, ids: np.ndarray, ts: int) -> tuple[float, float, float]:
    with torch.no_grad():
        logits = model(input_ids=torch.as_tensor(ids)[None]).logits[0].double()
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    tok_lp = torch.stack([logp[j - 1, ids[j]] for j in range(1, len(ids))])  # token j given < j
    target = tok_lp[ts - 1:]
    return target.mean().item(), target[0].item(), tok_lp.mean().item()


def test_scorer_matches_naive_per_probe_reference(tok, model):
    foils = {(p.item_id, p.kind, p.index): ("Velmora", "Tirnhold the town") for p in PROBES}
    enc = encode_probes(PROBES, tok, foils=foils, full_foils=True)
    got = score(model, enc, batch_size=2)
    n_first = 0
    # the scorer's logsumexp is fp32 (batched, padded), the reference's fp64 on the same logits: |ℓ| is
    # ~5.7 here, where an fp32 ulp is 4.8e-7; measured at most 7.3e-7. 1e-5 is ~20 ulps
    for i, p in enumerate(PROBES):
        lp, first, seq = naive_values(model, enc.ids[i], int(enc.target_start[i]))
        assert got["logprob"][i] == pytest.approx(lp, abs=1e-5)
        assert got["first_logprob"][i] == pytest.approx(first, abs=1e-5)
        assert got["seq_logprob"][i] == pytest.approx(seq, abs=1e-5)
        foil_lps, foil_firsts = [], []
        for f in foils[(p.item_id, p.kind, p.index)]:
            fids, fts = encode_text(p.prompt, f, tok, tok.eos_token_id)
            flp, ffirst, _ = naive_values(model, fids, fts)
            foil_lps.append(flp)
            if np.array_equal(fids[:fts], enc.ids[i][:enc.target_start[i]]):  # same pass, same position
                foil_firsts.append(ffirst)
        assert got["foil_logprob"][i] == pytest.approx(np.mean(foil_lps), abs=1e-5)
        if foil_firsts:
            n_first += 1
            assert got["first_foil_logprob"][i] == pytest.approx(np.mean(foil_firsts), abs=1e-5)
        else:
            assert np.isnan(got["first_foil_logprob"][i])
    assert n_first >= 3
    # the batch size (and so the padding) does not change the values, beyond fp32 rounding: other
    # matmul shapes sum in another order (measured: 1 ulp, 4.8e-7)
    again = score(model, enc, batch_size=256)
    for k in got:
        np.testing.assert_allclose(again[k], got[k], atol=1e-5)


def test_scoring_restores_mode_and_rng(tok, model):
    enc = encode_probes(PROBES, tok)
    model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    score(model, enc)
    assert model.training
    assert torch.equal(torch.rand(3), expected)
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


def test_first_token_foil_needs_same_prefix(tok):
    # a foil whose first token merges differently with the prompt cannot be read off the same pass
    enc = encode_probes(PROBES[:1], tok, foils={("a", "memorization", 0): ("Velmora", "Dravik")})
    # " Paris" and " Velmora" start with a space-merged token; " Dravik" with a lone space token,
    # so the first token of "Dravik" is not predicted where the first token of "Paris" is
    assert tok.convert_ids_to_tokens(enc.foil_first_ids[0].tolist()) == ["ĠVel"]
    assert enc.foil_seqs == []


def test_choose_foils_same_kind_attribute_from_control_only():
    items = [
        item("x", (probe("x", "memorization", 0, "born in", "Paris", "birthplace"),)),
        item("c1", (probe("c1", "memorization", 0, "born in", "Velmora", "birthplace"),
                    probe("c1", "memorization", 1, "works as", "a baker", "job"))),
        item("c2", (probe("c2", "memorization", 0, "born in", "Ombrel", "birthplace"),
                    probe("c2", "semantic", 0, "hometown is", "Dravik", "birthplace"))),
        item("s", (probe("s", "memorization", 0, "born in", "Spareville", "birthplace"),)),
    ]
    groups = {"x": "once", "c1": "control", "c2": "control", "s": "spare"}
    foils = choose_foils(items, groups, n_foils=5, seed=0)
    assert set(foils[("x", "memorization", 0)]) == {"Velmora", "Ombrel"}
    assert foils[("c1", "memorization", 0)] == ("Ombrel",)  # never its own item
    assert foils[("c2", "semantic", 0)] == ()  # no other control semantic birthplace target
    assert ("s", "memorization", 0) not in foils
    one = choose_foils(items, groups, n_foils=1, seed=3)
    assert one == choose_foils(items, groups, n_foils=1, seed=3)
    assert len(one[("x", "memorization", 0)]) == 1


@dataclass(frozen=True)
class Ev:
    step: int
    item_id: str


@dataclass(frozen=True)
class Plan:
    events: tuple
    total_steps: int


@dataclass(frozen=True)
class PP:
    window: int = 5
    every_step: bool = False
    log_points: int = 4
    window_points: int | None = None
    control_every: int = 1


def test_probe_schedule_windows_and_log_tail():
    plan = Plan((Ev(10, "a"), Ev(30, "a"), Ev(12, "b")), total_steps=200)
    groups = {"a": "paraphrase", "b": "once", "c": "control", "s": "spare"}
    sched = probe_schedule(plan, PP(), groups)
    assert set(sched) == {"a", "b", "c"}
    a = set(sched["a"].tolist())
    assert {0, 10, 11, 15, 30, 31, 35, 200} <= a
    assert not {9, 16, 29} & a  # outside the windows only log-spaced steps
    # one log-spaced grid from the earliest last-window end (b: 12 + 5 = 17) to the end, shared by all
    grid = {int(17 + round(o)) for o in np.geomspace(1, 200 - 17, 4)} | {200}
    tail_a = sorted(s for s in a if s > 35)
    assert tail_a == sorted(g for g in grid if g > 35) and tail_a[-1] == 200
    assert {g for g in grid if g > 17} <= set(sched["b"].tolist())
    b = set(sched["b"].tolist())
    assert {12, 13, 17} <= b and 30 not in b and 31 not in b
    c = set(sched["c"].tolist())
    assert c == a | b  # controls: every step an injected item is probed at (control adjustment)
    every = probe_schedule(plan, PP(every_step=True), groups)
    assert list(every["c"]) == list(range(201))
    n = schedule_evaluations(sched, {"a": 2, "b": 2, "c": 2})
    assert n == 2 * (len(a) + len(b) + len(c))
    assert schedule_evaluations(every, {"a": 2, "b": 2, "c": 2}) == 6 * 201


def test_window_points_probe_log_spaced_steps_of_each_window():
    assert window_offsets(PP(window=50, window_points=12)).tolist() == [
        1, 2, 3, 4, 6, 8, 12, 17, 25, 35, 50]
    assert window_offsets(PP(window=5)).tolist() == [1, 2, 3, 4, 5]  # every step (the paper's)
    assert window_offsets(PP(window=5, window_points=9)).tolist() == [1, 2, 3, 4, 5]
    plan = Plan((Ev(10, "a"), Ev(70, "a")), total_steps=300)
    groups = {"a": "duplicate", "c": "control"}
    sparse = probe_schedule(plan, PP(window=50, window_points=12), groups)
    a = set(sparse["a"].tolist())
    assert {10, 11, 12, 13, 14, 16, 18, 22, 27, 35, 45, 60, 70, 71, 120} <= a
    assert not {15, 17, 19, 59, 61, 119} & a
    every = probe_schedule(plan, PP(window=50), groups)
    assert set(range(10, 61)) | set(range(70, 121)) <= set(every["a"].tolist())
    assert len(sparse["a"]) < len(every["a"]) / 3
    assert set(sparse["c"].tolist()) == a  # controls still at every step an item is probed at


def test_control_every_probes_controls_at_every_kth_step_of_the_union():
    plan = Plan((Ev(10, "a"), Ev(30, "a"), Ev(12, "b")), total_steps=200)
    groups = {"a": "paraphrase", "b": "once", "c": "control"}
    full = probe_schedule(plan, PP(), groups)["c"].tolist()
    sparse = probe_schedule(plan, PP(control_every=4), groups)["c"].tolist()
    # every 4th step of the union, plus step 0, the first injection (t_pre) and the last step
    assert sparse == sorted(set(full[::4]) | {0, 10, full[-1]})
    assert len(sparse) <= len(full) / 4 + 3
    injected = probe_schedule(plan, PP(control_every=4), groups)
    assert injected["a"].tolist() == probe_schedule(plan, PP(), groups)["a"].tolist()
