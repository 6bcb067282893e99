"""The plain training loop the examples share until `mheads.fit` takes a task: full or mini batches, Adam, the
task's ensemble loss on the TreeNet's member outputs `(M, B, ...)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from mheads.tasks import Task


def train(model: nn.Module, task: Task, loss: str, batches: Callable[[int], Iterator[tuple[Any, Any]]], *,
          steps: int, lr: float, seed: int, **params: Any) -> list[float]:
    """`steps` Adam steps on `task.loss(loss, model(x), y)`; `batches(step)` yields the next `(x, y)`.
    Returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # stochastic losses (relaxed, annealed WTA) draw here
    model.train()
    history = []
    for step in range(steps):
        x, y = next(batches(step))
        opt.zero_grad()
        value = task.loss(loss, model(x), y, generator=generator, **params).loss
        value.backward()
        opt.step()
        history.append(float(value.detach()))
    model.eval()
    return history


def repeat(x: Any, y: Any) -> Callable[[int], Iterator[tuple[Any, Any]]]:
    """Full-batch training: every step sees `(x, y)`."""
    return lambda step: iter([(x, y)])


def minibatches(loader: torch.utils.data.DataLoader) -> Callable[[int], Iterator[tuple[Any, Any]]]:
    """Mini-batches from `loader`, cycled over epochs."""
    state: dict[str, Iterator] = {}

    def next_batch(step: int) -> Iterator[tuple[Any, Any]]:
        try:
            return iter([next(state["it"])])
        except (KeyError, StopIteration):
            state["it"] = iter(loader)
            return iter([next(state["it"])])

    return next_batch


@torch.no_grad()
def outputs(model: nn.Module, loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The member outputs `(M, N, ...)` and targets `(N, ...)` over a whole loader."""
    model.eval()
    out, targets = [], []
    for x, y in loader:
        out.append(model(x))
        targets.append(y)
    return torch.cat(out, dim=1), torch.cat(targets)
