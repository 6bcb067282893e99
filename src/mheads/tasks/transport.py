"""Wasserstein (earth mover's) distances between weighted point sets, batched over leading axes.

- `wasserstein_1d`: exact W_p between two weighted 1-D point sets, from their quantile functions: with `F^-1`
  and `G^-1` piecewise constant, `W_p^p = int_0^1 |F^-1(u) - G^-1(u)|^p du` is a finite sum over the merged
  breakpoints of the two cumulative weights.
- `sliced_wasserstein`: for D > 1, an estimate: the sliced distance `(E_theta W_p^p(<theta, X>, <theta,
  Y>))^(1/p)` over `projections` random unit directions (seeded), each 1-D distance exact. It is a different
  (smaller) distance than W_p in D > 1, and random: used because an exact D > 1 transport needs an LP solver
  (scipy is not a dependency of mheads). In 1-D it equals `wasserstein_1d`.

Shapes: points `(..., N)` (1-D) or `(..., N, D)`, weights `(..., N)` non-negative (normalised here; None:
uniform).
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int, check_number

__all__ = ["sliced_wasserstein", "wasserstein_1d"]


def _weights(points: torch.Tensor, weights: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    if weights is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=points.dtype, device=points.device)
    if weights.shape != shape:
        raise ValueError(f"weights: got shape {tuple(weights.shape)}; expected {tuple(shape)}")
    weights = weights.to(points.dtype)
    return weights / weights.sum(dim=-1, keepdim=True)


def wasserstein_1d(
    x: torch.Tensor,
    y: torch.Tensor,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    p: float = 1.0,
) -> torch.Tensor:
    """Exact W_p between `x: (..., N)` with `x_weights` and `y: (..., K)` with `y_weights` -> `(...)`."""
    check_number("p", p, 1.0)
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"x and y: got shapes {tuple(x.shape)} and {tuple(y.shape)}; expected the same leading axes"
        )
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    wx, wy = _weights(x, x_weights, x.shape), _weights(y, y_weights, y.shape)
    x, ix = x.sort(dim=-1)
    y, iy = y.sort(dim=-1)
    cx, cy = wx.gather(-1, ix).cumsum(dim=-1), wy.gather(-1, iy).cumsum(dim=-1)
    # The breakpoints of both quantile functions; between two consecutive ones both are constant.
    u = torch.cat([cx, cy], dim=-1).clamp(max=1.0).sort(dim=-1).values
    du = torch.diff(u, dim=-1, prepend=torch.zeros_like(u[..., :1]))
    mid = (u - du / 2).contiguous()
    qx = x.gather(-1, torch.searchsorted(cx.contiguous(), mid).clamp(max=x.shape[-1] - 1))
    qy = y.gather(-1, torch.searchsorted(cy.contiguous(), mid).clamp(max=y.shape[-1] - 1))
    return ((qx - qy).abs().pow(p) * du).sum(dim=-1).pow(1.0 / p)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    p: float = 1.0,
    *,
    projections: int = 64,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced W_p between `x: (..., N, D)` and `y: (..., K, D)` -> `(...)`, over `projections` directions
    drawn from `generator` (the same directions for every leading index)."""
    check_int("projections", projections, 1)
    check_number("p", p, 1.0)
    if x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(
            f"x and y: got shapes {tuple(x.shape)} and {tuple(y.shape)}; expected (..., N, D) "
            "and (..., K, D) with the same leading axes and D"
        )
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    theta = torch.randn(projections, x.shape[-1], generator=generator, dtype=torch.float64)
    theta = (theta / theta.norm(dim=-1, keepdim=True)).to(x.device, dtype)  # (P, D)
    px = torch.movedim(x.to(dtype) @ theta.T, -1, 0)  # (P, ..., N)
    py = torch.movedim(y.to(dtype) @ theta.T, -1, 0)
    wx = None if x_weights is None else x_weights.expand(px.shape)
    wy = None if y_weights is None else y_weights.expand(py.shape)
    return wasserstein_1d(px, py, wx, wy, p).pow(p).mean(dim=0).pow(1.0 / p)
