"""A task's head on top of any base network (issue 32): the layer that turns a base's features into the
outputs the task reads, one per member.

- classification: `Linear(F, C)`, logits `(B, C)`;
- regression: `Linear(F, D)` for point heads, `Linear(F, 2D)` for Gaussian heads (the first D columns the
  mean, the last D the variance's raw parameter, which `Regression.moments` maps through softplus or exp);
- multi_hypothesis: `Linear(F, D + 1)` (the hypothesis, then the score logit, as `MultiHypothesis` reads);
- segmentation: a 1x1 `Conv2d(F, C)` on feature maps `(B, F, H, W)`, logits `(B, C, H, W)`;
- a user's task with a `head_width`: `Linear(F, head_width)`.

`HeadLayout` is what a run records of the head (plain data: the layer, F and the width), so a reopened run
rebuilds it without the task object. `HeadedBase(base, head, output, pool)` is a member's network: the base,
its prediction chosen by `output` (a key of a dict output, an index of a tuple), pooled by `pool` (`POOLS`),
then the head; it offers `TreeNet` the untraced cut `"base"` (`mheads.tree.parts`): `BaseOutput`, the whole
base a shared trunk, and per member `PooledHead` (`model.split: output`). `feature_shape` runs one eval-mode
forward to find what the head reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mheads.core.checks import check_choice, check_int
from mheads.tree.cut import pick
from mheads.tree.parts import CutPart

__all__ = [
    "LAYERS",
    "POOLS",
    "BaseOutput",
    "HeadLayout",
    "HeadedBase",
    "PooledHead",
    "feature_shape",
    "head_features",
    "pool_features",
]

LAYERS = ("linear", "conv")  # conv: a 1x1 convolution on (B, F, H, W) maps (dense tasks)
POOLS = ("none", "mean", "first", "last", "global_avg")
# what each pool reads, for errors: the layout of the base's output it expects
POOL_READS = {
    "none": "features as they are",
    "mean": "a sequence (B, T, F), averaged over T",
    "first": "a sequence (B, T, F), position 0",
    "last": "a sequence (B, T, F), position T - 1",
    "global_avg": "maps (B, F, ...), averaged over every axis after F",
}


@dataclass(frozen=True)
class HeadLayout:
    """`layer`: "linear" or "conv" (1x1); `in_features`: F; `width`: the task's head width (outputs per
    example, per pixel for "conv")."""

    layer: str
    in_features: int
    width: int

    def __post_init__(self) -> None:
        check_choice("layer", self.layer, LAYERS)
        check_int("in_features", self.in_features, 1)
        check_int("width", self.width, 1)

    @property
    def feature_ndim(self) -> int:
        """How many axes the head's input has: `(B, F)` or `(B, F, H, W)`."""
        return 4 if self.layer == "conv" else 2

    def build(self) -> nn.Module:
        """The head, its weights drawn from the global generator (the caller seeds it, per member)."""
        if self.layer == "conv":
            return nn.Conv2d(self.in_features, self.width, kernel_size=1)
        return nn.Linear(self.in_features, self.width)


def pool_features(h: torch.Tensor, pool: str) -> torch.Tensor:
    """What the head reads from the base's chosen output `h` (see `POOL_READS`); no branch on values or
    shapes, so `torch.fx` traces it."""
    if pool == "mean":
        return h.mean(dim=1)
    if pool == "first":
        return h[:, 0]
    if pool == "last":
        return h[:, -1]
    if pool == "global_avg":
        return h.flatten(2).mean(dim=2)
    return h


