import math

import pytest
import torch

from mheads.ensemble.strategies import bootstrap_counts, bootstrap_indices, random_label_split


def unique_fraction(indices: torch.Tensor) -> torch.Tensor:
    """(M,) fraction of distinct examples in each member's sample."""
    return torch.tensor([len(row.unique()) / indices.shape[1] for row in indices])


def test_unique_fraction_helper_known_answer():
    indices = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [3, 1, 3, 1]])
    assert torch.equal(unique_fraction(indices), torch.tensor([0.25, 1.0, 0.5]))


def test_bootstrap_is_with_replacement_and_about_63_percent_unique():
    n = 20_000
    indices = bootstrap_indices(n, 4, seed=0)
    assert indices.shape == (4, n) and indices.dtype == torch.int64
    assert indices.min() >= 0 and indices.max() < n
    fractions = unique_fraction(indices)
    expected = 1 - (1 - 1 / n) ** n  # section 4: about 1 - 1/e = 0.632
    assert abs(expected - (1 - 1 / math.e)) < 1e-4
    # Binomial-ish spread: the standard deviation of the unique fraction is about 0.0034 at n = 20,000.
    assert ((fractions - expected).abs() < 0.015).all(), fractions
    for row in indices:  # duplicates exist: drawn with replacement
        assert len(row.unique()) < n
    assert len({tuple(r[:50].tolist()) for r in indices}) == 4  # each member its own sample


def test_bootstrap_reproducible_from_seed_and_independent_of_member_count():
    a = bootstrap_indices(500, 3, seed=11)
    assert torch.equal(a, bootstrap_indices(500, 3, seed=11))
    assert torch.equal(bootstrap_indices(500, 5, seed=11)[:3], a)
    assert not torch.equal(a, bootstrap_indices(500, 3, seed=12))


def test_counts_match_indices_and_weight_a_shared_batch():
    indices = bootstrap_indices(50, 3, seed=2)
    counts = bootstrap_counts(50, 3, seed=2)
    assert counts.dtype == torch.float32 and counts.shape == (3, 50)
    for m in range(3):
        assert torch.equal(counts[m], torch.bincount(indices[m], minlength=50).float())
    assert torch.equal(counts.sum(1), torch.full((3,), 50.0))
    torch.testing.assert_close((counts > 0).float().mean(1), unique_fraction(indices))
    with pytest.raises(ValueError, match="num_members: got 0; expected an integer >= 1"):
        bootstrap_counts(50, 0, seed=2)


def test_random_label_split_even_and_reproducible():
    split = random_label_split(10, 4, seed=0)
    assert split.dtype == torch.bool and split.shape == (4, 10)
    assert torch.equal(split.sum(0), torch.ones(10, dtype=torch.long))  # each class to exactly one member
    assert split.sum(1).tolist() == [3, 3, 2, 2]
    assert torch.equal(split, random_label_split(10, 4, seed=0))
    assert any(not torch.equal(split, random_label_split(10, 4, seed=s)) for s in range(1, 4))
    with pytest.raises(ValueError, match=r"num_members: got 5; expected an integer in 1..3"):
        random_label_split(3, 5, 0)
