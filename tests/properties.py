"""How many examples a property test (hypothesis) draws. The fast tier (``pytest``) runs every property on a
tenth of the count its test names (at least 10, never more than named), so each law still runs on every
commit; ``MHEADS_PROPERTIES=full`` runs the full counts: ``MHEADS_PROPERTIES=full pytest -m hypothesis`` runs
every property test in full (CI does, after the slow tier)."""

from __future__ import annotations

import os

from hypothesis import settings

MODES = ("fast", "full")
MODE = os.environ.get("MHEADS_PROPERTIES", "fast")
if MODE not in MODES:
    raise ValueError(f"MHEADS_PROPERTIES: got {MODE!r}; expected one of {', '.join(MODES)}")


def examples(full: int, fast: int | None = None) -> int:
    """``full`` under ``MHEADS_PROPERTIES=full``; else ``fast`` (default: a tenth of ``full``, at least 10,
    at most ``full``)."""
    if MODE == "full":
        return full
    return min(full, max(10, full // 10)) if fast is None else fast


def property_settings(full: int, fast: int | None = None, **kw) -> settings:
    """``settings(max_examples=examples(full, fast), deadline=None, **kw)``: no deadline, as the shared
    2-core machine's load makes any per-example time limit flaky."""
    return settings(max_examples=examples(full, fast), deadline=None, **kw)
