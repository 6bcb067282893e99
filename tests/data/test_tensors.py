"""Resident data of any shape (mheads.data.tensors): a Dataset's items read, checked and stacked (a one-line
error naming the item), the image-only settings refused, and what the loop reads of it."""

import pytest
import torch

from mheads.config import ConfigError, config_from_settings
from mheads.data.errors import DataError
from mheads.data.pairs import TensorPairs
from mheads.data.tensor_data import AnyShapeData, prepare_tensors
from mheads.data.tensors import read_pairs


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_items_are_stacked_per_key_and_a_different_one_is_named():
    ids = [{"ids": torch.arange(3) + i, "mask": torch.ones(3, dtype=torch.bool)} for i in range(4)]
    x, y = read_pairs(Items([(d, i % 2) for i, d in enumerate(ids)]), "train")
    assert x["ids"].shape == (4, 3) and x["mask"].dtype == torch.int64 and y.tolist() == [0, 1, 0, 1]
    bad = [(torch.zeros(3), 0), (torch.zeros(3), 1), (torch.zeros(4), 0)]
    with pytest.raises(
        DataError, match=r"^train input\[2\]: torch.float32 of shape \(4,\) differs from train "
    ):
        read_pairs(Items(bad), "train")
    with pytest.raises(DataError, match=r"^test\[1\]: input keys \['ids'\]; expected \['ids', 'mask'\]"):
        read_pairs(Items([(ids[0], 0), ({"ids": torch.arange(3)}, 0)]), "test")
    with pytest.raises(DataError, match=r"^train\[1\]: got int; expected an \(input, target\) pair"):
        read_pairs(Items([(torch.zeros(2), 0), 5]), "train")


def test_image_only_settings_are_refused_and_the_loop_reads_any_shape_data():
    data = TensorPairs(torch.randn(10, 2, 5), torch.randn(10, 1))
    with pytest.raises(ConfigError, match=r"^data.flip: got True; expected its default for inputs"):
        prepare_tensors(
            config_from_settings({"task.name": "regression", "data.flip": True}), torch.device("cpu"), data
        )
    cfg = config_from_settings({"task.name": "regression", "data.val_fraction": 0.2})
    d = prepare_tensors(cfg, torch.device("cpu"), data)
    assert isinstance(d, AnyShapeData) and d.num_classes == 0 and d.normalizer is None
    assert d.describe() == {
        "source": "python Datasets",
        "classes": None,
        "train": 8,
        "test": 10,
        "input": {"shape": [2, 5], "dtype": "float32"},
        "target": {"shape": [1], "dtype": "float32"},
        "val": 2,
    }
    assert torch.equal(d.task_targets(), d.train_y) and d.example_input().shape == (1, 2, 5)


REGRESSION = config_from_settings({"task.name": "regression"})


@pytest.mark.parametrize(
    "test, message",
    [
        (
            (torch.randn(4, 3), torch.randn(4, 2)),
            r"test\[0\]: target float \(2,\); expected train\[0\]'s float \(1,\)",
        ),
        (
            (torch.randn(4, 2), torch.randn(4, 1)),
            r"test\[0\]: input float \(2,\); expected train\[0\]'s float \(3,\)",
        ),
        (
            (torch.randn(4, 3), torch.ones(4, dtype=torch.long)),
            r"target integer \(\); expected .* float \(1,\)",
        ),
    ],
)
def test_a_test_split_the_model_cannot_be_scored_on_is_refused_before_training(test, message):
    """A test set of 2-wide targets for a model of 1 output trained, then failed at the first evaluation."""
    with pytest.raises(DataError, match=message):
        prepare_tensors(
            REGRESSION,
            torch.device("cpu"),
            TensorPairs(torch.randn(8, 3), torch.randn(8, 1)),
            TensorPairs(*test),
        )


def test_sizes_a_convolution_or_sequence_model_takes_at_any_value_may_differ_between_splits():
    seg = config_from_settings({"task.name": "segmentation"})
    masks = lambda n, h, w: torch.randint(0, 2, (n, h, w))  # noqa: E731
    train, test = (
        TensorPairs(torch.rand(4, 1, 6, 10), masks(4, 6, 10)),
        TensorPairs(torch.rand(2, 1, 8, 8), masks(2, 8, 8)),
    )
    assert prepare_tensors(seg, torch.device("cpu"), train, test).test_y.shape == (2, 8, 8)
    tokens = lambda n, t: [({"input_ids": torch.zeros(t, dtype=torch.long)}, 0) for _ in range(n)]  # noqa: E731
    cls = config_from_settings({})
    assert prepare_tensors(cls, torch.device("cpu"), tokens(4, 12), tokens(2, 16)).test_x[
        "input_ids"
    ].shape == (2, 16)
    with pytest.raises(
        DataError, match=r"test\[0\]: input float \(3, \*, \*\); expected train\[0\]'s float \(1, \*, \*\)"
    ):
        prepare_tensors(
            seg, torch.device("cpu"), train, TensorPairs(torch.rand(2, 3, 6, 10), masks(2, 6, 10))
        )


