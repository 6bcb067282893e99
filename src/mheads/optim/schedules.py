"""Learning-rate schedules by iteration (paper section 3.1).

- ``fixed``: the base rate throughout.
- ``steps``: multiply by ``gamma`` at each listed iteration (CIFAR10-Quick: 0.001, then 0.0001
  from 4,000 of 5,000).
- ``every``: multiply by ``gamma`` every ``every`` iterations (ILSVRC-NiN: every 200,000).
- ``cosine``: half a cosine from the base rate to 0 over the run (``total`` iterations), the modern recipe.
- ``plateau``: the paper's CIFAR100-NiN rule: multiply by ``gamma`` whenever the mean training loss over a
  window of ``window`` iterations fails to drop by at least ``threshold`` (1%) relative to the previous
  window's mean.

Any kind may start with a linear warm-up: over the first ``warmup`` iterations the rate rises from
``base / warmup`` to the kind's own rate (cosine then decays over the remaining iterations).

A schedule's mutable state (only ``plateau`` has any) is plain numbers, so checkpoints stay
``weights_only``-loadable.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

SCHEDULE_KINDS = ("fixed", "steps", "every", "cosine", "plateau")


@dataclass
class Schedule:
    kind: str = "fixed"
    base_lr: float = 0.001
    gamma: float = 0.1
    milestones: list[int] = field(default_factory=list)
    every: int = 0
    window: int = 1000
    threshold: float = 0.01
    total: int = 0  # cosine: the run's length in iterations
    warmup: int = 0  # linear warm-up iterations (any kind)
    # plateau state
    _factor: float = 1.0
    _sum: float = 0.0
    _count: int = 0
    _prev_mean: float = math.inf

    def lr_at(self, iteration: int) -> float:
        """Learning rate used for the update at 0-based ``iteration``."""
        lr = self._kind_lr(iteration)
        if iteration < self.warmup:
            lr *= (iteration + 1) / self.warmup
        return lr

    def _kind_lr(self, iteration: int) -> float:
        if self.kind == "fixed":
            return self.base_lr
        if self.kind == "steps":
            return self.base_lr * self.gamma ** bisect.bisect_right(sorted(self.milestones), iteration)
        if self.kind == "every":
            return self.base_lr * self.gamma ** (iteration // self.every)
        if self.kind == "cosine":
            span = max(1, self.total - self.warmup)
            progress = min(1.0, max(0.0, (iteration - self.warmup) / span))
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr * self._factor

    def observe(self, loss: float) -> None:
        """Record one iteration's training loss (drives ``plateau``; a no-op for the other kinds)."""
        if self.kind != "plateau":
            return
        self._sum += float(loss)
        self._count += 1
        if self._count < self.window:
            return
        mean = self._sum / self._count
        if mean > (1.0 - self.threshold) * self._prev_mean:
            self._factor *= self.gamma
        self._prev_mean, self._sum, self._count = mean, 0.0, 0

    def state_dict(self) -> dict:
        prev = self._prev_mean if math.isfinite(self._prev_mean) else -1.0
        return {"factor": self._factor, "sum": self._sum, "count": self._count, "prev_mean": prev}

    def load_state_dict(self, state: dict) -> None:
        self._factor = float(state["factor"])
        self._sum = float(state["sum"])
        self._count = int(state["count"])
        prev = float(state["prev_mean"])
        self._prev_mean = math.inf if prev < 0 else prev
