"""The `factacq` command line. Each subcommand is a thin call into the module that does the work.

Bad input (a FactacqError) prints one line `factacq: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from factacq.errors import FactacqError

# subcommand -> "module:function"; each function takes the parsed argparse namespace, returns an int
COMMANDS = {
    "data inspect": "factacq.knowledge:cmd_inspect",
    "pretrain": "factacq.pretrain:cmd_pretrain",
    "inject": "factacq.inject:cmd_inject",
    "resume": "factacq.inject:cmd_resume",
    "analyze": "factacq.analyze:cmd_analyze",
    "run": "factacq.pipeline:cmd_run",
    "sweep": "factacq.pipeline:cmd_sweep",
    "convert-gguf": "factacq.models:cmd_convert_gguf",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factacq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect injected-knowledge sources")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    inspect = data_sub.add_parser("inspect", help="counts, passage lengths and the non-verbatim report")
    inspect.add_argument("source", help="a path, hf:<dataset id> or generate:<n>[,seed=S]")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--first", type=int, default=None, help="only the first N items")

    pretrain = sub.add_parser("pretrain", help="pretrain a base model and save stage checkpoints")
    pretrain.add_argument("params", help="params YAML")
    pretrain.add_argument("--force", action="store_true", help="retrain even if a cached base exists")

    inject = sub.add_parser("inject", help="continue from a stage checkpoint, inject knowledge, probe")
    inject.add_argument("params", help="params YAML")
    inject.add_argument("--out", default=None, help="run folder (default: <output_dir>/<name>)")

    resume = sub.add_parser("resume", help="continue a killed inject run to the same end")
    resume.add_argument("run_dir")

    analyze = sub.add_parser("analyze", help="metrics, decay fits and figures for a run folder")
    analyze.add_argument("run_dir")

    run = sub.add_parser("run", help="execute the notebooks for one condition with papermill")
    run.add_argument("params", help="params YAML")
    run.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    run.add_argument("--force", action="store_true", help="rerun even if complete")

    sweep = sub.add_parser("sweep", help="run many conditions, skipping completed ones")
    sweep.add_argument("sweep", help="sweep YAML")
    sweep.add_argument("--dry-run", action="store_true")

    convert = sub.add_parser("convert-gguf", help="write a GGUF model (dequantized, fp32) as a plain "
                             "HF folder (needs the extra: pip install 'factacq[real]')")
    convert.add_argument("source", help="a folder, pkg:<package>, a hub id or the .gguf file itself")
    convert.add_argument("--gguf-file", default=None,
                         help="the .gguf file in the source (default: a folder's single .gguf file)")
    convert.add_argument("--revision", default=None, help="hub revision (a hub id only)")
    convert.add_argument("--out", required=True, help="the HF folder to write (new, empty, or an "
                         "earlier conversion)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    key = args.command + (f" {args.data_command}" if args.command == "data" else "")
    module_name, func_name = COMMANDS[key].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except FactacqError as exc:
        print(f"factacq: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
