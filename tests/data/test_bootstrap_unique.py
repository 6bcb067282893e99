"""data.bootstrap_unique (section 4's bagging control): one model trains on exactly the distinct images of a
bagging member's bootstrap sample, each once, resident or streamed."""

from __future__ import annotations

import pytest
import torch
from data_writers import balanced_labels, random_images, write_image_folder

from mheads.config import ConfigError, config_from_settings
from mheads.data.loader import prepare
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique


def _cfg(**settings):
    return config_from_settings(
        {"model.members": 1, "train.seed": 3, "train.threads": 1, "train.device": "cpu", **settings}
    )


def test_cifar_sized_sample_holds_the_bootstrap_count_of_distinct_images():
    for seed in (0, 1, 2):
        idx = bootstrap_unique(50_000, 0, seed)
        assert len(idx) == int((bootstrap_counts(50_000, 1, seed)[0] > 0).sum())
        assert 31_000 < len(idx) < 32_000  # 1 - 1/e of 50,000 is 31,606 on average
    assert len(bootstrap_unique(50_000, 0, 0)) == 31_437
    # member m's sample is the one bagging draws for member m, whatever M
    assert torch.equal(bootstrap_unique(1000, 2, 7), torch.nonzero(bootstrap_counts(1000, 4, 7)[2]).flatten())


def test_resident_training_set_is_the_unique_images_of_the_sample():
    full = prepare(_cfg(), torch.device("cpu"))
    n = len(full.train_y)
    ctrl = prepare(_cfg(**{"data.bootstrap_unique": 0}), torch.device("cpu"))
    want = torch.nonzero(bootstrap_counts(n, 1, 3)[0]).flatten()
    assert len(ctrl.train_y) == len(want) == ctrl.plan.num_examples
    assert torch.equal(ctrl.train_x, full.train_x[want]) and torch.equal(ctrl.train_y, full.train_y[want])
    assert ctrl.weights is None  # each image once: no bagging weights


def test_streamed_training_set_has_the_same_count(tmp_path):
    root = tmp_path / "set"
    train = (random_images(40, 3, 16, 16, seed=1), balanced_labels(40, 4))
    test = (random_images(8, 3, 16, 16, seed=2), balanced_labels(8, 4))
    write_image_folder(root, {"train": train, "test": test}, ["a", "b", "c", "d"], fmt="PNG")
    data = prepare(
        _cfg(
            **{
                "data.source": str(root),
                "data.loader": "stream",
                "data.workers": 0,
                "data.bootstrap_unique": 1,
                "model.members": 1,
            }
        ),
        torch.device("cpu"),
    )
    try:
        assert data.plan.num_examples == int((bootstrap_counts(40, 2, 3)[1] > 0).sum())
    finally:
        data.close()


@pytest.mark.parametrize(
    "settings", [{"data.bootstrap_unique": -1}, {"data.bootstrap_unique": 0, "data.bagging": True}]
)
def test_bad_settings_are_refused_naming_the_field(settings):
    with pytest.raises(ConfigError, match="data.bootstrap_unique"):
        _cfg(**settings)
