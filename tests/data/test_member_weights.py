"""Per-member example weights: bagging's counts times the specialists' class masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mheads.config import ConfigError
from mheads.data.member_weights import member_weights, specialist_mask
from mheads.ensemble.strategies import bootstrap_counts


def test_specialist_mask_marks_each_members_classes():
    mask = specialist_mask([[0, 2], [1]], members=2, num_classes=3)
    assert torch.equal(mask, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("bad", [3, -1, 1.0, "a"])
def test_a_label_outside_the_classes_names_the_member(bad):
    with pytest.raises(ConfigError, match=rf"^data.label_split\[1\]: got label {bad!r}; expected 0..2$"):
        specialist_mask([[0], [1, bad]], members=2, num_classes=3)


def test_neither_bagging_nor_specialists_weighs_nothing():
    assert member_weights(3, 3, 2, 0, False, None, labels=_never) is None


def test_specialists_weigh_each_example_by_its_class():
    labels = np.array([2, 0, 1, 2])
    w = member_weights(4, 3, 2, 0, False, [[2], [0, 1]], labels=lambda: labels)
    assert torch.equal(w, torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]))


def test_bagging_with_specialists_multiplies_the_counts_by_the_mask():
    labels = np.array([0, 1, 1, 0, 1])
    counts = bootstrap_counts(5, 2, 7).float()
    assert torch.equal(member_weights(5, 2, 2, 7, True, None, labels=lambda: labels), counts)
    both = member_weights(5, 2, 2, 7, True, [[0], [1]], labels=lambda: labels)
    assert torch.equal(both, counts * torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 1, 0, 1]]))


def _never() -> np.ndarray:
    raise AssertionError("labels read without data.label_split")


def test_labels_are_read_only_with_specialists_and_after_their_check():
    assert member_weights(3, 2, 2, 0, True, None, labels=_never).shape == (2, 3)
    with pytest.raises(ConfigError, match=r"data.label_split\[0\]: got label 5"):
        member_weights(3, 2, 2, 0, False, [[5], [0]], labels=_never)
