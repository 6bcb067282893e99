"""``torch.compile`` for training, only after proving it computes the same gradients as eager mode.

On torch 2.13 the compiled backward of ``avg_pool2d(ceil_mode=True)`` (CIFAR10-Quick's pooling) divides the
clipped last window by the full kernel size, so conv gradients come out 21-25% wrong (upstream issue 198119);
compiling blindly would silently train a different model.
"""

from __future__ import annotations

import torch

from mheads.config import ConfigError
from mheads.ensemble.losses import independent_ce

GRADIENT_TOLERANCE = 1e-3  # relative to the largest gradient entry; float32 reordering stays far below this


def gradient_error(eager: torch.nn.Module, compiled, x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative difference between the compiled and eager gradients of ``independent_ce`` on one
    batch."""
    params = list(eager.parameters())
    # Training-mode forwards move BatchNorm statistics: the check must leave the model as it found it, since
    # nothing may train before training starts (and a resumed run must see its checkpoint's statistics).
    buffers = {name: b.clone() for name, b in eager.named_buffers()}
    grads = []
    try:
        for fwd in (eager, compiled):
            loss = independent_ce(fwd(x).float(), y)
            grads.append(torch.autograd.grad(loss, params))
    finally:
        with torch.no_grad():
            for name, b in eager.named_buffers():
                b.copy_(buffers[name])
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(*grads))


def compile_checked(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """``torch.compile(model)``, or a :class:`ConfigError` naming the gradient error when it is wrong."""
    compiled = torch.compile(model)
    err = gradient_error(model, compiled, x, y)
    if not err <= GRADIENT_TOLERANCE:
        raise ConfigError(
            f"train.compile: torch.compile's gradients differ from eager mode by {err:.1%} "
            f"on this model with torch {torch.__version__} (allowed {GRADIENT_TOLERANCE:.0e}); "
            "train without compile"
        )
    return compiled
