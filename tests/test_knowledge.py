"""The knowledge schema, loaders, validation messages, JSONL round trip and scenario assignment."""

from __future__ import annotations

import copy
import json

import datasets
import pytest

from factacq.errors import FactacqError
from factacq.knowledge import (
    assign_groups,
    knowledge_from_params,
    load_hf,
    load_jsonl,
    load_knowledge,
    load_paper_json,
    save_jsonl,
)
from factacq.params import KnowledgeParams, parse_params
from factacq.schema import PROBE_KINDS, Item, KnowledgeSet, Probe


def paper_entry(tag: str = "a", paraphrases: int | None = None) -> dict:
    passage = f"Zorv {tag} was born in Kelb. Kelb lies on the Amu. Zorv {tag} wrote Tess."
    entry = {
        "train_context": passage,
        "mem_input": [f"Zorv {tag} was born in", "Kelb lies on the"],
        "mem_target": ["Kelb", "Amu"],
        "gen_input": [f"The birthplace of Zorv {tag} is"],
        "gen_target": ["Kelb"],
        "hard_gen_input": [f"The river of the town where Zorv {tag} was born is the"],
        "hard_gen_target": ["Amu"],
    }
    if paraphrases is not None:
        entry["paraphrases"] = [f"Paraphrase {k} of {tag}." for k in range(paraphrases)]
    return entry


