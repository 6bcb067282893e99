"""Tests for mheads.ensemble.selective: risk-coverage curve, AURC and risk at coverage, ties grouped."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import selective as sl
from properties import property_settings

PROPERTY = property_settings(150)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def b(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


@st.composite
def examples(draw, distinct=False):
    n = draw(st.integers(1, 15))
    if distinct:
        confidence = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=True))
    else:
        confidence = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    correct = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return t([c / 100 for c in confidence]), b(correct)


def geifman_aurc(confidence, correct) -> Fraction:
    """(1/N) sum_k (errors among the k most confident) / k; only meaningful without ties."""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i].item())
    wrong = [not correct[i].item() for i in order]
    return sum(Fraction(sum(wrong[:k]), k) for k in range(1, len(order) + 1)) / len(order)


# ---------------------------------------------------------------- known answers

# Sorted by confidence: right, wrong, right, wrong.
CONFIDENCE, CORRECT = t([0.6, 0.9, 0.7, 0.8]), b([False, True, True, False])


def test_known_curve_and_aurc():
    coverage, risk = sl.risk_coverage_curve(CONFIDENCE, CORRECT)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.5], abs=1e-15)
    # (0 + 1/2 + 1/3 + 2/4) / 4 = 1/3
    assert sl.aurc(CONFIDENCE, CORRECT) == pytest.approx(1 / 3, abs=1e-15)


def test_known_risk_at_coverage():
    risks = sl.risk_at_coverage(CONFIDENCE, CORRECT, (0.25, 0.3, 0.5, 0.8, 1.0))
    # 0.3 is first reached by keeping 2 of 4 (0.5); 0.8 by keeping all 4.
    assert risks == {0.25: 0.0, 0.3: 0.5, 0.5: 0.5, 0.8: 0.5, 1.0: 0.5}
    assert list(sl.risk_at_coverage(CONFIDENCE, CORRECT)) == [0.5, 0.8, 0.9, 0.95, 1.0]


def test_known_ties_enter_together():
    # Groups: {0.9, 0.9} with one error, then {0.5, 0.5} with none.
    confidence, correct = t([0.9, 0.5, 0.9, 0.5]), b([True, True, False, True])
    coverage, risk = sl.risk_coverage_curve(confidence, correct)
    assert coverage.tolist() == [0.5, 1.0]
    assert risk.tolist() == [0.5, 0.25]
    # Coverages 1/4 and 2/4 both get the first group's risk 1/2, 3/4 and 4/4 the second's 1/4:
    # (2 * 1/2 + 2 * 1/4) / 4 = 0.375 (breaking the tie by order would give 0.25 or 0.5 at k = 1).
    assert sl.aurc(confidence, correct) == 0.375
    # Exchanging the right and the wrong example inside the 0.9 tie changes nothing.
    assert sl.aurc(confidence, b([False, True, True, True])) == 0.375
    assert sl.risk_at_coverage(confidence, correct, (0.25, 0.75)) == {0.25: 0.5, 0.75: 0.25}


def test_coverage_095_is_reached_exactly_at_19_of_20():
    confidence = torch.arange(20, 0, -1, dtype=torch.float64)  # example i is the (i+1)-th most confident
    correct = torch.ones(20, dtype=torch.bool)
    correct[18] = False  # the 19th most confident is wrong
    assert sl.risk_at_coverage(confidence, correct, (0.95,)) == {0.95: 1 / 19}


def test_constant_confidence_is_the_error_rate():
    correct = b([True, False, False, True, True])
    assert sl.aurc(torch.full((5,), 0.7), correct) == pytest.approx(0.4)
    assert sl.risk_coverage_curve(torch.full((5,), 0.7), correct)[0].tolist() == [1.0]


# ---------------------------------------------------------------- properties


@PROPERTY
@given(examples(distinct=True))
def test_without_ties_aurc_is_geifmans_mean(data):
    confidence, correct = data
    assert sl.aurc(confidence, correct) == pytest.approx(float(geifman_aurc(confidence, correct)), abs=1e-15)


@PROPERTY
@given(examples(), st.randoms(use_true_random=False))
def test_laws(data, rnd):
    confidence, correct = data
    value = sl.aurc(confidence, correct)
    error_rate = (~correct).double().mean().item()
    coverage, risk = sl.risk_coverage_curve(confidence, correct)
    assert coverage[-1].item() == 1.0 and risk[-1].item() == pytest.approx(error_rate)
    assert bool((coverage.diff() > 0).all())
    assert 0.0 <= value <= 1.0
    assert sl.aurc(confidence, torch.ones_like(correct)) == 0.0
    assert sl.aurc(confidence, torch.zeros_like(correct)) == 1.0
    # The input order never matters, ties included.
    order = torch.tensor(rnd.sample(range(len(correct)), len(correct)))
    assert sl.aurc(confidence[order], correct[order]) == value
    assert sl.risk_at_coverage(confidence[order], correct[order]) == sl.risk_at_coverage(confidence, correct)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "confidence, correct, error, message",
    [
        (torch.zeros(0), b([]), ValueError, r"confidence: got shape \(0,\); expected \(N,\) with N >= 1"),
        (torch.zeros(2, 2), b([[True] * 2] * 2), ValueError, r"confidence: got shape \(2, 2\)"),
        (t([0.5, 0.5]), b([True]), ValueError, r"correct: got shape \(1,\); expected \(2,\)"),
        (t([0.5]), torch.tensor([1]), ValueError, "correct: got dtype torch.int64; expected torch.bool"),
        (t([float("nan")]), b([True]), ValueError, "confidence: got NaN values"),
        (torch.tensor([True]), b([True]), ValueError, "confidence: got dtype torch.bool"),
        ([0.5], b([True]), TypeError, "confidence: got list"),
    ],
)
def test_bad_inputs(confidence, correct, error, message):
    for metric in (sl.aurc, sl.risk_coverage_curve, sl.risk_at_coverage):
        with pytest.raises(error, match=message):
            metric(confidence, correct)


@pytest.mark.parametrize("coverage", [0.0, 1.5, -0.2, float("nan")])
def test_bad_coverage(coverage):
    with pytest.raises(ValueError, match=r"coverages\[1\]: got"):
        sl.risk_at_coverage(CONFIDENCE, CORRECT, (0.5, coverage))


# ---------------------------------------------------------------- E-AURC (excess AURC)


def test_known_eaurc():
    # Confidences .9 .8 .7 .6, the second wrong: risks at k = 1..4 are 0, 1/2, 1/3, 1/4 -> AURC = 13/48.
    # The oracle puts the error last: risks 0, 0, 0, 1/4 -> AURC* = 1/16 = 3/48, so E-AURC = 10/48.
    confidence, correct = t([0.9, 0.8, 0.7, 0.6]), b([True, False, True, True])
    assert sl.aurc(confidence, correct) == pytest.approx(13 / 48, abs=1e-15)
    assert sl.oracle_aurc(correct) == pytest.approx(1 / 16, abs=1e-15)
    assert sl.eaurc(confidence, correct) == pytest.approx(10 / 48, abs=1e-15)


def test_eaurc_is_zero_for_the_oracle_ranking_and_for_all_right_or_all_wrong():
    assert sl.eaurc(t([0.9, 0.8, 0.1]), b([True, True, False])) == 0.0
    assert sl.eaurc(t([0.5, 0.2]), b([True, True])) == 0.0
    assert sl.oracle_aurc(b([False, False, False])) == 1.0
    assert sl.eaurc(t([0.1, 0.2, 0.3]), b([False] * 3)) == 0.0


def test_oracle_aurc_approaches_geifmans_closed_form():
    # r + (1 - r) ln(1 - r), the large-N limit, with r = 0.3.
    import math

    correct = torch.arange(100000) % 10 >= 3
    assert sl.oracle_aurc(correct) == pytest.approx(0.3 + 0.7 * math.log(0.7), abs=1e-4)


@PROPERTY
@given(examples())
def test_eaurc_is_non_negative_and_the_oracle_ranking_attains_it(data):
    confidence, correct = data
    assert sl.eaurc(confidence, correct) >= -1e-15
    # Distinct confidences with every correct example above every error (a tie group would enter whole).
    oracle = 2 * correct.to(torch.float64) + torch.arange(len(correct), dtype=torch.float64) / len(correct)
    assert sl.aurc(oracle, correct) == pytest.approx(sl.oracle_aurc(correct), abs=1e-15)


@pytest.mark.parametrize(
    "correct, message",
    [
        (torch.zeros(0, dtype=torch.bool), r"correct: got \(0,\)"),
        (torch.tensor([1, 0]), "correct: got dtype torch.int64"),
        ([True], "correct: got list"),
    ],
)
def test_bad_oracle_input(correct, message):
    with pytest.raises(ValueError, match=message):
        sl.oracle_aurc(correct)
