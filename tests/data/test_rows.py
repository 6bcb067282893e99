"""Which examples of a user's splits a run uses (mheads.data.rows): the limits, the validation split,
bagging's distinct examples, the class count and the bagging weights, shared by resident and streamed data."""

import pytest
import torch

from mheads.data.errors import DataError
from mheads.data.rows import RowChoice, bagging_weights, choose_rows, count_classes, limit_rows
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique


def test_a_limit_is_a_seeded_sorted_subset_stratified_by_class_labels():
    assert torch.equal(limit_rows(5, None, None, 0, "train"), torch.arange(5))
    assert torch.equal(limit_rows(5, None, 9, 0, "train"), torch.arange(5))
    a, b = limit_rows(20, None, 6, 1, "train"), limit_rows(20, None, 6, 1, "train")
    assert torch.equal(a, b) and len(a) == 6 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, limit_rows(20, None, 6, 1, "test"))  # each split draws its own
    labels = torch.tensor([0] * 8 + [1] * 4)
    kept = limit_rows(12, labels, 6, 0, "train")
    assert labels[kept].tolist() == [0, 0, 0, 0, 1, 1]  # each class keeps its share


def test_the_validation_split_and_bagging_s_distinct_examples_come_from_the_limited_train_split():
    rows = choose_rows(RowChoice(train_limit=16, test_limit=5, val_fraction=0.25), 3, 30, 10)
    assert len(rows.train) == 12 and len(rows.test) == 5 and rows.val is not None and len(rows.val) == 4
    limited = limit_rows(30, None, 16, 3, "train")
    assert sorted(rows.train.tolist() + rows.val.tolist()) == limited.tolist()
    unique = choose_rows(RowChoice(bootstrap_unique=1), 3, 30, 10)
    assert torch.equal(unique.train, bootstrap_unique(30, 1, 3)) and unique.val is None


def test_classes_count_both_splits_and_refuse_what_is_not_a_class_index():
    assert count_classes(torch.tensor([0, 2]), torch.tensor([4])) == ["0", "1", "2", "3", "4"]
    with pytest.raises(DataError, match=r"^test: targets torch.float32 of shape \(2,\); classification"):
        count_classes(torch.tensor([0, 1]), torch.tensor([0.5, 1.0]))
    with pytest.raises(DataError, match=r"^train\[0\]: label -1; expected a class index >= 0"):
        count_classes(torch.tensor([-1, 1]), torch.tensor([0]))


def test_a_negative_test_label_names_the_test_item_it_came_from():
    """It named the train split for a -1 in the test split; with rows kept of a larger set, the item."""
    with pytest.raises(DataError, match=r"^test\[7\]: label -1;"):
        kept = (torch.tensor([0, 1]), torch.tensor([2, 7]))
        count_classes(torch.tensor([0, 1]), torch.tensor([0, -1]), kept)


def test_bagging_weights_are_each_member_s_bootstrap_counts():
    w = bagging_weights(9, 3, 4, True, torch.device("cpu"))
    assert w is not None and torch.equal(w, bootstrap_counts(9, 3, 4)) and w.sum(1).tolist() == [9.0] * 3
    assert bagging_weights(9, 3, 4, False, torch.device("cpu")) is None
