"""`.npz` arrays as an `(input, target)` Dataset for any task (issue 32).

`read_npz(path, inputs="x", targets="y", kind=...)` reads two named arrays of one `.npz` file (`np.savez` or
`np.savez_compressed`), N examples each:

- inputs: any shape `(N, ...)`: `(N, F)` features, `(N, C, T)` series, `(N, C, H, W)` images; floating
  arrays become float32 (every value finite, within float32's range), integer arrays int64 (token ids), but
  uint8 arrays stay uint8: pixels, given to the model as [0, 1] floats, the one uint8 rule of every path
  (`mheads.data.tensors.pixels_scaled`; give ids as int32/int64);
  a list of names (`["input_ids", "attention_mask"]`) makes each example's input the dict `{name: array[i]}`,
  as a Dataset of dict inputs gives it to the model: arrays of one length N, each `(N, ...)` (`(N,)`: a
  number per example), uint8 ones pixels as above, other integer and boolean ones int64, floating ones
  float32 as above;
- targets by `kind`: "classification" `(N,)` integer class indices (int64; exact, so 2.7 and booleans are
  refused; `num_classes` bounds them); "regression" `(N,)` or `(N, D)` finite numbers (float32);
  "segmentation" `(N, H, W)` integer masks (int64) of classes `0..num_classes-1` or `ignore_index`, with
  inputs `(N, C, H, W)` of the same H and W.

Nothing is unpickled (`allow_pickle=False`; an object array is refused). Sizes are bounded before anything is
allocated: the file by `mheads.data.bounds.read_limit()`, each array by the shape and dtype in its `.npy`
header (Python integers, no wrap-around), which must also fit the member's declared size in the archive.
Errors are one line naming the file, the array and the bad value (with its index).
`read_npz_inputs(path, inputs)` reads the inputs alone (a file to predict, without targets); `npz_names(path)`
names the arrays a file holds.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mheads.core.checks import check_choice, check_int
from mheads.data.bounds import read_limit, too_big
from mheads.data.errors import DataError
from mheads.data.files import display, read_regular
from mheads.data.pairs import TensorPairs
from mheads.data.tables import MAX_CLASSES

__all__ = ["KINDS", "npz_names", "read_npz", "read_npz_inputs"]

KINDS = ("classification", "regression", "segmentation")
_F32_MAX = float(np.finfo(np.float32).max)


def _header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _, dtype = read[version](member, max_header_size=10_000)
    return tuple(int(s) for s in shape), dtype


def _load(archive: zipfile.ZipFile, key: str, where: str, limit: int) -> np.ndarray:
    name = f"{key}.npy"
    try:
        info = archive.getinfo(name)
    except KeyError:
        keys = sorted(n[:-4] for n in archive.namelist() if n.endswith(".npy"))
        raise DataError(
            f"{where}: no array {key!r}; expected one of the file's arrays: "
            f"{', '.join(map(repr, keys)) or 'none'}"
        ) from None
    at = f"{where}:{key}"
    if info.file_size > limit:
        raise too_big(at, info.file_size, limit, "declares")
    try:
        with archive.open(info) as member:
            shape, dtype = _header(member)
            if dtype.hasobject:
                raise DataError(
                    f"{at}: an object array ({dtype}); expected a numeric array (objects need "
                    "pickle, which is never loaded)"
                )
            size = math.prod(shape) * dtype.itemsize  # Python ints: a 2**62-element shape cannot wrap
            if size > info.file_size:
                raise DataError(
                    f"{at}: header declares shape {shape} of {dtype} ({size} bytes) but the "
                    f"member holds {info.file_size} bytes; expected an intact .npy"
                )
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:  # any failure on untrusted bytes means a bad file
        raise DataError(f"{at}: corrupt or unreadable array ({type(exc).__name__}: {exc})") from None


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _as_float32(array: np.ndarray, at: str) -> torch.Tensor:
    if array.dtype.kind not in "fiu":
        raise DataError(f"{at}: dtype {array.dtype}; expected a floating or integer array")
    wide = array.astype(np.float64)
    bad = ~np.isfinite(wide) | (np.abs(wide) > _F32_MAX)
    if bad.any():
        i = _first(bad)
        raise DataError(
            f"{at}: got {array[i].item()!r} at index {i}; expected finite numbers within float32's range"
        )
    return torch.from_numpy(wide.astype(np.float32))


def _as_classes(array: np.ndarray, at: str, top: int, ignore_index: int | None = None) -> torch.Tensor:
    allowed = f"integer class indices 0..{top - 1}" + (
        f" or ignore_index {ignore_index}" if ignore_index is not None else ""
    )
    if array.dtype.kind == "f":
        fractional = ~np.isfinite(array) | (array != np.round(array))
        if fractional.any():
            i = _first(fractional)
            raise DataError(f"{at}: got {array[i].item()!r} at index {i}; expected {allowed} (exact)")
    elif array.dtype.kind not in "iu":
        raise DataError(f"{at}: dtype {array.dtype}; expected {allowed}")
    wide = array.astype(np.float64) if array.dtype.kind == "f" else array
    bad = (wide < 0) | (wide >= top)
    if ignore_index is not None:
        bad &= wide != ignore_index
    if bad.any():
        i = _first(bad)
        raise DataError(f"{at}: got {array[i].item()!r} at index {i}; expected {allowed}")
    return torch.from_numpy(wide.astype(np.int64))


def _names(inputs: str | Sequence[str]) -> list[str]:
    """The input array names: one name, or a non-empty list of distinct names (each example then a dict)."""
    if isinstance(inputs, str):
        if inputs:
            return [inputs]
    elif isinstance(inputs, (list, tuple)) and inputs and all(isinstance(n, str) and n for n in inputs):
        twice = sorted({n for n in inputs if list(inputs).count(n) > 1})
        if not twice:
            return list(inputs)
        raise ValueError(f"inputs: got {list(inputs)!r}; expected distinct array names ({twice[0]!r} twice)")
    raise ValueError(
        f"inputs: got {inputs!r}; expected the name of an array in the file or a non-empty list of names"
    )


def _open(path: str | os.PathLike, where: str, limit: int) -> zipfile.ZipFile:
    data = read_regular(path, where, max_bytes=limit)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataError(
            f"{where}: not a .npz file ({exc}); expected an archive written by np.savez"
        ) from None


def _integers(array: np.ndarray) -> torch.Tensor:
    """Integers as a Dataset's are read: uint8 kept (pixels, scaled for the model by
    :func:`mheads.data.tensors.pixels_scaled`), any other integer or boolean int64."""
    if array.dtype == np.uint8:
        return torch.from_numpy(np.array(array))  # a writable copy
    return torch.from_numpy(array.astype(np.int64))


def _entry(array: np.ndarray, at: str) -> torch.Tensor:
    """One array of a dict input, as a Dataset's dict entry is read: integers and booleans as
    :func:`_integers`, floats float32 (finite, within float32's range)."""
    return _integers(array) if array.dtype.kind in "iub" else _as_float32(array, at)


def _single(x: np.ndarray, at: str) -> torch.Tensor:
    """The one input array ``(N, ...)``, as a Dataset's input is read: integers as :func:`_integers`,
    floats float32."""
    return _integers(x) if x.dtype.kind in "iu" else _as_float32(x, at)


def _inputs(archive: zipfile.ZipFile, inputs: str | Sequence[str], where: str, limit: int):
    """``(inputs, bytes read)``: one array ``(N, ...)`` as a tensor, or a list of names as a dict of tensors
    ``{name: (N, ...)}`` of one length N."""
    names = _names(inputs)
    if isinstance(inputs, str):
        x = _load(archive, inputs, where, limit)
        at = f"{where}:{inputs}"
        if x.ndim < 2 or x.shape[0] == 0:
            raise DataError(
                f"{at}: shape {x.shape}; expected (N, ...) with N >= 1 and at least one axis per example"
            )
        return _single(x, at), x.nbytes
    arrays: dict[str, np.ndarray] = {}
    used = 0
    for name in names:  # each bounded by what the ones before it left of the limit
        arrays[name] = _load(archive, name, where, limit - used)
        used += arrays[name].nbytes
    first = names[0]
    n = arrays[first].shape[0] if arrays[first].ndim else 0
    for name, x in arrays.items():
        if x.ndim < 1 or x.shape[0] == 0 or x.shape[0] != n:
            expected = (
                "(N, ...) with N >= 1"
                if name == first
                else f"its first axis N = {n}, as {first} has (one row per example in every input array)"
            )
            raise DataError(f"{where}:{name}: shape {x.shape}; expected {expected}")
    return {name: _entry(x, f"{where}:{name}") for name, x in arrays.items()}, used


def read_npz_inputs(path: str | os.PathLike, inputs: str | Sequence[str] = "x") -> torch.Tensor | dict:
    """The inputs of a `.npz` file alone, as :func:`read_npz` reads them: a tensor `(N, ...)`, or for a list
    of names a dict `{name: (N, ...)}`."""
    _names(inputs)
    where = display(path)
    limit = read_limit()
    with _open(path, where, limit) as archive:
        return _inputs(archive, inputs, where, limit)[0]


def npz_names(path: str | os.PathLike) -> list[str]:
    """The names of the arrays a `.npz` file holds (its `NAME.npy` members), none of them read."""
    where = display(path)
    with _open(path, where, read_limit()) as archive:
        return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]


