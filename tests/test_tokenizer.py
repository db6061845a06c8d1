"""The BPE tokenizer is trained on the background corpus only, and cached."""

from __future__ import annotations

from pathlib import Path

from test_corpus import small_params  # noqa: E402  (tests/ is on sys.path under pytest)

from factacq.corpus import prepare_corpus
from factacq.tokenizer import EOS, TRAINING_TEXT_HASH, documents_hash, train_tokenizer

KNOWLEDGE = ("The Zorbliquaxian Accord was signed in Vellmorth by Queen Istrabelle. "
             "Zorbliquaxian envoys carried the Accord across the Vellmorth sea. ") * 30


def test_tokenizer_is_standard_hf_folder_with_eos_pad(tmp_path):
    tok = train_tokenizer(["hello world, hello there."] * 50, 300, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert tok.eos_token == EOS and tok.pad_token == EOS
    text = "hello there, world"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: lossless


def test_tokenizer_training_text_excludes_the_knowledge(tmp_path):
    params = small_params(tmp_path, tokenizer={"vocab_size": 600})
    tok = prepare_corpus(params).tokenizer
    folder = Path(tok.name_or_path)
    from factacq.corpus import load_documents

    background = load_documents(params.corpus)
    # what it was trained on is exactly the background corpus ...
    assert (folder / TRAINING_TEXT_HASH).read_text().strip() == documents_hash(background)
    assert not any("Zorbliquaxian" in d for d in background)
    # ... so knowledge words are not in its vocabulary, while a tokenizer that did see them learns them
    n_plain = len(tok("Zorbliquaxian Vellmorth")["input_ids"])
    leaked = train_tokenizer(background + [KNOWLEDGE], 600, tmp_path / "leaked")
    assert len(leaked("Zorbliquaxian Vellmorth")["input_ids"]) <= 4 < n_plain / 2


def test_tokenizer_is_cached_by_corpus_and_vocab(tmp_path):
    params = small_params(tmp_path)
    a = prepare_corpus(params).tokenizer
    b = prepare_corpus(params).tokenizer
    assert a.name_or_path == b.name_or_path
    c = prepare_corpus(small_params(tmp_path, tokenizer={"vocab_size": 280})).tokenizer
    assert c.name_or_path != a.name_or_path and len(c) == 280


def test_failed_tokenizer_save_leaves_no_folder(tmp_path, monkeypatch):
    """The tokenizer folder is written whole or not at all (no half folder, no temp left behind)."""
    import pytest
    from transformers import PreTrainedTokenizerFast

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train_tokenizer(["a small corpus of words", "and another document"], 300, tmp_path / "tok")
    assert list(tmp_path.iterdir()) == []
