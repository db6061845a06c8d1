"""The procedural generator: determinism and every promise the injection study relies on."""

from __future__ import annotations

import itertools
import re

import pytest

from factacq.errors import FactacqError
from factacq.generate import contains_words, generate_knowledge, names_in
from factacq.lexicon import CORE_FACTS, FILLER_FACTS
from factacq.schema import PROBE_KINDS


@pytest.fixture(scope="module")
def ks():
    return generate_knowledge(40, seed=0)


def sentences(text: str) -> list[str]:
    return re.findall(r"[^.]+\.", text)


def masked(sentence: str) -> str:
    """The sentence's frame: invented names and numbers replaced."""
    out = re.sub(r"\b\d+\b", "#", sentence.strip())
    for name in names_in(out):
        out = re.sub(rf"\b{re.escape(name)}\b", "N", out)
    return out


def test_same_seed_same_output_and_prefix_stable(ks):
    again = generate_knowledge(40, seed=0)
    assert again == ks
    assert [item.passage for item in again] == [item.passage for item in ks]
    assert generate_knowledge(5, seed=0).items == ks.items[:5]


def test_different_seed_different_output(ks):
    other = generate_knowledge(40, seed=1)
    assert other != ks
    assert not set(item.passage for item in other) & set(item.passage for item in ks)


def test_shape_ids_and_counts(ks):
    assert len(ks) == 40 and len(set(ks.ids)) == 40
    for item in ks:
        assert len(item.paraphrases) == 9
        for kind in PROBE_KINDS:
            probes = item.probes_of(kind)
            assert [p.index for p in probes] == [0, 1, 2, 3, 4]
            for p in probes:
                assert p.item_id == item.id and p.attribute
                assert 1 <= len(p.target.split()) <= 4
    assert len(generate_knowledge(3, n_paraphrases=0).items[0].paraphrases) == 0


def test_memorization_is_a_passage_sentence_cut_before_its_final_span(ks):
    assert ks.non_verbatim == []
    for item in ks:
        passage_sentences = [s.strip() for s in sentences(item.passage)]
        for p in item.probes_of("memorization"):
            assert f"{p.prompt} {p.target}." in passage_sentences


def test_semantic_prompts_are_not_in_any_text_and_ask_a_memorized_fact(ks):
    for item in ks:
        texts = (item.passage,) + item.paraphrases
        mem = {(p.attribute, p.target) for p in item.probes_of("memorization")}
        mem_prompts = {p.prompt for p in item.probes_of("memorization")}
        for p in item.probes_of("semantic"):
            assert not any(p.prompt in t for t in texts)
            assert not any(p.prompt.lower() in s.lower() for t in texts for s in sentences(t))
            assert (p.attribute, p.target) in mem and p.prompt not in mem_prompts


def test_composition_targets_are_passage_facts_not_restated_in_the_prompt(ks):
    for item in ks:
        for p in item.probes_of("composition"):
            assert contains_words(item.passage, p.target)
            assert not contains_words(p.prompt, p.target)
            assert p.prompt not in item.passage
            # the prompt names the person, not the intermediate entity (two facts are needed)
            stating = [s for s in sentences(item.passage) if s.endswith(f" {p.target}.")]
            assert len(stating) == 1
            intermediate = names_in(stating[0]) - names_in(p.target)
            assert intermediate and not intermediate & names_in(p.prompt)


def test_no_name_in_two_items(ks):
    owners: dict[str, str] = {}
    for item in ks:
        texts = [item.passage, *item.paraphrases, *(p.prompt + " " + p.target for p in item.probes)]
        names = set().union(*(names_in(t) for t in texts))
        assert len(names) >= 6  # person, town, river, province, mentor, work
        for name in names:
            assert owners.setdefault(name, item.id) == item.id, f"{name} in {owners[name]} and {item.id}"


def test_targets_of_an_attribute_differ_across_items(ks):
    by_attribute: dict[str, list[str]] = {}
    for p in ks.probes(["composition"]):
        by_attribute.setdefault(p.attribute, []).append(p.target)
    assert set(by_attribute) == {"river", "province", "product", "mentor_profession", "work_year"}
    for attribute, targets in by_attribute.items():
        assert len(set(targets)) == len(targets), attribute


@pytest.mark.parametrize("passage_words", [(40, 70), (55, 65), (300, 400)])
def test_passage_length_range_is_honoured(passage_words):
    lo, hi = passage_words
    ks = generate_knowledge(12, seed=5, passage_words=passage_words, n_paraphrases=3)
    lengths = [len(item.passage.split()) for item in ks]
    assert all(lo <= n <= hi for n in lengths), lengths
    assert ks.non_verbatim == []


def test_too_short_a_range_is_an_error():
    with pytest.raises(FactacqError, match=r"knowledge.passage_words: \(10, 20\) cannot be met"):
        generate_knowledge(2, passage_words=(10, 20))
    with pytest.raises(FactacqError, match="n must be a positive integer"):
        generate_knowledge(0)


def test_paraphrases_reword_every_fact_in_another_order(ks):
    for item in ks:
        passage_sentences = set(s.strip() for s in sentences(item.passage))
        values = [p.target for p in item.probes if p.kind != "semantic"]
        orders_differ = 0
        for text in item.paraphrases:
            assert not passage_sentences & set(s.strip() for s in sentences(text))
            assert len(sentences(text)) == len(passage_sentences)
            assert all(contains_words(text, v) for v in values)
            first_words = [s.split()[0] for s in sentences(text)]
            orders_differ += first_words != [s.split()[0] for s in sentences(item.passage)] or text != item.passage
        assert orders_differ == len(item.paraphrases)
        assert len(set(item.paraphrases)) == len(item.paraphrases)


def test_items_do_not_share_surface_form(ks):
    frames_per_item = [set(masked(s) for s in sentences(item.passage)) for item in ks]
    all_frames = set().union(*frames_per_item)
    assert len(all_frames) >= 60  # 40 items x 8 facts drawn from 80 frames (+ vocabulary)
    overlaps = [len(a & b) / len(a | b) for a, b in itertools.combinations(frames_per_item, 2)]
    assert sum(overlaps) / len(overlaps) < 0.15
    assert len({tuple(masked(s) for s in sentences(item.passage)) for item in ks}) == len(ks)


def test_frame_tables():
    for fact in CORE_FACTS:
        assert len(fact.frames) >= 6 and len(set(fact.frames)) == len(fact.frames)
        assert all(f.endswith("{" + fact.value + "}.") for f in fact.frames), fact.attribute
        assert len(fact.semantic) >= 3
        assert not set(fact.semantic) & {f[: -len(fact.value) - 4] for f in fact.frames}
    assert sum(1 for f in CORE_FACTS if f.composition) == 5
    assert all(len(f.frames) >= 3 for f in FILLER_FACTS)
