"""Bad input while loading is one `factacq: error: ...` line naming the file (exit status 2), never a
traceback: run-log chunks and run.json (analyze), checkpoint files and sidecar kinds (resume),
binary and deeply nested knowledge and corpus files, generate:N above its limit, hub sources while
the hub is offline; and summary.json records paths relative to the run folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import datasets
import datasets.config
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import constants as hub_constants

from factacq.cli import main
from factacq.corpus import load_documents
from factacq.errors import FactacqError
from factacq.knowledge import knowledge_from_params
from factacq.params import CorpusParams, parse_params
from test_analyze import write_run  # noqa: E402  (tests/ is on sys.path under pytest)
from test_resume import micro_params  # noqa: E402

BINARY = bytes(range(256)) * 8  # not UTF-8 from byte 128 on
DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, nested 100,000 levels


def one_error_line(capsys) -> str:
    """The CLI's stderr: exactly one line `factacq: error: ...`; returns it."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("factacq: error: "), lines[0]
    return lines[0]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------ analyze: run-folder files


def test_analyze_truncated_log_chunk_names_the_chunk(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    chunk = run / "log" / "chunk-000001.parquet"
    truncate(chunk)
    assert main(["analyze", str(run)]) == 2
    line = one_error_line(capsys)
    assert f"{chunk}: unreadable run-log chunk" in line


@pytest.mark.parametrize("content, expected", [
    ("truncated", "corrupt run.json sidecar (not valid JSON"),
    (BINARY, "corrupt run.json sidecar (not a UTF-8 text file"),
    (DEEP, "not valid JSON: nested too deeply"),
    ("[1, 2]", "top level must be an object, got list"),
    ("tokens_per_step", "field 'tokens_per_step' must be a positive integer, got '64'"),
], ids=["truncated", "binary", "deep", "list", "tokens_per_step"])
def test_analyze_bad_run_json_names_it(tmp_path, capsys, content, expected):
    run = write_run(tmp_path / "run")
    sidecar = run / "run.json"
    if content == "truncated":
        truncate(sidecar)
    elif content == "tokens_per_step":
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "tokens_per_step": "64"}))
    elif isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:
        sidecar.write_text(content)
    assert main(["analyze", str(run)]) == 2
    line = one_error_line(capsys)
    assert str(sidecar) in line and expected in line


