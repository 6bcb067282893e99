"""The command line's data sources for any task (issue 32): ``data.source`` a CSV / Parquet table (the
``data.features`` and ``data.targets`` columns), an ``.npz`` file (the ``data.inputs`` and ``data.targets``
arrays) or a folder of images beside a parallel folder of masks (``images/`` and ``masks/``), read through
:func:`~mheads.data.tables.read_table`, :func:`~mheads.data.arrays.read_npz` and
:func:`~mheads.data.masks.read_mask_folder`. Splits: a table's ``data.split_column``, else a seeded
``data.test_fraction`` (seeded by ``train.seed``), else none (the run evaluates on its training examples).
"""

from __future__ import annotations

import os
from pathlib import Path

from mheads.config import Config, ConfigError
from mheads.data.arrays import read_npz
from mheads.data.errors import DataError
from mheads.data.masks import read_mask_folder
from mheads.data.pairs import TensorPairs, seeded_split
from mheads.data.tables import read_table

__all__ = ["TABLE_SUFFIXES", "read_task_source", "task_source_kind"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def task_source_kind(source: str | os.PathLike | None) -> str | None:
    """ "table", "npz", "masks" (a folder holding images/ and masks/), or None (an image-classification
    source, read as before)."""
    if source is None:
        return None
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix == ".npz":
        return "npz"
    if path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
        return "masks"
    return None


def _split(pairs: TensorPairs, fraction: float | None, seed: int, where: str):
    if fraction is None:
        return pairs, None
    if len(pairs) < 2:
        raise DataError(f"{where}: {len(pairs)} example; data.test_fraction needs at least 2")
    train, test = seeded_split(len(pairs), fraction, seed)
    return pairs.subset(train), pairs.subset(test)


def read_task_source(cfg: Config) -> tuple[TensorPairs, TensorPairs | None]:
    """``(train, test or None)`` of ``cfg.data.source`` (a kind :func:`task_source_kind` names)."""
    d, task, source = cfg.data, cfg.task, cfg.data.source
    kind = task_source_kind(source)
    where = str(source)
    if kind is None or source is None:  # no source has no kind
        raise ConfigError(
            f"data.source: got {where!r}; expected a .csv/.tsv/.parquet table, an .npz file or "
            f"a folder with images/ and masks/ for task {task.name!r}"
        )
    if kind == "masks":
        if task.name != "segmentation":
            raise ConfigError(
                f"task.name: got {task.name!r}; a folder of images and masks is a "
                "segmentation source (task.name: segmentation)"
            )
        pairs = read_mask_folder(source, num_classes=task.num_classes, ignore_index=task.ignore_index)
        return _split(pairs, d.test_fraction, cfg.train.seed, where)
    if kind == "npz":
        npz_kind = {"classification": "classification", "segmentation": "segmentation"}.get(
            task.name, "regression"
        )
        if isinstance(d.targets, list):
            raise ConfigError(f"data.targets: got {d.targets!r}; expected one array name for an .npz source")
        pairs = read_npz(
            source,
            d.inputs or "x",
            d.targets or "y",
            kind=npz_kind,
            num_classes=task.num_classes,
            ignore_index=task.ignore_index,
        )
        return _split(pairs, d.test_fraction, cfg.train.seed, where)
    if d.features is None or d.targets is None:
        missing = "data.features" if d.features is None else "data.targets"
        raise ConfigError(f"{missing}: got None; expected the column names a table source ({where}) reads")
    if task.name not in ("classification", "regression", "multi_hypothesis"):
        raise ConfigError(f"task.name: got {task.name!r}; a table holds classification or regression targets")
    split = read_table(
        source,
        d.features,
        d.targets,
        kind="classification" if task.is_classification else "regression",
        split_column=d.split_column,
        test_fraction=d.test_fraction,
        seed=cfg.train.seed,
        delimiter="\t" if where.lower().endswith(".tsv") else ",",
    )
    if "train" not in split:
        raise DataError(f"{where}: no row of the train split; expected some rows marked train")
    return split["train"], split.get("test")
