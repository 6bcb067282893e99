"""Tables (CSV or Parquet) as `(input, target)` Datasets for any task (issue 32).

`read_table(path, features, targets, kind=...)` reads the named columns of one file (`read_features(path,
features)` only the inputs, as a table to predict on may have no target column; `table_columns(path)` the
names its header or schema holds):

- inputs: the `features` columns as float32 `(N, F)`;
- targets, `kind="regression"`: the `targets` columns as float32 `(N, D)`; `kind="classification"`: one
  column of integer class indices, int64 `(N,)`, exact ("2" and "2.0" are class 2; "2.7", "true", "cat" and
  negative values are refused; `num_classes`, when given, bounds them);
- splits: `split_column` names a column of "train" / "val" / "test" per row; or `test_fraction` and `seed`
  draw a seeded split (`mheads.data.pairs.seeded_split`); neither: every row is "train". The result is
  `{split name: TensorPairs}`.

Strict: a missing, empty or non-finite value (or one beyond float32's range) is refused naming the file, its
row (counted from 1, the header not counted; a CSV's line number too) and column; so are a missing column, a
duplicated header, a ragged CSV row and a column used twice. The file is read only when it is a regular file
within `mheads.data.bounds.read_limit()` bytes (a Parquet file's uncompressed size is checked too, before
decoding). CSV is parsed with the standard library (UTF-8, an optional BOM, any `csv` dialect via
`delimiter`); Parquet needs `pyarrow` (an optional dependency).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import torch

from mheads.core.checks import check_choice, check_int
from mheads.data.bounds import read_limit, too_big
from mheads.data.errors import DataError
from mheads.data.files import display, read_regular
from mheads.data.pairs import TensorPairs, seeded_split

__all__ = ["KINDS", "MAX_CLASSES", "SPLITS", "read_features", "read_table", "table_columns"]

KINDS = ("regression", "classification")
SPLITS = ("train", "val", "test")
MAX_CLASSES = 2**16  # without num_classes, a larger label is more likely a stray value than a class
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_F32_MAX = float(np.finfo(np.float32).max)
_ENCODE = " (a text column, e.g. a category: encode it as numbers first, e.g. one 0/1 column per value)"


def _names(field: str, value: Any, allow_empty: bool = False) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, Sequence)
        or not all(isinstance(n, str) and n for n in names)
        or (not names and not allow_empty)
    ):
        raise ValueError(f"{field}: got {value!r}; expected a column name or a non-empty list of them")
    return list(names)


def _where(path: str, row: int, line: int | None, column: str) -> str:
    at = f"row {row}" + (f" (line {line})" if line is not None else "")
    return f"{path}: {at}, column {column!r}"


def _float(raw: str, where: str) -> float:
    text = raw.strip()
    if not text:
        raise DataError(f"{where}: missing value; expected a finite number (fill or drop the row)")
    if not _NUMBER.fullmatch(text):
        low = text.lower().lstrip("+-")
        if low in ("nan", "inf", "infinity"):
            raise DataError(f"{where}: got {raw!r}; expected a finite number")
        hint = "" if any(ch.isdigit() for ch in text) else _ENCODE  # "green", not a mistyped number
        raise DataError(f"{where}: got {raw!r}; expected a decimal number{hint}")
    value = float(text)
    if not math.isfinite(value) or abs(value) > _F32_MAX:
        raise DataError(f"{where}: got {raw!r}; expected a finite number within float32's range")
    return value


def _label(value: Any, where: str, num_classes: int | None) -> int:
    """An exact non-negative integer class index from a CSV string or a Parquet value."""
    top = num_classes if num_classes is not None else MAX_CLASSES
    allowed = f"an integer class index 0..{top - 1}"
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise DataError(f"{where}: got {value!r}; expected {allowed}")
    text = value.strip() if isinstance(value, str) else repr(value)
    if isinstance(value, str) and not text:
        raise DataError(f"{where}: missing value; expected {allowed} (fill or drop the row)")
    try:  # Decimal: exact, so "2.0000000000000001" is not class 2
        exact = Decimal(text if isinstance(value, str) else value)
        ok = (
            exact.is_finite()
            and exact == exact.to_integral_value()
            and (not isinstance(value, str) or _NUMBER.fullmatch(text) is not None)
        )
    except (InvalidOperation, TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(
            f"{where}: got {value!r}; expected {allowed} (exact: no fractions, booleans or names)"
        )
    label = int(exact)
    if not 0 <= label < top:
        hint = "" if num_classes is not None else f" (give num_classes to allow {MAX_CLASSES} or more)"
        raise DataError(f"{where}: got {value!r}; expected {allowed}{hint}")
    return label


def _read_csv(
    data: bytes, where: str, columns: list[str], delimiter: str
) -> tuple[dict[str, list[str]], list[int]]:
    """{column: raw strings} for `columns`, and each row's line number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a UTF-8 CSV file"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{where}: empty file; expected a header row naming the columns")
        header = [h.strip() for h in header]
        seen = {h for h in header if header.count(h) > 1}
        if seen:
            raise DataError(
                f"{where}: header names column {sorted(seen)[0]!r} more than once; expected "
                "unique column names"
            )
        _check_columns(where, columns, header)
        index = [header.index(c) for c in columns]
        out: dict[str, list[str]] = {c: [] for c in columns}
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise DataError(
                    f"{where}: row {len(lines) + 1} (line {reader.line_num}) has {len(row)} "
                    f"fields; expected {len(header)}, one per header column"
                )
            lines.append(reader.line_num)
            for c, i in zip(columns, index):
                out[c].append(row[i])
    except csv.Error as exc:
        raise DataError(f"{where}: line {reader.line_num}: malformed CSV ({exc})") from None
    return out, lines