class HeadedBase(nn.Module):
    """A member's network: `head(pool(base(x)[output]))`. The base's module paths are under `base.`, the head
    is `head`; `output` and `pool` are plain attributes (not state).

    It offers the cut `"base"` without tracing (`mheads.tree.parts`): the whole base the shared trunk, run as
    a black box (any model, e.g. a Hugging Face one `torch.fx` cannot trace), its chosen output the trunk's
    output, and per member a branch of the pool and its own head."""

    untraced_cut = "base"

    def __init__(self, base: nn.Module, head: nn.Module, output: str | int | None = None, pool: str = "none"):
        super().__init__()
        check_choice("pool", pool, POOLS)
        self.base = base
        self.head = head
        self.output = output
        self.pool = pool

    def init_weights(self) -> None:
        """The base's own ``init_weights()`` (timm, Hugging Face) where it takes no argument: members redrawn
        from a module instance (`mheads.tree.members`) keep the base's scheme under a head."""
        own = getattr(self.base, "init_weights", None)
        if callable(own) and _takes_no_arguments(own):
            own()

    def forward(self, x: Any) -> torch.Tensor:
        h = self.base(x)
        if self.output is not None:
            h = h[self.output]
        return self.head(pool_features(h, self.pool))

    def cut_parts(self) -> tuple[CutPart, CutPart]:
        """`(trunk, branch)` of the cut at `"base"`: `base(x)[output]`, then `head(pool(h))`; they hold this
        network's own `base` and `head` (`branch(trunk(x))` is `self(x)`)."""
        return BaseOutput(self.base, self.output), PooledHead(self.head, self.pool)


class BaseOutput(CutPart):
    """The trunk of a `HeadedBase` cut at `"base"`: the base's chosen output `base(x)[output]` (its prediction
    as it is with `output` None), e.g. `last_hidden_state` `(B, T, F)`."""

    def __init__(self, base: nn.Module, output: str | int | None):
        super().__init__()
        self.base = base
        self.output = output

    def forward(self, x: Any) -> Any:
        h = self.base(x)
        return h if self.output is None else h[self.output]


class PooledHead(CutPart):
    """A member's branch of a `HeadedBase` cut at `"base"`: `head(pool(h))` on the trunk's output `h`."""

    def __init__(self, head: nn.Module, pool: str):
        super().__init__()
        self.head = head
        self.pool = pool

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(pool_features(h, self.pool))


def _takes_no_arguments(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return not any(p.default is p.empty and p.kind in (*required, p.KEYWORD_ONLY) for p in params)


@torch.no_grad()
def feature_shape(base: nn.Module, example: Any, output: str | int | None, pool: str) -> tuple[int, ...]:
    """The shape of what a head on `base` reads for the batch `example` (a tensor or a dict of tensors): one
    forward in eval mode (modes restored after, the global random state untouched), the prediction chosen by
    `output` (one-line errors naming it), pooled by `pool`. A `ValueError` names `pool` when the output does
    not have the layout the pool reads."""
    modes = {m: m.training for m in base.modules()}
    try:
        base.eval()
        with torch.random.fork_rng(devices=[]):
            h = pick(base(example), output, type(base).__name__)
    finally:
        for m, training in modes.items():
            m.training = training
    if not isinstance(h, torch.Tensor) or not h.is_floating_point():
        got = f"{h.dtype} tensor" if isinstance(h, torch.Tensor) else type(h).__name__
        raise ValueError(f"output: the base's prediction is a {got}; expected a floating tensor of features")
    sequence = pool in ("mean", "first", "last")
    if (sequence and h.ndim != 3) or (pool == "global_avg" and h.ndim < 3) or h.ndim < 2:
        raise ValueError(
            f"pool: got {pool!r}, which reads {POOL_READS[pool]}; the base's output has shape "
            f"{tuple(h.shape)}"
        )
    return tuple(pool_features(h, pool).shape)


def head_features(layer: str, shape: tuple[int, ...], pool: str) -> int:
    """F, from the shape of what the head reads (`feature_shape`); a `ValueError` naming `pool` and the fix
    when a linear head would not read `(B, F)` or a 1x1 convolution `(B, F, H, W)`."""
    if layer == "conv" and len(shape) != 4:
        raise ValueError(
            f"pool: got {pool!r}; the task's head is a 1x1 convolution on maps (B, F, H, W), and the "
            f"base's output gives {shape}: use pool none with a base ending in (B, F, H, W) maps"
        )
    if layer == "linear" and len(shape) != 2:
        fix = (
            "mean, first or last for a sequence (B, T, F), global_avg for maps (B, F, ...)"
            if pool == "none"
            else "another pool"
        )
        raise ValueError(
            f"pool: got {pool!r}; the task's head is a linear layer on features (B, F), and the base's "
            f"output gives {shape}: set {fix}"
        )
    return int(shape[1])
