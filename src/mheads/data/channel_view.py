"""Colour images seen by a greyscale model and greyscale images by a colour one, exactly as ``mheads predict``
sees an image file (Pillow's ``convert("L")`` / ``convert("RGB")``), so that ``mheads eval --data/--ood`` on
data of the other kind agrees with ``predict`` on the same files instead of refusing them.

Pillow's luma is ITU-R 601-2 in fixed point: ``L = (19595 R + 38470 G + 7471 B + 2**15) >> 16`` on uint8
pixels; greyscale to colour repeats the channel. Only 1 <-> 3 channels convert; any other pair is refused
by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mheads.data.preprocess import Normalizer

__all__ = ["CONVERTIBLE", "ChannelView", "to_channels"]

CONVERTIBLE = {(3, 1), (1, 3)}  # (channels of the data, channels the model takes)
_LUMA = (19595, 38470, 7471)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x: (B, C, H, W)`` pixels on the 0..255 scale -> ``(B, channels, H, W)``, same dtype and device."""
    have = x.shape[1]
    if have == channels:
        return x
    if (have, channels) not in CONVERTIBLE:
        raise ValueError(f"images: got {have} channels; only 1 <-> 3 convert (the model takes {channels})")
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    weights = torch.tensor(_LUMA, dtype=torch.int64, device=x.device).view(1, 3, 1, 1)
    if x.dtype == torch.uint8:
        return (((x.to(torch.int64) * weights).sum(dim=1, keepdim=True) + (1 << 15)) >> 16).to(torch.uint8)
    return ((x * weights.to(x.dtype)).sum(dim=1, keepdim=True) / 65536).to(x.dtype)


@dataclass(frozen=True)
class ChannelView:
    """A normalizer that first converts images to ``channels`` (what a data source's ``normalizer`` is called
    on: raw batches on the 0..255 scale), then applies the run's ``normalizer``."""

    normalizer: Normalizer
    channels: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalizer(to_channels(x, self.channels))

    def to(self, device: str | torch.device) -> ChannelView:
        return ChannelView(self.normalizer.to(device), self.channels)
