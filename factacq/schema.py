"""The typed knowledge schema: :class:`Probe`, :class:`Item`, :class:`KnowledgeSet` and the probe kinds.

An :class:`Item` is one piece of fictional knowledge: a passage, optional paraphrases and its probes.
A :class:`Probe` is a cloze prompt and a short target; it is scored as ``prompt + " " + target``.
Probe kinds are ``memorization``, ``semantic`` and ``composition`` everywhere (the paper's files say
mem / gen / hard_gen). The loaders live in :mod:`factacq.knowledge`, the generator in
:mod:`factacq.generate`; both build these objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, field_validator

from factacq.errors import FactacqError

PROBE_KINDS = ("memorization", "semantic", "composition")


class Probe(BaseModel):
    """One cloze probe: ℓ is the mean log-prob of ``target`` given ``prompt`` (joined by one space)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    kind: str
    index: int
    prompt: str
    target: str
    attribute: str | None = None  # fact type, e.g. "birthplace"; foils share kind (and attribute)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in PROBE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PROBE_KINDS)}")
        return value


class Item(BaseModel):
    """One knowledge item: text 0 is the passage, text k >= 1 is paraphrase k."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    passage: str
    paraphrases: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()

    def text(self, k: int) -> str:
        if k == 0:
            return self.passage
        if not 1 <= k <= len(self.paraphrases):
            raise FactacqError(
                f"item {self.id}: text {k} requested but it has {len(self.paraphrases)} paraphrases"
            )
        return self.paraphrases[k - 1]

    def probes_of(self, kind: str) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.kind == kind)


def is_verbatim(item: Item, probe: Probe) -> bool:
    return f"{probe.prompt} {probe.target}" in item.passage


@dataclass(frozen=True)
class KnowledgeSet:
    """An ordered, id-addressable collection of items. Equality compares the items only."""

    items: tuple[Item, ...]
    source: str = field(default="", compare=False)

    def __post_init__(self):
        seen = set()
        for item in self.items:
            if item.id in seen:
                raise FactacqError(f"{self.source or '<knowledge>'}: duplicate item id {item.id!r}")
            seen.add(item.id)
        object.__setattr__(self, "_by_id", {item.id: item for item in self.items})

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def non_verbatim(self) -> list[tuple[str, int]]:
        """(item id, probe index) of memorization probes whose prompt + " " + target is not in the passage."""
        return [
            (item.id, p.index)
            for item in self.items
            for p in item.probes_of("memorization")
            if not is_verbatim(item, p)
        ]

    def has(self, item_id: str) -> bool:
        """Whether an item has the id ``item_id``."""
        return item_id in self._by_id

    def get(self, item_id: str) -> Item:
        try:
            return self._by_id[item_id]
        except KeyError:
            raise FactacqError(f"{self.source or '<knowledge>'}: unknown item id {item_id!r}") from None

    def subset(self, ids: Iterable[str]) -> KnowledgeSet:
        return KnowledgeSet(tuple(self.get(i) for i in ids), source=self.source)

    def probes(self, kinds: Iterable[str] | None = None) -> list[Probe]:
        wanted = PROBE_KINDS if kinds is None else tuple(kinds)
        for kind in wanted:
            if kind not in PROBE_KINDS:
                raise FactacqError(f"unknown probe kind {kind!r} (expected one of {', '.join(PROBE_KINDS)})")
        return [p for item in self.items for p in item.probes if p.kind in wanted]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)
