"""Tests for mheads.ensemble.detection: AUROC, AUPR-in/out and FPR at 95% TPR with exact tie handling."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import detection as dt
from properties import property_settings

PROPERTY = property_settings(150)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Few distinct values, so ties within and across the two sets are common.
scores = st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=12).map(t)


# ---------------------------------------------------------------- brute-force references


def pairwise_auroc(in_scores, out_scores) -> Fraction:
    wins = sum(
        Fraction(1) if o > i else Fraction(1, 2) if o == i else 0
        for o in out_scores.tolist()
        for i in in_scores.tolist()
    )
    return wins / (len(in_scores) * len(out_scores))


def threshold_average_precision(positive, negative) -> Fraction:
    """sklearn's definition written out: for each distinct threshold t, descending, flag score >= t."""
    pos, neg = positive.tolist(), negative.tolist()
    total, recall_before = Fraction(0), Fraction(0)
    for threshold in sorted(set(pos + neg), reverse=True):
        tp = sum(s >= threshold for s in pos)
        fp = sum(s >= threshold for s in neg)
        recall = Fraction(tp, len(pos))
        total += (recall - recall_before) * Fraction(tp, tp + fp)
        recall_before = recall
    return total


def threshold_fpr(in_scores, out_scores, tpr) -> Fraction:
    for threshold in sorted(set(in_scores.tolist() + out_scores.tolist()), reverse=True):
        if Fraction(sum(s >= threshold for s in out_scores.tolist()), len(out_scores)) >= Fraction(tpr):
            return Fraction(sum(s >= threshold for s in in_scores.tolist()), len(in_scores))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- known answers


def test_known_auroc_with_one_tie():
    # Pairs (out, in): (0.4, 0.1) win, (0.4, 0.4) tie, (0.8, 0.1) win, (0.8, 0.4) win -> 3.5 / 4.
    assert dt.auroc(t([0.1, 0.4]), t([0.4, 0.8])) == 0.875


def test_known_aupr_with_ties():
    in_scores, out_scores = t([0.1, 0.4, 0.5]), t([0.4, 0.8])
    # OOD positive. t=0.8: tp 1, fp 0 (P 1, recall +1/2); t=0.5: tp 1, fp 1 (recall +0); t=0.4 (a tie
    # across the sets, entering together): tp 2, fp 2 (P 1/2, recall +1/2) -> 1/2 + 1/4.
    assert dt.aupr_out(in_scores, out_scores) == 0.75
    # In-distribution positive, scores negated: -0.1: tp 1 fp 0 (P 1); -0.4: tp 2 fp 1 (P 2/3);
    # -0.5: tp 3 fp 1 (P 3/4); each adds recall 1/3 -> (1 + 2/3 + 3/4) / 3 = 29/36.
    assert dt.aupr_in(in_scores, out_scores) == pytest.approx(29 / 36, abs=1e-15)
    # (0.4, 0.1) (0.4, 0.4 tie) (0.4, 0.5) loses; (0.8, *) three wins -> 4.5 / 6.
    assert dt.auroc(in_scores, out_scores) == 0.75


def test_ties_broken_by_input_order_would_change_aupr():
    # All scores equal: one threshold, precision = the OOD share, whatever the order.
    in_scores, out_scores = torch.zeros(3), torch.zeros(1)
    assert dt.detection_metrics(in_scores, out_scores) == {
        "auroc": 0.5,
        "aupr_in": 0.75,
        "aupr_in_chance": 0.75,
        "aupr_out": 0.25,
        "aupr_out_chance": 0.25,
        "fpr95_in": 1.0,
        "fpr95_out": 1.0,
    }


def test_known_fpr95_exact_boundary():
    # 20 OOD scores 1..20: 19/20 = 0.95 detected from threshold 2 on. In-distribution at or above 2: 2 of 4.
    out_scores = torch.arange(1, 21, dtype=torch.float64)
    assert dt.fpr_at_tpr(t([0.0, 1.5, 2.0, 3.0]), out_scores, positive="out") == 0.5
    assert dt.fpr_at_tpr(t([0.0, 1.5, 2.5, 3.0]), out_scores, 0.95, positive="out") == 0.5
    assert dt.fpr_at_tpr(t([0.0, 1.5, 1.9, 3.0]), out_scores, 0.95, positive="out") == 0.25


