"""Where streamed examples come from and which of them a run uses (issue 33: built from explicit
arguments, the data section and the seed, not the run Config)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mheads.config import DataConfig, config_from_settings
from mheads.data.stream_sources import choose_examples, dataset_sources, run_labels
from mheads.data.streaming import prepare_stream, stream_data


def _dataset(n: int, classes: list[str] | None = None) -> TensorDataset:
    images = torch.randint(
        0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(n)
    )
    ds = TensorDataset(images, torch.arange(n) % 3)
    if classes is not None:
        ds.classes = classes  # type: ignore[attr-defined]
    return ds


def test_a_datasets_own_class_names_else_one_per_label():
    named = dataset_sources(_dataset(9, ["x", "y", "z"]), _dataset(6))
    assert named.classes == ["x", "y", "z"] and named.where == "python Datasets"
    counted = dataset_sources(_dataset(9))
    assert counted.classes == ["0", "1", "2"] and counted.test is counted.train  # no test set: train's


def test_kept_classes_are_renumbered_in_the_order_given_and_the_rest_of_test_is_the_open_set():
    sources = dataset_sources(_dataset(9), _dataset(6))  # labels 0 1 2 0 1 2 ...
    chosen = choose_examples(sources, DataConfig(classes=[2, 0]), seed=0)
    assert chosen.classes == ["2", "0"]
    assert chosen.train.tolist() == [0, 2, 3, 5, 6, 8] and chosen.test.tolist() == [0, 2, 3, 5]
    assert chosen.ood is not None and chosen.ood.tolist() == [1, 4]
    assert run_labels(sources, chosen).tolist() == [1, 0, 1, 0, 1, 0]  # class 2 is now 0, class 0 is 1


def test_the_limit_then_the_validation_split_share_out_the_training_examples():
    sources = dataset_sources(_dataset(30), _dataset(12))
    chosen = choose_examples(sources, DataConfig(train_limit=20, test_limit=6, val_fraction=0.25), seed=3)
    assert chosen.val is not None and (len(chosen.train), len(chosen.val), len(chosen.test)) == (15, 5, 6)
    assert not set(chosen.train) & set(chosen.val)
    assert np.bincount(sources.train.labels()[np.r_[chosen.train, chosen.val]]).tolist() == [7, 7, 6]
    assert chosen.relabel is None and run_labels(sources, chosen).tolist() == (chosen.train % 3).tolist()


def test_explicit_arguments_stream_what_the_config_adapter_streams():
    train, test = _dataset(12), _dataset(6)
    settings = {"data.loader": "stream", "data.workers": 0, "data.bagging": True, "data.test_limit": 3}
    cfg = config_from_settings({**settings, "model.members": 2, "train.seed": 2, "train.batch_size": 4})
    adapted = prepare_stream(cfg, torch.device("cpu"), train=train, test=test)
    built = stream_data(
        dataset_sources(train, test),
        cfg.data,
        torch.device("cpu"),
        members=2,
        seed=2,
        batch_size=4,
        total_batches=cfg.train.iterations,
        channels_last=cfg.train.channels_last,
    )
    assert built.describe() == adapted.describe() and built.test_set.n == 3
    assert (
        built.weights is not None
        and adapted.weights is not None
        and torch.equal(built.weights, adapted.weights)
    )
    gen = [torch.Generator().manual_seed(0) for _ in range(2)]
    for a, b in zip(built.train_batch(1, gen[0]), adapted.train_batch(1, gen[1])):
        assert torch.equal(a, b)
