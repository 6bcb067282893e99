"""read_npz: named arrays of any shape as (input, target) pairs; no pickle; sizes bounded from the headers."""

import io
import zipfile

import numpy as np
import pytest
import torch

from mheads.data import DataError
from mheads.data.arrays import npz_names, read_npz


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


@pytest.mark.parametrize("shape", [(4, 1, 6, 10), (4, 3, 5, 5), (4, 6, 10), (4, 12)])
def test_a_uint8_array_alone_is_pixels_as_a_datasets_same_array(tmp_path, shape):
    """One uint8 rule on both paths: uint8 of any shape, (N, C, H, W) images and (N, F) flattened pixels
    alike, is recorded uint8 and reaches the model as [0, 1] floats (the .npz path gave int64 0-255, then
    int64 for (N, F) alone); through the whole reading of a run's data (a regression)."""
    from mheads.config import config_from_settings
    from mheads.data.sources_task import read_task_source
    from mheads.data.tensor_data import prepare_tensors

    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    y = np.linspace(0, 1, shape[0], dtype=np.float32)
    np.savez(tmp_path / "u.npz", x=x, y=y)
    cfg = config_from_settings({"task.name": "regression", "data.source": str(tmp_path / "u.npz")})
    cpu = torch.device("cpu")
    npz = prepare_tensors(cfg, cpu, *read_task_source(cfg))
    items = [(torch.from_numpy(x[i]), float(y[i])) for i in range(shape[0])]  # as a Python Dataset gives them
    python = prepare_tensors(cfg, cpu, items)
    want = torch.from_numpy(x).float() / 255
    for data in (npz, python):
        assert data.input_spec() == {"shape": list(shape[1:]), "dtype": "uint8"}
        (seen, _), *_ = data.eval_batches("test", shape[0])
        assert seen.dtype == torch.float32 and torch.equal(seen, want)


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


def _tokens(tmp_path, n=6, t=4):
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 30, size=(n, t))  # int64
    mask = np.ones((n, t), dtype=bool)
    mask[::2, -1] = False
    np.savez(tmp_path / "tok.npz", input_ids=ids, attention_mask=mask, y=np.arange(n) % 2)
    return ids, mask


def test_a_list_of_names_gives_dict_inputs_as_a_dataset_of_dicts_does(tmp_path):
    from mheads.config import config_from_settings
    from mheads.data.tensor_data import prepare_tensors
    from mheads.data.tensors import read_pairs

    ids, mask = _tokens(tmp_path)
    pairs = read_npz(tmp_path / "tok.npz", ["input_ids", "attention_mask"], kind="classification")
    x0, y0 = pairs[1]
    assert len(pairs) == 6 and list(x0) == ["input_ids", "attention_mask"] and int(y0) == 1
    assert x0["input_ids"].tolist() == ids[1].tolist() and x0["attention_mask"].dtype == torch.int64
    # The Python path: a Dataset of ({name: array[i]}, label) items read as mheads.fit reads them.
    items = [({"input_ids": ids[i], "attention_mask": mask[i]}, i % 2) for i in range(6)]
    (xa, ya), (xb, yb) = read_pairs(pairs, "train"), read_pairs(items, "train")
    assert list(xa) == list(xb) and torch.equal(ya, yb)
    assert all(torch.equal(xa[k], xb[k]) and xa[k].dtype == xb[k].dtype == torch.int64 for k in xa)
    cfg = config_from_settings({"train.batch_size": 4, "model.members": 2, "data.bagging": True})
    a, b = (prepare_tensors(cfg, torch.device("cpu"), d) for d in (pairs, items))
    for (bx, by, bw), (cx, cy, cw) in zip(map(a.train_batch, range(3)), map(b.train_batch, range(3))):
        assert all(torch.equal(bx[k], cx[k]) for k in bx) and torch.equal(by, cy) and torch.equal(bw, cw)
    assert a.input_spec() == {"dict": {k: {"shape": [4], "dtype": "int64"} for k in xa}}


def test_dict_inputs_alone_and_floating_entries(tmp_path):
    from mheads.data.arrays import read_npz_inputs

    np.savez(tmp_path / "p.npz", ids=np.arange(6, dtype=np.int32).reshape(3, 2), w=np.ones(3, np.float16))
    x = read_npz_inputs(tmp_path / "p.npz", ["ids", "w"])  # no targets needed
    assert x["ids"].dtype == torch.int64 and x["w"].dtype == torch.float32 and x["w"].shape == (3,)
    assert torch.equal(read_npz_inputs(tmp_path / "p.npz", "ids"), x["ids"])


@pytest.mark.parametrize(
    "arrays, inputs, error, needle",
    [
        (
            {"ids": np.zeros((3, 2), int), "y": np.zeros(3)},
            ["ids", "mask"],
            DataError,
            "d.npz: no array 'mask'; expected one of the file's arrays: 'ids', 'y'",
        ),
        (
            {"ids": np.zeros((3, 2), int), "mask": np.zeros((2, 2), int), "y": np.zeros(3)},
            ["ids", "mask"],
            DataError,
            "d.npz:mask: shape (2, 2); expected its first axis N = 3, as ids has",
        ),
        (
            {"ids": np.zeros((0, 2), int), "y": np.zeros(0)},
            ["ids"],
            DataError,
            "d.npz:ids: shape (0, 2); expected (N, ...) with N >= 1",
        ),
        (
            {"ids": np.zeros((2, 2), int), "w": np.array([1.0, np.inf]), "y": np.zeros(2)},
            ["ids", "w"],
            DataError,
            "d.npz:w: got inf at index (1,); expected finite numbers",
        ),
        (
            {"ids": np.zeros((2, 2), int), "s": np.array(["a", "b"]), "y": np.zeros(2)},
            ["ids", "s"],
            DataError,
            "d.npz:s: dtype <U1",
        ),
        (
            {"ids": np.zeros((2, 2), int), "y": np.zeros(3)},
            ["ids"],
            DataError,
            "d.npz:y: shape (3,); expected its first axis N = 2",
        ),
        (
            {"ids": np.zeros((2, 2))},
            ["ids", "ids"],
            ValueError,
            "expected distinct array names ('ids' twice)",
        ),
        ({"ids": np.zeros((2, 2))}, [], ValueError, "inputs: got []; expected the name of an array"),
        ({"ids": np.zeros((2, 2))}, ["ids", 3], ValueError, "inputs: got ['ids', 3]"),
    ],
)
def test_bad_dict_inputs_are_one_line_naming_the_array(tmp_path, arrays, inputs, error, needle):
    (tmp_path / "d.npz").write_bytes(npz_bytes(**arrays))
    with pytest.raises(error) as err:
        read_npz(tmp_path / "d.npz", inputs, kind="regression")
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_npz_names_lists_the_arrays_without_reading_them(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3)), y=np.ones(2))
    np.savez_compressed(tmp_path / "c.npz", input_ids=np.zeros((2, 4), dtype=np.int64))
    assert sorted(npz_names(tmp_path / "d.npz")) == ["x", "y"] and npz_names(tmp_path / "c.npz") == [
        "input_ids"
    ]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad.npz: not a .npz file"):
        npz_names(tmp_path / "bad.npz")
