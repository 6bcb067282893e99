"""Where streamed examples come from: files of an :class:`~mheads.data.index.ImageIndex`, or a user's
map-style Dataset. Both give ``load(i, channels) -> (Pillow image, label)``, ``labels()`` and ``where(i)``,
the interface the streaming loader's workers read through (:mod:`mheads.data.streaming`)."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from mheads.data.decode import as_8bit
from mheads.data.errors import DataError
from mheads.data.from_torch import _image as _user_image
from mheads.data.from_torch import _label as _user_label
from mheads.data.index import ImageIndex
from mheads.data.transforms import decode

__all__ = ["FileExamples", "TorchExamples"]


class FileExamples:
    """Examples read from an :class:`ImageIndex` (image files or tar members)."""

    def __init__(self, index: ImageIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def labels(self) -> np.ndarray:
        return self.index.labels

    def load(self, i: int, channels: int | None):
        return decode(self.index.read(i), self.index.where(i), channels), int(self.index.labels[i])

    def where(self, i: int) -> str:
        return self.index.where(i)


class TorchExamples:
    """Examples of a user's map-style ``torch.utils.data.Dataset`` of ``(image, label)``, read per batch in
    the workers (images: PIL, uint8 ``(C, H, W)`` / ``(H, W)``, or floats in [0, 1]; any size)."""

    def __init__(self, dataset, name: str):
        try:
            self.n = len(dataset)
        except TypeError:
            raise DataError(
                f"{name}: {type(dataset).__name__} has no len(); give a map-style torch Dataset"
            ) from None
        if self.n == 0:
            raise DataError(f"{name}: the data set is empty")
        self.dataset, self.name = dataset, name
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def _item(self, i: int):
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{self.name}[{i}]: got {type(item).__name__}; expected an (image, label) pair")
        return item

    def labels(self, progress: bool = False) -> np.ndarray:
        """Every label (the ``targets`` attribute when the data set has one, else one pass over it, with a
        progress bar when ``progress``)."""
        if self._labels is None:
            targets = getattr(self.dataset, "targets", None)
            if targets is not None and len(targets) == self.n:
                values = [_user_label(t, f"{self.name}.targets[{i}]") for i, t in enumerate(targets)]
            else:
                scan = tqdm(range(self.n), desc=f"{self.name} labels", disable=not progress, leave=False)
                values = [_user_label(self._item(i)[1], f"{self.name}[{i}]") for i in scan]
            self._labels = np.asarray(values, dtype=np.int64)
        return self._labels

    def load(self, i: int, channels: int | None):
        from PIL import Image

        x, y = self._item(i)[:2]
        where = f"{self.name}[{i}]"
        if hasattr(x, "getbands"):  # a PIL image: to 8-bit as image files are (16-bit scaled, float refused)
            return as_8bit(x, where, channels), _user_label(y, where)
        a = _user_image(x, where)  # (C, H, W) uint8
        if a.shape[0] not in (1, 3):
            raise DataError(f"{where}: image with {a.shape[0]} channels; expected 1 or 3")
        img = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        mode = "L" if (channels == 1 or (channels is None and a.shape[0] == 1)) else "RGB"
        return (img if img.mode == mode else img.convert(mode)), _user_label(y, where)

    def where(self, i: int) -> str:
        return f"{self.name}[{i}]"
