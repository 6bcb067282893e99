"""Guided backpropagation (Springenberg et al. 2015), the paper's Figure 2(e): the gradient of a class score
with respect to the input image, where every ReLU passes back only positive gradients at positive inputs."""

from __future__ import annotations

import torch
from torch import nn


def guided_saliency(net: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """x: (B, C, H, W) normalized images, classes: (B,) -> (B, C, H, W) guided gradients of each score."""
    handles = []

    def clamp(module, grad_input, grad_output):
        return tuple(g.clamp(min=0) if g is not None else None for g in grad_input)

    for mod in net.modules():
        if isinstance(mod, nn.ReLU):
            if mod.inplace:
                raise ValueError("guided backprop needs out-of-place ReLUs (inplace=False)")
            handles.append(mod.register_full_backward_hook(clamp))
    try:
        was = net.training
        net.eval()
        x = x.detach().clone().requires_grad_(True)
        scores = net(x)
        scores.gather(1, classes.view(-1, 1)).sum().backward()
        net.train(was)
        if x.grad is None:
            raise ValueError(
                f"net: its scores ({type(net).__name__}) do not depend on the input x; expected "
                "a network whose class scores are computed from x"
            )
        return x.grad.detach()
    finally:
        for h in handles:
            h.remove()


def to_image(g: torch.Tensor) -> torch.Tensor:
    """(C, H, W) gradient -> (H, W, C) in [0, 1] for display (centred, scaled by its own spread)."""
    g = g - g.mean()
    g = g / (3 * g.std() + 1e-12)
    return (g + 0.5).clamp(0, 1).permute(1, 2, 0)
