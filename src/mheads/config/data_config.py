"""The ``data:`` section of a run's config: where the examples come from and how they are read, split,
augmented and sampled per member."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.config.fields import number as _num

__all__ = ["DataConfig", "effective_normalize"]


def effective_normalize(normalize: str | None, tensors: bool) -> str:
    """The normalization that ``data.normalize`` gives its data: the mode it names; null is ``mean_image`` for
    images read by the image loaders and ``none`` for inputs read as tensors (``tensors``:
    :func:`mheads.data.loader.uses_tensors`). Configs that compare (a resumed run with its folder's
    config.yaml, a sweep cell with a finished run) compare this, so that null and its mode are the same."""
    if normalize is not None:
        return normalize
    return "none" if tensors else "mean_image"


@dataclass
class DataConfig:
    """The ``data:`` section: where the examples come from, how they are split, augmented and loaded, and
    which each member trains on (bagging, specialists). Image sources are described in docs/data.md, tables
    and arrays in docs/tasks.md."""

    source: str | None = None
    """null (the embedded Fashion-MNIST subset), or a path: an image data set (docs/data.md), a CSV / TSV /
    Parquet table (.csv, .tsv, .parquet, .pq), an .npz file of arrays, or a folder of images/ beside
    masks/."""
    normalize: str | None = None
    """Input normalization of images read by the image loaders: null (mean_image) | mean_image (subtract the
    training set's mean image: Caffe) | per_channel (each channel to mean 0 and standard deviation 1) | none.
    Inputs read as tensors (a table, an .npz file, a mask folder, Datasets of inputs that are not square
    images, any task but classification) reach the model as stored, uint8 as [0, 1] floats: null or none
    there (mean_image and per_channel are refused)."""
    crop_padding: int = 0
    """Random-crop augmentation: pad each training image by this many pixels per side, then crop it back to
    its size at a random offset; an integer >= 0 (0: no cropping)."""
    flip: bool = False
    """true or false: random horizontal flips of the training images."""
    bagging: bool = False
    """true or false: each member trains on its own bootstrap sample (false with an averaged loss)."""
    bootstrap_unique: int | None = None
    """null, or a member index m >= 0: train on only the distinct images of bagging member m's bootstrap
    sample (seeded by train.seed), each once: about 63.2% of the set (section 4's control for bagging's loss
    of unique data); null with data.bagging true."""
    train_limit: int | None = None
    """null (all), or use N >= 1 training images: a class-stratified subset, seeded by train.seed
    (mheads.data.subsets)."""
    test_limit: int | None = None
    """null (all), or use N >= 1 test images: a class-stratified subset, seeded by train.seed."""
    label_split: list | None = None
    """Specialists: null, or per member (model.members lists) the non-empty list of class indices it trains
    on."""
    classes: list[int | str] | None = None
    """null (every class), or a list of >= 2 distinct class indices or names: keep only these classes of the
    source, relabelled 0.. in this order; the final evaluation then scores the test images of the other
    classes as out-of-distribution (open set)."""
    val_fraction: float = 0.0
    """The share of the training set held out (seeded) to fit temperature scaling at the end, a number from
    0 (none) to 0.5."""
    loader: str = "auto"
    """resident (the decoded set on the training device) | stream (DataLoader workers decode image files per
    batch; a user's Datasets of any shape are read item by item per batch, the same batches as resident:
    mheads.data.dataset_stream) | auto (stream when the source can be streamed and data.image_size or
    data.train_crop asks for resizing, or the decoded set would exceed data.memory_budget_mb; else
    resident). A table, .npz or mask-folder source is read whole: auto or resident."""
    image_size: int | None = None
    """stream: the side of the square images the model sees, an integer >= 1 (null: the images' own)."""
    train_crop: str = "pad"
    """stream: pad (the eval view, then data.crop_padding on the device) | random (shorter side to
    data.eval_resize, a random data.image_size square: Caffe's ImageNet crop) | random_resized (Inception's:
    a random area share in data.crop_scale and aspect ratio, resized to data.image_size)."""
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    """random_resized: the crop's range of area shares, [low, high] with 0 < low <= high <= 1."""
    eval_resize: int | None = None
    """stream: the shorter side before the centre crop, an integer >= data.image_size (null:
    data.image_size)."""
    workers: int | None = None
    """stream: the worker processes that decode or read the batches, an integer >= 0 (0: the training
    process itself; null: the cores the training threads leave, at least 1)."""
    memory_budget_mb: int | None = None
    """auto: the decoded size in MB above which the data is streamed, an integer >= 1 (null: half the
    RAM)."""
    on_bad_image: str = "stop"
    """stream, a training image that cannot be decoded: stop (exit status 2, naming the file) | skip
    (replaced by the next readable image, counted in the metrics as skipped_images). An image of a scored
    split (test, val, ood) always stops, in training's evaluations as in mheads eval: each is scored once."""
    stats_images: int = 50000
    """stream: the normalization statistics come from all images, or from a seeded sample of this many
    (an integer >= 1)."""
    cache_dir: str | None = None
    """The decoded-data cache folder (null: $MHEADS_CACHE, else $XDG_CACHE_HOME/mheads, by default
    ~/.cache/mheads)."""
    features: list[str] | None = None
    """A table source: the input columns, a non-empty list of names (required there; null for any other
    source)."""
    targets: Any = None
    """A table source: the target column or columns (a name or a non-empty list of names); an .npz source:
    the targets' array name (null: "y"); a mask-folder source: unused."""
    inputs: str | list[str] | None = None
    """An .npz source: the inputs' array name (null: "x"), or a non-empty list of distinct array names
    (each example's input is then the dict {name: array[i]}, e.g. [input_ids, attention_mask])."""
    split_column: str | None = None
    """A table source: null, or a column naming each row's split (train, val or test)."""
    test_fraction: float | None = None
    """A table, .npz or mask-folder source without data.split_column: the seeded share of examples held out
    as the test split, a number in (0, 0.9] (null: none; the run then evaluates on its training
    examples)."""

    @property
    def image_normalize(self) -> str:
        """The normalizer's mode for images read by the image loaders (``normalize``, null: mean_image)."""
        return effective_normalize(self.normalize, tensors=False)

    def validate(self, p: str = "data") -> None:
        self._validate_loading(p)
        self._validate_selection(p)
        self._validate_crops(p)
        self._validate_sampling(p)
        self._validate_arrays(p)

    def _validate_loading(self, p: str) -> None:
        """How the examples are read: normalization, the loader and its image views, the cache."""
        if self.normalize is not None:
            _choice(f"{p}.normalize", self.normalize, ("mean_image", "per_channel", "none"))
        _int(f"{p}.crop_padding", self.crop_padding, 0)
        _choice(f"{p}.loader", self.loader, ("auto", "resident", "stream"))
        _choice(f"{p}.train_crop", self.train_crop, ("pad", "random", "random_resized"))
        _choice(f"{p}.on_bad_image", self.on_bad_image, ("stop", "skip"))
        for name in ("image_size", "eval_resize", "workers", "memory_budget_mb"):
            if getattr(self, name) is not None:
                _int(f"{p}.{name}", getattr(self, name), 0 if name == "workers" else 1)
        _int(f"{p}.stats_images", self.stats_images, 1)
        if self.cache_dir is not None and (not isinstance(self.cache_dir, str) or not self.cache_dir):
            _fail(f"{p}.cache_dir", self.cache_dir, "null or a folder path")

    def _validate_selection(self, p: str) -> None:
        """Which examples and classes a run keeps: the held-out share, the kept classes."""
        _num(f"{p}.val_fraction", self.val_fraction, 0.0, high=0.5)
        if self.classes is not None and (
            not isinstance(self.classes, list)
            or len(self.classes) < 2
            or any(isinstance(c, bool) or not isinstance(c, (int, str)) for c in self.classes)
            or len(set(self.classes)) != len(self.classes)
        ):
            _fail(f"{p}.classes", self.classes, "null or a list of >= 2 distinct class indices or names")

    def _validate_crops(self, p: str) -> None:
        """The streamed crops and sizes, and that resident data is used as stored."""
        cs = self.crop_scale
        if (
            not isinstance(cs, (list, tuple))
            or len(cs) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cs)
            or not 0 < cs[0] <= cs[1] <= 1
        ):
            _fail(f"{p}.crop_scale", cs, "[low, high] with 0 < low <= high <= 1")
        size, resize = self.image_size, self.eval_resize
        if size is not None and resize is not None and resize < size:
            _fail(f"{p}.eval_resize", self.eval_resize, f"at least data.image_size ({self.image_size})")
        if self.loader == "resident" and (self.image_size is not None or self.train_crop != "pad"):
            what = "data.image_size" if self.image_size is not None else f"data.train_crop: {self.train_crop}"
            _fail(
                f"{p}.loader",
                "resident",
                f"stream or auto when {what} is set (resident data is used as stored)",
            )

    def _validate_sampling(self, p: str) -> None:
        """What each member trains on: flips, bagging, the limits, one bootstrap sample's images."""
        for name in ("flip", "bagging"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{p}.{name}", getattr(self, name), "true or false")
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                _int(f"{p}.{name}", getattr(self, name), 1)
        if self.bootstrap_unique is not None:
            _int(f"{p}.bootstrap_unique", self.bootstrap_unique, 0)
            if self.bagging:
                _fail(f"{p}.bootstrap_unique", self.bootstrap_unique, "null with data.bagging: true")

    def _validate_arrays(self, p: str) -> None:
        """The columns and arrays of a table or .npz source, and its held-out test share."""
        if self.features is not None and (
            not isinstance(self.features, list)
            or not self.features
            or not all(isinstance(c, str) and c for c in self.features)
        ):
            _fail(f"{p}.features", self.features, "null or a non-empty list of column names")
        t = self.targets
        if (
            t is not None
            and not (isinstance(t, str) and t)
            and not (isinstance(t, list) and t and all(isinstance(c, str) and c for c in t))
        ):
            _fail(f"{p}.targets", t, "null, a column or array name, or a non-empty list of column names")
        if self.split_column is not None and not (isinstance(self.split_column, str) and self.split_column):
            _fail(f"{p}.split_column", self.split_column, "null or a name")
        self._validate_inputs(p)
        if self.test_fraction is not None:
            _num(f"{p}.test_fraction", self.test_fraction, 0.0, strict=True, high=0.9)
            if self.split_column is not None:
                _fail(
                    f"{p}.test_fraction",
                    self.test_fraction,
                    "null with data.split_column (the table names each row's split)",
                )
        if self.source is not None and not isinstance(self.source, str):
            _fail(f"{p}.source", self.source, "a path or null for the embedded data")

    def _validate_inputs(self, p: str) -> None:
        """data.inputs: null, an array name, or a non-empty list of distinct names (dict inputs)."""
        v = self.inputs
        if v is None or (isinstance(v, str) and v):
            return
        if not isinstance(v, list) or not v or not all(isinstance(n, str) and n for n in v):
            _fail(f"{p}.inputs", v, "null, an array name or a non-empty list of array names")
        twice = sorted({n for n in v if v.count(n) > 1})
        if twice:
            _fail(f"{p}.inputs", v, f"a list of distinct array names ({twice[0]!r} twice)")
