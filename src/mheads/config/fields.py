"""The checks every config field goes through, and the error they raise: one line naming the field (its dotted
path), the bad value and what is allowed."""

from __future__ import annotations

from typing import Any, NoReturn

from mheads.core.checks import check_choice, check_int, check_number

__all__ = ["FLOAT32_MAX", "MAX_COUNT", "ConfigError", "choice", "fail", "integer", "number"]


class ConfigError(ValueError):
    """A bad configuration value; the message names the field, the value and what is allowed."""


def fail(path: str, value: Any, allowed: str) -> NoReturn:
    """Raise the :class:`ConfigError` of field ``path``: ``value`` is not what is ``allowed``."""
    raise ConfigError(f"{path}: got {value!r}; expected {allowed}")


# Every count in a config is at most this (2**53: still exact in float64, far inside int64), so no arithmetic
# the run does with it (iterations x accumulate x batch size, seeds, indices) can overflow.
MAX_COUNT = 2**53
# The optimizers compute in float32: a learning rate (times members, times weight decay) stays finite there.
FLOAT32_MAX = 3.4028234663852886e38


def integer(path: str, v: Any, low: int | None = None, high: int | None = None) -> None:
    """An integer in [``low``, ``high``]; without ``high``, at most :data:`MAX_COUNT`."""
    check_int(path, v, low, high, error=ConfigError)
    if high is None and v > MAX_COUNT:
        fail(path, v, f"an integer at most {MAX_COUNT} (2**53)")


def number(path: str, v: Any, low: float, *, strict: bool = False, high: float | None = None) -> None:
    """A finite number >= ``low`` (> with ``strict``), at most ``high`` where given."""
    check_number(path, v, low, high, strict_low=strict, error=ConfigError)


def choice(path: str, v: Any, allowed) -> None:
    """One of ``allowed``."""
    check_choice(path, v, allowed, error=ConfigError)
