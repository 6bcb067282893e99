"""Exact multiply-add counts of convolutions and fully connected layers, from the layer shapes.

One forward of a dry-run batch records each Conv2d / Linear call's output shape; its multiply-adds
per image are

- Conv2d: ``C_out * H_out * W_out * (C_in / groups) * k_h * k_w``;
- Linear: ``out_features * in_features`` (times any leading dims past the batch).

Everything else (bias adds, ReLU, pooling, normalization) is left out, as in the usual FLOP tables. A shared
TreeNet layer runs once per batch and is counted once. FLOPs are 2 x multiply-adds; a training step (forward,
input gradients, weight gradients) is counted as 3 x the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlopCount:
    """Forward multiply-adds per image, by qualified layer name (in call order)."""

    macs: dict[str, int]

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    def forward_flops(self, batch: int = 1) -> int:
        return 2 * self.total_macs * batch

    def train_flops(self, batch: int = 1) -> int:
        return 3 * self.forward_flops(batch)

    def share(self, prefix: str) -> float:
        """Fraction of the multiply-adds in layers whose name starts with ``prefix`` (e.g.
        ``"root.layers."``)."""
        total = self.total_macs
        return sum(v for k, v in self.macs.items() if k.startswith(prefix)) / total if total else 0.0


def _layer_macs(module: nn.Conv2d | nn.Linear, out: torch.Tensor) -> int:
    per_image = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    return per_image * module.in_features


def count_macs(
    model: nn.Module, input_shape: tuple[int, ...], *, device: torch.device | str = "cpu"
) -> FlopCount:
    """Multiply-adds per image of ``model`` on inputs of ``input_shape`` (one image, no batch dimension).

    A TreeNet is counted in its loop mode (fused layers do not call the member modules). Raises ValueError for
    an input shape the model cannot take.
    """
    if not input_shape or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise ValueError(f"input_shape: got {input_shape!r}; expected positive ints, e.g. (3, 32, 32)")
    names = {m: n for n, m in model.named_modules()}
    macs: dict[str, int] = {}

    def hook(module: nn.Conv2d | nn.Linear, args, out) -> None:
        name = names[module]
        macs[name] = macs.get(name, 0) + _layer_macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    mode = getattr(model, "exec_mode", None)
    was_training = model.training
    try:
        if mode is not None:
            setattr(model, "exec_mode", "loop")  # a TreeNet's property (not a Module attribute)
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    except RuntimeError as err:
        raise ValueError(f"input_shape: {input_shape} does not fit the model ({err})") from None
    finally:
        for h in handles:
            h.remove()
        if mode is not None:
            setattr(model, "exec_mode", mode)
        model.train(was_training)
    return FlopCount(macs)
