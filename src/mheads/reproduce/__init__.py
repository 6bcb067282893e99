"""``mheads reproduce``: rerun the paper's experiments from the recipes in ``experiments/`` and tabulate our
numbers next to the paper's."""

from mheads.reproduce.sweep import reproduce

__all__ = ["reproduce"]
