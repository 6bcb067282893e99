"""Per-recipe preprocessing: normalization fitted on the training images, and batch augmentation.

Pixel scale per mode (images arrive as uint8 0..255):
- "mean_image": x - mean_image on the 0..255 scale, no rescaling. This is Caffe's ``mean_file``
  transform used by the paper's CIFAR recipes (CIFAR10-Quick subtracts the mean image and scales
  nothing), so learning rates from those recipes carry over unchanged.
- "per_channel": (x - mean_c) / std_c, each channel's statistics over all training pixels, giving
  zero mean and unit variance (the scale of the input does not matter).
- "none": x / 255, pixels in [0, 1] with no centring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mheads.core.checks import check_int

__all__ = ["NORMALIZE_MODES", "Normalizer", "NormalizerStats", "augment"]

NORMALIZE_MODES = ("mean_image", "per_channel", "none")
FIT_CHUNK = 4096  # images read at a time by Normalizer.fit


@dataclass(frozen=True, eq=False)
class Normalizer:
    """``normalized = (x - shift) * scale`` with statistics fitted once on the training images.

    shift: (C, H, W) for "mean_image", (C, 1, 1) for "per_channel", () for "none"; float32.
    scale: () for "mean_image" and "none", (C, 1, 1) for "per_channel"; float32.
    """

    mode: str
    shift: torch.Tensor
    scale: torch.Tensor

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZE_MODES:
            raise ValueError(f"normalize mode must be one of {', '.join(NORMALIZE_MODES)}, got {self.mode!r}")

    @classmethod
    def fit(cls, images: np.ndarray | torch.Tensor, mode: str, *, chunk: int = FIT_CHUNK) -> Normalizer:
        """Fit on training images: (N, C, H, W) uint8 (a numpy array, memory map or tensor).

        The images are read `chunk` at a time through `NormalizerStats`, so no more than a chunk is ever
        copied (a memory-mapped set larger than RAM is fine); the result does not depend on `chunk`.
        """
        _check_mode(mode)
        check_int("chunk", chunk, 1)
        if not isinstance(images, torch.Tensor):
            images = np.asarray(images)
        dtype_ok = images.dtype == (torch.uint8 if isinstance(images, torch.Tensor) else np.uint8)
        if not dtype_ok or images.ndim != 4 or len(images) == 0:
            raise ValueError(
                f"images must be a non-empty uint8 array of shape (N, C, H, W), got {_describe(images)}"
            )
        if mode == "none":  # needs no statistics
            return cls(mode, torch.tensor(0.0), torch.tensor(1.0 / 255.0))
        _, channels, height, width = (int(d) for d in images.shape)
        stats = NormalizerStats(channels, height, width, modes=(mode,))
        for start in range(0, len(images), chunk):
            stats.update(images[start : start + chunk])
        return stats.finish(mode)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) uint8 or float -> (B, C, H, W) float32 on x's device."""
        if x.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(x.shape)}")
        if self.mode == "mean_image" and tuple(x.shape[1:]) != tuple(self.shift.shape):
            raise ValueError(
                f"images are {'x'.join(map(str, x.shape[1:]))} but the mean image is "
                f"{'x'.join(map(str, self.shift.shape))} (CxHxW); fit the normalizer on this data set"
            )
        if self.mode == "per_channel" and x.shape[1] != self.shift.shape[0]:
            raise ValueError(
                f"images have {x.shape[1]} channels but the normalizer was fitted on {self.shift.shape[0]}"
            )
        return (x.float() - self.shift.to(x.device)) * self.scale.to(x.device)

    def to(self, device: str | torch.device) -> Normalizer:
        """A copy whose statistics live on `device` (saves a transfer per batch)."""
        return Normalizer(self.mode, self.shift.to(device), self.scale.to(device))

    def to_dict(self) -> dict[str, object]:
        """Plain state (a string and two tensors), loadable with ``torch.load(weights_only=True)``."""
        return {"mode": self.mode, "shift": self.shift.cpu(), "scale": self.scale.cpu()}

    @classmethod
    def from_dict(cls, state: dict[str, object]) -> Normalizer:
        shift, scale = state.get("shift"), state.get("scale")
        if not isinstance(shift, torch.Tensor) or not isinstance(scale, torch.Tensor):
            raise TypeError("normalizer state must hold tensors 'shift' and 'scale'")
        return cls(str(state.get("mode")), shift.float(), scale.float())


