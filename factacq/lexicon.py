"""The generator's word lists and fact types with their sentence frames: data, no logic.

:mod:`factacq.generate` draws items from them. Every frame of a fact type ends with the fact's
value, so a passage sentence cut before its value is a memorization probe; ``semantic`` prompts are
never used in any text, and ``composition`` prompts reach the fact through the person (two hops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
ONSETS = (
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "y",
    "br", "dr", "gr", "kr", "tr", "st", "th", "sh", "vr",
)
NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
CODAS = ("", "", "", "n", "l", "r", "s", "th", "m", "nd", "rk", "x", "sk", "v", "sh")

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
