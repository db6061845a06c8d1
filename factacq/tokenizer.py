"""Tokenizers: a byte-level BPE trained on the background documents only, or an HF model's own.

The documents come in from :mod:`factacq.corpus` (documents -> tokenizer -> stream); this module
never loads them. :func:`documents_hash` and :func:`tokenizer_fingerprint` are the identities that
the tokenizer, stream and base caches are keyed by.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from factacq.atomic import atomic_dir
from factacq.errors import FactacqError, first_line
from factacq.model_source import check_gguf_support, gguf_of, resolve_source

EOS = "<|endoftext|>"
TRAINING_TEXT_HASH = "training_text.sha256"  # what the tokenizer was trained on, for audits


def documents_hash(documents) -> str:
    h = hashlib.sha256()
    for doc in documents:
        h.update(hashlib.sha256(doc.encode("utf-8")).digest())
    return h.hexdigest()


def train_tokenizer(documents, vocab_size: int, out_dir) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``documents`` (the background corpus, never injected knowledge) and
    save it as a standard HF tokenizer folder at ``out_dir`` (atomically; None: not saved)."""
    documents = list(documents)
    if not documents:
        raise FactacqError("tokenizer: no documents to train on (empty corpus)")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(documents, trainer=trainer, length=len(documents))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=EOS)
    if out_dir is None:
        return tok
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(tmp)
        (tmp / TRAINING_TEXT_HASH).write_text(documents_hash(documents) + "\n")
    return load_tokenizer(out_dir)


@functools.lru_cache(maxsize=2)
def _gguf_tokenizer(source: str, gguf_file: str, revision, trust_remote_code: bool, stamp):
    """A GGUF file's tokenizer, once per process and file version (``stamp``: its mtime and size):
    transformers rebuilds it from the file's vocabulary, ~10 s for SmolLM2's 49,152 tokens, and a
    run asks for it three times. Callers get a copy."""
    return AutoTokenizer.from_pretrained(source, revision=revision, gguf_file=gguf_file,
                                         trust_remote_code=trust_remote_code)


def load_tokenizer(name_or_path, revision: str | None = None, trust_remote_code: bool = False,
                   gguf_file: str | None = None):
    """An HF tokenizer: a folder, a hub id or ``pkg:<package>``; from GGUF file ``gguf_file`` in it
    (model.gguf_file; a folder without config.json: its single .gguf file), as the model loads."""
    name = str(name_or_path)
    source = resolve_source(name, "tokenizer")
    gguf = gguf_of(name, gguf_file, "tokenizer")
    if gguf is not None:
        check_gguf_support(gguf)
    try:
        if gguf is None:
            tok = AutoTokenizer.from_pretrained(source, revision=revision,
                                                trust_remote_code=trust_remote_code)
        else:
            file = Path(source).expanduser() / gguf
            stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
            tok = copy.deepcopy(_gguf_tokenizer(source, gguf, revision, trust_remote_code, stamp))
    except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        what = f"GGUF file {gguf!r} in " if gguf else ""
        raise FactacqError(f"tokenizer: cannot load {what}{name!r}: {first_line(exc)}") from None
    if tok.eos_token_id is None:
        raise FactacqError(f"tokenizer: {str(name_or_path)!r} has no eos token")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_dir(params, documents_sha: str) -> Path:
    key = hashlib.sha256(f"{documents_sha}|{params.tokenizer.vocab_size}|bytelevel-bpe-v1".encode())
    return Path(params.cache_dir) / "tokenizer" / key.hexdigest()[:12]


def trains_on_documents(params) -> bool:
    """Whether the run's tokenizer is a BPE trained on the background documents (else it is
    ``tokenizer.path`` or the HF model's own, and needs no documents)."""
    return not (params.tokenizer.path or params.model.name_or_path)


def get_tokenizer(params, documents=None, cache: bool = True):
    """The run's tokenizer: ``tokenizer.path`` if set; else an HF model's own (``model.name_or_path``
    and ``model.gguf_file``); else a BPE trained on ``documents`` (the train split of the background
    documents: ``corpus.prepare_corpus`` passes them), cached under <cache_dir>/tokenizer/<hash>
    (``cache=False``: a cached one is used, a new one is not saved)."""
    if params.tokenizer.path:
        return load_tokenizer(params.tokenizer.path)
    if params.model.name_or_path:
        return load_tokenizer(params.model.name_or_path, revision=params.model.revision,
                              trust_remote_code=params.model.trust_remote_code,
                              gguf_file=params.model.gguf_file)
    if documents is None:
        raise ValueError("get_tokenizer: a BPE tokenizer is trained on the background documents; "
                         "pass them (the train split), or set tokenizer.path")
    out = tokenizer_dir(params, documents_hash(documents))
    if (out / "tokenizer.json").is_file():
        return load_tokenizer(out)
    return train_tokenizer(documents, params.tokenizer.vocab_size, out if cache else None)


def tokenizer_fingerprint(tok) -> str:
    """A stable identity of a tokenizer (its serialized vocabulary and rules), for cache keys."""
    backend = getattr(tok, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else repr(sorted(tok.get_vocab().items()))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
