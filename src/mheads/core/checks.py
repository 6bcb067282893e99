"""The one validator for arguments and config fields: integers, numbers, choices and iteration lists.

Every message has the same shape, ``<field>: got <value>; expected <what is allowed>``, so an error names the
field, the bad value and what would be accepted. ``bool`` is never an integer here (``True`` is not a member
count). Library functions raise ``ValueError``; the config passes its own ``ConfigError`` (a ``ValueError``)
as ``error``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_int", "check_iterations", "check_number", "closest", "is_int", "is_number"]


def is_int(value: Any) -> bool:
    """A Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(low: float | None, high: float | None, strict_low: bool = False) -> str:
    parts = ([f"{'>' if strict_low else '>='} {low}"] if low is not None else []) + (
        [f"<= {high}"] if high is not None else []
    )
    return (" " + " and ".join(parts)) if parts else ""


def check_int(
    field: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    error: type[Exception] = ValueError,
) -> int:
    """``value`` if it is an integer within ``[low, high]`` (either bound optional)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        span = f" in {low}..{high}" if low is not None and high is not None else _bounds(low, high)
        raise error(f"{field}: got {value!r}; expected an integer{span}")
    return value


def check_number(
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    strict_low: bool = False,
    error: type[Exception] = ValueError,
) -> float:
    """``value`` if it is a finite number within the bounds (``strict_low``: strictly above ``low``); NaN and
    infinities are refused whatever the bounds."""
    ok = is_number(value) and (high is None or value <= high)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if not ok:
        raise error(f"{field}: got {value!r}; expected a number{_bounds(low, high, strict_low)}")
    return value


def check_iterations(field: str, value: Any, *, error: type[Exception] = ValueError) -> list[int]:
    """A list of iteration numbers (each an integer >= 1), e.g. learning-rate milestones."""
    if not isinstance(value, list):
        raise error(f"{field}: got {value!r}; expected a list of iterations")
    for i, it in enumerate(value):
        check_int(f"{field}[{i}]", it, 1, error=error)
    return value


def closest(word: Any, options: Iterable[Any]) -> str | None:
    """The option nearest to a mistyped word, or None."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.5)
    if close:
        return close[0]
    prefixed = [o for o in options if str(word).startswith(o) or o.startswith(str(word))]
    return max(prefixed, key=len) if prefixed else None


def check_choice(
    field: str, value: Any, allowed: Iterable[Any], *, error: type[Exception] = ValueError
) -> Any:
    """``value`` if it is one of ``allowed``; otherwise the error suggests the closest option."""
    allowed = tuple(allowed)
    if value not in allowed:
        close = closest(value, allowed)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise error(f"{field}: got {value!r}{hint}; expected one of {', '.join(map(str, allowed))}")
    return value
