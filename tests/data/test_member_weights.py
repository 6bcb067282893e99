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
    assert member_weights(np.array([0, 1, 2]), 3, 2, seed=0, bagging=False, label_split=None) is None


def test_specialists_weigh_each_example_by_its_class():
    labels = np.array([2, 0, 1, 2])
    w = member_weights(labels, 3, 2, seed=0, bagging=False, label_split=[[2], [0, 1]])
    assert torch.equal(w, torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]))


def test_bagging_with_specialists_multiplies_the_counts_by_the_mask():
    labels = np.array([0, 1, 1, 0, 1])
    counts = bootstrap_counts(5, 2, 7).float()
    assert torch.equal(member_weights(labels, 2, 2, 7, bagging=True, label_split=None), counts)
    both = member_weights(labels, 2, 2, 7, bagging=True, label_split=[[0], [1]])
    assert torch.equal(both, counts * torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 1, 0, 1]]))
