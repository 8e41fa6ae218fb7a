"""The one exception type users catch: every bad input becomes a ``VeilError`` with a one-line message."""


class VeilError(Exception):
    """A user-facing error: the message names the file or value at fault and what is wrong with it."""
