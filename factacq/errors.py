"""The one exception type for bad input: its message is a single line naming file, field and value."""


class FactacqError(ValueError):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""
