"""A user's map-style ``(input, target)`` Datasets of any shape streamed (issue 32, ``data.loader: stream``):
read item by item per batch, so that memory holds a batch (and those the workers read ahead), not the set.

Batch ``b`` is :class:`~mheads.data.tensor_data.TensorData`'s batch ``b``: the same rows of the splits
(:func:`~mheads.data.rows.choose_rows`), the same :class:`~mheads.data.batching.BatchPlan` positions into
them, read through a torch ``DataLoader`` whose batch sampler yields those Dataset indices, and checked and
stacked as ``TensorData`` reads them (:func:`~mheads.data.tensors.item_tensors`,
:func:`~mheads.data.tensors.check_like`: every example of a split has its first example's shape and dtype,
finite numbers, class labels that are integers inside the classes counted; the one-line error names the
item, ``train[17]``). Hence a streamed run trains on the very batches a resident one does (bit-identical
weights), and resuming at iteration ``b`` starts the sampler at batch ``b``: exact, with no loader state and
any number of workers. Bagging weights are :func:`~mheads.data.rows.bagging_weights`, as resident. A Dataset
that augments at random in ``__getitem__`` reads each batch under torch's (CPU), numpy's and Python's global
generators seeded by the run seed and the batch (in a worker, or in the training process, whose own generators
are given back as they were): its runs resume exactly too, with any workers, though not as a resident run,
which reads (and so draws) each item once. That costs about 0.5 ms a batch where the training process reads
(``data.workers: 0``; the generators' states saved and restored), next to nothing in a worker.

Read before training: each split's ``len`` and first example; for classification every class label, to
count the classes as ``TensorData`` does (the Dataset's ``targets`` when it has one as long as the split,
else one pass over its items, announced when long), which a limit on a split of class labels also uses.
Segmentation needs ``task.num_classes`` (masks are not read ahead). Refused in one line: an
``IterableDataset``, a Dataset without ``len``, and any setting only image classification has.

Workers (``data.workers``) ignore SIGTERM and SIGINT as the image streaming workers do
(:func:`~mheads.data.stream_worker.worker_init`); one that dies or sends no batch for ``timeout_s`` ends the
run with one line (:func:`~mheads.data.stream_failures.fetch_batch`; a hung one is ended).
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from mheads.config import Config, ConfigError
from mheads.core.seeding import derive_seed
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.from_torch import check_user_dataset
from mheads.data.rows import (
    RowChoice,
    bagging_weights,
    choose_rows,
    class_targets,
    count_classes,
    not_class_indices,
)
from mheads.data.stream_failures import fetch_batch
from mheads.data.stream_worker import default_workers, worker_init, workers_shielded
from mheads.data.streaming import WORKER_TIMEOUT_S
from mheads.data.tensor_data import AnyShapeData, refuse_image_settings
from mheads.data.tensors import (
    Inputs,
    as_tensor,
    check_like,
    check_same,
    check_splits_alike,
    input_spec,
    item_tensors,
    model_view,
    stack_items,
    to_device,
)

__all__ = [
    "PREFETCH",
    "DatasetStream",
    "StreamSplit",
    "example_bytes",
    "stream_datasets",
    "stream_from_config",
]

log = logging.getLogger(__name__)

PREFETCH = 2  # batches each worker reads ahead
_ITEM = "dataset-item"  # the random stream a user's Dataset draws from while a batch is read
_LABEL_CHUNK = 256  # items read under one seed by the pass that counts the classes
_LONG_SCAN = 10_000  # reading more labels than this before training is announced


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's (CPU), numpy's and Python's global generators seeded with ``seed`` inside; in the training
    process (not a DataLoader worker, whose generators are its own) given back as they were after."""
    if torch.utils.data.get_worker_info() is not None:
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        yield
        return
    states = torch.default_generator.get_state(), random.getstate(), np.random.get_state()
    try:
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        yield
    finally:
        torch.default_generator.set_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


