"""What ``mheads.fit`` returns: the trained ensemble, its metrics and its run folder (:class:`FitResult`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mheads.tree import TreeNet

__all__ = ["FitResult"]


@dataclass(frozen=True, eq=False, repr=False)
class FitResult(Mapping):
    """A finished ``mheads.fit``: ``.tree`` (the trained :class:`TreeNet`, in eval mode, on the training
    device), ``.metrics`` (the final metrics, as ``metrics.json`` holds them) and ``.run`` (the run folder,
    which ``mheads.load_run``, ``mheads.evaluate``, ``mheads.predict`` and ``mheads eval`` reopen).

    It is also a read-only mapping of the metrics, so ``result["oracle_acc"]`` reads as the dict ``fit``
    returned before it returned this."""

    tree: TreeNet
    run: Path
    _metrics: dict

    @property
    def metrics(self) -> dict[str, Any]:
        """The final metrics: a copy, yours to change or serialize (``json.dumps(result.metrics)``)."""
        return dict(self._metrics)

    def __getitem__(self, key: str) -> Any:
        return self._metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={self._metrics[k]:.4f}"
            for k in ("ensemble_mean_acc", "oracle_acc")
            if isinstance(self._metrics.get(k), float)
        )
        return (
            f"FitResult(run={str(self.run)!r}, members={self.tree.num_members}"
            f"{', ' + shown if shown else ''})"
        )
