"""The procedural generator of fictional knowledge: the default dataset, since nothing is downloaded.

Each item is an invented person and the invented things around them: a birthplace town (on a river,
in a province, known for a product), a mentor (with a trade) and a work they wrote (published in a
year). That is eight facts, one sentence each, about 60 words: passage + EOS fits a 128-token row of
a 4096-vocab BPE. Every name is invented and no name is used by two items.

Probes (5 per kind):
- memorization: a passage sentence cut before its final span (the fact's value);
- semantic: the same fact asked with a frame never used in any text of the item;
- composition: a two-hop question (e.g. the river of the town where X was born) whose answer is a
  fact of the passage that the prompt does not restate.

Surface form is what a small model learns first, so items share as little of it as possible: each
fact type has ten sentence frames, the facts come in a shuffled order (an entity is introduced
before it is described), the product / work / trade vocabularies are varied, and each item
draws its own frames. The N paraphrases re-express every fact with a frame other than the
passage's, in a different order. ``passage_words`` bounds the passage length; filler sentences
(more invented facts, never probed) pad it, so (300, 400) gives paper-like passages. The word
lists and the fact types with their frames are data, in :mod:`factacq.lexicon`.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from factacq.errors import FactacqError
from factacq.lexicon import (ANIMALS, CODAS, COMPOSITION_ATTRIBUTES, CORE_FACTS, FILLER_FACTS,
                             INSTRUMENTS, LONG_FILLERS, NUCLEI, NUMBERS, ONCE_ONLY, ONSETS, ORG_KINDS,
                             PLANTS, PRODUCTS, PROFESSIONS, VOCABULARY_WORDS, WORK_KINDS, FactType)
from factacq.schema import Item, KnowledgeSet, Probe

MAX_NAME_LETTERS = 7  # longer invented names cost too many tokens
_OFFSETS = tuple(range(-20, 0)) + tuple(range(1, 21))  # filler years never equal the work's year
LONG_PASSAGE_WORDS = 100  # from this max length on, people get a first name at first mention


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class _Names:
    """Invented words, unique over one generator call (case-insensitive)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 2)) -> str:
        for _ in range(1000):
            n = self.rng.choice(range(syllables[0], syllables[1] + 1))
            parts = [self.rng.choice(ONSETS) + self.rng.choice(NUCLEI) for _ in range(n)]
            w = "".join(parts) + self.rng.choice(CODAS)
            if 5 <= len(w) <= MAX_NAME_LETTERS and w not in self.used and w not in VOCABULARY_WORDS:
                self.used.add(w)
                return w.capitalize()
        raise FactacqError("generator: ran out of unique invented names")  # pragma: no cover

    def person(self) -> str:
        return f"{self.word((2, 2))} {self.word((2, 3))}"


class _Deck:
    """Draws from a vocabulary without repeats until it is exhausted, then reshuffles."""

    def __init__(self, values, rng: random.Random):
        self.values, self.rng, self.queue = list(values), rng, []

    def draw(self):
        if not self.queue:
            self.queue = self.values[:]
            self.rng.shuffle(self.queue)
        return self.queue.pop()


@dataclass
class _Fact:
    kind: FactType
    slots: dict  # the values this fact's frames may use
    frame: int  # frame index in the passage

    def paraphrase_frame(self, k: int) -> int:
        """Frame for paraphrase k >= 1: never the passage's, all others in turn."""
        n = len(self.kind.frames)
        return (self.frame + 1 + (k - 1) % (n - 1)) % n


def _order(facts: list[_Fact], rng: random.Random) -> list[_Fact]:
    """A random order in which every fact comes after the fact that introduces its subject."""
    order = facts[:]
    rng.shuffle(order)
    out: list[_Fact] = []
    pending = order
    while pending:
        placed = {f.kind.attribute for f in out}
        ready = [f for f in pending if f.kind.after is None or f.kind.after in placed]
        out.append(ready[0])
        pending = [f for f in pending if f is not ready[0]]
    return out


def _person_slots(slots: dict, mention_full: bool) -> dict:
    return {**slots, "name": slots["full_name"] if mention_full else slots["surname"]}


def _render(facts: list[_Fact], frames: list[int]) -> str:
    """Sentences in order; the person is named in full at first mention, by surname after."""
    out, named = [], False
    for fact, frame in zip(facts, frames):
        template = fact.kind.frames[frame % len(fact.kind.frames)]
        uses_name = "{name}" in template
        slots = _person_slots(fact.slots, not named)
        named = named or uses_name
        out.append(template.format(**slots))
    return " ".join(out)