def test_summary_json_records_paths_relative_to_the_run_folder(tmp_path, capsys):
    from factacq.analyze import format_summary

    run = write_run(tmp_path / "run")
    assert main(["analyze", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"factacq analyze {run}:" in printed and f"into {run}" in printed  # the CLI: as given
    summary = json.loads((run / "tables" / "summary.json").read_text())
    assert summary["run_dir"] == "."
    assert summary["figures"] and summary["tables"]
    for rel in summary["figures"] + summary["tables"]:
        assert not Path(rel).is_absolute() and (run / rel).is_file(), rel
    assert {"figures/dynamics.png", "tables/fits.csv", "tables/summary.csv"} <= set(
        summary["figures"] + summary["tables"])
    assert str(tmp_path) not in (run / "tables" / "summary.json").read_text()
    text = format_summary(summary)  # as pipeline._print_summary prints it
    assert text.startswith("factacq analyze: t_w = ") and text.endswith("into the run folder")


# ------------------------------------------------------------------ resume: checkpoint and sidecar


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """One finished micro injection run (and its cached base); tests corrupt copies of it."""
    from factacq.inject import run_inject

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("micro")
    run = run_inject(micro_params(root), root / "run")
    return root, run


def copy_run(micro_run, tmp_path) -> Path:
    return Path(shutil.copytree(micro_run[1], tmp_path / "run"))


@pytest.mark.parametrize("name, expected", [
    ("model.safetensors", "corrupt checkpoint weights (truncated or not safetensors"),
    ("state.json", "corrupt checkpoint state (not valid JSON"),
    ("optimizer.pt", "corrupt checkpoint file (cannot load"),
    ("scheduler.pt", "corrupt checkpoint file (cannot load"),
    ("rng.pt", "corrupt checkpoint file (cannot load"),
    ("config.json", "corrupt checkpoint model config (not valid JSON"),
])
def test_resume_with_a_truncated_checkpoint_file_names_it(micro_run, tmp_path, capsys, name,
                                                          expected):
    run = copy_run(micro_run, tmp_path)
    bad = run / "checkpoints" / "latest" / name
    truncate(bad)
    assert main(["resume", str(run)]) == 2
    line = one_error_line(capsys)
    assert f"{bad}: {expected}" in line


def test_resume_refuses_bad_state_fields_and_a_checkpoint_of_no_injection_run(micro_run, tmp_path,
                                                                              capsys):
    run = copy_run(micro_run, tmp_path)
    state = run / "checkpoints" / "latest" / "state.json"
    info = json.loads(state.read_text())
    state.write_text(json.dumps({**info, "step": "seven"}))
    assert main(["resume", str(run)]) == 2
    assert f"{state}: corrupt checkpoint state (field 'step' must be a non-negative integer, got " \
           f"'seven')" in one_error_line(capsys)
    state.write_text(json.dumps({**info, "extra": {}}))
    assert main(["resume", str(run)]) == 2
    assert f"{state}: not an injection-run checkpoint (no integer extra.run_step)" in \
        one_error_line(capsys)


def test_resume_of_a_pretraining_base_folder_says_so(micro_run, tmp_path, capsys):
    base = next(micro_run[0].glob("cache/base/*/run.json")).parent
    folder = Path(shutil.copytree(base, tmp_path / "base"))
    assert main(["resume", str(folder)]) == 2
    line = one_error_line(capsys)
    assert f"{folder / 'run.json'}: a pretraining base folder (kind 'pretrain'), not an injection " \
           f"run; factacq resume takes the folder of a `factacq inject` run" in line


def test_resume_of_a_sidecar_without_params_names_it(micro_run, tmp_path, capsys):
    run = copy_run(micro_run, tmp_path)
    sidecar = json.loads((run / "run.json").read_text())
    del sidecar["params"]
    (run / "run.json").write_text(json.dumps(sidecar))
    assert main(["resume", str(run)]) == 2
    assert f"{run / 'run.json'}: no 'params' entry" in one_error_line(capsys)


def test_load_checkpoint_checks_files_and_skips_optimizer_pt_when_reset(micro_run, tmp_path):
    from factacq.checkpoint import load_checkpoint

    ckpt = Path(shutil.copytree(micro_run[1] / "checkpoints" / "latest", tmp_path / "ckpt"))
    truncate(ckpt / "optimizer.pt")
    with pytest.raises(FactacqError, match=r"optimizer.pt: corrupt checkpoint file") as info:
        load_checkpoint(ckpt)
    assert "\n" not in str(info.value)
    state, extra = load_checkpoint(ckpt, reset_optimizer=True)  # optimizer.pt is not read then
    assert len(state.optimizer.state) == 0 and extra["n_chunks"] > 0


# ------------------------------------------------------------------ knowledge and corpus files


@pytest.mark.parametrize("suffix, content, expected", [
    (".json", BINARY, "not a UTF-8 text file"),
    (".jsonl", BINARY, "not a UTF-8 text file"),
    (".json", DEEP, "not valid JSON: nested too deeply"),
    (".jsonl", DEEP, "line 1: not valid JSON: nested too deeply"),
], ids=["binary-json", "binary-jsonl", "deep-json", "deep-jsonl"])
def test_data_inspect_binary_or_deep_file_names_it(tmp_path, capsys, suffix, content, expected):
    path = tmp_path / f"knowledge{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["data", "inspect", str(path)]) == 2
    assert f"{path}: {expected}" in one_error_line(capsys)


def test_params_knowledge_source_binary_file_names_it(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_bytes(BINARY)
    params = parse_params({"knowledge": {"source": str(path)}})
    with pytest.raises(FactacqError, match=rf"^{re.escape(str(path))}: not a UTF-8 text file"
                       ) as info:
        knowledge_from_params(params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, content, expected", [
    ("doc.txt", BINARY, "not a UTF-8 text file"),
    ("docs.jsonl", BINARY, "not a UTF-8 text file"),
    ("docs.jsonl", DEEP, "line 1: not valid JSON: nested too deeply"),
    ("docs.parquet", None, "unreadable parquet file"),
], ids=["binary-txt", "binary-jsonl", "deep-jsonl", "truncated-parquet"])
def test_corpus_bad_file_names_it(tmp_path, name, content, expected):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text("A good document about a river.")
    path = folder / name
    if content is None:
        pq.write_table(pa.table({"text": ["one", "two"] * 100}), path)
        truncate(path)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for source in (folder, path):  # a folder holding it, and the file itself
        with pytest.raises(FactacqError) as info:
            load_documents(CorpusParams(source=str(source)))
        assert str(info.value).startswith(f"{path}: {expected}") and "\n" not in str(info.value)


def corpus_params_file(tmp_path: Path, source: str) -> Path:
    """A params YAML with corpus.source = source, its cache inside tmp_path."""
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"name": "bad", "cache_dir": str(tmp_path / "cache"),
                                "output_dir": str(tmp_path / "out"), "device": "cpu",
                                "corpus": {"source": source}}))
    return path