class _Indexed(torch.utils.data.Dataset):
    """Worker side: a batch of keys ``(i, seed)`` (one seed per batch) to ``(i, the user's item i)`` pairs, so
    that an error names the item. A Dataset that draws at random (augmentation in ``__getitem__``) reads the
    batch under generators seeded with the batch's seed (:func:`_seeded`), whichever process reads it:
    streamed runs resume exactly with such Datasets too."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple[int, Any]]:
        with _seeded(keys[0][1]):
            return [(i, self.dataset[i]) for i, _ in keys]

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        return self.__getitems__([key])[0]


@dataclass(frozen=True)
class _Collate:
    """Worker side: a batch of ``(index, item)`` checked against the split's first example and stacked
    (``(inputs, targets)``), or a bad item's one-line message (a str: raised in the training process, where
    a worker's exception would arrive as a traceback)."""

    name: str
    first: tuple[Inputs, torch.Tensor]
    num_classes: int  # > 0: the targets are class labels, checked to be below it

    def __call__(self, batch: list[tuple[int, Any]]) -> tuple[Inputs, torch.Tensor] | str:
        try:
            items = []
            for i, item in batch:
                x, y = item_tensors(item, f"{self.name}[{i}]")
                check_like(x, y, self.first, self.name, i)
                if self.num_classes and not 0 <= int(y) < self.num_classes:
                    raise DataError(
                        f"{self.name}[{i}] target: label {int(y)}; expected a class index in "
                        f"0..{self.num_classes - 1}, the classes counted before training"
                    )
                items.append((x, y))
            return stack_items(items)
        except DataError as err:
            return str(err)