def test_known_fpr_with_tied_groups():
    in_scores, out_scores = t([1.0, 0.0]), t([1.0, 1.0, 2.0])
    # t=2 detects 1/3 of OOD, t=1 (a tie group of three) detects all and flags in-score 1.0.
    assert dt.fpr_at_tpr(in_scores, out_scores, 0.3, positive="out") == 0.0
    assert dt.fpr_at_tpr(in_scores, out_scores, 0.5, positive="out") == 0.5
    assert dt.fpr_at_tpr(in_scores, out_scores, 0.95, positive="out") == 0.5
    assert dt.fpr_at_tpr(in_scores, out_scores, 1.0, positive="out") == 0.5


def test_perfect_and_inverted_separation():
    low, high = t([0.0, 1.0, 2.0]), t([5.0, 6.0])
    assert dt.detection_metrics(low, high) == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_in_chance": 0.6,
        "aupr_out": 1.0,
        "aupr_out_chance": 0.4,
        "fpr95_in": 0.0,
        "fpr95_out": 0.0,
    }
    inverted = dt.detection_metrics(high, low)
    assert inverted["auroc"] == 0.0 and inverted["fpr95_in"] == inverted["fpr95_out"] == 1.0


def test_infinite_scores_are_comparable():
    assert dt.auroc(t([float("-inf"), 0.0]), t([float("inf"), 0.0])) == 0.875


# ---------------------------------------------------------------- properties


@PROPERTY
@given(scores, scores)
def test_against_brute_force(in_scores, out_scores):
    assert dt.auroc(in_scores, out_scores) == float(pairwise_auroc(in_scores, out_scores))
    assert dt.aupr_out(in_scores, out_scores) == pytest.approx(
        float(threshold_average_precision(out_scores, in_scores)), abs=1e-15
    )
    assert dt.aupr_in(in_scores, out_scores) == pytest.approx(
        float(threshold_average_precision(-in_scores, -out_scores)), abs=1e-15
    )
    for tpr in (0.5, 0.95, 1.0):
        assert dt.fpr_at_tpr(in_scores, out_scores, tpr, positive="out") == float(
            threshold_fpr(in_scores, out_scores, tpr)
        )
        # In-distribution positive: the same count with the roles and signs of the two sets exchanged.
        assert dt.fpr_at_tpr(in_scores, out_scores, tpr, positive="in") == float(
            threshold_fpr(-out_scores, -in_scores, tpr)
        )


@PROPERTY
@given(scores, scores)
def test_auroc_laws(in_scores, out_scores):
    a = dt.auroc(in_scores, out_scores)
    # Negating the scores turns every win into a loss and keeps ties: AUROC(in, out) + AUROC(-in, -out) = 1.
    assert a + dt.auroc(-in_scores, -out_scores) == pytest.approx(1.0, abs=1e-15)
    # Swapping which set is OOD does the same: AUROC(in, out) + AUROC(out, in) = 1.
    assert a + dt.auroc(out_scores, in_scores) == pytest.approx(1.0, abs=1e-15)
    # And both at once changes nothing: AUROC(in, out) = AUROC(-out, -in).
    assert a == dt.auroc(-out_scores, -in_scores)
    # AUPR-in is AUPR-out with the roles and signs of the two sets exchanged.
    assert dt.aupr_in(in_scores, out_scores) == dt.aupr_out(-out_scores, -in_scores)


@PROPERTY
@given(scores, scores, st.randoms(use_true_random=False))
def test_invariant_to_order_and_monotone_maps(in_scores, out_scores, rnd):
    expected = dt.detection_metrics(in_scores, out_scores)
    shuffled = [x[torch.tensor(rnd.sample(range(len(x)), len(x)))] for x in (in_scores, out_scores)]
    assert dt.detection_metrics(*shuffled) == expected
    # 3 s + 1 is exact on small integers and keeps every order and tie.
    assert dt.detection_metrics(3 * in_scores + 1, 3 * out_scores + 1) == expected


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.zeros(0), ValueError, r"in_scores: got shape \(0,\); expected \(N,\) with N >= 1"),
        (torch.zeros(2, 2), ValueError, r"in_scores: got shape \(2, 2\)"),
        (t([0.0, float("nan")]), ValueError, "in_scores: got NaN values"),
        (torch.tensor([True]), ValueError, "in_scores: got dtype torch.bool"),
        ([0.0, 1.0], TypeError, "in_scores: got list"),
    ],
)
def test_bad_scores(bad, error, message):
    for metric in (
        dt.auroc,
        dt.aupr_in,
        dt.aupr_out,
        dt.detection_metrics,
        lambda a, b: dt.fpr_at_tpr(a, b, positive="in"),
    ):
        with pytest.raises(error, match=message):
            metric(bad, t([1.0]))
        with pytest.raises(error, match=message.replace("in_scores", "out_scores")):
            metric(t([1.0]), bad)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, float("nan"), True])