def _check_columns(where: str, wanted: list[str], present: list[str]) -> None:
    for c in wanted:
        if c not in present:
            shown = ", ".join(repr(p) for p in present[:20]) + (", ..." if len(present) > 20 else "")
            raise DataError(f"{where}: no column {c!r}; expected one of the file's columns: {shown}")


def _read_parquet(
    data: bytes, where: str, columns: list[str], limit: int, text_column: str | None
) -> dict[str, Any]:
    """{column: numpy array} (the split column `text_column`: a list of its values)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{where}: reading Parquet needs pyarrow (pip install pyarrow); or save the table as CSV"
        ) from None
    try:
        handle = pq.ParquetFile(io.BytesIO(data), read_dictionary=[text_column] if text_column else None)
        meta, names = handle.metadata, list(handle.schema_arrow.names)
        _check_columns(where, columns, names)
        # Decoded, a numeric column takes 8 bytes a row whatever its encoding (a run-length-encoded column of
        # 10**12 zeros is a few bytes on disk); the split column, read as a dictionary, its pages' size.
        chunks = [
            meta.row_group(g).column(i)
            for g in range(meta.num_row_groups)
            for i in range(len(names))
            if names[i] in columns
        ]
        size = meta.num_rows * 8 * len(columns) + sum(c.total_uncompressed_size for c in chunks)
        if size > limit:
            raise too_big(where, size, limit, "declares a decoded size of")
        table = handle.read(columns=columns)
    except DataError:
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes means a bad file
        raise DataError(
            f"{where}: corrupt or unreadable Parquet file ({type(exc).__name__}: {exc})"
        ) from None
    out: dict[str, Any] = {}
    for c in columns:
        column = table.column(c)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"{_where(where, row + 1, None, c)}: missing value; expected a value in every row"
            )
        if c == text_column:
            out[c] = column.to_pylist()
            continue
        values = column.to_numpy()
        if values.dtype.kind not in "iuf":
            first = values[0].item() if isinstance(values[0], np.generic) else values[0]
            raise DataError(
                f"{_where(where, 1, None, c)}: got {first!r} ({column.type}); expected a numeric "
                "column (integers or floating point)" + (_ENCODE if isinstance(first, str) else "")
            )
        out[c] = values
    return out


def _parquet_floats(values: np.ndarray, where: str, column: str) -> np.ndarray:
    wide = values.astype(np.float64)
    bad = ~np.isfinite(wide) | (np.abs(wide) > _F32_MAX)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{_where(where, row + 1, None, column)}: got {values[row].item()!r}; expected a "
            "finite number within float32's range"
        )
    return wide.astype(np.float32)


def _parquet_labels(values: np.ndarray, where: str, column: str, num_classes: int | None) -> np.ndarray:
    top = num_classes if num_classes is not None else MAX_CLASSES
    wide = values.astype(np.float64) if values.dtype.kind == "f" else values
    bad = (wide < 0) | (wide >= top)
    if values.dtype.kind == "f":
        bad |= ~np.isfinite(wide) | (wide != np.round(wide))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        _label(values[row].item(), _where(where, row + 1, None, column), num_classes)  # raises, worded once
    return wide.astype(np.int64)


def _split_names(raw: list, where: str, column: str, lines: list | None) -> list[str]:
    out = []
    for i, v in enumerate(raw):
        name = v.strip() if isinstance(v, str) else v
        if name not in SPLITS:
            line = lines[i] if lines is not None else None
            raise DataError(
                f"{_where(where, i + 1, line, column)}: got {v!r}; expected one of {', '.join(SPLITS)}"
            )
        out.append(name)
    return out


def read_table(
    path: str | os.PathLike,
    features: str | Sequence[str],
    targets: str | Sequence[str],
    *,
    kind: str = "regression",
    num_classes: int | None = None,
    split_column: str | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    delimiter: str = ",",
    file_format: str | None = None,
) -> dict[str, TensorPairs]:
    """`{split: TensorPairs(inputs (n, F) float32, targets)}` from a CSV or Parquet file; see the module
    docstring. `file_format`: "csv" or "parquet" (None: from the suffix, `.parquet`/`.pq` or anything else
    as CSV)."""
    check_choice("kind", kind, KINDS)
    feats, targs, columns = _roles(features, targets, kind, num_classes, split_column, test_fraction)
    table = _read(path, columns, split_column, delimiter, file_format)
    pairs = TensorPairs(_floats(table, feats), _targets(table, targs, kind, num_classes))
    return _splits(table, pairs, split_column, test_fraction, seed)


def read_features(
    path: str | os.PathLike,
    features: str | Sequence[str],
    *,
    delimiter: str = ",",
    file_format: str | None = None,
) -> torch.Tensor:
    """The `features` columns of a CSV or Parquet file as float32 `(n, F)`, every row, checked as
    `read_table` checks them; no target or split column is read (a table to predict on need not have one)."""
    feats = _names("features", features)
    twice = sorted({c for c in feats if feats.count(c) > 1})
    if twice:
        raise ValueError(f"features: {twice[0]!r} is named more than once; expected each column once")
    return _floats(_read(path, feats, None, delimiter, file_format), feats)


def table_columns(
    path: str | os.PathLike, *, delimiter: str = ",", file_format: str | None = None
) -> list[str]:
    """The column names of a CSV file's header or a Parquet file's schema, no value decoded (e.g. whether a
    table to predict on carries the target columns). A file whose bytes are no table has none here:
    `read_table` and `read_features` say why."""
    fmt = _format(path, file_format)
    data = read_regular(path, display(path), max_bytes=read_limit())
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return [str(n) for n in pq.ParquetFile(io.BytesIO(data)).schema_arrow.names]
        reader = csv.reader(
            io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter, strict=True
        )
        return [h.strip() for h in next(reader, [])]
    except Exception:  # undecodable bytes, a malformed header, no pyarrow: the readers' own errors tell
        return []


def _format(path: str | os.PathLike, file_format: str | None) -> str:
    """`file_format` ("csv" or "parquet"), else by suffix: `.parquet`/`.pq` or anything else as CSV."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    fmt = file_format if file_format is not None else ("parquet" if suffix in (".parquet", ".pq") else "csv")
    check_choice("file_format", fmt, ("csv", "parquet"))
    return fmt


