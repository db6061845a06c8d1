"""The one exception type for bad input: its message is a single line naming file, field and value."""


class FactacqError(ValueError):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
