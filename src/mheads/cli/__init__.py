"""The ``mheads`` command line (``main``) and its demo (``demo``): thin layers over the library."""

from mheads.cli.commands import main

__all__ = ["main"]