def _rows(x: torch.Tensor | dict) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def read_npz(
    path: str | os.PathLike,
    inputs: str | Sequence[str] = "x",
    targets: str = "y",
    *,
    kind: str,
    num_classes: int | None = None,
    ignore_index: int = 255,
) -> TensorPairs:
    """`TensorPairs(inputs, targets)` from the arrays `inputs` (a name, or a list of names: dict inputs) and
    `targets` of a `.npz` file; see the module docstring."""
    check_choice("kind", kind, KINDS)
    _names(inputs)
    if not isinstance(targets, str) or not targets:
        raise ValueError(f"targets: got {targets!r}; expected the name of an array in the file")
    if num_classes is not None:
        check_int("num_classes", num_classes, 1)
    check_int("ignore_index", ignore_index, 0)
    where = display(path)
    limit = read_limit()
    with _open(path, where, limit) as archive:
        inputs_t, used = _inputs(archive, inputs, where, limit)
        y = _load(archive, targets, where, limit - used)
    n = _rows(inputs_t)
    ya = f"{where}:{targets}"
    if y.ndim < 1 or y.shape[0] != n:
        raise DataError(f"{ya}: shape {y.shape}; expected its first axis N = {n}, as the inputs'")
    return TensorPairs(inputs_t, _targets(y, ya, kind, inputs_t, num_classes, ignore_index))


def _targets(
    y: np.ndarray, ya: str, kind: str, x: torch.Tensor | dict, num_classes: int | None, ignore_index: int
) -> torch.Tensor:
    """The targets `y` of `kind` for inputs `x` (see the module docstring)."""
    top = num_classes if num_classes is not None else MAX_CLASSES
    if kind == "classification":
        if y.ndim != 1:
            raise DataError(f"{ya}: shape {y.shape}; expected (N,) class indices")
        return _as_classes(y, ya, top)
    if kind == "regression":
        if y.ndim > 2:
            raise DataError(f"{ya}: shape {y.shape}; expected (N,) or (N, D) regression targets")
        return _as_float32(y, ya)
    shape = {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape)
    if y.ndim != 3 or isinstance(x, dict) or x.ndim != 4 or x.shape[2:] != y.shape[1:]:
        raise DataError(
            f"{ya}: shape {y.shape} for inputs {shape}; expected masks (N, H, W) and "
            "inputs (N, C, H, W) of the same H and W"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"{ya}: dtype {y.dtype}; expected integer class masks")
    return _as_classes(y, ya, top, ignore_index)
