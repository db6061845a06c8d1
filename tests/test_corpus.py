"""Background documents and the packed token stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from factacq.corpus import TokenStream, load_documents, prepare_corpus, split_documents
from factacq.errors import FactacqError
from factacq.params import CorpusParams, parse_params

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the river city old king wrote a letter to his sister about grain harvest winter market "
         "ships sailed north while farmers sold wool and bread in small towns near hills").split()


def write_corpus(folder: Path, n_docs: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        sentences = [" ".join(rng.choice(WORDS, size=rng.integers(5, 12))).capitalize() + "."
                     for _ in range(rng.integers(3, 8))]
        (folder / f"doc{i:03d}.txt").write_text(" ".join(sentences))
    return folder


def small_params(tmp_path: Path, **sections):
    data = {"corpus": {"source": str(write_corpus(tmp_path / "corpus"))},
            "tokenizer": {"vocab_size": 300}, "model": {"preset": "micro"},
            "pretrain": {"seq_len": 32, "batch_size": 4, "steps": 6, "stages": {"early": 2, "late": 6},
                         "log_every": 1},
            "optim": {"warmup_steps": 2}, "device": "cpu", "cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "outputs")}  # both folders in tmp_path: never the project's
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_params(data)


def test_sources_txt_jsonl_parquet_and_hf_standin(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": f"line {i}"}) for i in range(3)))
    pq.write_table(pa.table({"body": ["p one", "p two"]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("plain text document")
    docs = load_documents(CorpusParams(source=str(tmp_path), text_column="body"))
    assert docs == ["line 0", "line 1", "line 2", "p one", "p two", "plain text document"]
    # the hub path goes through datasets.load_dataset(streaming=True); a local folder stands in
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "train.jsonl").write_text("\n".join(json.dumps({"text": f"hub {i}"}) for i in range(5)))
    docs = load_documents(CorpusParams(source=f"hf:{hub}", max_documents=3))
    assert docs == ["hub 0", "hub 1", "hub 2"]


def test_bad_corpus_sources_give_one_line_errors(tmp_path):
    with pytest.raises(FactacqError, match="path not found.*nowhere"):
        load_documents(CorpusParams(source=str(tmp_path / "nowhere")))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(FactacqError, match="empty corpus"):
        load_documents(CorpusParams(source=str(tmp_path / "empty.txt")))
    (tmp_path / "x.jsonl").write_text(json.dumps({"body": "a"}) + "\n")
    with pytest.raises(FactacqError, match=r"x.jsonl: line 1: no column corpus.text_column='text'"):
        load_documents(CorpusParams(source=str(tmp_path / "x.jsonl")))
    with pytest.raises(FactacqError) as info:
        load_documents(CorpusParams(source=str(tmp_path / "x.jsonl"), text_column="body\nx"))
    assert "\n" not in str(info.value)  # one line, even for a column name with a newline


def test_stream_rows_cover_each_epoch_once_and_reshuffle():
    tokens = np.arange(10 * 4, dtype=np.uint16)
    stream = TokenStream(tokens, seq_len=4, seed=3)
    assert stream.n_rows == 10
    epoch0 = stream.rows(0, 10)[:, 0] // 4
    epoch1 = stream.rows(10, 10)[:, 0] // 4
    assert sorted(epoch0.tolist()) == list(range(10)) == sorted(epoch1.tolist())
    assert epoch0.tolist() != epoch1.tolist()
    # a batch that straddles the epoch boundary is the concatenation of the two
    assert torch.equal(stream.rows(8, 4), torch.cat([stream.rows(8, 2), stream.rows(10, 2)]))
    assert torch.equal(stream.batch(3, 2, data_position=1), stream.rows(7, 2))
    assert stream.rows(5, 3).dtype == torch.int64 and stream.rows(5, 3).shape == (3, 4)


def test_stream_identical_across_builds_and_processes(tmp_path):
    params = small_params(tmp_path)
    corpus = prepare_corpus(params)
    tok, first = corpus.tokenizer, corpus.stream
    rows = first.rows(0, first.n_rows * 2 + 3)
    # rebuild from scratch in a fresh cache: same tokens, same order
    params2 = small_params(tmp_path, cache_dir=str(tmp_path / "cache2"))
    second = prepare_corpus(params2).stream
    assert second.path != first.path  # really rebuilt, in the second cache
    assert torch.equal(second.rows(0, second.n_rows * 2 + 3), rows)
    # another process, from the cache
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r});"
            "from factacq.params import parse_params; from factacq.corpus import prepare_corpus;"
            "import json;"
            f"p = parse_params(json.loads({json.dumps(params.model_dump(mode='json'))!r}));"
            "s = prepare_corpus(p).stream; print(s.rows(0, s.n_rows * 2 + 3).sum().item(),"
            " s.rows(s.n_rows + 1, 1)[0].tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total, row = out.stdout.split(" ", 1)
    assert int(total) == int(rows.sum())
    assert json.loads(row) == rows[first.n_rows + 1].tolist()
    # the packed stream is the documents tokenized and joined with EOS
    eos = tok.eos_token_id
    assert int((torch.from_numpy(np.asarray(first.tokens, dtype=np.int64)) == eos).sum()) == 40


def test_heldout_split_is_disjoint_and_needs_the_flag(tmp_path):
    docs = [f"document number {i}" for i in range(200)]
    cp = CorpusParams(heldout=True, heldout_fraction=0.2)
    train, held = split_documents(docs, cp, "train"), split_documents(docs, cp, "heldout")
    assert set(train).isdisjoint(held) and len(train) + len(held) == 200
    assert 20 <= len(held) <= 60
    with pytest.raises(FactacqError, match="corpus.heldout"):
        split_documents(docs, CorpusParams(), "heldout")


def test_default_mixture_is_five_mb_of_plain_prose():
    from factacq.corpus import bible_documents, default_documents, lee_documents, wikipedia_documents

    docs = default_documents()
    assert sum(len(d) for d in docs) >= 5_000_000
    wiki, lee, bible = wikipedia_documents(), lee_documents(), bible_documents()
    assert docs == wiki + lee + bible and len(bible) == 1189  # one document per chapter
    assert all(len(d) >= 500 for d in wiki) and len(lee) == 300
    text = "\n".join(wiki)
    for markup in ("[[", "]]", "{{", "}}", "'''", "<ref", "==", "#REDIRECT"):
        assert markup not in text, markup
    assert bible[0].startswith("In the beginning God created the heavens and the earth.")
    assert "`" not in bible[0] and not any(ch.isdigit() for ch in bible[0][:200])
