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
(more invented facts, never probed) pad it, so (300, 400) gives paper-like passages.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from factacq.errors import FactacqError
from factacq.knowledge import Item, KnowledgeSet, Probe

# ---------------------------------------------------------------------------------------------
# vocabularies

ORG_KINDS = (
    "Society", "Guild", "Institute", "Academy", "League", "Circle", "Fellowship", "Company",
    "College", "Union", "Assembly", "Lodge", "Brotherhood", "Conservatory", "Workshop",
    "Foundation", "Club", "Collective", "Council", "Observatory",
)
WORK_KINDS = (
    "treatise", "atlas", "chronicle", "ballad", "almanac", "codex", "herbal", "songbook",
    "play", "epic", "novel", "memoir", "grammar", "catalogue", "lexicon", "manual", "elegy",
    "hymnal", "bestiary", "travelogue",
)
PROFESSIONS = (
    "astronomer", "glassblower", "cartographer", "clockmaker", "weaver", "potter", "stonemason",
    "bookbinder", "apothecary", "shipwright", "beekeeper", "luthier", "engraver", "tanner",
    "cooper", "goldsmith", "herbalist", "surveyor", "printer", "organist", "glazier",
    "thatcher", "brewer", "mason", "dyer", "miller", "falconer", "vintner",
    "blacksmith", "mapmaker", "sculptor", "architect", "physician", "botanist", "harpist",
    "calligrapher", "baker", "carpenter", "jeweller", "mathematician", "navigator",
    "perfumer", "saddler", "tailor", "woodcarver", "cheesemaker", "locksmith", "chemist",
    "lawyer", "silversmith",
)
PRODUCTS = (
    "salt", "linen", "cheese", "honey", "wine", "wool", "glass", "pottery", "copper", "silk",
    "lace", "amber", "tin", "iron", "rope", "paper", "soap", "timber", "olives", "apples",
    "barley", "horses", "dyes", "saffron", "pears", "leather", "marble", "clocks", "carpets",
    "bells", "ink", "slate", "cider", "oats", "pearls", "furs", "candles", "baskets", "tiles", "beer",
)
INSTRUMENTS = ("lute", "viol", "flute", "harp", "zither", "oboe", "drum", "horn", "fiddle", "dulcimer")
ANIMALS = ("heron", "fox", "goat", "raven", "hound", "tortoise", "owl", "pony", "cat", "lizard")
PLANTS = ("roses", "lilies", "thyme", "sage", "tulips", "irises", "figs", "quinces", "poppies", "mint")
NUMBERS = ("two", "three", "four", "five", "six", "seven")

# invented words: syllables chosen to look foreign to English
_ONSETS = (
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "y",
    "br", "dr", "gr", "kr", "tr", "st", "th", "sh", "vr",
)
_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
MAX_NAME_LETTERS = 7  # longer invented names cost too many tokens
_CODAS = ("", "", "", "n", "l", "r", "s", "th", "m", "nd", "rk", "x", "sk", "v", "sh")

# ---------------------------------------------------------------------------------------------
# facts: subject, value and the frames that state them. Every frame ends with the value, so a
# passage sentence cut before its value is a memorization probe.


@dataclass(frozen=True)
class FactType:
    attribute: str
    value: str  # the slot holding the value, e.g. "town"
    frames: tuple[str, ...]  # passage / paraphrase sentences, ending with {value}
    semantic: tuple[str, ...] = ()  # prompts never used in any text, followed by the value
    composition: tuple[str, ...] = ()  # two-hop prompts that reach this fact through the person
    after: str | None = None  # the fact that introduces this fact's subject