def test_bad_tpr(tpr):
    with pytest.raises(ValueError, match="tpr: got"):
        dt.fpr_at_tpr(t([0.0]), t([1.0]), tpr, positive="out")


def test_bad_positive_class():
    with pytest.raises(ValueError, match="positive: got 'ood'; expected 'in'"):
        dt.fpr_at_tpr(t([0.0]), t([1.0]), positive="ood")


# ---------------------------------------------------------------- conventions, one-ulp ties, the threshold


def test_known_fpr95_in_both_conventions():
    # 20 in-distribution scores 1..20 and OOD scores 15, 19, 21, 22.
    in_scores, out_scores = torch.arange(1, 21, dtype=torch.float64), t([15.0, 19.0, 21.0, 22.0])
    # In positive: "score <= 19" accepts 19/20 = 95% of in-distribution data and the OOD 15 and 19: 2 of 4.
    assert dt.fpr_at_tpr(in_scores, out_scores, positive="in") == 0.5
    # OOD positive: flagging 95% of the 4 OOD scores needs all 4, "score >= 15": 6 of 20 in-distribution.
    assert dt.fpr_at_tpr(in_scores, out_scores, positive="out") == 0.3
    metrics = dt.detection_metrics(in_scores, out_scores)
    assert (metrics["fpr95_in"], metrics["fpr95_out"]) == (0.5, 0.3)
    assert (metrics["aupr_in_chance"], metrics["aupr_out_chance"]) == (20 / 24, 4 / 24)
    assert set(metrics) - {"aupr_in_chance", "aupr_out_chance"} <= set(dt.CONVENTIONS)


def test_threshold_at_tpr_is_the_fpr95_in_threshold():
    in_scores = torch.arange(1, 21, dtype=torch.float64)
    assert dt.threshold_at_tpr(in_scores) == 19.0  # 19 of 20 at or below it
    assert dt.threshold_at_tpr(in_scores, 1.0) == 20.0
    assert dt.threshold_at_tpr(t([3.0, 1.0, 2.0]), 0.5) == 2.0  # 2 of 3 is the first fraction >= 0.5
    # Accepting "score <= threshold" on OOD data gives fpr95_in.
    out_scores = t([15.0, 19.0, 21.0, 22.0])
    accepted = float((out_scores <= dt.threshold_at_tpr(in_scores)).double().mean())
    assert accepted == dt.fpr_at_tpr(in_scores, out_scores, positive="in")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_scores_one_ulp_apart_are_ties(dtype):
    # The same input scored in two batches can differ in the last place; it must not be ranked.
    x = torch.tensor([0.3, 0.7], dtype=dtype)
    up = torch.nextafter(x, torch.full_like(x, 2.0))  # one ulp above, in the scores' own dtype
    exact = dt.detection_metrics(x, x.clone())
    assert exact["auroc"] == 0.5
    for in_scores, out_scores in ((x, up), (up, x)):
        assert dt.detection_metrics(in_scores, out_scores) == exact
    # A chain of neighbours is one tie group, whatever the order of the inputs.
    chain = torch.nextafter(up, torch.full_like(x, 2.0))
    assert dt.auroc(torch.cat([x, chain]), up) == 0.5
    # Two ulps apart with nothing between them is not a tie.
    assert dt.auroc(x, chain) == 0.75  # each out-score beats the in-score it sits two ulps above


def test_hand_computed_roc_on_tied_data():
    # sklearn's roc_curve convention (not importable here): thresholds at the distinct scores, descending,
    # "score >= t" flagged, tied scores entering together. in: 0, 1, 1, 2; out: 1, 2, 2, 3.
    # Points (FPR, TPR): t=3 (0, 1/4); t=2 (1/4, 3/4); t=1 (3/4, 1); t=0 (1, 1). Trapezoids:
    # 1/4 * (1/4 + 3/4)/2 + 1/2 * (3/4 + 1)/2 + 1/4 * 1 = 1/8 + 7/16 + 1/4 = 13/16.
    in_scores, out_scores = t([0.0, 1.0, 1.0, 2.0]), t([1.0, 2.0, 2.0, 3.0])
    assert dt.auroc(in_scores, out_scores) == 13 / 16
    # The same data with every score nudged one ulp (in a shuffled order) gives the same numbers.
    nudged = torch.nextafter(out_scores, torch.full_like(out_scores, 9.0))[torch.tensor([2, 0, 3, 1])]
    assert dt.detection_metrics(in_scores, nudged) == dt.detection_metrics(in_scores, out_scores)
