"""factacq.errors: the one exception type for bad input, and `first_line` for one-line messages."""

from __future__ import annotations

import pytest

from factacq.errors import FactacqError, first_line


def test_factacq_error_is_a_value_error():
    # callers that catch ValueError (pydantic validators, argparse type functions) still catch it
    assert issubclass(FactacqError, ValueError)
    with pytest.raises(ValueError, match="p.yaml: model.preset: 'huge'"):
        raise FactacqError("p.yaml: model.preset: 'huge' is not a preset")


@pytest.mark.parametrize("exc, line", [
    (ValueError("one line"), "one line"),
    (ValueError("first\nsecond\nthird"), "first"),
    (RuntimeError("\n\n  indented first\nsecond"), "indented first"),  # stripped, then split
    (FactacqError("a.json: field x: 3\r\ndetails"), "a.json: field x: 3"),
    (OSError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
    (KeyError("name"), "'name'"),  # str() of the exception, as it prints
])
def test_first_line(exc, line):
    assert first_line(exc) == line


@pytest.mark.parametrize("exc, name", [
    (ValueError(), "ValueError"),
    (FactacqError(""), "FactacqError"),
    (RuntimeError("  \n\t"), "RuntimeError"),  # only whitespace: nothing to say but the type
])
def test_first_line_of_an_empty_message_is_the_type_name(exc, name):
    assert first_line(exc) == name


def test_first_line_of_a_raised_chained_exception():
    try:
        try:
            {}["missing"]
        except KeyError as inner:
            raise FactacqError("params.yaml: knowledge.source: 'x'\n(see above)") from inner
    except FactacqError as exc:
        assert first_line(exc) == "params.yaml: knowledge.source: 'x'"
        assert first_line(exc.__cause__) == "'missing'"
