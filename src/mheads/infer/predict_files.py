"""``mheads predict``'s input files for a run on inputs of any shape (issue 32): table rows, ``.npz`` arrays
or images, with their targets where the files hold the run's (:mod:`mheads.infer.predict_oracle`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from mheads.config import ConfigError
from mheads.config.task import PYTHON_TASK
from mheads.data.errors import DataError
from mheads.data.pairs import TensorPairs
from mheads.infer.predict_oracle import leave_out
from mheads.infer.predict_task import npz_input_names

__all__ = ["read_input_files"]


def read_input_files(run, paths: list[str]) -> tuple[Any, list[tuple[str, Any]]]:
    """``mheads predict``'s inputs for a run on inputs of any shape: table files (the run's
    ``data.features`` columns; a record per row, ``path:row``), ``.npz`` files (the arrays
    :func:`npz_input_names` names, no targets needed: a dict per example for a list of them; ``path:index``)
    or image files (segmentation; a record per file). Where every file holds the run's targets (a table its
    ``data.targets`` columns, an ``.npz`` file its targets array) and they fit the run, the inputs come as
    ``TensorPairs`` with them (records then name the oracle: :mod:`mheads.infer.predict_oracle`); targets
    that do not fit (a label the run never trained on, text, another type) leave the oracle out, with one
    ``UserWarning`` naming the file, the column and the first bad value."""
    from mheads.config import load_config
    from mheads.data.decode import decode, read_image_file
    from mheads.train.run_model import run_meta

    cfg = load_config(Path(run) / "config.yaml")
    meta = run_meta(Path(run))
    names = npz_input_names(cfg.data.inputs, meta.get("input"))
    chunks: list[Any] = []
    targets: list[torch.Tensor | None] = []
    keys: list[tuple[str, Any]] = []
    for p in paths:
        suffix = Path(p).suffix.lower()
        x: Any
        y = None
        if suffix in (".csv", ".tsv", ".parquet", ".pq"):
            x, y = _table_rows(p, cfg, meta.get("num_classes"))
            keys.extend(("path", f"{p}:{i + 1}") for i in range(len(x)))
        elif suffix == ".npz":  # a file to predict needs no targets
            x, y = _npz_rows(p, cfg, meta.get("num_classes"), names)
            keys.extend(("path", f"{p}:{i}") for i in range(_rows(x)))
        else:
            import numpy as np

            picture = np.array(decode(read_image_file(Path(p), str(p)), str(p)))
            x = torch.from_numpy(
                np.ascontiguousarray(picture[None] if picture.ndim == 2 else picture.transpose(2, 0, 1))
            )[None]
            keys.append(("path", str(p)))
        chunks.append(x)
        targets.append(y)
    joined = _joined(chunks, paths)
    if all(y is not None for y in targets):
        return TensorPairs(joined, torch.cat([y for y in targets if y is not None])), keys
    return joined, keys


def _table_rows(path: str, cfg: Any, num_classes: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A table's ``data.features`` rows ``(n, F)``, and its ``data.targets`` columns where it has them all
    and they read as training read them, else None (a UserWarning says why where they do not read):
    predicting needs no targets."""
    from mheads.data.tables import read_features, read_table, table_columns

    if not cfg.data.features:
        raise ConfigError(f"{path}: the run names no data.features columns to read from a table")
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    wanted = cfg.data.targets if isinstance(cfg.data.targets, list) else [cfg.data.targets]
    if cfg.data.targets is None or not set(wanted) <= set(table_columns(path, delimiter=delimiter)):
        return read_features(path, cfg.data.features, delimiter=delimiter), None
    kind = "classification" if cfg.task.name == "classification" else "regression"
    try:
        pairs = read_table(
            path, cfg.data.features, wanted, kind=kind, num_classes=num_classes, delimiter=delimiter
        )["train"]
    except DataError as err:  # the features' own fault raises again here; the targets' leaves the oracle out
        inputs = read_features(path, cfg.data.features, delimiter=delimiter)
        leave_out(err)
        return inputs, None
    return cast(torch.Tensor, pairs.inputs), cast(torch.Tensor, pairs.targets)  # a table's are tensors


def _npz_rows(
    path: str, cfg: Any, num_classes: int | None, names: str | list[str]
) -> tuple[Any, torch.Tensor | None]:
    """An ``.npz`` file's inputs (the arrays ``names``), and its targets array (``data.targets``, else "y")
    where it holds one that reads as training read it; else None (a UserWarning says why where it does not
    read). A user's task (its targets are anything) reads the inputs alone."""
    from mheads.data.arrays import npz_names, read_npz, read_npz_inputs

    target = cfg.data.targets if isinstance(cfg.data.targets, str) else "y"
    if cfg.task.name == PYTHON_TASK or target not in npz_names(path):
        return read_npz_inputs(path, names), None
    kind = {"classification": "classification", "segmentation": "segmentation"}.get(
        cfg.task.name, "regression"
    )
    try:
        pairs = read_npz(
            path, names, target, kind=kind, num_classes=num_classes, ignore_index=cfg.task.ignore_index
        )
    except DataError as err:  # as for a table: the inputs' own fault raises again
        inputs = read_npz_inputs(path, names)
        leave_out(err)
        return inputs, None
    return pairs.inputs, cast(torch.Tensor, pairs.targets)  # an .npz file's are tensors


def _rows(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _joined(chunks: list[Any], paths: list[str]) -> Any:
    """The files' inputs as one batch: tensors joined, or dicts joined key by key (the same keys: the run's
    ``data.inputs``)."""

    def shapes(c: Any) -> str:
        if isinstance(c, dict):
            return str({k: tuple(v.shape[1:]) for k, v in c.items()})
        return str(tuple(c.shape[1:]))

    try:
        if isinstance(chunks[0], dict):
            if not all(isinstance(c, dict) for c in chunks):
                raise RuntimeError("a dict among tensors")
            return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        return torch.cat(chunks)
    except (RuntimeError, TypeError):
        raise DataError(
            f"{' '.join(paths)}: inputs of different shapes ({', '.join(map(shapes, chunks))}); predict them "
            "separately"
        ) from None
