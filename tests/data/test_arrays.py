"""read_npz: named arrays of any shape as (input, target) pairs; no pickle; sizes bounded from the headers."""

import io
import zipfile

import numpy as np
import pytest
import torch

from mheads.data import DataError
from mheads.data.arrays import read_npz


@pytest.mark.parametrize(
    "x_shape, y, kind",
    [
        ((5, 3), np.arange(5) % 2, "classification"),
        ((5, 2, 7), np.linspace(0, 1, 5), "regression"),
        ((5, 2, 7), np.ones((5, 4)), "regression"),
        ((5, 3, 6, 10), np.full((5, 6, 10), 255, dtype=np.uint8), "segmentation"),
    ],
)
def test_any_shapes(tmp_path, x_shape, y, kind):
    np.savez_compressed(tmp_path / "d.npz", inputs=np.random.default_rng(0).random(x_shape), labels=y)
    pairs = read_npz(tmp_path / "d.npz", "inputs", "labels", kind=kind, num_classes=2)
    x0, y0 = pairs[0]
    assert len(pairs) == 5 and tuple(x0.shape) == x_shape[1:] and x0.dtype == torch.float32
    assert tuple(y0.shape) == y.shape[1:]
    assert y0.dtype == (torch.float32 if kind == "regression" else torch.int64)


def test_integer_inputs_stay_integers(tmp_path):
    np.savez(tmp_path / "t.npz", x=np.arange(12, dtype=np.int32).reshape(3, 4), y=np.array([0.0, 1.0, 2.0]))
    pairs = read_npz(tmp_path / "t.npz", kind="classification")
    assert pairs.inputs.dtype == torch.int64 and pairs.targets.tolist() == [0, 1, 2]


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    "arrays, kind, needle",
    [
        (
            {"x": np.zeros((2, 2)), "y": np.array([0.0, 2.7])},
            "classification",
            "d.npz:y: got 2.7 at index (1,)",
        ),
        ({"x": np.zeros((2, 2)), "y": np.array([True, False])}, "classification", "dtype bool"),
        ({"x": np.zeros((2, 2)), "y": np.array([0, -1])}, "classification", "got -1 at index (1,)"),
        (
            {"x": np.zeros((2, 2)), "y": np.array([0, 5])},
            "classification",
            "expected integer class indices 0..2",
        ),
        ({"x": np.zeros((2, 2)), "y": np.zeros((2, 2))}, "classification", "expected (N,) class indices"),
        (
            {"x": np.array([[0, np.nan]]), "y": np.zeros(1)},
            "regression",
            "d.npz:x: got nan at index (0, 1)",
        ),
        ({"x": np.array([[1e300]]), "y": np.zeros(1)}, "regression", "within float32's range"),
        ({"x": np.zeros((2, 2)), "y": np.array([0.0, np.inf])}, "regression", "d.npz:y: got inf"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(2)}, "regression", "expected its first axis N = 3"),
        ({"x": np.zeros(3), "y": np.zeros(3)}, "regression", "at least one axis per example"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0)}, "regression", "N >= 1"),
        ({"x": np.array([["a"]]), "y": np.zeros(1)}, "regression", "dtype <U1"),
        ({"x": np.zeros((1, 1, 4, 4)), "y": np.zeros((1, 4, 5), np.uint8)}, "segmentation", "same H and W"),
        (
            {"x": np.zeros((1, 1, 2, 2)), "y": np.array([[[0, 1], [9, 255]]])},
            "segmentation",
            "got 9 at index (0, 1, 0); expected integer class indices 0..2 or ignore_index 255",
        ),
        (
            {"x": np.zeros((1, 1, 2, 2)), "y": np.zeros((1, 2, 2))},
            "segmentation",
            "expected integer class masks",
        ),
        ({"x": np.zeros((1, 1))}, "regression", "no array 'y'; expected one of the file's arrays: 'x'"),
    ],
)
def test_hostile_arrays_are_refused_naming_array_and_index(tmp_path, arrays, kind, needle):
    (tmp_path / "d.npz").write_bytes(npz_bytes(**arrays))
    with pytest.raises(DataError) as err:
        read_npz(tmp_path / "d.npz", kind=kind, num_classes=3)
    assert needle in str(err.value), str(err.value)


def test_pickles_headers_and_archives(tmp_path, monkeypatch):
    (tmp_path / "o.npz").write_bytes(npz_bytes(x=np.array([{}, {}], dtype=object), y=np.zeros(2)))
    with pytest.raises(DataError, match="o.npz:x: an object array"):
        read_npz(tmp_path / "o.npz", kind="regression")
    # A header declaring 2**60 float64s in a member of a few bytes: refused before anything is allocated.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**60,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", header.getvalue() + b"\0" * 64)
        z.writestr("y.npy", header.getvalue())
    with pytest.raises(DataError, match=r"bomb.npz:x: header declares shape \(1152921504606846976,\)"):
        read_npz(tmp_path / "bomb.npz", kind="regression")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="junk.npz: not a .npz file"):
        read_npz(tmp_path / "junk.npz", kind="regression")
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:
        z.writestr("x.npy", npz_bytes(x=np.zeros((4, 4)))[:40])
    with pytest.raises(DataError, match="cut.npz:x: corrupt or unreadable"):
        read_npz(tmp_path / "cut.npz", kind="regression")
    # Compressed zeros: a file within the read limit whose arrays inflate past it, refused before inflating.
    np.savez_compressed(tmp_path / "zeros.npz", x=np.zeros((256, 256)), y=np.zeros(256))
    size = (tmp_path / "zeros.npz").stat().st_size
    monkeypatch.setattr("mheads.data.arrays.read_limit", lambda: size)
    with pytest.raises(DataError, match="zeros.npz:x: declares 524416 bytes"):
        read_npz(tmp_path / "zeros.npz", kind="regression")
    monkeypatch.setattr("mheads.data.arrays.read_limit", lambda: 524416 + 1000)  # x fits; x and y do not
    with pytest.raises(DataError, match="zeros.npz:y: declares 2176 bytes"):
        read_npz(tmp_path / "zeros.npz", kind="regression")
    with pytest.raises(ValueError, match="kind: got 'tabular'"):
        read_npz(tmp_path / "zeros.npz", kind="tabular")