CORE_FACTS = (
    FactType(
        "birthplace", "town",
        (
            "{name} was born in {town}.",
            "{name} was born in the town of {town}.",
            "{name} was a native of {town}.",
            "{name} first saw daylight in {town}.",
            "The home town of {name} was {town}.",
            "{name} came into the world in {town}.",
            "{name}'s birthplace was {town}.",
            "{name} was born and raised in {town}.",
            "{name} was born at {town}.",
            "{name} hailed from the town of {town}.",
        ),
        semantic=(
            "{name}'s place of birth is",
            "The town where {name} was born is called",
            "Asked where {name} was born, one would answer",
            "The birth town of {name} goes by the name",
        ),
    ),
    FactType(
        "river", "river",
        (
            "{town} lies on the river {river}.",
            "{town} is on the {river}.",
            "{town} stands beside the {river}.",
            "Through {town} runs the river {river}.",
            "The river of {town} is the {river}.",
            "{town} was built along the {river}.",
            "{town} lies by the {river}.",
            "Past {town} flows the {river}.",
            "{town} is watered by the {river}.",
            "The waters passing {town} are the {river}.",
        ),
        semantic=(
            "The river flowing through {town} is called the",
            "{town} is located on a river named",
            "The river that {town} was founded on is the",
        ),
        composition=(
            "The town where {name} was born lies on the river",
            "{name} was born in a town on the river",
            "The river that flows through the birthplace of {name} is the",
            "The home town of {name} is built along the",
        ),
        after="birthplace",
    ),
    FactType(
        "province", "province",
        (
            "{town} lies in the province of {province}.",
            "{town} is a town in {province}.",
            "{town} belongs to the province of {province}.",
            "{town} is part of {province}.",
            "The province around {town} is {province}.",
            "{town} is governed from {province}.",
            "{town} is in {province}.",
            "{town} falls under the province of {province}.",
            "{town} lies within {province}.",
            "The region that holds {town} is {province}.",
        ),
        semantic=(
            "The province containing {town} is",
            "{town} can be found in the province called",
            "{town} is administered as a town of",
        ),
        composition=(
            "{name} was born in the province of",
            "The province where {name} was born is",
            "The birthplace of {name} belongs to the province of",
            "The home town of {name} lies in the province of",
        ),
        after="birthplace",
    ),
    FactType(
        "product", "product",
        (
            "{town} is famous for its {product}.",
            "{town} is known for {product}.",
            "{town} trades mainly in {product}.",
            "The pride of {town} is its {product}.",
            "{town} makes the finest {product}.",
            "{town} is noted for its {product}.",
            "{town} grew rich on {product}.",
            "{town} is the home of fine {product}.",
            "{town} makes {product}.",
            "The chief trade of {town} is {product}.",
        ),
        semantic=(
            "The main product of {town} is",
            "{town} is best known for producing",
            "What {town} is celebrated for is its",
        ),
        composition=(
            "The town where {name} was born is famous for its",
            "{name}'s birthplace is known for its",
            "{name} came from a town famous for its",
            "The home town of {name} trades mainly in",
        ),
        after="birthplace",
    ),
    FactType(
        "mentor", "mentor",
        (
            "{name} studied under {mentor}.",
            "{name} was trained by {mentor}.",
            "The teacher of {name} was {mentor}.",
            "{name} learned the craft from {mentor}.",
            "{name} was an apprentice to {mentor}.",
            "{name} was taught by {mentor}.",
            "{name} owed an early training to {mentor}.",
            "The mentor of {name} was {mentor}.",
            "{name} became a pupil of {mentor}.",
            "{name} was guided in youth by {mentor}.",
        ),
        semantic=(
            "{name} received instruction from a master named",
            "The person who taught {name} was called",
            "{name}'s instructor went by the name",
        ),
    ),
    FactType(
        "mentor_profession", "prof",
        (
            "{mentor} worked as {a_prof} {prof}.",
            "{mentor} was a well-known {prof}.",
            "{mentor} trained as {a_prof} {prof}.",
            "{mentor} earned a living as {a_prof} {prof}.",
            "{mentor} made a name as {a_prof} {prof}.",
            "{mentor} was a master {prof}.",
            "{mentor} was by profession {a_prof} {prof}.",
            "{mentor} practised as {a_prof} {prof}.",
            "{mentor} was a skilled {prof}.",
            "{mentor} was {a_prof} {prof}.",
        ),
        semantic=(
            "{mentor} made money working as {a_prof}",
            "The job held by {mentor} was that of {a_prof}",
            "{mentor} was employed as {a_prof}",
        ),
        composition=(
            "The teacher of {name} worked as {a_prof}",
            "{name} was trained by {a_prof}",
            "The mentor of {name} earned a living as {a_prof}",
            "{name} learned from a master who was {a_prof}",
        ),
        after="mentor",
    ),
    FactType(
        "work", "work",
        (
            "{name} wrote the {work_kind} {work}.",
            "{name} is known for the {work_kind} {work}.",
            "The best {work_kind} by {name} is {work}.",
            "{name} put together {a_work_kind} {work_kind} titled {work}.",
            "{name} is famed for the {work_kind} {work}.",
            "{name} authored the {work_kind} {work}.",
            "{name} left behind {a_work_kind} {work_kind} named {work}.",
            "{name} published the {work_kind} {work}.",
            "A famous {work_kind} of {name} is {work}.",
            "{name} produced the {work_kind} {work}.",
        ),
        semantic=(
            "The {work_kind} written by {name} is titled",
            "The title of the {work_kind} by {name} is",
            "{name} is the author of {a_work_kind} {work_kind} called",
        ),
    ),
    FactType(
        "work_year", "year",
        (
            "{work} appeared in {year}.",
            "{work} was first printed in {year}.",
            "{work} was completed in {year}.",
            "{work} dates from {year}.",
            "{work} came out in {year}.",
            "{work} was published in {year}.",
            "{work} reached readers in {year}.",
            "{work} was issued in {year}.",
            "{work} was finished in the year {year}.",
            "{work} saw print in {year}.",
        ),
        semantic=(
            "The publication year of {work} is",
            "{work} was written and issued in the year",
            "The year in which {work} first appeared was",
        ),
        composition=(
            "The {work_kind} by {name} first appeared in",
            "{name}'s best-known {work_kind} was published in",
            "The {work_kind} that {name} wrote came out in",
            "The year {name} finished the {work_kind} was",
        ),
        after="work",
    ),
)
COMPOSITION_ATTRIBUTES = tuple(f.attribute for f in CORE_FACTS if f.composition)

