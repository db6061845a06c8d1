"""The papermill pipeline: a condition is a params file; running it renders the notebooks into its folder.

`factacq run PARAMS` executes the per-condition notebooks (pretrain -> inject -> acquisition ->
forgetting) into `outputs/<name>/notebooks/`; `factacq sweep SWEEP` runs many conditions, skipping those
already complete, then renders the cross-condition notebook. `--dry-run` validates and prints the plan,
with a CPU time estimate measured on the params' own model. The notebooks' first cells
(:func:`notebook_setup`, :func:`sweep_setup`) and their run steps (:func:`prepare_base`,
:func:`ensure_injection_run`) live here too; what they read back is factacq.analyze's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from factacq import inject
from factacq.analyze import format_summary
from factacq.findings import format_findings
from factacq.atomic import atomic_path
from factacq.errors import FactacqError
from factacq.params import (Params, SafeName, dump_params, folders_from_environment, load_params,
                            parse_params, project_root, read_yaml, validation_error, working_dir)
from factacq.plan import describe_plan
from factacq.pretrain import pretrain
from factacq.runlog import load_sidecar, write_json_atomic
from factacq.train import Batch, keep_freed_memory, new_state, train_step

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
CONDITION_NOTEBOOKS = ("01_pretrain.ipynb", "02_inject.ipynb", "03_acquisition.ipynb", "04_forgetting.ipynb")
CONDITIONS_NOTEBOOK = "05_conditions.ipynb"
BEYOND_NOTEBOOK = "06_beyond.ipynb"
COMPLETE = "COMPLETE.json"
CONDITION = "condition.json"  # the sidecar that marks a condition folder as made by factacq
# the folder this process started in (a notebook's kernel: the notebook's own folder), against
# which a notebook's relative `root` resolves, so that running its first cell again does not climb
START_DIR = Path.cwd()


def _echo(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- what the notebooks call


def notebook_setup(params_path: str, run_dir: str | None, root: str = "..") -> tuple[Params, Path]:
    """First cell of every condition notebook: load and validate the params, and make (or reuse)
    the condition folder ``run_dir`` (None: <output_dir>/<name>); returns (params, run_dir).

    ``params_path`` and the relative paths inside the params are relative to the project root
    ``root`` (see :func:`_work_from`). A folder that is not empty and that factacq did not make is
    refused, not written into."""
    _work_from(root)
    params = load_params(params_path)
    run_dir = Path(run_dir) if run_dir is not None else params.run_dir
    mark_condition_folder(run_dir, params, params_path)
    return params, run_dir.resolve()


def sweep_setup(sweep_dir: str | None, run_dirs: dict, root: str = "..",
                params_path: str | None = None, replicates: dict | None = None) -> tuple:
    """First cell of the cross-condition notebook: returns the sweep folder and condition -> run
    folder, and with ``replicates`` (condition -> run folders of its seeds) that mapping too, as a
    third element. A sweep_dir or run folder of None (the notebook's defaults) comes from the
    params at params_path: <output_dir>/<name>_sweep and <output_dir>/<name>."""
    _work_from(root)
    folders = [*run_dirs.values(), *(d for ds in (replicates or {}).values() for d in ds)]
    if sweep_dir is None or None in folders:
        if params_path is None:
            raise FactacqError("sweep_setup: a sweep_dir or run folder of None needs params_path")
        default = load_params(params_path).run_dir
        sweep_dir = default.with_name(f"{default.name}_sweep") if sweep_dir is None else sweep_dir
        run_dirs = {name: default if d is None else d for name, d in run_dirs.items()}
        if replicates is not None:
            replicates = {name: [default if d is None else d for d in ds]
                          for name, ds in replicates.items()}
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    missing = [name for name, d in run_dirs.items() if not (Path(d) / "tables").is_dir()]
    missing += [f"{name} ({d})" for name, ds in (replicates or {}).items() for d in ds
                if not (Path(d) / "tables").is_dir()]
    if missing:
        raise FactacqError(f"conditions without analysis tables: {missing}")
    out = Path(sweep_dir).resolve(), {name: Path(d).resolve() for name, d in run_dirs.items()}
    if replicates is None:
        return out
    return (*out, {name: [Path(d).resolve() for d in ds] for name, ds in replicates.items()})


def beyond_setup(sweep_dir: str | None, replicates: dict, root: str = "..",
                 params_path: str | None = None) -> tuple[Path, dict]:
    """First cell of the beyond-the-paper notebook (06): returns the sweep folder and condition ->
    run folders of its seeds. A run folder of None (the notebook's defaults, for nbval) is the
    injection run of the params at ``params_path``, run here if it is not there yet (its base
    pretrained or reused first); a sweep_dir of None is <output_dir>/<name>_sweep of those params.
    The experiments read run logs and run.json plans only, not the per-run analysis tables."""
    _work_from(root)
    folders = [d for ds in replicates.values() for d in ds]
    if sweep_dir is None or None in folders:
        if params_path is None:
            raise FactacqError("beyond_setup: a sweep_dir or run folder of None needs params_path")
        params = load_params(params_path)
        default = params.run_dir
        sweep_dir = default.with_name(f"{default.name}_sweep") if sweep_dir is None else sweep_dir
        if None in folders:
            mark_condition_folder(default, params, params_path)
            prepare_base(params)
            ensure_injection_run(params, default)
        replicates = {name: [default if d is None else d for d in ds]
                      for name, ds in replicates.items()}
    missing = [f"{name} ({d})" for name, ds in replicates.items() for d in ds
               if not (Path(d) / "run.json").is_file()]
    if missing:
        raise FactacqError(f"conditions without a run (run.json): {missing}")
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    return Path(sweep_dir).resolve(), {name: [Path(d).resolve() for d in ds]
                                       for name, ds in replicates.items()}


def _work_from(root: str | Path) -> None:
    """Make the project root ``root`` (relative: to :data:`START_DIR`) the kernel's working
    folder, unless it already is.

    Under `factacq run` / `factacq sweep` it already is: papermill starts the kernel there
    (:func:`execute_notebook`'s ``cwd``), so nothing moves. A notebook opened in JupyterLab (`make
    lab`) or executed by nbval starts in notebooks/, and there this one ``os.chdir`` remains:
    the loaders open the params' relative paths (sources, cache_dir, output_dir) against the
    current folder, and those paths cannot be made absolute on loading, because the params record
    them as written (they enter the params hash, hence run ids and cache keys)."""
    root = (START_DIR / root).resolve()
    if Path.cwd().resolve() != root:
        os.chdir(root)


def prepare_base(params: Params) -> Path | None:
    """Pretrain the condition's base (or reuse the cached one); None for a Hugging Face model."""
    mp = params.model
    if mp.name_or_path is not None:
        what = f"GGUF file {mp.gguf_file}" if mp.gguf_file else f"@ {mp.revision or 'main'}"
        print(f"{mp.name_or_path} {what}: a pretrained model, nothing to pretrain")
        return None
    return pretrain(params)


def pretrain_log(base: Path | None) -> pd.DataFrame | None:
    """The base's logged loss curve, or None for a hub model."""
    return None if base is None else pd.read_parquet(Path(base) / "pretrain_log.parquet")


def ensure_injection_run(params: Params, run_dir: Path) -> Path:
    """Run the injection condition into run_dir, resume it if it was killed, or keep a finished one."""
    sidecar = Path(run_dir) / "run.json"
    if sidecar.is_file():
        data = load_sidecar(run_dir)
        same = parse_params(data.get("params", {}), str(sidecar)).section_hash() == params.section_hash()
        if same and data.get("complete"):
            print(f"{run_dir}: finished run with the same params, reused")
            return Path(run_dir)
        if same:
            print(f"{run_dir}: unfinished run with the same params, resuming")
            return inject.resume(run_dir)
    return inject.run_inject(params, run_dir)


# ---------------------------------------------------------------- one condition


def mark_condition_folder(run_dir: Path, params: Params, params_path) -> None:
    """Create ``run_dir`` (refusing a non-empty folder factacq did not make) and write its
    condition.json sidecar, which marks it as factacq's: only such folders are ever replaced."""
    run_dir = Path(run_dir)
    inject.check_replaceable(run_dir, "condition folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONDITION).is_file():
        write_json_atomic(run_dir / CONDITION, {"kind": "condition", "name": params.name,
                                                "params_hash": params.section_hash(),
                                                "params_path": str(params_path)})


def is_complete(run_dir: Path, params: Params) -> bool:
    marker = Path(run_dir) / COMPLETE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("params_hash") == params.section_hash()
    except (ValueError, AttributeError):  # a damaged marker: not complete, the condition runs again
        return False


def execute_notebook(name: str, out_dir: Path, parameters: dict, notebooks_dir: Path | None = None,
                     cwd: Path | None = None) -> Path:
    """Render one notebook with papermill, its kernel started in ``cwd`` (the project root; None:
    the current folder). A failure keeps the rendered notebook (with its error); an interrupt
    (Ctrl-C) marks the partial render as interrupted. The kernel shows training progress on this
    process's stderr (FACTACQ_PROGRESS=terminal, see train.train), not in the notebook."""
    import papermill  # deferred: papermill (and the Jupyter client it starts) only for rendering

    source = Path(notebooks_dir or NOTEBOOKS_DIR) / name
    if not source.is_file():
        raise FactacqError(f"{source}: notebook not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    progress = os.environ.get("FACTACQ_PROGRESS")
    if progress != "0":
        os.environ["FACTACQ_PROGRESS"] = "terminal"  # the kernel inherits it
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                   cwd=str(cwd) if cwd is not None else None, progress_bar=False)
    except papermill.PapermillExecutionError as exc:
        raise FactacqError(f"{name} failed at cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                           f"rendered with its error at {target}") from None
    except KeyboardInterrupt:
        mark_interrupted(target)
        raise
    finally:
        if progress is None:
            os.environ.pop("FACTACQ_PROGRESS", None)
        else:
            os.environ["FACTACQ_PROGRESS"] = progress
    return target


def mark_interrupted(target: Path) -> None:
    """Mark a partial render as interrupted: a banner cell first, `factacq.status: interrupted` in
    its metadata, and every cell that did not finish as pending (papermill leaves them 'completed')."""
    import nbformat  # deferred with papermill: only a render needs it

    if not target.is_file():
        return
    try:
        nb = nbformat.read(str(target), as_version=4)
    except Exception:  # a half-written render: leave it, the banner cannot be added
        return
    ran = [c for c in nb.cells if c.get("cell_type") == "code" and c.get("execution_count")]
    last = nb.cells.index(ran[-1]) if ran else -1
    for i, cell in enumerate(nb.cells):
        if i >= last and cell.get("cell_type") == "code":
            cell.setdefault("metadata", {}).setdefault("papermill", {})["status"] = "pending"
    nb.metadata.setdefault("papermill", {})["exception"] = True
    nb.metadata["factacq"] = {"status": "interrupted",
                              "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    banner = nbformat.v4.new_markdown_cell(
        "**Interrupted.** This render stopped part-way (Ctrl-C): the cells from the last one that "
        "ran on are incomplete or did not run. Run the condition again to render it whole.")
    banner.metadata["tags"] = ["factacq-interrupted"]
    nb.cells.insert(0, banner)
    with atomic_path(target) as tmp:
        nbformat.write(nb, str(tmp))


def _replaceable_run_dir(run_dir: Path, params: Params) -> None:
    """--force deletes run_dir: only a factacq folder inside output_dir."""
    output_dir = Path(params.output_dir).resolve()
    if run_dir.resolve().parent != output_dir:
        raise FactacqError(f"{params.source}: name {params.name!r}: the run folder {run_dir} is not "
                           f"directly inside output_dir {output_dir}; refusing to delete it")
    if run_dir.is_symlink() or (any(run_dir.iterdir()) and not inject.made_by_factacq(run_dir)):
        raise FactacqError(f"{run_dir}: not made by factacq (no condition.json or run.json); --force "
                           f"refuses to delete it: move it away or choose another name")


def run_condition(params_path: str | Path, force: bool = False, notebooks_dir: Path | None = None,
                  echo=None, root: Path | None = None) -> Path:
    """Render the condition's notebooks into outputs/<name>/; skip if already complete (unless force).

    Relative paths in the params resolve against ``root`` (default: the params file's
    :func:`project_root`), whatever the current folder; the notebooks' kernels start there.
    ``force`` deletes the condition folder first, but only a folder factacq made (condition.json
    or run.json) directly inside output_dir. Training progress goes to the terminal (stderr), not
    into the rendered notebooks."""
    echo = echo or _echo
    params_path = Path(params_path).resolve()
    root = Path(root).resolve() if root is not None else project_root(params_path)
    with working_dir(root):
        params = load_params(params_path)
        run_dir = params.run_dir.resolve()
        if not force and is_complete(run_dir, params):
            echo(f"[factacq] {params.name}: complete, skipping ({run_dir})")
            return run_dir
        if force and run_dir.exists():
            _replaceable_run_dir(run_dir, params)
            shutil.rmtree(run_dir)
        mark_condition_folder(run_dir, params, params_path)
    (run_dir / COMPLETE).unlink(missing_ok=True)
    parameters = {"params_path": str(params_path), "run_dir": str(run_dir), "root": str(root)}
    started = time.time()
    for i, name in enumerate(CONDITION_NOTEBOOKS, 1):
        t0 = time.time()
        echo(f"[factacq] {params.name}: [{i}/{len(CONDITION_NOTEBOOKS)}] {name} ...")
        execute_notebook(name, run_dir / "notebooks", parameters, notebooks_dir, cwd=root)
        echo(f"[factacq] {params.name}: [{i}/{len(CONDITION_NOTEBOOKS)}] {name} done in {time.time() - t0:.0f} s")
    write_json_atomic(run_dir / COMPLETE, {"params_hash": params.section_hash(),
                                           "params_path": str(params_path),
                                           "seconds": round(time.time() - started, 1)})
    return run_dir


# ---------------------------------------------------------------- sweeps


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeName  # a folder under the sweep's folder
    params: str  # a params YAML (relative to the sweep file)
    overrides: dict = Field(default_factory=dict)


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeName
    output_dir: str = "outputs"
    conditions: list[Condition] = Field(min_length=1)
    # comparisons the cross-condition notebook draws: label -> list of condition names
    compare: dict[str, list[str]] = Field(default_factory=dict)
    # conditions whose own findings (F1, F2, F3, F7, F8) the findings table gives besides the main
    # condition's (default, else the first), e.g. the paper's data beside the generator's
    findings: list[str] = Field(default_factory=list)
    # replicates: each condition runs once per seed, as <name>_seed<seed>, with the SEED_FIELDS
    # set to the seed; seed_base: pretrain.seed too (each seed then trains its own base)
    seeds: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(None, min_length=1)
    seed_base: StrictBool = False
    # the cross-condition notebook rendered after the runs: 05_conditions (the paper's findings
    # F1-F8) or 06_beyond (issue 12's experiments: params/sweep_beyond.yaml)
    notebook: Literal["05_conditions.ipynb", "06_beyond.ipynb"] = CONDITIONS_NOTEBOOK
    # further papermill parameters of that notebook (06's horizon, fitted and held-out cohorts, ...)
    notebook_parameters: dict = Field(default_factory=dict)


# the params fields a sweep's seeds set (and, with seed_base, BASE_SEED_FIELD); analysis.seed, the
# bootstrap's, stays as it is
SEED_FIELDS = (("knowledge", "assign_seed"), ("probe", "foil_seed"), ("inject", "seed"))
BASE_SEED_FIELD = ("pretrain", "seed")


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    data = read_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise FactacqError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    try:
        sweep = Sweep.model_validate(folders_from_environment(data, ("output_dir",)))
    except ValidationError as exc:
        raise validation_error(exc, str(path)) from None
    names = [c.name for c in sweep.conditions]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FactacqError(f"{path}: duplicate condition name(s) {dupes}")
    for label, members in sweep.compare.items():
        unknown = sorted(set(members) - set(names))
        if unknown:
            raise FactacqError(f"{path}: compare.{label}: unknown condition(s) {unknown}")
    unknown = sorted(set(sweep.findings) - set(names))
    if unknown:
        raise FactacqError(f"{path}: findings: unknown condition(s) {unknown}")
    check_notebook_parameters(path, sweep)
    seeds = sweep.seeds or []
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise FactacqError(f"{path}: duplicate seed(s) {dupes}")
    if sweep.seed_base and not seeds:
        raise FactacqError(f"{path}: seed_base: true needs seeds")
    replicate_conditions(path, sweep)  # a condition's overrides must leave the seeds' fields alone
    return sweep


# the cross-condition notebook's parameters that factacq sweep sets itself
SWEEP_PARAMETERS = ("sweep_dir", "run_dirs", "replicates", "compare", "root", "findings_conditions")


def check_notebook_parameters(path: Path, sweep: Sweep) -> None:
    """A sweep's notebook_parameters must be parameters of its notebook (its `parameters` cell),
    other than those factacq sweep sets itself; one line naming the first that is not."""
    import papermill  # deferred: papermill (and the Jupyter client it starts) only for notebooks

    given = sweep.notebook_parameters
    if not given:
        return
    clash = sorted(set(given) & set(SWEEP_PARAMETERS))
    if clash:
        raise FactacqError(f"{path}: notebook_parameters.{clash[0]}: set by factacq sweep itself")
    known = papermill.inspect_notebook(str(NOTEBOOKS_DIR / sweep.notebook))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise FactacqError(f"{path}: notebook_parameters.{unknown[0]}: not a parameter of "
                           f"{sweep.notebook} (its parameters: {', '.join(sorted(known))})")


def replicate_conditions(sweep_path: str | Path, sweep: Sweep) -> dict[str, list[Condition]]:
    """Condition name -> the runs it stands for: itself without seeds; with seeds one condition
    per seed, named f"{name}_seed{seed}", whose overrides are the condition's plus the seed at
    :data:`SEED_FIELDS` (and, with seed_base, :data:`BASE_SEED_FIELD`). A condition whose own
    overrides set one of those fields is refused."""
    if not sweep.seeds:
        return {c.name: [c] for c in sweep.conditions}
    fields = SEED_FIELDS + ((BASE_SEED_FIELD,) if sweep.seed_base else ())
    out = {}
    for cond in sweep.conditions:
        where = f"{sweep_path}: condition {cond.name!r}"
        for section, field in fields:
            part = cond.overrides.get(section, {})
            if not isinstance(part, dict):
                raise FactacqError(f"{where}: overrides.{section} must be a mapping, got {part!r}")
            if field in part:
                raise FactacqError(f"{where}: overrides.{section}.{field} is set by the sweep's "
                                   f"seeds; remove it from the condition")
        runs = []
        for seed in sweep.seeds:
            overrides = dict(cond.overrides)
            for section, field in fields:
                overrides[section] = {**overrides.get(section, {}), field: seed}
            try:
                runs.append(Condition(name=f"{cond.name}_seed{seed}", params=cond.params,
                                      overrides=overrides))
            except ValidationError as exc:
                raise validation_error(exc, where) from None
        out[cond.name] = runs
    return out


def condition_params(sweep_path: Path, sweep: Sweep, cond: Condition) -> tuple[Path, Params]:
    """Materialize a condition's params (base file + overrides + its name) as a YAML under the sweep folder."""
    base_path = (sweep_path.parent / cond.params).resolve()
    if not base_path.is_file():
        raise FactacqError(f"{sweep_path}: condition {cond.name!r}: params file {cond.params!r} not found")
    sweep_dir = Path(sweep.output_dir) / sweep.name
    params = load_params(base_path, {**cond.overrides, "name": cond.name, "output_dir": str(sweep_dir)},
                         source=f"{sweep_path} (condition {cond.name!r})")
    target = sweep_dir / "params" / f"{cond.name}.yaml"
    with atomic_path(target) as tmp:
        tmp.write_text(dump_params(params))
    return target, params


def run_sweep(sweep_path: str | Path, dry_run: bool = False, echo=None) -> Path:
    """Run every condition of a sweep (skipping complete ones; with seeds, every seed's run of
    it: :func:`replicate_conditions`), then render the cross-condition notebook. Relative paths (the sweep's output_dir, the conditions' params) resolve against the
    sweep file's :func:`project_root`, where the notebooks' kernels start."""
    echo = echo or _echo
    sweep_path = Path(sweep_path).resolve()
    root = project_root(sweep_path)
    with working_dir(root):
        sweep = load_sweep(sweep_path)
        groups = {name: [condition_params(sweep_path, sweep, c) for c in runs]
                  for name, runs in replicate_conditions(sweep_path, sweep).items()}
        materialized = [run for runs in groups.values() for run in runs]
        sweep_dir = (Path(sweep.output_dir) / sweep.name).resolve()
        if dry_run:
            if sweep.seeds:
                echo(f"sweep {sweep.name}: {len(groups)} condition(s) x seeds {sweep.seeds}"
                     f"{' (a base per seed)' if sweep.seed_base else ''} = {len(materialized)} runs")
            for path, params in materialized:
                print_plan(dry_run_plan(params, calibrate=False), echo=echo)
            return sweep_dir
        # condition -> the run folders of its seeds; run_dirs: its first (the one run without seeds)
        replicates = {name: [str(p.run_dir.resolve()) for _, p in runs] for name, runs in groups.items()}
        run_dirs = {name: dirs[0] for name, dirs in replicates.items()}
    for i, (path, params) in enumerate(materialized, 1):
        echo(f"[factacq] sweep {sweep.name}: condition {i}/{len(materialized)}: {params.name}")
        run_condition(root / path, echo=echo, root=root)
    parameters = {"sweep_dir": str(sweep_dir), "run_dirs": run_dirs, "replicates": replicates,
                  "compare": sweep.compare, "root": str(root), **sweep.notebook_parameters}
    if sweep.notebook == CONDITIONS_NOTEBOOK:
        parameters["findings_conditions"] = sweep.findings
    execute_notebook(sweep.notebook, sweep_dir / "notebooks", parameters, cwd=root)
    echo(f"[factacq] sweep {sweep.name}: done; cross-condition notebook at "
         f"{sweep_dir / 'notebooks' / sweep.notebook}")
    return sweep_dir


# ---------------------------------------------------------------- dry run


def dry_run_plan(params: Params, calibrate: bool = True) -> dict:
    """The plan of a condition without training: steps, rows, probe evaluations, tokens, FLOPs,
    and (``calibrate``, for a preset model) the CPU time :func:`estimate_seconds` measures."""
    plan = describe_plan(params)
    plan["name"] = params.name
    n_params = plan.get("model_parameters")
    if n_params:
        plan["train_flops"] = 6.0 * n_params * (plan.get("train_tokens", 0) + plan.get("pretrain_tokens", 0))
        plan["probe_flops"] = 2.0 * n_params * plan.get("probe_tokens", 0)
    if calibrate and params.model.preset is not None:
        plan.update(estimate_seconds(params, plan))
    return plan


def estimate_seconds(params: Params, plan: dict, steps: int = 3) -> dict:
    """The dry run's time estimate: a few eager training updates of the run's batch shape (the
    training loop's own state and step, with the allocator setting training uses; `compile: true`
    is timed as eager) and one probe-sized forward pass, on random tokens, scaled by the plan's
    steps and probe evaluations. A few seconds' measurement of this machine for these params, not
    a benchmark: speed targets are measured in benchmarks/."""
    keep_freed_memory()
    vocab, seq, rows = params.tokenizer.vocab_size, params.pretrain.seq_len, params.run_batch_size
    state = new_state(params, vocab, None, "cpu")
    batch = Batch(torch.randint(0, vocab, (rows, seq)), torch.ones(rows, dtype=torch.bool))

    def update():
        train_step(state, batch, micro_batch_size=params.pretrain.micro_batch_size,
                   grad_clip=params.optim.grad_clip)

    update()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        update()
    per_step = (time.perf_counter() - t0) / steps
    probe_ids = torch.randint(0, vocab, (64, min(seq, 48)))
    with torch.no_grad():
        t0 = time.perf_counter()
        state.model(input_ids=probe_ids)
        per_probe = (time.perf_counter() - t0) / 64
    total = (per_step * (plan.get("pretrain_steps_to_run", 0) + plan.get("steps", 0))
             + per_probe * plan.get("probe_evaluations", 0))
    return {"seconds_per_step": round(per_step, 4), "seconds_per_probe": round(per_probe, 6),
            "estimated_seconds": round(total, 1)}


def print_plan(plan: dict, echo=None) -> None:
    echo = echo or _echo
    echo(f"plan for {plan.get('name')}:")
    width = max(len(k) for k in plan)
    for key, value in plan.items():
        if key == "name":
            continue
        if isinstance(value, float) and (value >= 1e6 or key.endswith("flops")):
            value = f"{value:.3g}"
        echo(f"  {key:<{width}}  {value}")


# ---------------------------------------------------------------- CLI


def _print_summary(run_dir: Path, params: Params, echo=None) -> None:
    echo = echo or _echo
    echo("")
    echo(f"=== factacq: {params.name} ===")
    if params.notes:
        echo(params.notes.strip())
    summary = run_dir / "tables" / "summary.json"
    if summary.is_file():
        echo(format_summary(json.loads(summary.read_text())))
    found = run_dir / "tables" / "findings.csv"
    if found.is_file():  # written by notebook 04 (findings.run_findings)
        echo("")
        echo("findings (tables/findings.csv; rules in its `rule` column):")
        echo(format_findings(pd.read_csv(found), detail=False))
    echo(f"rendered notebooks: {run_dir / 'notebooks'}")
    echo(f"figures:            {run_dir / 'figures'}")
    echo(f"tables:             {run_dir / 'tables'}")
    echo(f"run log:            {run_dir / 'log'}")


def cmd_run(args) -> int:
    path = Path(args.params).resolve()
    with working_dir(project_root(path)):
        params = load_params(path)
        if args.dry_run:
            print_plan(dry_run_plan(params))
            return 0
    _print_summary(run_condition(path, force=args.force), params)
    return 0


def cmd_sweep(args) -> int:
    run_sweep(args.sweep, dry_run=args.dry_run)
    return 0
