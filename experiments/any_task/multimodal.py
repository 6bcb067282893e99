"""Multimodal 1-D regression (issue 32, example a): y | x has two or three modes whose positions move with x.

x ~ U(-1, 1). With s = sin(pi x): modes at s + 0.8 and s - 0.8 (probability 1/2 each) for x <= 0; for x > 0 a
third mode at s + 2.0 appears, each of the three then with probability 1/3. y is a mode plus Gaussian noise of
standard deviation `NOISE`. The conditional mean lies between the modes, where no y falls: members trained
independently with MSE all predict it, while MCL can place one hypothesis per mode.

`sample(n, seed) -> (x (n, 1), y (n, 1))` float32; `modes(x) -> (points (B, 3), weights (B, 3))`;
`true_samples(x, n, seed) -> (B, n, 1)`: draws from the true p(y | x), for the EMD of
`mheads.tasks.multi_hypothesis`.
"""

from __future__ import annotations

import math

import torch

NOISE = 0.1


def modes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`x: (B, 1)` or `(B,)` -> the modes' positions `(B, 3)` and probabilities `(B, 3)` (the third 0 for
    x <= 0)."""
    x = x.reshape(-1)
    s = torch.sin(math.pi * x)
    points = torch.stack([s + 0.8, s - 0.8, s + 2.0], dim=-1)
    weights = torch.where(
        (x > 0).unsqueeze(-1), torch.full_like(points, 1 / 3), torch.tensor([0.5, 0.5, 0.0], dtype=x.dtype)
    )
    return points, weights


def _draw(x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`(B,)` x -> `(B, n)` draws of y | x."""
    points, weights = modes(x)
    which = torch.multinomial(weights, n, replacement=True, generator=generator)  # (B, n)
    return points.gather(1, which) + NOISE * torch.randn(which.shape, generator=generator)


def sample(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` pairs `(x (n, 1), y (n, 1))`, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g) * 2 - 1
    return x.unsqueeze(-1), _draw(x, 1, g)


def true_samples(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` draws of y for each x: `(B, n, 1)`."""
    return _draw(x.reshape(-1), n, torch.Generator().manual_seed(seed)).unsqueeze(-1)
