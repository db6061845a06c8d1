"""The base model: pretraining it (`factacq pretrain`) and its cache.

:func:`pretrain` trains a fresh model with the loop of factacq.train on the packed background
stream and saves the stage checkpoints of ``pretrain.stages`` (factacq.checkpoint). A base is cached
under <cache_dir>/base/<:func:`base_key`>: the hash of the params sections :data:`BASE_SECTIONS`,
the documents it trains on and the tokenizer, so a condition that only differs in what it injects,
probes or analyses reuses it (docs/architecture.md, "Folders").
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd

from factacq.atomic import atomic_dir, json_text
from factacq.checkpoint import save_checkpoint
from factacq.corpus import load_documents, prepare_corpus, split_documents
from factacq.errors import FactacqError
from factacq.models import count_parameters
from factacq.params import Params, dump_params, load_params, project_root, working_dir
from factacq.provenance import provenance
from factacq.tokenizer import (documents_hash, get_tokenizer, load_tokenizer, tokenizer_dir,
                               tokenizer_fingerprint, trains_on_documents)
from factacq.train import TrainState, new_state, resolve_device, stream_batches, train

BASE_SECTIONS = ("corpus", "tokenizer", "model", "optim", "pretrain")


def base_key(params: Params, documents_sha: str, tokenizer_fp: str) -> str:
    """The base's cache key: a hash of the params sections BASE_SECTIONS (and compile, when true),
    the sha256 of the documents it trains on (``tokenizer.documents_hash`` of the train split) and
    the tokenizer's fingerprint (``tokenizer.tokenizer_fingerprint``): editing the files of a
    ``corpus.source`` folder, or swapping the tokenizer, keys a new base."""
    blob = json.dumps([params.section_hash(*BASE_SECTIONS, "compile"), documents_sha, tokenizer_fp,
                       "base-v2"])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _train_documents(params: Params) -> list[str]:
    return split_documents(load_documents(params.corpus), params.corpus, "train")


def base_dir(params: Params, tokenizer=None, documents_sha: str | None = None) -> Path:
    """<cache_dir>/base/<:func:`base_key`>. Callers that have the run's ``tokenizer`` and the
    ``documents_sha`` (documents_hash of the train split) pass them; else the documents are loaded
    and hashed (the default corpus: a few seconds the first time in a process, then cached; a hub
    corpus is streamed) and the tokenizer is got (``tokenizer.get_tokenizer``: a BPE not cached yet
    is trained and cached). :func:`base_cached` asks whether a base is complete without either."""
    docs = None
    if documents_sha is None or (tokenizer is None and trains_on_documents(params)):
        docs = _train_documents(params)
    if documents_sha is None:
        documents_sha = documents_hash(docs)
    if tokenizer is None:
        tokenizer = get_tokenizer(params, docs)  # docs None: tokenizer.path or the model's own
    return Path(params.cache_dir) / "base" / base_key(params, documents_sha, tokenizer_fingerprint(tokenizer))


def base_cached(params: Params) -> bool:
    """Whether a complete base of ``params`` is cached, building and writing nothing (the dry run).
    The documents are loaded (and a cached tokenizer looked up) only when some cached base was
    pretrained from the same params sections; no cached tokenizer means no base either."""
    section_hash = params.section_hash(*BASE_SECTIONS, "compile")
    candidates = []
    for sidecar in (Path(params.cache_dir) / "base").glob("*/run.json"):
        try:
            candidates.append(json.loads(sidecar.read_text()).get("params_hash"))
        except (OSError, ValueError, AttributeError):
            continue
    if section_hash not in candidates:
        return False
    docs = _train_documents(params)
    documents_sha = documents_hash(docs)
    if params.tokenizer.path or params.model.name_or_path:
        tokenizer = get_tokenizer(params, docs)  # loads that tokenizer, trains nothing
    else:
        cached = tokenizer_dir(params, documents_sha)
        if not (cached / "tokenizer.json").is_file():
            return False
        tokenizer = load_tokenizer(cached)
    return base_complete(base_dir(params, tokenizer, documents_sha), params)


def stage_path(params: Params, stage: str, tokenizer=None, documents_sha: str | None = None) -> Path:
    """The folder of stage checkpoint ``stage`` of the base (``tokenizer``, ``documents_sha``: as for
    :func:`base_dir`)."""
    if stage not in params.pretrain.stages:
        raise FactacqError(f"inject.stage: unknown stage {stage!r} "
                           f"(pretrain.stages: {sorted(params.pretrain.stages)})")
    return base_dir(params, tokenizer, documents_sha) / "stages" / stage


def base_complete(path: Path, params: Params) -> bool:
    """Whether the base folder ``path`` is complete: its run.json and every stage's checkpoint."""
    return (path / "run.json").is_file() and all(
        (path / "stages" / s / "state.json").is_file() for s in params.pretrain.stages)