class NormalizerStats:
    """Exact statistics for `Normalizer`, accumulated batch by batch.

    ``update`` adds a batch of uint8 images; ``finish(mode)`` gives the `Normalizer` that
    ``Normalizer.fit`` gives on all the images seen, bit for bit, whatever the batch sizes and order: the
    state is integers only (an int64 sum per pixel for the mean image, a 256-bin histogram per channel),
    so every partial sum is exact. The state is ``C*H*W + 256*C`` int64 values, whatever the data set size.

    modes: the modes ``finish`` will be asked for; leaving one out skips its work in ``update`` (the
    histograms cost most of it, and only "per_channel" needs them).
    """

    def __init__(
        self, channels: int, height: int, width: int, *, modes: Iterable[str] = NORMALIZE_MODES
    ) -> None:
        self.shape = (
            check_int("channels", channels, 1),
            check_int("height", height, 1),
            check_int("width", width, 1),
        )
        self.modes = (modes,) if isinstance(modes, str) else tuple(modes)
        for mode in self.modes:
            _check_mode(mode)
        self._sum = np.zeros(self.shape, dtype=np.int64) if "mean_image" in self.modes else None
        self._hist = np.zeros((channels, 256), dtype=np.int64) if "per_channel" in self.modes else None
        self.count = 0

    def update(self, batch: np.ndarray | torch.Tensor) -> NormalizerStats:
        """Add `batch`: (B, C, H, W) uint8, numpy array or tensor (any device); B may be 0. Returns self."""
        array = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape[1:] != self.shape:
            expected = "x".join(map(str, self.shape))
            raise ValueError(
                f"batch must be a uint8 array of shape (B, C, H, W) with CxHxW = {expected}, "
                f"got {_describe(batch)}"
            )
        if len(array) == 0:
            return self
        if self._sum is not None:
            # The int64 accumulator makes numpy cast a buffer at a time: no int64 copy of the batch.
            self._sum += array.sum(axis=0, dtype=np.int64)
        if self._hist is not None:
            for c in range(self.shape[0]):
                self._hist[c] += np.bincount(array[:, c].ravel(), minlength=256)
        self.count += len(array)
        return self

    def finish(self, mode: str) -> Normalizer:
        """The `Normalizer` of `mode` fitted on every image passed to `update`."""
        _check_mode(mode)
        if mode not in self.modes:
            raise ValueError(
                f"normalize mode {mode!r} was not tracked; expected one of {', '.join(self.modes)} "
                "(the modes given to NormalizerStats)"
            )
        if self.count == 0:
            raise ValueError("no images were added; expected at least one image before finish()")
        if mode == "mean_image":
            assert self._sum is not None
            # Exact integer sums, one rounding in the division: equals array.mean(axis=0, dtype=float64).
            mean = self._sum.astype(np.float64) / self.count
            return Normalizer(mode, torch.from_numpy(mean.astype(np.float32)), torch.tensor(1.0))
        if mode == "per_channel":
            values = np.arange(256, dtype=np.float64)
            means, stds = [], []
            assert self._hist is not None
            for c in range(self.shape[0]):
                # A 256-bin histogram gives exact statistics without a float copy of the data.
                counts = self._hist[c].astype(np.float64)
                mean = (values * counts).sum() / counts.sum()
                std = np.sqrt(((values - mean) ** 2 * counts).sum() / counts.sum())
                means.append(mean)
                stds.append(std if std > 0 else 1.0)  # a constant channel is centred, not blown up
            shift = torch.tensor(means, dtype=torch.float32).view(-1, 1, 1)
            return Normalizer(
                mode, shift, (1.0 / torch.tensor(stds, dtype=torch.float64)).float().view(-1, 1, 1)
            )
        return Normalizer(mode, torch.tensor(0.0), torch.tensor(1.0 / 255.0))


def _check_mode(mode: object) -> None:
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize mode must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}")


def _describe(value: object) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{dtype} {type(value).__name__} of shape {tuple(value.shape)}"
    return type(value).__name__


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    crop_padding: int = 0,
    flip: bool = False,
    *,
    shard: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random crops and horizontal flips of a whole batch, one draw per example, no Python loop.

    x: (B, C, H, W) float (normalized images: the zero padding then equals the training mean).
    generator: the source of randomness, drawn in a fixed order (crop offsets (B, 2), then flips (B,))
      so that a generator seeded per iteration reproduces the batch exactly.
    crop_padding: pad each side with p zeros, then crop back to H x W at a random offset in 0..2p.
    flip: mirror each example left-right with probability 1/2.
    shard: ``(start, total)`` when ``x`` is rows ``start .. start + B - 1`` of a batch of ``total`` (a
      data-parallel replica's shard): the draws are the whole batch's, so each row gets what it would get in
      the whole batch.
    Returns (B, C, H, W), a new tensor (x is not modified).
    """
    check_int("crop_padding", crop_padding, 0)
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor of shape (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    start, total = shard if shard is not None else (0, batch)
    rows_of_shard = slice(start, start + batch)
    out = x
    if crop_padding:
        p = crop_padding
        offsets = torch.randint(0, 2 * p + 1, (total, 2), generator=generator, device=generator.device)[
            rows_of_shard
        ].to(x.device)
        padded = F.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
        rows = offsets[:, :1] + torch.arange(height, device=x.device)  # (B, H)
        cols = offsets[:, 1:] + torch.arange(width, device=x.device)  # (B, W)
        out = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, width + 2 * p))
        out = out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    if flip:
        mirror = (torch.rand(total, generator=generator, device=generator.device)[rows_of_shard] < 0.5).to(
            x.device
        )
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out if out is not x else x.clone()
