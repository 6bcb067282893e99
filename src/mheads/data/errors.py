"""The one error type of `mheads.data`: bad input data, reported in one line."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data path or file is missing, empty, wrongly laid out, corrupt or inconsistent.

    The message is a single line that names the path (for archives ``archive.tar.gz:member``), the
    problem and what was expected, so the command line can print it as is.
    """

    def __init__(self, message: str):
        # Nested exception texts (OS, zlib, Pillow) sometimes carry newlines; keep the message one line.
        super().__init__(" ".join(str(message).split()))