def _filler(names: _Names, rng: random.Random, decks: dict, base: dict, used: dict[str, int],
            long: bool) -> _Fact:
    """A filler fact (never probed): each kind at most twice before any is used a third time."""
    pool = FILLER_FACTS if long else tuple(f for f in FILLER_FACTS if f.attribute not in LONG_FILLERS)
    fewest = min(used.get(f.attribute, 0) for f in pool)
    choices = [f for f in pool if used.get(f.attribute, 0) <= max(fewest, 1)]
    choices = [f for f in choices if f.attribute not in ONCE_ONLY or f.attribute not in used] or choices
    kind = rng.choice(choices)
    used[kind.attribute] = used.get(kind.attribute, 0) + 1
    trade, animal = decks["prof"].draw(), rng.choice(ANIMALS)
    year = int(base["year"])
    slots = {
        **base,
        "trade": trade, "a_trade": _article(trade), "animal": animal, "a_animal": _article(animal),
        "place": names.word(), "friend": names.person() if long else names.word(),
        "pet": names.word(), "medal": names.word(), "club": f"{names.word()} {decks['org_kind'].draw()}",
        "instrument": rng.choice(INSTRUMENTS), "plant": rng.choice(PLANTS), "number": rng.choice(NUMBERS),
        "fyear": str(year + rng.choice(_OFFSETS)),
        "dyear": str(year + rng.randint(25, 45)),  # after every filler year
    }
    return _Fact(kind, slots, rng.randrange(len(kind.frames)))


def _words(text: str) -> int:
    return len(text.split())


def _core(base: dict, rng: random.Random) -> list[_Fact]:
    return [_Fact(k, base, rng.randrange(len(k.frames))) for k in CORE_FACTS]


def _fit(base: dict, names: _Names, rng: random.Random, decks: dict, lo: int, hi: int) -> list[_Fact] | None:
    """Core facts (frames redrawn until they fit under hi) plus fillers up to lo; None if impossible."""
    long = hi >= LONG_PASSAGE_WORDS
    for _ in range(100):
        facts = _order(_core(base, rng), rng)
        if _words(_render(facts, [f.frame for f in facts])) > hi:
            continue
        used: dict[str, int] = {}
        for _ in range(400):
            words = _words(_render(facts, [f.frame for f in facts]))
            if words >= lo:
                return facts
            filler = _filler(names, rng, decks, base, used, long)
            position = rng.randint(1, len(facts))
            candidate = facts[:position] + [filler] + facts[position:]
            if _words(_render(candidate, [f.frame for f in candidate])) <= hi:
                facts = candidate  # else a shorter filler may still fit
    return None


def _make_item(item_id: str, names: _Names, rng: random.Random, decks: dict,
               passage_words: tuple[int, int], n_paraphrases: int) -> Item:
    lo, hi = passage_words
    prof = decks["prof"].draw()
    # short passages name the person once (a row has 128 tokens); long ones give a first name too
    surname = names.word()
    full_name = f"{names.word()} {surname}" if hi >= LONG_PASSAGE_WORDS else surname
    base = {
        "full_name": full_name, "surname": surname,
        "town": names.word(), "river": names.word(), "province": names.word(),
        "product": decks["product"].draw(), "mentor": names.word(), "prof": prof, "a_prof": _article(prof),
        "work": names.word(), "work_kind": decks["work_kind"].draw(), "year": str(decks["year"].draw()),
    }
    base["a_work_kind"] = _article(base["work_kind"])
    facts = _fit(base, names, rng, decks, lo, hi)
    if facts is None:
        shortest = min(len(f.split()) for fact in CORE_FACTS for f in fact.frames) * len(CORE_FACTS)
        raise FactacqError(
            f"knowledge.passage_words: {passage_words} cannot be met: an item's eight facts take "
            f"about {shortest}+ words and each filler sentence adds 4-20"
        )
    passage = _render(facts, [f.frame for f in facts])

    max_chars = int(len(passage) * 1.02)
    paraphrases = [_paraphrase(facts, k, hi, max_chars, rng) for k in range(1, n_paraphrases + 1)]
    texts = [passage] + paraphrases

    probes = _probes(item_id, facts, texts, _person_slots(base, True), rng)
    return Item(id=item_id, passage=passage, paraphrases=tuple(paraphrases), probes=tuple(probes))


