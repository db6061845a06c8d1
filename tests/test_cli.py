"""The `factacq` command line: every subcommand is listed and wired to its function, bad input is one
line on stderr with exit status 2, and so are argparse's usage errors."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from factacq.cli import COMMANDS, main
from factacq.errors import FactacqError

# the least each subcommand's arguments need, to reach its function
ARGV = {
    "data inspect": ["data", "inspect", "generate:4"],
    "pretrain": ["pretrain", "p.yaml"],
    "inject": ["inject", "p.yaml"],
    "resume": ["resume", "run"],
    "analyze": ["analyze", "run"],
    "run": ["run", "p.yaml"],
    "sweep": ["sweep", "s.yaml"],
    "convert-gguf": ["convert-gguf", "pkg:some_wheel", "--out", "hf"],
}
FACTACQ = Path(sys.executable).with_name("factacq")  # the console script pyproject.toml installs


def _choices(help_text: str) -> set[str]:
    """The subcommands a help text's usage line offers: `{a,b,c}`."""
    match = re.search(r"\{([\w,-]+)\}", help_text)
    assert match, help_text
    return set(match.group(1).split(","))


def _fake(monkeypatch, key: str, behaviour) -> list[argparse.Namespace]:
    """Replace the function COMMANDS names for ``key``; returns the namespaces it was called with."""
    module_name, func_name = COMMANDS[key].split(":")
    calls = []

    def fake(args):
        calls.append(args)
        return behaviour(args)

    monkeypatch.setattr(importlib.import_module(module_name), func_name, fake)
    return calls


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    top = capsys.readouterr().out
    assert _choices(top) == {key.split()[0] for key in COMMANDS}
    for name in _choices(top):
        assert re.search(rf"^\s+{name}\s+\S", top, re.M), f"{name} has no help line"
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    data_commands = {key.split()[1] for key in COMMANDS if key.startswith("data ")}
    assert _choices(capsys.readouterr().out) == data_commands


def test_console_script_help_lists_every_subcommand():
    done = subprocess.run([str(FACTACQ), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _choices(done.stdout) == {key.split()[0] for key in COMMANDS}


@pytest.mark.parametrize("key", sorted(COMMANDS))
def test_each_command_resolves_to_a_callable(key):
    module_name, func_name = COMMANDS[key].split(":")
    assert callable(getattr(importlib.import_module(module_name), func_name))


def test_every_subcommand_reaches_its_function(monkeypatch):
    assert set(ARGV) == set(COMMANDS), "a subcommand without an ARGV row here (or a stale row)"
    for i, (key, argv) in enumerate(ARGV.items()):
        calls = _fake(monkeypatch, key, lambda args, rc=i: rc)
        assert main(argv) == i  # the function's status is the command's
        assert len(calls) == 1 and calls[0].command == argv[0]
        assert getattr(calls[0], {"data inspect": "source", "resume": "run_dir", "analyze": "run_dir",
                                  "sweep": "sweep", "convert-gguf": "out"}.get(key, "params")) == argv[-1]
    _fake(monkeypatch, "analyze", lambda args: None)
    assert main(["analyze", "run"]) == 0  # a function that returns nothing succeeded


def test_options_reach_the_function(monkeypatch):
    calls = _fake(monkeypatch, "data inspect", lambda args: 0)
    main(["data", "inspect", "src", "--json", "--first", "3"])
    assert calls[0].json is True and calls[0].first == 3
    calls = _fake(monkeypatch, "run", lambda args: 0)
    main(["run", "p.yaml", "--dry-run", "--force"])
    assert calls[0].dry_run is True and calls[0].force is True
    calls = _fake(monkeypatch, "inject", lambda args: 0)
    main(["inject", "p.yaml", "--out", "somewhere"])
    assert calls[0].out == "somewhere"
    calls = _fake(monkeypatch, "convert-gguf", lambda args: 0)
    main(["convert-gguf", "folder", "--gguf-file", "m.gguf", "--out", "hf"])
    assert (calls[0].source, calls[0].gguf_file, calls[0].out, calls[0].revision) == \
        ("folder", "m.gguf", "hf", None)


def test_factacq_error_is_one_line_on_stderr_and_status_2(monkeypatch, capsys):
    def bad(args):
        raise FactacqError("p.yaml: pretrain.steps: 0 (expected at least 1)")

    _fake(monkeypatch, "pretrain", bad)
    assert main(["pretrain", "p.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "factacq: error: p.yaml: pretrain.steps: 0 (expected at least 1)\n"


def test_other_exceptions_are_not_swallowed(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug, not bad input")

    _fake(monkeypatch, "analyze", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["analyze", "run"])


def test_real_bad_input_through_the_console_script(tmp_path):
    """No fakes: the installed `factacq` exits 2 with one line naming what is wrong."""
    missing = tmp_path / "missing.yaml"
    done = subprocess.run([str(FACTACQ), "pretrain", str(missing)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("factacq: error: ")
    assert str(missing) in done.stderr


@pytest.mark.parametrize("argv, says", [
    ([], "required"),  # no subcommand
    (["nope"], "invalid choice"),
    (["data"], "required"),  # data without inspect
    (["pretrain"], "required"),  # no params file
    (["data", "inspect", "src", "--first", "three"], "invalid int value"),
    (["analyze", "run", "--no-such-option"], "unrecognized arguments"),
])
def test_usage_errors_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: factacq") and says in err


def test_the_module_runs_as_a_script():
    done = subprocess.run([sys.executable, "-m", "factacq.cli", "nope"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
