"""Loading injected knowledge: the loaders, their validation, scenario groups, `factacq data inspect`.

The loaders build the objects of :mod:`factacq.schema` (:class:`Item`, :class:`Probe`,
:class:`KnowledgeSet`). Sources (see :func:`load_knowledge`): the paper's JSON files (plain or
paraphrased), the hub dataset ``kaist-ai/fictional-knowledge`` (``hf:<id>``), factacq's own JSONL
(:func:`save_jsonl`), and the procedural generator (``generate:<n>[,seed=S]``, :mod:`factacq.generate`).

Every loader validates the whole input before returning anything; a problem raises
:class:`FactacqError` with one line naming the file, the entry and the field.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from pathlib import Path

from factacq import generate
from factacq.atomic import atomic_path
from factacq.errors import FactacqError
from factacq.files import iter_jsonl, read_json
from factacq.hub import (hub_offline, hub_offline_error, hub_offline_mode, hub_reachable,
                         is_offline_failure)
from factacq.params import GROUPS, KnowledgeParams, Params
from factacq.schema import PROBE_KINDS, Item, KnowledgeSet, Probe

# the paper's field prefixes for each probe kind
PAPER_PREFIX = {"memorization": "mem", "semantic": "gen", "composition": "hard_gen"}


# ---------------------------------------------------------------------------------------------
# validation helpers: each raises one line naming where and what


def _where(source: str, index: int, entry_id: str | None) -> str:
    return f"{source}: entry {index}" + (f" (id {entry_id!r})" if entry_id is not None else "")


def _string(value, where: str, name: str, *, empty_ok: bool = False) -> str:
    if value is None:
        raise FactacqError(f"{where}: missing field {name!r}")
    if not isinstance(value, str):
        raise FactacqError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise FactacqError(f"{where}: field {name!r} is empty")
    return value


def _string_list(value, where: str, name: str, *, required: bool = True) -> list[str]:
    if value is None:
        if required:
            raise FactacqError(f"{where}: missing field {name!r}")
        return []
    if not isinstance(value, (list, tuple)):
        raise FactacqError(f"{where}: field {name!r} must be a list of strings, got {type(value).__name__}")
    for j, s in enumerate(value):
        if not isinstance(s, str):
            raise FactacqError(f"{where}: field {name!r}[{j}] must be a string, got {type(s).__name__}")
    return list(value)


def _check_unique(items: list[Item], source: str, positions: list[int]) -> None:
    seen: dict[str, int] = {}
    for item, pos in zip(items, positions):
        if item.id in seen:
            raise FactacqError(
                f"{source}: entry {pos}: duplicate id {item.id!r} (first used by entry {seen[item.id]})"
            )
        seen[item.id] = pos


# ---------------------------------------------------------------------------------------------
# the paper's format (JSON file or hub rows)


def paper_id(index: int) -> str:
    return f"fk-{index:03d}"


def _paper_entry(entry, index: int, source: str) -> Item:
    if not isinstance(entry, dict):
        raise FactacqError(f"{source}: entry {index} must be an object, got {type(entry).__name__}")
    raw_id = entry.get("id")
    where = _where(source, index, raw_id if isinstance(raw_id, str) else None)
    item_id = paper_id(index) if raw_id is None else _string(raw_id, where, "id")
    passage = _string(entry.get("train_context"), where, "train_context")
    paraphrases = _string_list(entry.get("paraphrases"), where, "paraphrases", required=False)
    for j, text in enumerate(paraphrases):
        if not text.strip():
            raise FactacqError(f"{where}: field 'paraphrases'[{j}] is empty")
    probes = []
    for kind in PROBE_KINDS:
        prefix = PAPER_PREFIX[kind]
        prompts = _string_list(entry.get(f"{prefix}_input"), where, f"{prefix}_input")
        targets = _string_list(entry.get(f"{prefix}_target"), where, f"{prefix}_target")
        if len(prompts) != len(targets):
            raise FactacqError(
                f"{where}: field '{prefix}_target' has {len(targets)} targets "
                f"but '{prefix}_input' has {len(prompts)} prompts"
            )
        for j, (prompt, target) in enumerate(zip(prompts, targets)):
            if not target.strip():
                raise FactacqError(f"{where}: field '{prefix}_target'[{j}] is empty")
            if not prompt.strip():
                raise FactacqError(f"{where}: field '{prefix}_input'[{j}] is empty")
            probes.append(Probe(item_id=item_id, kind=kind, index=j, prompt=prompt, target=target))
    return Item(id=item_id, passage=passage, paraphrases=tuple(paraphrases), probes=tuple(probes))


def _paper_entries(entries, source: str) -> KnowledgeSet:
    if not isinstance(entries, list):
        raise FactacqError(f"{source}: top level must be a list of entries, got {type(entries).__name__}")
    if not entries:
        raise FactacqError(f"{source}: no entries")
    items = [_paper_entry(entry, i, source) for i, entry in enumerate(entries)]
    _check_unique(items, source, list(range(len(items))))
    return KnowledgeSet(tuple(items), source=source)


def load_paper_json(path: str | Path) -> KnowledgeSet:
    """The paper's fictional_knowledge.json or fictional_knowledge_paraphrased.json; ids fk-000, fk-001, ..."""
    path = Path(path)
    return _paper_entries(read_json(path, "knowledge file"), str(path))