def test_token_ids_of_another_length_in_the_test_split_are_not_refused():
    """Integer token ids (T,) padded to another length in the test split: a sequence model takes any T (it
    trained and evaluated before the splits' check, as dict token inputs still do); float features of
    another width are still refused (above)."""
    cls = config_from_settings({})
    train = TensorPairs(torch.randint(0, 9, (4, 6)), torch.tensor([0, 1, 0, 1]))
    test = TensorPairs(torch.randint(0, 9, (2, 8)), torch.tensor([1, 0]))
    assert prepare_tensors(cls, torch.device("cpu"), train, test).test_x.shape == (2, 8)


def test_a_uint8_dict_entry_is_pixels_scaled_on_both_paths_and_int_ids_stay_int64(tmp_path):
    """One uint8 rule for both paths: a dict's uint8 entry is pixels, recorded uint8 and given to the model
    as [0, 1] floats (from a Python Dataset and from an .npz file alike); int32 ids reach it as int64, never
    scaled; a float entry stays float32."""
    import numpy as np

    from mheads.data.arrays import read_npz
    from mheads.data.tensors import input_spec, model_view

    pixels = np.arange(12, dtype=np.uint8).reshape(4, 3) * 20
    ids = np.arange(8, dtype=np.int32).reshape(4, 2) * 100
    feats = np.linspace(0, 1, 8, dtype=np.float32).reshape(4, 2)
    y = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "t.npz", pixels=pixels, ids=ids, feats=feats, y=y)
    npz = read_npz(tmp_path / "t.npz", ["pixels", "ids", "feats"], "y", kind="classification")
    items = [
        ({"pixels": torch.from_numpy(pixels[i]), "ids": ids[i], "feats": feats[i]}, int(y[i]))
        for i in range(4)
    ]
    x_py, _ = read_pairs(Items(items), "train")
    x_npz = npz[:4][0]
    assert input_spec(x_py) == input_spec(x_npz)
    assert input_spec(x_py)["dict"]["pixels"] == {"shape": [3], "dtype": "uint8"}
    assert input_spec(x_py)["dict"]["ids"] == {"shape": [2], "dtype": "int64"}
    for seen in (model_view(x_py), model_view(x_npz)):
        assert seen["pixels"].dtype == torch.float32
        assert torch.equal(seen["pixels"], torch.from_numpy(pixels).float() / 255)
        assert seen["ids"].dtype == torch.int64 and seen["ids"].tolist() == ids.tolist()
        assert seen["feats"].dtype == torch.float32 and torch.equal(seen["feats"], torch.from_numpy(feats))


def test_uint8_of_any_shape_is_pixels_scaled_and_integer_ids_are_not():
    """What the model sees of a batch (predict's inputs, a run's recorded example): uint8 of any shape, (F,)
    features and a number included, as [0, 1] floats; int32/int64 ids as stored; a run recorded as uint8
    (F,) is rebuilt on floats (a rule of 2e3c43a gave int64: such runs from before no longer opened)."""
    from mheads.data.tensors import model_view, pixels_scaled, spec_example

    flat = torch.arange(10, dtype=torch.uint8).reshape(2, 5) * 25
    for x in (flat, flat.reshape(2, 1, 5), flat.reshape(2, 1, 1, 5), flat[:, 0]):
        assert model_view(x).dtype == torch.float32 and torch.equal(model_view(x), x.float() / 255)
    ids = flat.to(torch.int64)
    assert pixels_scaled(ids) is ids and model_view({"ids": ids})["ids"] is ids
    assert (
        read_pairs(Items([(flat[0], 0), (flat[1], 1)]), "train")[0].dtype == torch.uint8
    )  # kept, scaled late
    example = spec_example({"shape": [5], "dtype": "uint8"}, "run")
    assert example.dtype == torch.float32 and example.shape == (2, 5)


def test_uint8_features_of_another_width_in_the_test_split_are_refused():
    """uint8 (F,) is pixels (features), not token ids of any length: a test split of another width is
    refused before training, as float features are, and named as uint8 pixels (the model sees [0, 1] floats),
    not integer; int64 images beside uint8 ones are refused too (the model would see them unscaled)."""
    cls = config_from_settings({})
    train = TensorPairs(torch.zeros(4, 6, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
    test = TensorPairs(torch.zeros(2, 8, dtype=torch.uint8), torch.tensor([1, 0]))
    with pytest.raises(
        DataError, match=r"test\[0\]: input uint8 pixels \(8,\); expected train\[0\]'s uint8 pixels \(6,\)"
    ):
        prepare_tensors(cls, torch.device("cpu"), train, test)
    images = TensorPairs(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
    ints = TensorPairs(torch.zeros(2, 1, 2, 2, dtype=torch.int64), torch.tensor([1, 0]))
    with pytest.raises(DataError, match=r"input integer \(1, \*, \*\); expected train\[0\]'s uint8 pixels"):
        prepare_tensors(cls, torch.device("cpu"), images, ints)