class _PlanBatches:
    """Batch sampler: from batch ``start`` on, without end, the keys ``(Dataset index, seed)`` of each batch
    ``b`` of ``plan`` (positions into ``rows``; a data-parallel replica's ``shard`` of them), the seed one of
    ``b`` and the shard's place in the batch."""

    def __init__(self, plan: BatchPlan, rows: torch.Tensor, start: int, shard: tuple[int, int] | None):
        self.plan, self.rows, self.start = plan, rows, start
        self.part = shard_rows(shard, plan.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.start
        while True:
            seed = derive_seed(self.plan.seed, _ITEM, b, self.part.start)
            yield [(i, seed) for i in self.rows[self.plan.indices(b)[self.part]].tolist()]
            b += 1


@dataclass(eq=False)
class StreamSplit:
    """One split as streamed: the user's Dataset, the name its items go by in errors, the rows the run uses
    ``(n,)`` int64 and the Dataset's first example as tensors (what every other must be like)."""

    dataset: Any
    name: str
    rows: torch.Tensor
    first: tuple[Inputs, torch.Tensor]


@dataclass(eq=False)
class DatasetStream(AnyShapeData):
    """A user's Datasets read per batch (see the module docstring); built by :func:`stream_datasets`."""

    device: torch.device
    train: StreamSplit
    test: StreamSplit
    val: StreamSplit | None
    plan: BatchPlan
    weights: torch.Tensor | None  # (M, N) per-member example weights (bagging), or None
    classes: list[str] | None
    workers: int
    timeout_s: float = WORKER_TIMEOUT_S
    source: str = "python Datasets"
    shard: tuple[int, int] | None = None
    _iter: Iterator | None = field(default=None, repr=False)
    _next: int = -1
    _example: tuple[Inputs, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def queued_batches(self) -> int:
        """Batches the workers read ahead of the one in use (what the resource check counts)."""
        return self.workers * PREFETCH

    def _start(self, split: StreamSplit, batches: Iterable[list[tuple[int, int]]]) -> Iterator:
        labels = self.num_classes if class_targets(split.first[1].unsqueeze(0)) else 0
        loader = DataLoader(
            _Indexed(split.dataset),
            batch_sampler=batches,
            num_workers=self.workers,
            collate_fn=_Collate(split.name, split.first, labels),
            pin_memory=self.device.type == "cuda",
            prefetch_factor=PREFETCH if self.workers else None,
            worker_init_fn=worker_init if self.workers else None,
            timeout=self.timeout_s if self.workers else 0,
            generator=torch.Generator().manual_seed(0),  # its base seed: not a draw from the global generator
        )
        with workers_shielded():
            return iter(loader)

    def _fetch(self, it: Iterator) -> tuple[Inputs, torch.Tensor]:
        batch = fetch_batch(it)  # a worker that died or timed out: one line (hung ones are ended)
        if isinstance(batch, str):
            raise DataError(batch)
        x, y = batch
        return model_view(to_device(x, self.device)), y.to(self.device)

    def train_batch(self, b: int, generator: torch.Generator | None = None):
        if self._iter is None or b != self._next:
            self.close()
            self._iter = self._start(self.train, _PlanBatches(self.plan, self.train.rows, b, self.shard))
        x, y = self._fetch(self._iter)
        self._next = b + 1
        idx = self.plan.indices(b)[shard_rows(self.shard, self.plan.batch_size)].to(self.device)
        return x, y, self.weights[:, idx] if self.weights is not None else None

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        s = {"test": self.test, "train": self.train, "val": self.val, "ood": None}[split]
        if s is None:
            return
        rows = s.rows.tolist()
        chunks = [
            [(i, derive_seed(self.plan.seed, _ITEM, "eval", k)) for i in rows[k : k + batch_size]]
            for k in range(0, len(rows), batch_size)
        ]
        it = self._start(s, chunks)
        for _ in chunks:
            yield self._fetch(it)

    def split_size(self, split: str) -> int:
        s = {"test": self.test, "train": self.train, "val": self.val, "ood": None}[split]
        return 0 if s is None else len(s.rows)

    def close(self) -> None:
        """Stop the training batches' workers (the next ``train_batch`` starts them again)."""
        self._iter, self._next = None, -1

    def _first(self) -> tuple[Inputs, torch.Tensor]:
        """The first training example as stored, a batch of 1 on the CPU (read once)."""
        if self._example is None:
            i = int(self.train.rows[0])
            x, y = item_tensors(
                _Indexed(self.train.dataset)[i, derive_seed(self.plan.seed, _ITEM, "first")][1],
                f"{self.train.name}[{i}]",
            )
            check_like(x, y, self.train.first, self.train.name, i)
            self._example = stack_items([(x, y)])
        return self._example

    def example_input(self) -> Inputs:
        return model_view(self._first()[0])

    def input_spec(self) -> dict:
        return input_spec(self._first()[0])

    def task_targets(self) -> torch.Tensor:
        return self._first()[1]

    def target_shape(self) -> tuple[int, ...]:
        return tuple(self._first()[1].shape[1:])

    def describe(self) -> dict:
        return {**super().describe(), "loader": "stream", "workers": self.workers}


def _labels(ds: Any, name: str, n: int, first: tuple[Inputs, torch.Tensor], seed: int) -> torch.Tensor:
    """Every class label of a split ``(n,)`` (its first one's dtype), checked as batches are: the Dataset's
    ``targets`` when it has one of length ``n``, else one pass over its items."""
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == n:
        ys = [as_tensor(t, f"{name}.targets[{i}]") for i, t in enumerate(targets)]
        for i, y in enumerate(ys):
            check_same(y, first[1], f"{name}.targets", i)
        return torch.stack(ys)
    if n > _LONG_SCAN:
        log.info(
            "reading all %d items of %s for their labels (give the Dataset a `targets` attribute to skip "
            "this pass)",
            n,
            name,
        )
    ys, items = [], _Indexed(ds)
    for start in range(0, n, _LABEL_CHUNK):
        chunk = range(start, min(start + _LABEL_CHUNK, n))
        for i, item in items.__getitems__([(i, derive_seed(seed, _ITEM, "labels", start)) for i in chunk]):
            x, y = item_tensors(item, f"{name}[{i}]")
            check_like(x, y, first, name, i)
            ys.append(y)
    return torch.stack(ys)


def _split_head(ds: Any, name: str) -> tuple[int, tuple[Inputs, torch.Tensor]]:
    """A split's length and first example as tensors (a one-line error for an IterableDataset, no len, an
    empty set, an item that is not a pair)."""
    n, first = check_user_dataset(ds, name)
    return n, item_tensors(first, f"{name}[0]")


def stream_datasets(
    train: Any,
    test: Any = None,
    *,
    batch_size: int,
    seed: int,
    members: int,
    device: torch.device,
    workers: int = 0,
    bagging: bool = False,
    classify: bool = False,
    choice: RowChoice = RowChoice(),
    timeout_s: float = WORKER_TIMEOUT_S,
) -> DatasetStream:
    """``train`` (and ``test``; None: evaluate on ``train``), map-style Datasets of ``(input, target)``,
    streamed in batches of ``batch_size`` in the order ``seed`` draws, to ``device``, by ``workers`` processes
    (0: in this one). ``members``: M, for the bagging weights (``bagging``: each member's bootstrap counts);
    ``classify``: the targets are class labels, whose classes are counted (classification); ``choice``:
    which examples the run uses."""
    n_train, first_train = _split_head(train, "train")
    n_test, first_test = (n_train, first_train) if test is None else _split_head(test, "test")
    check_splits_alike(first_train, first_test)
    labels: list[torch.Tensor | None] = [None, None]
    for k, (ds, name, n, first, limit) in enumerate(
        (
            (train, "train", n_train, first_train, choice.train_limit),
            (test, "test", n_test, first_test, choice.test_limit),
        )
    ):
        if not class_targets(first[1].unsqueeze(0)):
            if classify:
                raise not_class_indices(name, first[1].dtype, (n, *first[1].shape))
        elif classify or (limit is not None and limit < n):
            if ds is None:  # the test split is the train split
                labels[k] = labels[0] if labels[0] is not None else _labels(train, "train", n, first, seed)
            else:
                labels[k] = _labels(ds, name, n, first, seed)
    rows = choose_rows(choice, seed, n_train, n_test, *labels)
    classes = None
    if classify:
        assert labels[0] is not None and labels[1] is not None  # class labels, read above
        classes = count_classes(labels[0][rows.train], labels[1][rows.test], (rows.train, rows.test))
    test_split = (
        StreamSplit(train, "train", rows.test, first_train)
        if test is None
        else StreamSplit(test, "test", rows.test, first_test)
    )
    return DatasetStream(
        device=device,
        train=StreamSplit(train, "train", rows.train, first_train),
        test=test_split,
        val=None if rows.val is None else StreamSplit(train, "train", rows.val, first_train),
        plan=BatchPlan(len(rows.train), batch_size, seed),
        weights=bagging_weights(len(rows.train), members, seed, bagging, device),
        classes=classes,
        workers=workers,
        timeout_s=timeout_s,
    )


def stream_from_config(cfg: Config, device: torch.device, train: Any, test: Any = None) -> DatasetStream:
    """:func:`stream_datasets` with the arguments a run's config gives (``data.workers`` null: the cores the
    training threads leave)."""
    refuse_image_settings(cfg.data)
    tc = cfg.task
    if tc.name == "segmentation" and tc.num_classes is None:
        raise ConfigError(
            "task.num_classes: got None; streamed segmentation (data.loader: stream) needs the class count "
            "given, an integer >= 1 (the masks are not read ahead to count it)"
        )
    return stream_datasets(
        train,
        test,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        members=cfg.model.members,
        device=device,
        workers=default_workers(cfg.data.workers),
        bagging=cfg.data.bagging,
        classify=tc.is_classification,
        choice=RowChoice.of(cfg.data),
    )


def example_bytes(ds: Any, name: str) -> int:
    """Bytes of ``ds``'s first example as tensors (to size the whole set before choosing to stream it)."""
    x, y = _split_head(ds, name)[1]
    parts = list(x.values()) if isinstance(x, dict) else [x]
    return sum(t.numel() * t.element_size() for t in (*parts, y))