def load_hf(dataset_id: str, split: str = "train") -> KnowledgeSet:
    """The hub dataset (e.g. kaist-ai/fictional-knowledge), rows validated like the paper's JSON."""
    import datasets  # deferred: slow to import, and only hub sources need it

    source = f"hf:{dataset_id}[{split}]"
    offline = hub_offline()
    try:
        with hub_offline_mode(offline):
            rows = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # offline, unknown id, bad split: one line
        if offline and is_offline_failure(exc):
            raise hub_offline_error("knowledge.source", dataset_id, offline,
                                    "a .json file in the paper's format or a factacq .jsonl") from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FactacqError(f"{source}: cannot load dataset: {first}") from None
    return _paper_entries([dict(row) for row in rows], source)


# ---------------------------------------------------------------------------------------------
# factacq's JSONL: one item per line


def _jsonl_item(obj, line_no: int, source: str) -> Item:
    if not isinstance(obj, dict):
        raise FactacqError(f"{source}: line {line_no} must be an object, got {type(obj).__name__}")
    raw_id = obj.get("id")
    where = f"{source}: line {line_no}" + (f" (id {raw_id!r})" if isinstance(raw_id, str) else "")
    unknown = sorted(set(obj) - {"id", "passage", "paraphrases", "probes"})
    if unknown:
        raise FactacqError(f"{where}: unknown field {unknown[0]!r}")
    item_id = _string(raw_id, where, "id")
    passage = _string(obj.get("passage"), where, "passage")
    paraphrases = _string_list(obj.get("paraphrases"), where, "paraphrases", required=False)
    raw_probes = obj.get("probes")
    if not isinstance(raw_probes, list):
        if raw_probes is None:
            raise FactacqError(f"{where}: missing field 'probes'")
        raise FactacqError(f"{where}: field 'probes' must be a list, got {type(raw_probes).__name__}")
    probes, seen = [], set()
    for j, p in enumerate(raw_probes):
        pw = f"{where}: probes[{j}]"
        if not isinstance(p, dict):
            raise FactacqError(f"{pw} must be an object, got {type(p).__name__}")
        unknown = sorted(set(p) - {"kind", "index", "prompt", "target", "attribute"})
        if unknown:
            raise FactacqError(f"{pw}: unknown field {unknown[0]!r}")
        kind = _string(p.get("kind"), pw, "kind")
        if kind not in PROBE_KINDS:
            raise FactacqError(f"{pw}: field 'kind' must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
        index = p.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise FactacqError(f"{pw}: field 'index' must be a non-negative integer, got {index!r}")
        if (kind, index) in seen:
            raise FactacqError(f"{pw}: duplicate probe ({kind}, {index})")
        seen.add((kind, index))
        attribute = p.get("attribute")
        if attribute is not None:
            attribute = _string(attribute, pw, "attribute")
        probes.append(
            Probe(
                item_id=item_id,
                kind=kind,
                index=index,
                prompt=_string(p.get("prompt"), pw, "prompt"),
                target=_string(p.get("target"), pw, "target"),
                attribute=attribute,
            )
        )
    return Item(id=item_id, passage=passage, paraphrases=tuple(paraphrases), probes=tuple(probes))


def load_jsonl(path: str | Path) -> KnowledgeSet:
    """factacq's JSONL (see :func:`save_jsonl`): one item object per line."""
    path = Path(path)
    items, positions = [], []
    for line_no, obj in iter_jsonl(path, "knowledge file"):
        items.append(_jsonl_item(obj, line_no, str(path)))
        positions.append(line_no)
    if not items:
        raise FactacqError(f"{path}: no items")
    seen: dict[str, int] = {}
    for item, line_no in zip(items, positions):
        if item.id in seen:
            raise FactacqError(f"{path}: line {line_no}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = line_no
    return KnowledgeSet(tuple(items), source=str(path))


def save_jsonl(ks: KnowledgeSet, path: str | Path) -> None:
    """Write one item per line, atomically (temp file + rename); :func:`load_jsonl` reads it back equal."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for item in ks.items:
            obj = item.model_dump(mode="json")
            for p in obj["probes"]:
                del p["item_id"]  # implied by the line
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# one entry point for every source

_GENERATE = re.compile(r"^generate:(\d+)((?:,[a-z_]+=[^,]+)*)$")
# The most items generate:<n> makes: 50,000 default items take about a minute and 1 GB; the
# generator's ~540,000 unique two-syllable names (about 6 per default item) would run out near
# 90,000, and far sooner for long passages.
MAX_GENERATE = 50_000


def _parse_generate(source: str) -> tuple[int, dict[str, int]]:
    m = _GENERATE.match(source.replace(" ", ""))
    if not m:
        raise FactacqError(f"knowledge source {source!r}: expected generate:<n>[,seed=S]")
    digits = m.group(1).lstrip("0") or "0"  # compared as text first: int() refuses 4300+ digits
    if len(digits) > len(str(MAX_GENERATE)) or int(digits) > MAX_GENERATE:
        shown = digits if len(digits) <= 20 else digits[:20] + "..."
        raise FactacqError(f"knowledge source 'generate:{shown}': n must be at most "
                           f"{MAX_GENERATE} (the generator's limit)")
    options = {}
    for part in filter(None, m.group(2).split(",")):
        key, value = part.split("=", 1)
        if key != "seed":
            raise FactacqError(f"knowledge source {source!r}: unknown option {key!r} (only seed=S)")
        try:
            options["seed"] = int(value)
        except ValueError:
            raise FactacqError(f"knowledge source {source!r}: seed must be an integer, got {value!r}") from None
    return int(m.group(1)), options


def load_knowledge(
    source: str,
    *,
    first: int | None = None,
    passage_words: tuple[int, int] = (40, 70),
    n_paraphrases: int = 9,
) -> KnowledgeSet:
    """Load a source: a paper .json, a factacq .jsonl, ``hf:<dataset id>[@split]`` (default split
    ``train``) or ``generate:<n>[,seed=S]`` (n <= :data:`MAX_GENERATE`).

    ``first`` keeps only the first N items; ``passage_words`` and ``n_paraphrases`` are generator options.
    """
    source = str(source)
    if source.startswith("generate:"):
        n, options = _parse_generate(source)
        ks = generate.generate_knowledge(n, passage_words=passage_words, n_paraphrases=n_paraphrases,
                                         **options)
    elif source.startswith("hf:"):
        dataset_id, _, split = source[3:].partition("@")
        if not dataset_id:
            raise FactacqError(f"knowledge source {source!r}: expected hf:<dataset id>[@split]")
        ks = load_hf(dataset_id, split=split or "train")
    else:
        path = Path(source)
        if path.suffix == ".jsonl":
            ks = load_jsonl(path)
        elif path.suffix == ".json":
            ks = load_paper_json(path)
        else:
            raise FactacqError(
                f"knowledge source {source!r}: expected a .json or .jsonl path, hf:<id> or generate:<n>"
            )
    if first is not None:
        if not 1 <= first <= len(ks):
            raise FactacqError(f"{ks.source}: first={first} but the source has {len(ks)} items")
        ks = KnowledgeSet(ks.items[:first], source=ks.source)
    return ks


# ---------------------------------------------------------------------------------------------
# scenario assignment


def _group_sizes(kp: KnowledgeParams, n_items: int) -> dict[str, int]:
    sizes = {}
    fractions = 0.0
    for group, value in kp.assign.items():
        if isinstance(value, bool) or value < 0:
            raise FactacqError(f"knowledge.assign.{group}: must be a count or a fraction >= 0, got {value!r}")
        if isinstance(value, int):
            sizes[group] = value
        else:
            if value > 1:
                raise FactacqError(
                    f"knowledge.assign.{group}: a fraction must be <= 1 (write an integer for a count), got {value!r}"
                )
            fractions += value
            sizes[group] = int(round(value * n_items))
    if fractions > 1 + 1e-9:
        raise FactacqError(f"knowledge.assign: fractions sum to {fractions:g} > 1")
    return sizes


def assign_groups(ks: KnowledgeSet, kp: KnowledgeParams) -> dict[str, str]:
    """Item id -> group (paraphrase, duplicate, once, control or spare), for every item of ``ks``.

    Explicit ``kp.ids`` fix their groups; the other groups take ``kp.assign`` counts (ints) or
    fractions (floats) of all items, drawn in order paraphrase, duplicate, once, control from the
    unassigned items (shuffled with ``assign_seed``, or in file order when ``assign_order='file'``).
    Paraphrase items need at least ``max(1, n_paraphrases)`` paraphrases. Leftovers are spares.
    """
    need = max(1, kp.n_paraphrases)
    groups: dict[str, str] = {}
    for group, ids in kp.ids.items():
        for item_id in ids:
            if not ks.has(item_id):
                raise FactacqError(f"knowledge.ids.{group}: unknown item id {item_id!r} in {ks.source}")
            if item_id in groups:
                raise FactacqError(
                    f"knowledge.ids.{group}: item {item_id!r} is already in group {groups[item_id]!r}"
                )
            if group == "paraphrase" and len(ks.get(item_id).paraphrases) < need:
                raise FactacqError(
                    f"knowledge.ids.paraphrase: item {item_id!r} has {len(ks.get(item_id).paraphrases)} "
                    f"paraphrases, {need} needed"
                )
            groups[item_id] = group

    sizes = _group_sizes(kp, len(ks))
    pool = [item_id for item_id in ks.ids if item_id not in groups]
    if kp.assign_order == "shuffle":
        random.Random(kp.assign_seed).shuffle(pool)
    for group in GROUPS:
        if group in kp.ids or not sizes.get(group):
            continue
        count = sizes[group]
        eligible = pool
        if group == "paraphrase":
            eligible = [i for i in pool if len(ks.get(i).paraphrases) >= need]
        if count > len(eligible):
            what = f"items with >= {need} paraphrases" if group == "paraphrase" else "unassigned items"
            raise FactacqError(
                f"knowledge.assign.{group}: {count} items requested but only {len(eligible)} {what} "
                f"remain in {ks.source}"
            )
        chosen = eligible[:count]
        for item_id in chosen:
            groups[item_id] = group
        taken = set(chosen)
        pool = [i for i in pool if i not in taken]
    return {item_id: groups.get(item_id, "spare") for item_id in ks.ids}


def knowledge_from_params(params: Params) -> tuple[KnowledgeSet, dict[str, str]]:
    """The knowledge set a params file names, and its item -> group assignment."""
    kp = params.knowledge
    source = kp.source
    if source.startswith("hf:") and kp.offline_source and not hub_reachable():
        source = kp.offline_source  # the same items from a local copy (the hub is out of reach)
    ks = load_knowledge(source, passage_words=tuple(kp.passage_words), n_paraphrases=kp.n_paraphrases)
    return ks, assign_groups(ks, kp)


# ---------------------------------------------------------------------------------------------
# `factacq data inspect`


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": round(statistics.fmean(values), 1), "max": max(values)}


def summarize(ks: KnowledgeSet) -> dict:
    """The numbers `factacq data inspect` prints."""
    counts = {kind: len(ks.probes([kind])) for kind in PROBE_KINDS}
    non_verbatim = ks.non_verbatim
    return {
        "source": ks.source,
        "items": len(ks),
        "items_with_paraphrases": sum(1 for item in ks if item.paraphrases),
        "paraphrases": sum(len(item.paraphrases) for item in ks),
        "probes": counts,
        "probes_total": sum(counts.values()),
        "passage_words": _stats([len(item.passage.split()) for item in ks]),
        "paraphrase_words": _stats([len(t.split()) for item in ks for t in item.paraphrases]),
        "target_words": _stats([len(p.target.split()) for p in ks.probes()]),
        "non_verbatim": {
            "count": len(non_verbatim),
            "of": counts["memorization"],
            "probes": [list(x) for x in non_verbatim],
        },
    }


def cmd_inspect(args) -> int:
    ks = load_knowledge(args.source, first=args.first)
    s = summarize(ks)
    if args.json:
        print(json.dumps(s))
        return 0
    pw, tw = s["passage_words"], s["target_words"]
    print(f"source: {s['source']}")
    print(f"items: {s['items']} ({s['items_with_paraphrases']} with paraphrases, {s['paraphrases']} paraphrases)")
    print("probes: " + ", ".join(f"{k} {v}" for k, v in s["probes"].items()) + f" (total {s['probes_total']})")
    print(f"passage words: min {pw['min']}, mean {pw['mean']}, max {pw['max']}")
    print(f"target words: min {tw['min']}, mean {tw['mean']}, max {tw['max']}")
    nv = s["non_verbatim"]
    print(f"non-verbatim memorization probes (prompt + ' ' + target not in passage): {nv['count']} of {nv['of']}")
    for item_id, index in ks.non_verbatim:
        probe = next(p for p in ks.get(item_id).probes_of("memorization") if p.index == index)
        print(f"  {item_id} #{index}: ...{probe.prompt[-50:]} | {probe.target}")
    return 0