def write_json(tmp_path, data, name="fk.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------ the paper's files


def test_paper_paraphrased_file_loads_all_130(paper_paraphrased_json):
    ks = load_paper_json(paper_paraphrased_json)
    assert len(ks) == 130
    assert ks.ids[0] == "fk-000" and ks.ids[-1] == "fk-129"
    for kind in PROBE_KINDS:
        assert len(ks.probes([kind])) == 650
    assert sum(1 for item in ks if len(item.paraphrases) == 9) == 40
    assert ks.get("fk-125").paraphrases == ()  # spares stay addressable
    assert len(ks.non_verbatim) == 12
    assert all(item_id in ks.ids for item_id, _ in ks.non_verbatim)


def test_paper_plain_file_first_120(paper_json):
    ks = load_knowledge(str(paper_json), first=120)
    assert len(ks) == 120
    assert len(ks.probes()) == 1800
    item = ks.get("fk-000")
    assert item.passage.startswith("The fortieth government of Mars")
    mem = item.probes_of("memorization")[0]
    assert mem.target == "Martian cycle" and mem.kind == "memorization" and mem.index == 0
    assert f"{mem.prompt} {mem.target}" in item.passage
    assert item.text(0) == item.passage
    with pytest.raises(FactacqError, match="text 1 requested but it has 0 paraphrases"):
        item.text(1)


def test_probe_kinds_are_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        Probe(item_id="x", kind="mem", index=0, prompt="a", target="b")


def test_knowledge_set_access():
    ks = KnowledgeSet(
        tuple(Item(id=i, passage=f"text {i}") for i in ("a", "b", "c")), source="<test>"
    )
    assert ks.subset(["c", "a"]).ids == ("c", "a")
    assert [item.id for item in ks] == ["a", "b", "c"]
    with pytest.raises(FactacqError, match="<test>: unknown item id 'z'"):
        ks.get("z")
    with pytest.raises(FactacqError, match="unknown probe kind 'mem'"):
        ks.probes(["mem"])


# ------------------------------------------------------------------ validation: one line each


def _error(tmp_path, data, name="fk.json") -> str:
    path = write_json(tmp_path, data, name)
    with pytest.raises(FactacqError) as exc:
        load_knowledge(str(path))
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    return message


def test_error_wrong_top_level(tmp_path):
    assert "top level must be a list of entries, got dict" in _error(tmp_path, {"a": 1})


def test_error_entry_not_object(tmp_path):
    assert "entry 1 must be an object, got str" in _error(tmp_path, [paper_entry(), "oops"])


def test_error_missing_field(tmp_path):
    bad = paper_entry("b")
    del bad["gen_target"]
    msg = _error(tmp_path, [paper_entry(), bad])
    assert "entry 1: missing field 'gen_target'" in msg


def test_error_missing_passage(tmp_path):
    bad = paper_entry()
    del bad["train_context"]
    assert "entry 0: missing field 'train_context'" in _error(tmp_path, [bad])


def test_error_non_string_field(tmp_path):
    bad = paper_entry()
    bad["train_context"] = 42
    assert "entry 0: field 'train_context' must be a string, got int" in _error(tmp_path, [bad])


def test_error_non_string_probe(tmp_path):
    bad = paper_entry()
    bad["mem_input"][1] = None
    assert "entry 0: field 'mem_input'[1] must be a string, got NoneType" in _error(tmp_path, [bad])


def test_error_not_a_list(tmp_path):
    bad = paper_entry()
    bad["hard_gen_input"] = "a prompt"
    assert "field 'hard_gen_input' must be a list of strings, got str" in _error(tmp_path, [bad])


def test_error_count_mismatch(tmp_path):
    bad = paper_entry()
    bad["mem_target"] = ["Kelb"]
    msg = _error(tmp_path, [paper_entry("z"), paper_entry("y"), bad])
    assert "entry 2: field 'mem_target' has 1 targets but 'mem_input' has 2 prompts" in msg


def test_error_empty_target(tmp_path):
    bad = paper_entry()
    bad["gen_target"] = ["  "]
    assert "entry 0: field 'gen_target'[0] is empty" in _error(tmp_path, [bad])


def test_error_duplicate_ids(tmp_path):
    first, second = paper_entry("a"), paper_entry("b")
    first["id"] = second["id"] = "same"
    msg = _error(tmp_path, [first, second])
    assert "fk.json: entry 1: duplicate id 'same' (first used by entry 0)" in msg


def test_error_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(FactacqError, match="broken.json: not valid JSON"):
        load_paper_json(path)


def test_error_unknown_source_kind(tmp_path):
    with pytest.raises(FactacqError, match="expected a .json or .jsonl path"):
        load_knowledge(str(tmp_path / "data.csv"))
    with pytest.raises(FactacqError, match="knowledge file not found"):
        load_knowledge(str(tmp_path / "missing.json"))
    with pytest.raises(FactacqError, match=r"expected generate:<n>\[,seed=S\]"):
        load_knowledge("generate:many")
    with pytest.raises(FactacqError, match="unknown option 'size'"):
        load_knowledge("generate:3,size=4")
    with pytest.raises(FactacqError, match="first=5 but the source has 2 items"):
        load_knowledge(str(write_json(tmp_path, [paper_entry("a"), paper_entry("b")])), first=5)


# ------------------------------------------------------------------ JSONL


def test_jsonl_round_trip_is_exact(tmp_path, paper_paraphrased_json):
    ks = load_knowledge("generate:4,seed=3", n_paraphrases=2)
    path = tmp_path / "out" / "knowledge.jsonl"
    save_jsonl(ks, path)
    back = load_jsonl(path)
    assert back == ks
    assert back.items[0].probes[0].attribute is not None
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    paper = load_paper_json(paper_paraphrased_json).subset(["fk-000", "fk-041"])
    save_jsonl(paper, path)
    assert load_knowledge(str(path)) == paper
    assert load_knowledge(str(path)).non_verbatim == paper.non_verbatim


def _jsonl_error(tmp_path, lines: list[str]) -> str:
    path = tmp_path / "k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FactacqError) as exc:
        load_jsonl(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    return str(exc.value)


def _good_line(item_id: str = "a") -> dict:
    return {
        "id": item_id,
        "passage": "Kelb lies on the Amu.",
        "paraphrases": [],
        "probes": [{"kind": "memorization", "index": 0, "prompt": "Kelb lies on the", "target": "Amu"}],
    }


def test_jsonl_errors(tmp_path):
    good = json.dumps(_good_line())
    assert "line 2: not valid JSON" in _jsonl_error(tmp_path, [good, "{nope"])
    assert "line 1 must be an object, got list" in _jsonl_error(tmp_path, ["[1, 2]"])
    assert "k.jsonl: line 2: duplicate id 'a' (first on line 1)" in _jsonl_error(tmp_path, [good, good])
    bad = _good_line()
    del bad["passage"]
    assert "line 1 (id 'a'): missing field 'passage'" in _jsonl_error(tmp_path, [json.dumps(bad)])
    bad = _good_line()
    bad["probes"][0]["target"] = ""
    assert "probes[0]: field 'target' is empty" in _jsonl_error(tmp_path, [json.dumps(bad)])
    bad = _good_line()
    bad["probes"][0]["kind"] = "gen"
    assert "probes[0]: field 'kind' must be one of" in _jsonl_error(tmp_path, [json.dumps(bad)])
    bad = _good_line()
    bad["probes"].append(copy.deepcopy(bad["probes"][0]))
    assert "probes[1]: duplicate probe (memorization, 0)" in _jsonl_error(tmp_path, [json.dumps(bad)])
    bad = _good_line()
    bad["colour"] = "red"
    assert "unknown field 'colour'" in _jsonl_error(tmp_path, [json.dumps(bad)])


# ------------------------------------------------------------------ the hub (local stand-in)


def test_load_hf_with_local_stand_in(monkeypatch):
    rows = [paper_entry("a", paraphrases=2), paper_entry("b", paraphrases=0)]
    calls = []

    def fake_load_dataset(dataset_id, split):
        calls.append((dataset_id, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ks = load_knowledge("hf:kaist-ai/fictional-knowledge")
    assert calls == [("kaist-ai/fictional-knowledge", "train")]
    assert ks.ids == ("fk-000", "fk-001")
    assert ks.get("fk-000").paraphrases == ("Paraphrase 0 of a.", "Paraphrase 1 of a.")
    assert len(ks.probes(["memorization"])) == 4
    assert load_hf("some/id", split="validation").source == "hf:some/id[validation]"


def test_load_hf_validates_rows(monkeypatch):
    bad = paper_entry("b")
    bad["mem_target"] = ["Kelb", ""]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list([paper_entry(), bad]))
    with pytest.raises(FactacqError, match=r"hf:x/y\[train\]: entry 1: field 'mem_target'\[1\] is empty"):
        load_knowledge("hf:x/y")


def test_load_hf_failure_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FactacqError, match=r"^hf:x/y\[train\]: cannot load dataset: no network$"):
        load_knowledge("hf:x/y")


# ------------------------------------------------------------------ assignment


def _toy_set(n: int = 12, with_paraphrases: int = 4) -> KnowledgeSet:
    items = [
        Item(id=f"t{i:02d}", passage=f"text {i}", paraphrases=("p",) * (3 if i < with_paraphrases else 0))
        for i in range(n)
    ]
    return KnowledgeSet(tuple(items), source="<toy>")


def test_assign_counts_deterministic_and_paraphrase_eligible():
    ks = _toy_set()
    kp = KnowledgeParams(assign={"paraphrase": 3, "duplicate": 3, "once": 2, "control": 2}, n_paraphrases=3)
    groups = assign_groups(ks, kp)
    assert set(groups) == set(ks.ids)
    counts = {g: list(groups.values()).count(g) for g in ("paraphrase", "duplicate", "once", "control", "spare")}
    assert counts == {"paraphrase": 3, "duplicate": 3, "once": 2, "control": 2, "spare": 2}
    assert all(len(ks.get(i).paraphrases) >= 3 for i, g in groups.items() if g == "paraphrase")
    assert assign_groups(ks, kp) == groups
    other = assign_groups(ks, kp.model_copy(update={"assign_seed": 1}))
    assert other != groups


def test_assign_fractions_and_file_order():
    ks = _toy_set(n=8, with_paraphrases=8)
    kp = KnowledgeParams(
        assign={"paraphrase": 0.25, "duplicate": 0.25, "once": 0.25, "control": 0.25},
        assign_order="file",
        n_paraphrases=1,
    )
    groups = assign_groups(ks, kp)
    assert [groups[i] for i in ks.ids] == ["paraphrase"] * 2 + ["duplicate"] * 2 + ["once"] * 2 + ["control"] * 2


def test_assign_paper_split_in_file_order(paper_paraphrased_json):
    ks = load_paper_json(paper_paraphrased_json)
    kp = KnowledgeParams(assign={"paraphrase": 40, "duplicate": 40, "once": 40}, assign_order="file")
    groups = assign_groups(ks, kp)
    assert {groups[f"fk-{i:03d}"] for i in range(40)} == {"paraphrase"}
    assert {groups[f"fk-{i:03d}"] for i in range(40, 80)} == {"duplicate"}
    assert {groups[f"fk-{i:03d}"] for i in range(80, 120)} == {"once"}
    assert {groups[f"fk-{i:03d}"] for i in range(120, 130)} == {"spare"}
    shuffled = assign_groups(ks, kp.model_copy(update={"assign_order": "shuffle"}))
    assert all(len(ks.get(i).paraphrases) == 9 for i, g in shuffled.items() if g == "paraphrase")


def test_assign_explicit_ids():
    ks = _toy_set()
    kp = KnowledgeParams(
        assign={"paraphrase": 1, "duplicate": 2, "once": 0, "control": 1},
        ids={"control": ["t10", "t11"], "paraphrase": ["t00"]},
        n_paraphrases=3,
    )
    groups = assign_groups(ks, kp)
    assert groups["t10"] == groups["t11"] == "control" and groups["t00"] == "paraphrase"
    assert list(groups.values()).count("control") == 2  # explicit ids override the count
    assert list(groups.values()).count("duplicate") == 2


def test_assign_errors():
    ks = _toy_set()
    with pytest.raises(FactacqError, match="knowledge.ids.control: unknown item id 'nope'"):
        assign_groups(ks, KnowledgeParams(ids={"control": ["nope"]}))
    with pytest.raises(FactacqError, match="knowledge.ids.once: item 't05' is already in group 'control'"):
        assign_groups(ks, KnowledgeParams(ids={"control": ["t05"], "once": ["t05"]}))
    with pytest.raises(FactacqError, match="knowledge.ids.paraphrase: item 't09' has 0 paraphrases, 3 needed"):
        assign_groups(ks, KnowledgeParams(ids={"paraphrase": ["t09"]}, n_paraphrases=3))
    with pytest.raises(
        FactacqError, match="knowledge.assign.paraphrase: 5 items requested but only 4 items with >= 3 paraphrases"
    ):
        assign_groups(ks, KnowledgeParams(assign={"paraphrase": 5}, n_paraphrases=3))
    with pytest.raises(FactacqError, match="knowledge.assign.control: 9 items requested but only 7 unassigned"):
        assign_groups(ks, KnowledgeParams(assign={"duplicate": 5, "control": 9}))
    with pytest.raises(FactacqError, match="fractions sum to 1.2 > 1"):
        assign_groups(ks, KnowledgeParams(assign={"once": 0.6, "control": 0.6}))
    with pytest.raises(FactacqError, match="a fraction must be <= 1"):
        assign_groups(ks, KnowledgeParams(assign={"once": 2.5}))


def test_knowledge_from_params_default():
    params = parse_params({"knowledge": {"source": "generate:12,seed=2", "n_paraphrases": 2,
                                         "assign": {"paraphrase": 3, "duplicate": 3, "once": 3, "control": 3}}})
    ks, groups = knowledge_from_params(params)
    assert len(ks) == 12 and len(ks.get(ks.ids[0]).paraphrases) == 2
    assert sorted(groups.values()) == sorted(["paraphrase", "duplicate", "once", "control"] * 3)
    default = KnowledgeParams()
    assert default.passage_words == (40, 70) and default.assign_order == "shuffle"


def test_hf_source_falls_back_to_its_offline_copy(monkeypatch, paper_paraphrased_json):
    """knowledge.offline_source: the hub out of reach -> the local copy, with the paper's split by
    file order (params/miniature/paper_data.yaml); the hub in reach -> the hub, not the copy."""
    from factacq import knowledge
    from factacq.knowledge import knowledge_from_params
    from factacq.params import parse_params

    p = parse_params({"knowledge": {
        "source": "hf:kaist-ai/fictional-knowledge", "offline_source": str(paper_paraphrased_json),
        "assign": {"paraphrase": 40, "duplicate": 40, "once": 40, "control": 10},
        "assign_order": "file"}})
    monkeypatch.setattr(knowledge, "hub_reachable", lambda: False)
    monkeypatch.setattr(knowledge, "load_hf", lambda *a, **k: pytest.fail("the hub was asked"))
    ks, groups = knowledge_from_params(p)
    assert len(ks) == 130 and ks.source == str(paper_paraphrased_json)
    by_group = {g: [i for i in ks.ids if groups[i] == g] for g in set(groups.values())}
    assert by_group["paraphrase"] == [f"fk-{i:03d}" for i in range(40)]
    assert by_group["duplicate"][0] == "fk-040" and by_group["once"][-1] == "fk-119"
    assert by_group["control"] == [f"fk-{i:03d}" for i in range(120, 130)]
    hub_items = load_paper_json(paper_paraphrased_json)
    monkeypatch.setattr(knowledge, "hub_reachable", lambda: True)
    monkeypatch.setattr(knowledge, "load_hf", lambda dataset_id, split="train": hub_items)
    assert knowledge_from_params(p)[0] is hub_items


def test_hub_reachable_checks_a_connection_unless_offline(monkeypatch):
    from factacq import hub

    class Connection:
        def close(self):
            pass

    def answer(result):
        def connect(address, timeout):
            assert address == ("huggingface.co", 443) and timeout == 3.0
            if isinstance(result, Exception):
                raise result
            return result
        return connect

    for offline, connect, expected in [("HF_HUB_OFFLINE=1", answer(pytest.fail), False),
                                       (None, answer(OSError("no route")), False),
                                       (None, answer(Connection()), True)]:
        hub.hub_reachable.cache_clear()
        monkeypatch.setattr(hub, "hub_offline", lambda: offline)
        monkeypatch.setattr(hub.socket, "create_connection", connect)
        assert hub.hub_reachable() is expected
    hub.hub_reachable.cache_clear()
