"""Data sets for mheads: readers for the common on-disk formats, preprocessing and batching.

`load_dataset` turns a path (or nothing, for the embedded Fashion-MNIST subset) into a `Dataset` of
uint8 images (N, C, H, W) and int64 labels, caching decoded files as memory-mapped `.npy`. Bad input raises
`DataError` with a one-line message.
"""

from mheads.data.batching import BatchPlan
from mheads.data.dataset import Dataset, Split
from mheads.data.detect import ACCEPTED_LAYOUTS
from mheads.data.embedded import EMBEDDED_NAME, load_embedded
from mheads.data.errors import DataError
from mheads.data.load import load_dataset
from mheads.data.preprocess import NORMALIZE_MODES, Normalizer, augment

__all__ = [
    "ACCEPTED_LAYOUTS",
    "EMBEDDED_NAME",
    "NORMALIZE_MODES",
    "BatchPlan",
    "DataError",
    "Dataset",
    "Normalizer",
    "Split",
    "augment",
    "load_dataset",
    "load_embedded",
]