def test_cli_pretrain_binary_corpus_file_names_it(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    bad = tmp_path / "corpus" / "doc.txt"
    bad.write_bytes(BINARY)
    assert main(["pretrain", str(corpus_params_file(tmp_path, str(tmp_path / "corpus")))]) == 2
    assert f"{bad}: not a UTF-8 text file" in one_error_line(capsys)


def test_cli_pretrain_corpus_folder_without_usable_files_or_missing(tmp_path, capsys):
    """(These two were one line already; kept so they stay so.)"""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "notes.md").write_text("not a corpus file")
    assert main(["pretrain", str(corpus_params_file(tmp_path, str(folder)))]) == 2
    assert f"{folder}: corpus.source folder has no .txt, .jsonl or .parquet files" in \
        one_error_line(capsys)
    missing = tmp_path / "nowhere"
    assert main(["pretrain", str(corpus_params_file(tmp_path, str(missing)))]) == 2
    assert f"corpus.source: path not found: '{missing}'" in one_error_line(capsys)


# ------------------------------------------------------------------ generate:N limit


def test_generate_above_the_limit_is_refused_before_generating(monkeypatch, capsys):
    import factacq.generate
    from factacq.knowledge import MAX_GENERATE

    asked = []
    real = factacq.generate.generate_knowledge
    monkeypatch.setattr(factacq.generate, "generate_knowledge",
                        lambda n, **kw: asked.append(n) or real(2, **kw))
    assert main(["data", "inspect", "generate:99999999999"]) == 2
    line = one_error_line(capsys)
    assert "'generate:99999999999': n must be at most 50000" in line
    assert main(["data", "inspect", "generate:" + "9" * 5000]) == 2  # past int()'s 4300 digits
    assert "n must be at most 50000" in one_error_line(capsys)
    assert asked == []
    assert main(["data", "inspect", f"generate:{MAX_GENERATE},seed=3", "--json"]) == 0
    assert asked == [MAX_GENERATE]


# ------------------------------------------------------------------ the hub while offline


def offline_after_import(monkeypatch, var: str = "HF_DATASETS_OFFLINE") -> None:
    """The libraries imported while online; then one offline variable is set (as in a notebook)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    if var:
        monkeypatch.setenv(var, "1")


@pytest.mark.parametrize("late", [False, True], ids=["offline-at-import", "offline-set-later"])
def test_data_inspect_hub_source_while_offline_is_refused_at_once(monkeypatch, capsys, late):
    if late:
        offline_after_import(monkeypatch)
    start = time.monotonic()
    assert main(["data", "inspect", "hf:nonexistent/x"]) == 2
    assert time.monotonic() - start < 5  # no network retries
    line = one_error_line(capsys)
    assert "knowledge.source 'hf:nonexistent/x': the Hugging Face hub is offline" in line
    assert "give a local copy" in line
    assert (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == (not late, not late)


@pytest.mark.parametrize("late", [False, True], ids=["offline-at-import", "offline-set-later"])
def test_corpus_hub_source_while_offline_is_refused_at_once(monkeypatch, late):
    if late:
        offline_after_import(monkeypatch, "HF_HUB_OFFLINE")
    start = time.monotonic()
    with pytest.raises(FactacqError) as info:
        load_documents(CorpusParams(source="hf:nonexistent/x"))
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert msg.startswith("corpus.source 'hf:nonexistent/x': the Hugging Face hub is offline")
    assert "give a local copy" in msg and "\n" not in msg


def test_hub_sources_are_still_tried_when_online(monkeypatch):
    """Online (no offline variable, libraries not offline), the hub is asked as before."""
    from factacq.knowledge import load_knowledge

    offline_after_import(monkeypatch, var="")
    assert not any(os.environ.get(v) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    calls = []

    def fake_load_dataset(name, *args, **kwargs):
        calls.append((name, kwargs.get("streaming", False), datasets.config.HF_HUB_OFFLINE))
        if kwargs.get("streaming"):
            return iter([{"text": "a hub document"}])
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(FactacqError, match=r"^hf:org/facts\[train\]: cannot load dataset: no network"):
        load_knowledge("hf:org/facts")
    assert load_documents(CorpusParams(source="hf:org/corpus")) == ["a hub document"]
    assert calls == [("org/facts", False, False), ("org/corpus", True, False)]
