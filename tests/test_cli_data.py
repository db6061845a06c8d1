"""`factacq data inspect`: the numbers on the paper's files, generated sources and errors."""

from __future__ import annotations

import json

from factacq.cli import main


def inspect_json(capsys, *args) -> dict:
    assert main(["data", "inspect", *args, "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def test_paraphrased_file_json(capsys, paper_paraphrased_json):
    report = inspect_json(capsys, str(paper_paraphrased_json))
    assert report["items"] == 130
    assert report["probes"] == {"memorization": 650, "semantic": 650, "composition": 650}
    assert report["items_with_paraphrases"] == 40 and report["paraphrases"] == 360
    assert report["passage_words"]["min"] == 261 and report["passage_words"]["max"] == 520
    assert round(report["passage_words"]["mean"]) == 360
    assert report["non_verbatim"]["count"] == 12 and report["non_verbatim"]["of"] == 650
    assert len(report["non_verbatim"]["probes"]) == 12


def test_first_120_give_1800_probes(capsys, paper_json):
    report = inspect_json(capsys, str(paper_json), "--first", "120")
    assert report["items"] == 120
    assert sum(report["probes"].values()) == report["probes_total"] == 1800
    assert report["items_with_paraphrases"] == 0


def test_text_report(capsys, paper_paraphrased_json):
    assert main(["data", "inspect", str(paper_paraphrased_json)]) == 0
    out = capsys.readouterr().out
    assert "items: 130 (40 with paraphrases, 360 paraphrases)" in out
    assert "probes: memorization 650, semantic 650, composition 650 (total 1950)" in out
    assert "passage words: min 261, mean 360.1, max 520" in out
    assert "non-verbatim memorization probes (prompt + ' ' + target not in passage): 12 of 650" in out
    assert out.count("  fk-") == 12


def test_generated_source(capsys):
    report = inspect_json(capsys, "generate:7,seed=3")
    assert report["items"] == 7
    assert report["probes"] == {"memorization": 35, "semantic": 35, "composition": 35}
    assert report["non_verbatim"]["count"] == 0
    assert 40 <= report["passage_words"]["min"] <= report["passage_words"]["max"] <= 70
    assert report["target_words"]["max"] <= 4


def test_bad_source_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a list"}))
    assert main(["data", "inspect", str(bad), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"factacq: error: {bad}: top level must be a list of entries, got dict"
