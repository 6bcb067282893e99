"""The resident loader built from explicit arguments (issue 33): the data section and the run's numbers,
no run Config; ``prepare_data`` is its Config adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mheads.config import DataConfig, config_from_settings
from mheads.data import DataError, Dataset, Split
from mheads.data.resident import prepare_data, resident_data


def _dataset(h: int = 8, w: int = 8) -> Dataset:
    rng = np.random.default_rng(0)
    split = [
        Split(rng.integers(0, 256, (n, 1, h, w), dtype=np.uint8), np.arange(n, dtype=np.int64) % 3)
        for n in (30, 12)
    ]
    return Dataset("python", split[0], split[1], ["a", "b", "c"])


def _build(ds: Dataset, data: DataConfig, members: int = 1, seed: int = 0, batch_size: int = 4):
    return resident_data(
        ds,
        data,
        torch.device("cpu"),
        members=members,
        seed=seed,
        batch_size=batch_size,
        channels_last=False,
        source="python Datasets",
    )


def test_explicit_arguments_build_what_the_config_adapter_builds():
    data = {"classes": [2, 0], "train_limit": 15, "val_fraction": 0.2, "bagging": True}
    data["label_split"] = [[0], [1]]
    settings = {f"data.{k}": v for k, v in data.items()}
    cfg = config_from_settings(
        {**settings, "model.members": 2, "train.seed": 4, "train.batch_size": 5, "train.channels_last": False}
    )
    ds = _dataset()
    built = _build(ds, DataConfig(**data), members=2, seed=4, batch_size=5)
    adapted = prepare_data(cfg, torch.device("cpu"), dataset=ds)
    assert built.classes == adapted.classes == ["c", "a"]
    for name in ("train_x", "train_y", "test_x", "test_y", "val_x", "val_y", "ood_x", "weights"):
        assert torch.equal(getattr(built, name), getattr(adapted, name)), name
    assert torch.equal(built.plan.indices(1), adapted.plan.indices(1)) and len(built.plan.indices(1)) == 5
    assert built.describe() == adapted.describe()
    assert built.weights is not None and built.weights.shape == (2, len(built.train_y))  # (M, N)


def test_the_open_set_holds_the_test_images_of_the_left_out_classes():
    built = _build(_dataset(), DataConfig(classes=[1, 2]))
    assert built.classes == ["b", "c"] and sorted(built.test_y.tolist()) == [0] * 4 + [1] * 4
    assert built.split_size("ood") == 4  # the 4 test images of class "a"


def test_images_that_are_not_square_are_refused_naming_the_source():
    with pytest.raises(DataError, match=r"^data.source some/where: images are 8x6; the models take square"):
        _build(_dataset(8, 6), DataConfig(source="some/where"))
