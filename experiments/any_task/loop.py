"""The plain training loop behind `sweep_multimodal` (RESULTS.md section a's committed run; every other
example trains through `mheads.fit`): mini-batches drawn with replacement, Adam, the task's ensemble loss on
the TreeNet's member outputs `(M, B, ...)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from mheads.tasks import Task


def train(
    model: nn.Module,
    task: Task,
    loss: str,
    batches: Callable[[int], Iterator[tuple[Any, Any]]],
    *,
    steps: int,
    lr: float,
    seed: int,
    schedule: Callable[[int], dict[str, Any]] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **params: Any,
) -> list[float]:
    """`steps` Adam steps on `task.loss(loss, model(x), y)`; `batches(step)` yields the next `(x, y)`.
    `schedule(step)` gives loss parameters that change per step (annealed MCL's temperature), on top of
    `params`; `transform` maps the outputs before the loss (e.g. `uniform_scores`). Returns the loss per
    step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # stochastic losses (relaxed, annealed WTA) draw here
    model.train()
    history = []
    for step in range(steps):
        x, y = next(batches(step))
        opt.zero_grad()
        out = model(x) if transform is None else transform(model(x))
        now = params if schedule is None else {**params, **schedule(step)}
        value = task.loss(loss, out, y, generator=generator, **now).loss
        value.backward()
        opt.step()
        history.append(float(value.detach()))
    model.eval()
    return history


def sampled(
    x: torch.Tensor, y: torch.Tensor, batch: int, seed: int
) -> Callable[[int], Iterator[tuple[Any, Any]]]:
    """Mini-batches of `batch` rows drawn uniformly with replacement from in-memory tensors (no DataLoader's
    per-item collation: for tiny models it costs more than the step)."""
    generator = torch.Generator().manual_seed(seed)

    def next_batch(step: int) -> Iterator[tuple[Any, Any]]:
        index = torch.randint(0, len(x), (batch,), generator=generator)
        return iter([(x[index], y[index])])

    return next_batch