def _roles(
    features: str | Sequence[str],
    targets: str | Sequence[str],
    kind: str,
    num_classes: int | None,
    split_column: str | None,
    test_fraction: float | None,
) -> tuple[list[str], list[str], list[str]]:
    """The feature and target columns, and every column to read (the split column last); each argument
    checked (``ValueError`` naming it) before the file is opened."""
    feats, targs = _names("features", features), _names("targets", targets)
    if kind == "classification" and len(targs) != 1:
        raise ValueError(f"targets: got {targs!r}; expected one column of class indices for classification")
    if num_classes is not None:
        check_int("num_classes", num_classes, 1)
    if split_column is not None and test_fraction is not None:
        raise ValueError(
            f"test_fraction: got {test_fraction!r} with split_column {split_column!r}; expected "
            "one of them (the file's split or a seeded one)"
        )
    columns = feats + targs + ([split_column] if split_column is not None else [])
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(
            f"columns: {twice[0]!r} is named more than once among features, targets and "
            "split_column; expected each column in one role"
        )
    return feats, targs, columns


@dataclass(frozen=True, eq=False)
class _Table:
    """A file's `columns` as read: CSV's raw strings with each row's line number (`lines`), or Parquet's
    numpy arrays (`lines` None; the split column a list of its values); `n` rows, `where` the file as
    messages name it."""

    where: str
    columns: dict[str, Any]
    lines: list[int] | None
    n: int