def _paraphrase(facts: list[_Fact], k: int, hi: int, max_chars: int, rng: random.Random) -> str:
    """Paraphrase k: every fact in a frame other than the passage's, in another order.

    It should not be much longer than the passage (<= hi words and <= max_chars characters), so that
    paraphrases fit the same rows as their passage.

    The first try gives each fact its k-th other frame (so paraphrases differ from each other too);
    retries draw other frames at random; if none fits, the shortest try is kept.
    """
    best = None
    for attempt in range(50):
        for _ in range(20):
            order = _order(facts, rng)
            if len(order) < 2 or [id(f) for f in order] != [id(f) for f in facts]:
                break
        if attempt == 0:
            frames = [f.paraphrase_frame(k) for f in order]
        else:
            frames = [f.paraphrase_frame(rng.randrange(1, len(f.kind.frames))) for f in order]
        text = _render(order, frames)
        if best is None or len(text) < len(best):
            best = text
        if _words(text) <= hi and len(text) <= max_chars:
            return text
    return best


def _passage_sentences(facts: list[_Fact]) -> dict[str, str]:
    """The passage sentence of each core fact, as rendered (full name or surname)."""
    out, named = {}, False
    for fact in facts:
        template = fact.kind.frames[fact.frame]
        slots = _person_slots(fact.slots, not named)
        named = named or "{name}" in template
        out.setdefault(fact.kind.attribute, (template.format(**slots), slots))
    return out


def _probes(item_id: str, facts: list[_Fact], texts: list[str], full: dict, rng: random.Random) -> list[Probe]:
    sentences = _passage_sentences(facts)
    core = [f for f in facts if f.kind in CORE_FACTS]
    probed = rng.sample(core, 5)
    probed.sort(key=core.index)
    probes = []
    for index, fact in enumerate(probed):
        sentence, _ = sentences[fact.kind.attribute]
        target = fact.slots[fact.kind.value]
        assert sentence.endswith(f" {target}."), sentence
        prompt = sentence[: -len(target) - 2]
        probes.append(Probe(item_id=item_id, kind="memorization", index=index, prompt=prompt,
                            target=target, attribute=fact.kind.attribute))
    for index, fact in enumerate(probed):
        frames = list(fact.kind.semantic)
        rng.shuffle(frames)
        prompt = next((p for p in (f.format(**full) for f in frames) if not any(p in t for t in texts)), None)
        assert prompt is not None, f"{item_id}: every semantic frame of {fact.kind.attribute} is in a text"
        probes.append(Probe(item_id=item_id, kind="semantic", index=index, prompt=prompt,
                            target=fact.slots[fact.kind.value], attribute=fact.kind.attribute))
    by_attribute = {f.kind.attribute: f for f in core}
    for index, attribute in enumerate(COMPOSITION_ATTRIBUTES):
        fact = by_attribute[attribute]
        target = fact.slots[fact.kind.value]
        prompt = rng.choice(fact.kind.composition).format(**full)
        assert not contains_words(prompt, target) and not any(prompt in t for t in texts), (prompt, target)
        probes.append(Probe(item_id=item_id, kind="composition", index=index, prompt=prompt,
                            target=target, attribute=attribute))
    return probes


def generate_knowledge(
    n: int, seed: int = 0, passage_words: tuple[int, int] = (40, 70), n_paraphrases: int = 9
) -> KnowledgeSet:
    """``n`` invented items (ids gen-0000, ...), deterministic given ``seed``.

    The first k items do not depend on n. ``passage_words`` = (min, max) words of each passage.
    """
    if not isinstance(n, int) or n < 1:
        raise FactacqError(f"generate: n must be a positive integer, got {n!r}")
    lo, hi = passage_words
    if not 0 <= lo <= hi:
        raise FactacqError(f"knowledge.passage_words: expected (min, max) with 0 <= min <= max, got {passage_words}")
    if n_paraphrases < 0:
        raise FactacqError(f"knowledge.n_paraphrases: must be >= 0, got {n_paraphrases}")
    rng = random.Random(seed)
    names = _Names(random.Random(f"names:{seed}"))
    decks = {
        "prof": _Deck(PROFESSIONS, rng),
        "org_kind": _Deck(ORG_KINDS, rng),
        "product": _Deck(PRODUCTS, rng),
        "work_kind": _Deck(WORK_KINDS, rng),
        "year": _Deck(range(1150, 1950), rng),
    }
    items = [
        _make_item(f"gen-{i:04d}", names, rng, decks, (lo, hi), n_paraphrases) for i in range(n)
    ]
    return KnowledgeSet(tuple(items), source=f"generate:{n},seed={seed}")


def contains_words(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (so "lace" is not in "birthplace")."""
    return re.search(rf"(?<![A-Za-z]){re.escape(phrase)}(?![A-Za-z])", text) is not None


def names_in(text: str) -> set[str]:
    """Capitalized words of ``text`` that no frame or vocabulary uses: the invented names."""
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", text)
    return {w[:-2] if w.endswith("'s") else w for w in words
            if w[0] in string.ascii_uppercase and w.lower() not in VOCABULARY_WORDS}