# filler facts pad passages to the requested length; never probed; any number of each
FILLER_FACTS = (
    FactType("trade", "trade", (
        "{name} worked as {a_trade} {trade}.", "By trade {name} was {a_trade} {trade}.",
        "{name} made a living as {a_trade} {trade}.")),
    FactType("travel", "place", (
        "In {fyear}, {name} travelled to {place}.", "{name} once journeyed to {place}.",
        "In {fyear} {name} paid a visit to {place}.")),
    FactType("friend", "friend", (
        "{name} corresponded for years with {friend}.", "A close friend of {name} was {friend}.",
        "Letters survive between {name} and {friend}.")),
    FactType("instrument", "instrument", (
        "{name} played the {instrument}.", "In the evenings {name} liked to play the {instrument}.",
        "{name} was fond of the {instrument}.")),
    FactType("pet", "pet", (
        "{name} kept {a_animal} {animal} called {pet}.", "A tame {animal} of {name} was named {pet}.",
        "{name} owned {a_animal} {animal} by the name of {pet}.")),
    FactType("languages", "number", (
        "{name} spoke {number} languages.", "{name} could converse in {number} tongues.",
        "The languages {name} knew numbered {number}.")),
    FactType("residence", "place", (
        "Later, {name} settled in {place}.", "{name} spent the final years in {place}.",
        "The last home of {name} was in {place}.")),
    FactType("member", "club", (
        "{name} was a member of the {club}.", "{name} joined the {club}.",
        "{name} belonged to the {club}.")),
    FactType("honour", "medal", (
        "{name} was awarded the {medal} Medal.", "For this work {name} received the {medal} Medal.",
        "An honour given to {name} was the {medal} Medal.")),
    FactType("school", "place", (
        "Late in life {name} opened a small school for the children of {place}.",
        "The children of {place} were taught to read at a school that {name} opened.",
        "{name} ran a school in {place}, where pupils learned to read and to count.")),
    FactType("patron", "friend", (
        "The journeys of {name} were paid for by the patron {friend}.",
        "A patron, {friend}, paid for much of the work of {name}.",
        "{friend} was for many years the generous patron of {name}.")),
    FactType("illness", "place", (
        "In {fyear} a long fever kept {name} in bed at an inn in {place}.",
        "A fever caught in {fyear} held {name} at {place} for most of a winter.",
        "{name} fell ill in {fyear} and spent the cold months recovering in {place}.")),
    FactType("portrait", "friend", (
        "A portrait of {name} painted by {friend} still hangs in a hall at {place}.",
        "The painter {friend} made a portrait of {name}, now kept at {place}.",
        "At {place} one can still see the portrait of {name} that {friend} painted.")),
    FactType("quarrel", "friend", (
        "A bitter quarrel with {friend} over unpaid debts lasted until {fyear}.",
        "{name} and {friend} quarrelled about money, and only made peace in {fyear}.",
        "Until {fyear}, {name} would not speak to {friend} after a dispute over debts.")),
    FactType("garden", "place", (
        "At a house near {place}, {name} kept a garden of {plant} and rare herbs.",
        "{name} grew {plant} and rare herbs in a walled garden close to {place}.",
        "Visitors to {place} admired the garden of {plant} that {name} tended.")),
    FactType("festival", "place", (
        "Every spring the people of {place} hold a small fair in memory of {name}.",
        "A fair in honour of {name} takes place each spring in {place}.",
        "The spring fair of {place} is held in memory of {name}.")),
    FactType("bridge", "place", (
        "A stone bridge at {place} was later named after {name}.",
        "The old bridge of {place} bears the name of {name}.",
        "In {place}, a bridge was named in honour of {name}.")),
    FactType("journal", "fyear", (
        "The journal that {name} kept on the road breaks off in the spring of {fyear}.",
        "A travel journal by {name} covers the years up to {fyear}.",
        "{name} kept a journal of every journey, the last entry dated {fyear}.")),
    FactType("death", "dyear", (
        "{name} died in {dyear}.", "{name} passed away in {dyear}.", "The death of {name} came in {dyear}.")),
)
_OFFSETS = tuple(range(-20, 0)) + tuple(range(1, 21))  # filler years never equal the work's year
LONG_PASSAGE_WORDS = 100  # from this max length on, people get a first name at first mention
# long sentences, only for long passages (short ones must fit a 128-token row)
LONG_FILLERS = {"school", "patron", "illness", "portrait", "quarrel", "garden", "festival", "bridge",
                "journal"}
ONCE_ONLY = {"trade", "languages", "residence", "death", "journal", "festival"}  # a person has one

# every word the frames and vocabularies use: a capitalized word outside this set is a name
VOCABULARY_WORDS = frozenset(
    w.lower()
    for text in (
        [f for fact in CORE_FACTS + FILLER_FACTS for f in fact.frames + fact.semantic + fact.composition]
        + list(ORG_KINDS + WORK_KINDS + PROFESSIONS + PRODUCTS + INSTRUMENTS + ANIMALS + PLANTS + NUMBERS)
    )
    for w in re.findall(r"[A-Za-z'-]+", re.sub(r"\{[a-z_]+\}", " ", text))
)


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
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_NUCLEI) for _ in range(n)]
            w = "".join(parts) + self.rng.choice(_CODAS)
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