def _read(
    path: str | os.PathLike,
    columns: list[str],
    split_column: str | None,
    delimiter: str,
    file_format: str | None,
) -> _Table:
    """The `columns` of the regular file `path` (within `read_limit()` bytes), as CSV or Parquet
    (`file_format`, else by suffix); a file without data rows is refused."""
    where = display(path)
    fmt = _format(path, file_format)
    limit = read_limit()
    data = read_regular(path, where, max_bytes=limit)
    raw: dict[str, Any]
    lines: list[int] | None
    if fmt == "csv":
        raw, lines = _read_csv(data, where, columns, delimiter)
    else:
        raw, lines = _read_parquet(data, where, columns, limit, split_column), None
    n = len(raw[columns[0]])
    if n == 0:
        raise DataError(f"{where}: no data rows; expected at least one row below the header")
    return _Table(where, raw, lines, n)


def _floats(table: _Table, cols: list[str]) -> torch.Tensor:
    """The `cols` as float32 `(n, len(cols))`; a value that is not a finite float32 refused naming its row."""
    where, raw, lines = table.where, table.columns, table.lines
    if lines is None:
        return torch.from_numpy(np.stack([_parquet_floats(raw[c], where, c) for c in cols], axis=1))
    out = np.empty((table.n, len(cols)), dtype=np.float32)
    for j, c in enumerate(cols):
        for i, v in enumerate(raw[c]):
            out[i, j] = _float(v, _where(where, i + 1, lines[i], c))
    return torch.from_numpy(out)


def _targets(table: _Table, targs: list[str], kind: str, num_classes: int | None) -> torch.Tensor:
    """Regression: the `targs` columns as float32 `(n, D)`; classification: the one column's exact class
    indices, int64 `(n,)`."""
    if kind == "regression":
        return _floats(table, targs)
    where, raw, lines, c = table.where, table.columns, table.lines, targs[0]
    if lines is None:
        return torch.from_numpy(_parquet_labels(raw[c], where, c, num_classes))
    return torch.tensor(
        [_label(v, _where(where, i + 1, lines[i], c), num_classes) for i, v in enumerate(raw[c])],
        dtype=torch.int64,
    )


def _splits(
    table: _Table, pairs: TensorPairs, split_column: str | None, test_fraction: float | None, seed: int
) -> dict[str, TensorPairs]:
    """`pairs` by split: the file's `split_column`, a seeded split of `test_fraction`, or all "train"."""
    if split_column is not None:
        names = _split_names(table.columns[split_column], table.where, split_column, table.lines)
        return {
            s: pairs.subset(torch.tensor([i for i, v in enumerate(names) if v == s], dtype=torch.int64))
            for s in SPLITS
            if s in names
        }
    if test_fraction is not None:
        if table.n < 2:
            raise DataError(f"{table.where}: {table.n} data row; a seeded split needs at least 2")
        train, test = seeded_split(table.n, test_fraction, seed)
        return {"train": pairs.subset(train), "test": pairs.subset(test)}
    return {"train": pairs}
