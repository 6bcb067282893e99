"""An order-independent float sum, so that streamed metrics equal whole-set metrics bit for bit.

Summing per-example floats in batches rounds differently from summing them all at once. `ExactSum` keeps
the running total exactly (Shewchuk's non-overlapping partials, the algorithm behind `math.fsum`), so its
value is the correctly rounded sum of everything added, whatever the order or batching.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["ExactSum"]


class ExactSum:
    """Exact running sum of Python floats; `value()` is the correctly rounded total."""

    def __init__(self) -> None:
        # Non-overlapping floats of increasing magnitude whose exact sum is the total.
        self._partials: list[float] = []
        # inf/nan cannot live in the partials; IEEE addition of them alone is order-independent
        # (inf + -inf = nan, nan absorbs everything), so they are summed on the side.
        self._non_finite: float | None = None

    def add(self, values: Iterable[float]) -> ExactSum:
        """Add every value; returns self."""
        partials = self._partials
        for x in values:
            x = float(x)
            if not math.isfinite(x):
                self._non_finite = x if self._non_finite is None else self._non_finite + x
                continue
            i = 0
            for y in partials:
                if abs(x) < abs(y):
                    x, y = y, x
                hi = x + y
                lo = y - (hi - x)
                if lo:
                    partials[i] = lo
                    i += 1
                x = hi
            partials[i:] = [x]
        return self

    def merge(self, other: ExactSum) -> ExactSum:
        """Add everything `other` holds, exactly; returns self."""
        self.add(list(other._partials))  # a copy: `other` may be self
        if other._non_finite is not None:
            self.add((other._non_finite,))
        return self

    def value(self, *extra: float) -> float:
        """The correctly rounded sum of everything added plus `extra` (floats, such as integer counts)."""
        if self._non_finite is not None:
            return self._non_finite
        return math.fsum([*self._partials, *extra])
