"""mheads.fit on what a user may hand it: labels that are not class indices, a stray label that would set the
class count, Datasets that are empty, iterable, of dicts, of paths, or far too long, and models with nothing
to train. Each is a one-line error naming what is wrong and what is expected, raised before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mheads
from mheads.config import ConfigError
from mheads.data import DataError
from mheads.data.from_torch import _label, from_torch_datasets

SETTINGS = {
    "model.members": 2,
    "train.iterations": 2,
    "train.batch_size": 4,
    "train.eval_every": 0,
    "train.checkpoint_every": 0,
    "train.threads": 1,
    "train.device": "cpu",
}


class Pairs(torch.utils.data.Dataset):
    """Grey 6x6 images with the given labels (any type); ``reads`` counts the items read."""

    def __init__(self, labels, n=None):
        self.labels, self.n, self.reads = list(labels), n, 0

    def __len__(self):
        return self.n if self.n is not None else len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        return torch.full((1, 6, 6), 7 * (i % 30), dtype=torch.uint8), self.labels[i % len(self.labels)]


def net(classes=3):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, classes))


@pytest.mark.parametrize(
    "label", [2, np.int64(2), torch.tensor(2), torch.tensor([2]), 2.0, np.float32(2.0), torch.tensor(2.0)]
)
def test_integer_labels_of_every_type_are_taken(label):
    assert _label(label, "train[0]") == 2


@pytest.mark.parametrize(
    "label, message",
    [
        (
            2.7,
            r"train\[0\]: label 2.7 is not a whole number; expected an integer class index \(float labels "
            r"are not rounded or truncated\)",
        ),
        (torch.tensor(2.7), r"train\[0\]: label tensor\(2.7000\) is not a whole number"),
        (np.float64("nan"), r"train\[0\]: label (np.float64\()?nan\)? is not a whole number"),
        (True, r"train\[0\]: label True is a bool; expected an integer class index"),
        (torch.tensor(True), r"train\[0\]: label tensor\(True\) is a bool"),
        ("3", r"train\[0\]: label '3' of type str; expected an integer class index"),
        (
            torch.tensor([0.0, 1.0, 0.0]),
            r"train\[0\]: label of shape \(3,\); expected one integer class index",
        ),
        (-1, r"train\[0\]: label -1 is negative"),
        (2**40, r"train\[0\]: label 1099511627776; expected a class index of at most 2147483647"),
    ],
)
def test_labels_that_are_not_class_indices_are_refused(label, message):
    with pytest.raises(DataError, match=message):
        _label(label, "train[0]")


def test_a_float_label_is_refused_by_fit_not_truncated(tmp_path):
    with pytest.raises(DataError, match=r"^train\[3\]: label 2.7 is not a whole number"):
        mheads.fit(net(), Pairs([0, 1, 2, 2.7, 1, 0]), out=tmp_path / "r", settings=SETTINGS)


@pytest.mark.parametrize("loader", ["resident", "stream"])
def test_one_stray_label_does_not_set_the_class_count(tmp_path, loader):
    labels = [i % 10 for i in range(40)]
    labels[17] = 200000
    settings = dict(SETTINGS, **{"data.loader": loader, "data.workers": 0})
    message = (
        r"^train\[17\]: label 200000 would make a 200001-class model, but the labels take only 11 "
        r"distinct values; fix the label, or give the train Dataset a `classes` attribute naming all "
        r"200001 classes"
    )
    with pytest.raises(DataError, match=message):
        mheads.fit(net(10), Pairs(labels), out=tmp_path / "r", settings=settings)


def test_classes_allow_labels_a_subset_uses_and_bound_them():
    sparse = Pairs([0, 50, 99])
    with pytest.raises(DataError, match=r"train\[2\]: label 99 would make a 100-class model"):
        from_torch_datasets(sparse)
    sparse.classes = [f"c{i}" for i in range(100)]  # the user says so: 100 classes, three of them present
    assert len(from_torch_datasets(sparse).classes) == 100
    sparse.classes = ["a", "b"]
    with pytest.raises(DataError, match=r"train\[2\]: label 99 is outside train.classes, which names 2 "):
        from_torch_datasets(sparse)
    # a test split's label counts too, named as the test example it is
    with pytest.raises(DataError, match=r"test\[1\]: label 500 would make a 501-class model"):
        from_torch_datasets(Pairs([0, 1, 2, 3]), Pairs([0, 500]))
    # a few unused indices are not a stray label (labels 1-based, a class without examples)
    assert len(from_torch_datasets(Pairs([1, 2, 4])).classes) == 5


class Dicts(Pairs):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return {"image": x, "label": y}


class Paths(Pairs):
    def __getitem__(self, i):
        return f"/data/img_{i}.jpg", 0


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield torch.zeros(1, 6, 6, dtype=torch.uint8), 0

    def __len__(self):
        return 1


@pytest.mark.parametrize(
    "train, error, message",
    [
        (
            Dicts([0, 1]),
            DataError,
            r"^train\[0\]: got a dict with keys \['image', 'label'\]; expected an \(input, target\) tuple",
        ),
        (Pairs([]), DataError, r"^train: the data set is empty \(len 0\); expected at least one"),
        (Stream(), DataError, r"^train: got an IterableDataset \(Stream\); expected a map-style Dataset"),
        (
            Paths([0]),
            DataError,
            r"^train\[0\]: the image is a str \('/data/img_0.jpg'\); expected the image itself",
        ),
        ([1, 2, 3], DataError, r"^train\[0\]: got int; expected an \(input, target\) pair"),
        (5, ConfigError, r"^train: got int; expected a map-style torch Dataset"),
    ],
)
def test_datasets_that_are_not_image_label_pairs_get_one_line_before_training(
    tmp_path, train, error, message
):
    with pytest.raises(error, match=message) as err:
        mheads.fit(net(), train, out=tmp_path / "r", settings=SETTINGS)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


def test_a_test_dataset_is_checked_too(tmp_path):
    with pytest.raises(DataError, match=r"^test: the data set is empty"):
        mheads.fit(net(), Pairs([0, 1]), Pairs([]), out=tmp_path / "r", settings=SETTINGS)


def test_models_without_anything_to_train_are_refused(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^model: Flatten has no trainable parameters; expected a module "
        r"with parameters to train",
    ):
        mheads.fit(nn.Flatten(), Pairs([0, 1]), out=tmp_path / "a", settings=SETTINGS)
    frozen = net()
    frozen.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"^model: Sequential has no trainable parameters"):
        mheads.fit(frozen, Pairs([0, 1]), out=tmp_path / "b", settings=SETTINGS)
    with pytest.raises(ConfigError, match=r"^model: the network ReLU builds has no trainable parameters"):
        mheads.fit(nn.ReLU, Pairs([0, 1, 2]), out=tmp_path / "c", settings=SETTINGS)
    with pytest.raises(ConfigError, match=r"^model: got int; expected an nn.Module"):
        mheads.fit(3, Pairs([0, 1]), out=tmp_path / "d", settings=SETTINGS)


@pytest.mark.parametrize(
    "loader, error, message",
    [
        (
            "resident",
            ConfigError,
            r"^data.loader: got resident; reading the 1000000000000 train and 0 test images whole needs "
            r"about .* but .* of memory is available; set data.loader: stream",
        ),
        (
            "stream",
            DataError,
            r"^train: 1000000000000 examples \(test: 0\); streaming keeps about 48 bytes per "
            r"example .* train on a part of it",
        ),
        (
            "auto",
            DataError,
            r"^train: 1000000000000 examples",
        ),  # too large to hold: streamed, too large for that
    ],
)
def test_a_dataset_of_a_trillion_items_is_refused_before_it_is_read(tmp_path, loader, error, message):
    huge = Pairs([0, 1, 2], n=10**12)
    with pytest.raises(error, match=message):
        mheads.fit(net(), huge, out=tmp_path / "r", settings=dict(SETTINGS, **{"data.loader": loader}))
    assert huge.reads <= 4  # its first item, to size it


def test_a_large_label_pass_is_announced(tmp_path, caplog):
    import logging

    data = Pairs([0, 1, 2], n=12_000)  # no `targets`, no `classes`: every label is read to count classes
    with caplog.at_level(logging.INFO, logger="mheads"):
        mheads.fit(
            net(),
            data,
            Pairs([0, 1, 2]),
            out=tmp_path / "r",
            settings=dict(SETTINGS, **{"data.loader": "stream", "data.workers": 0, "train.iterations": 1}),
        )
    assert any("reading the labels of all 12000 train examples" in r.getMessage() for r in caplog.records)
    assert any("12000 train / 3 test examples streamed" in r.getMessage() for r in caplog.records)


class FlatBytes(torch.utils.data.Dataset):
    """Flattened uint8 vectors (12,), labelled by their first byte."""

    def __init__(self):
        self.x = torch.randint(
            0, 256, (16, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
        )

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.x[i, 0] > 127)


def test_flattened_uint8_vectors_train_an_mlp_and_the_run_reopens_and_predicts(tmp_path):
    """uint8 is pixels at any shape: (F,) vectors reach an MLP as [0, 1] floats (a rule of 2e3c43a made them
    int64: a raw dtype error), the run records uint8 as runs before it did, and load_run / predict read it
    back (a RuntimeError then); predict scales uint8 as training did."""
    from mheads.train.run_model import run_meta

    def mlp():
        return nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2))

    ds = FlatBytes()
    result = mheads.fit(mlp(), ds, out=tmp_path / "r", settings=SETTINGS)
    assert run_meta(result.run)["input"] == {"shape": [12], "dtype": "uint8"}
    tree = mheads.load_run(result.run, model=mlp())
    with torch.no_grad():
        assert torch.equal(tree(ds.x.float() / 255), result.tree(ds.x.float() / 255))
    records = mheads.predict(result.run, ds.x, model=mlp())
    assert records == mheads.predict(result.run, ds.x.float() / 255, model=mlp()) and len(records) == 16


class _ClassMask(nn.Module):
    """net(4) whose last class is ruled out by a -inf mask (a buffer), as a model restricting its classes."""

    def __init__(self):
        super().__init__()
        self.body = net(4)
        self.register_buffer("mask", torch.tensor([0.0, 0.0, 0.0, -float("inf")]))

    def forward(self, x):
        return self.body(x) + self.mask


class _FourNames(Pairs):
    classes = ["a", "b", "c", "d"]


@pytest.mark.slow  # trains (about 2 s); the fast tests of each step: tree/test_cut, ensemble, tasks
def test_a_model_masking_a_class_with_minus_inf_trains_evaluates_and_predicts(tmp_path):
    """-inf logits on some classes have a softmax: fit built no TreeNet of it (the cut check's inf - inf) and
    then stopped at its first evaluation (NonFiniteOutputs); the masked class gets probability 0."""
    settings = dict(SETTINGS, **{"train.eval_every": 1})
    result = mheads.fit(
        _ClassMask(),
        _FourNames([0, 1, 2, 1]),
        _FourNames([0, 1, 2, 1]),
        out=tmp_path / "r",
        settings=settings,
    )
    metrics = mheads.evaluate(result.run, _FourNames([0, 1, 2, 1]), model=_ClassMask())
    assert metrics["num_examples"] == 4 and metrics["oracle_assignment"][0][3] == 0.0
    records = mheads.predict(result.run, _FourNames([0, 1, 2, 1]), model=_ClassMask(), top=4)
    assert [r["top"][-1] for r in records] == [{"class": "d", "prob": 0.0}] * 4
