"""Tests for mheads.ensemble.sets: top-1 set coverage, oracle@k and distinct member predictions."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import sets
from mheads.ensemble.metrics import member_accuracy, oracle_accuracy
from properties import property_settings

PROPERTY = property_settings(150)


def member(*predictions: tuple[int, float], num_classes: int = 3) -> list[list[float]]:
    """One member's probabilities `(B, C)`: per example, the predicted class gets q, the rest share 1 - q."""
    rows = []
    for cls, q in predictions:
        row = [(1 - q) / (num_classes - 1)] * num_classes
        row[cls] = q
        rows.append(row)
    return rows


def from_probs(*members) -> torch.Tensor:
    return torch.tensor(members, dtype=torch.float64).log()


# (class, confidence) per member for three examples with targets 1, 0, 0:
# example 0: members predict 0 (.9), 1 (.6), 2 (.5)  -> the most confident is wrong, the second right;
# example 1: members predict 0 (.4), 0 (.7), 1 (.8)  -> the most confident is wrong, the second right;
# example 2: all predict 2 (.5, .5, .9)              -> nobody is right.
LOGITS = from_probs(
    member((0, 0.9), (0, 0.4), (2, 0.5)),
    member((1, 0.6), (0, 0.7), (2, 0.5)),
    member((2, 0.5), (1, 0.8), (2, 0.9)),
)
TARGETS = torch.tensor([1, 0, 0])


def test_known_set_metrics():
    assert sets.top1_set_coverage(LOGITS, TARGETS) == pytest.approx(2 / 3)
    assert sets.oracle_at_k(LOGITS, TARGETS, 1) == 0.0
    assert sets.oracle_at_k(LOGITS, TARGETS, 2) == pytest.approx(2 / 3)
    assert sets.oracle_at_k(LOGITS, TARGETS, 3) == pytest.approx(2 / 3)
    assert sets.distinct_predictions(LOGITS) == (3 + 2 + 1) / 3


def test_oracle_at_1_follows_the_most_confident_member():
    # Example 0: member 1 (.8) is more confident than member 0 (.6); example 1: member 0 (.7) than member 1
    # (.5). Both trusted members predict 1; the less confident ones predict 0.
    logits = from_probs(member((0, 0.6), (1, 0.7)), member((1, 0.8), (0, 0.5)))
    assert sets.oracle_at_k(logits, torch.tensor([1, 1]), 1) == 1.0
    assert sets.oracle_at_k(logits, torch.tensor([0, 0]), 1) == 0.0
    assert sets.oracle_at_k(logits, torch.tensor([0, 0]), 2) == 1.0
    assert sets.oracle_at_k(logits, torch.tensor([0, 1]), 1) == 0.5


def test_equal_confidence_ranks_the_lower_member_first():
    logits = from_probs(member((0, 0.5)), member((1, 0.5)))
    assert sets.oracle_at_k(logits, torch.tensor([0]), 1) == 1.0
    assert sets.oracle_at_k(logits, torch.tensor([1]), 1) == 0.0
    assert sets.oracle_at_k(logits, torch.tensor([1]), 2) == 1.0


@st.composite
def logits_and_targets(draw):
    m, b, c = draw(st.integers(1, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):  # integers: ties in predictions and confidences
        logits = torch.randint(-2, 3, (m, b, c), generator=g).to(torch.float64)
    else:
        logits = torch.randn(m, b, c, generator=g, dtype=torch.float64) * 3
    return logits, torch.randint(0, c, (b,), generator=g)


@PROPERTY
@given(logits_and_targets(), st.randoms(use_true_random=False))
def test_laws(data, rnd):
    logits, targets = data
    num_members, _, num_classes = logits.shape
    oracle = oracle_accuracy(logits, targets)
    assert sets.top1_set_coverage(logits, targets) == oracle
    at_k = [sets.oracle_at_k(logits, targets, k) for k in range(1, num_members + 1)]
    assert at_k[-1] == oracle
    assert at_k == sorted(at_k)  # adding members to the set never loses a hit
    assert at_k[0] <= oracle and at_k[0] >= 0
    distinct = sets.distinct_predictions(logits)
    assert 1 <= distinct <= min(num_members, num_classes)
    order = list(range(num_members))
    rnd.shuffle(order)
    assert sets.distinct_predictions(logits[order]) == distinct
    assert sets.top1_set_coverage(logits[order], targets) == oracle


@PROPERTY
@given(logits_and_targets())
def test_oracle_at_1_against_a_loop(data):
    logits, targets = data
    probs = torch.softmax(logits, dim=-1)
    hits = 0
    for i in range(logits.shape[1]):
        confidence = probs[:, i].amax(dim=-1).tolist()
        best = confidence.index(max(confidence))  # the first (lowest index) of the most confident
        hits += int(logits[best, i].argmax()) == int(targets[i])
    assert sets.oracle_at_k(logits, targets, 1) == hits / logits.shape[1]


def test_one_member():
    logits, targets = torch.randn(1, 20, 4), torch.randint(0, 4, (20,))
    assert sets.oracle_at_k(logits, targets, 1) == member_accuracy(logits, targets).item()
    assert sets.distinct_predictions(logits) == 1.0


@pytest.mark.parametrize("k", [0, 4, True, 1.0])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k: got"):
        sets.oracle_at_k(LOGITS, TARGETS, k)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"logits: got shape \(3, 4\)"):
        sets.distinct_predictions(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"logits: got shape \(0, 2, 3\)"):
        sets.top1_set_coverage(torch.zeros(0, 2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"targets: got shape \(2,\); expected \(B,\) = \(3,\)"):
        sets.oracle_at_k(LOGITS, torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match=r"targets: got values in \[0, 5\]"):
        sets.top1_set_coverage(LOGITS, torch.tensor([0, 1, 5]))