def pretrain(params: Params, force: bool = False) -> Path:
    """Pretrain the base model and save the stage checkpoints; reuse a complete base with the same
    :func:`base_key` (params sections, documents, tokenizer) unless ``force``. Returns the base
    folder (see docs/architecture.md). A diverging loss stops it with a FactacqError and no base."""
    corpus = prepare_corpus(params)
    tokenizer, documents_sha = corpus.tokenizer, corpus.documents_sha
    out = base_dir(params, tokenizer, documents_sha)
    if base_complete(out, params) and not force:
        return out
    device = resolve_device(params.device)
    stream = corpus.stream
    pp = params.pretrain
    state = new_state(params, len(tokenizer), tokenizer.eos_token_id, device)
    stage_at: dict[int, list[str]] = {}  # step -> the stages saved there (two names may share one)
    for name, step in pp.stages.items():
        stage_at.setdefault(step, []).append(name)
    log = []
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:

        def on_step(state: TrainState, m: dict) -> None:
            if state.step % pp.log_every == 0 or state.step in stage_at or state.step == 1:
                log.append({"step": state.step, "loss": m["loss"], "lr": m["lr"],
                            "grad_norm": m["grad_norm"], "tokens": state.tokens,
                            "tokens_per_s": m["tokens_per_s"]})
            for stage in stage_at.get(state.step, ()):
                save_checkpoint(state, tmp / "stages" / stage,
                                extra={"stage": stage, "base": out.name}, tokenizer=tokenizer)

        train(state, pp.steps, stream_batches(stream, pp.batch_size), on_step=on_step,
              micro_batch_size=pp.micro_batch_size, grad_clip=params.optim.grad_clip, device=device,
              compile=params.compile, desc="pretrain")
        pd.DataFrame(log).to_parquet(tmp / "pretrain_log.parquet", index=False)
        (tmp / "params.yaml").write_text(dump_params(params))
        run = {"kind": "pretrain", "params_hash": params.section_hash(*BASE_SECTIONS, "compile"),
               "base_key": out.name, "documents_sha256": documents_sha,
               "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "complete": True,
               "seconds": round(time.perf_counter() - t0, 2), "n_parameters": count_parameters(state.model),
               "stream": {"n_rows": stream.n_rows, "seq_len": stream.seq_len,
                          "n_tokens": int(len(stream.tokens)), "path": str(stream.path)},
               "epochs": state.data_position / stream.n_rows,
               "stages": dict(pp.stages), "provenance": provenance(device)}
        (tmp / "run.json").write_text(json_text(run, indent=2))
    return out


def cmd_pretrain(args) -> int:
    """`factacq pretrain PARAMS [--force]` (from the params file's project root): prints each
    stage's loss, the mean logged loss over its last ``analysis.stage_loss_steps`` steps."""
    path = Path(args.params).resolve()
    with working_dir(project_root(path)):
        params = load_params(path)
        out = pretrain(params, force=getattr(args, "force", False)).resolve()
    log = pd.read_parquet(out / "pretrain_log.parquet")
    n = params.analysis.stage_loss_steps  # a stage's loss: the mean over its last n steps
    print(f"base: {out}")
    for name, step in sorted(params.pretrain.stages.items(), key=lambda kv: kv[1]):
        loss = log.loc[log.step.between(step - n + 1, step), "loss"].mean()
        print(f"  stage {name:>8} step {step:>6}  loss {loss:.3f}  {out / 'stages' / name}")
    return 0
