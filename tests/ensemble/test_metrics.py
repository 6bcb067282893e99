"""Tests for mheads.ensemble.metrics, mheads.ensemble.accumulator and mheads.ensemble.exact_sum (paper
sections 3.2, 6.2, Figure 2)."""

import json
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import metrics as mt
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.ensemble.combine import ensemble_nll, member_nll
from mheads.ensemble.exact_sum import ExactSum
from properties import property_settings

PROPERTY = property_settings(200)
BIG = 1000.0  # exp(-1000) is 0 in float64: logits of 0 and -BIG give exact probabilities 1/n


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def top_classes(*members: list[list[int]], num_classes: int) -> torch.Tensor:
    """Logits `(M, B, C)` with 0 on the listed classes of each example and -BIG elsewhere."""
    logits = torch.full((len(members), len(members[0]), num_classes), -BIG, dtype=torch.float64)
    for m, examples in enumerate(members):
        for i, classes in enumerate(examples):
            logits[m, i, classes] = 0.0
    return logits


# ---------------------------------------------------------------- known answers

# Member 0 predicts 0, 0 (tie 0/1), 1, 0 (three-way tie); member 1 predicts 1, 1, 2, 2.
TIE_LOGITS = top_classes([[0], [0, 1], [1], [0, 1, 2]], [[1], [1], [2], [2]], num_classes=3)
TIE_TARGETS = torch.tensor([0, 1, 2, 2])


def test_known_accuracies_with_ties():
    assert mt.member_accuracy(TIE_LOGITS, TIE_TARGETS).tolist() == [0.25, 0.75]
    assert mt.oracle_accuracy(TIE_LOGITS, TIE_TARGETS) == 1.0
    # Averaged probabilities: [.5, .5, 0] -> 0 (tie, lowest index), [.25, .75, 0] -> 1, [0, .5, .5] -> 1 (tie,
    # wrong), [1/6, 1/6, 2/3] -> 2.
    assert mt.ensemble_mean_accuracy(TIE_LOGITS, TIE_TARGETS) == 0.75
    assert mt.ensemble_topk_accuracy(TIE_LOGITS, TIE_TARGETS, 1) == 0.75
    assert mt.ensemble_topk_accuracy(TIE_LOGITS, TIE_TARGETS, 2) == 1.0
    assert mt.ensemble_mean_accuracy(TIE_LOGITS, TIE_TARGETS, average="scores") == 0.75


def test_score_and_probability_averaging_can_disagree():
    # One very confident member dominates the mean of scores but not the mean of probabilities.
    logits = torch.tensor([[[0.0, 20.0]], [[3.0, 0.0]], [[3.0, 0.0]]], dtype=torch.float64)
    targets = torch.tensor([0])
    assert mt.ensemble_mean_accuracy(logits, targets) == 1.0
    assert mt.ensemble_mean_accuracy(logits, targets, average="scores") == 0.0


def test_known_oracle_assignment():
    # Lowest member NLL: example 0 -> member 0 (0 vs 1000); examples 1-3 -> member 1 (0 vs ln 2, 1000, ln 3).
    got = mt.oracle_assignment(TIE_LOGITS, TIE_TARGETS, 3)
    assert got.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    # A class without examples gets a column of zeros.
    got = mt.oracle_assignment(TIE_LOGITS[:, :1], TIE_TARGETS[:1], 3)
    assert got.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_oracle_assignment_ties_are_uniform_and_seeded():
    logits = torch.zeros(3, 3000, 2, dtype=torch.float64)  # every member tied on every example
    targets = torch.arange(3000) % 2
    got = mt.oracle_assignment(logits, targets, 2, generator=gen(11))
    assert got.sum(dim=0).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    # 1500 examples per class, p = 1/3: sd of a fraction ~0.012; 5-sigma band.
    assert ((got - 1 / 3).abs() < 0.061).all(), got
    assert torch.equal(got, mt.oracle_assignment(logits, targets, 2, generator=gen(11)))
    assert not torch.equal(got, mt.oracle_assignment(logits, targets, 2, generator=gen(12)))


def test_known_disagreement():
    logits = top_classes([[0], [2]], [[0], [2]], [[1], [2]], num_classes=3)
    # Example 0: pairs (0,2) and (1,2) disagree; example 1: none. 2 of 2 * 3 pairs.
    assert mt.pairwise_disagreement(logits) == pytest.approx(1 / 3, abs=1e-15)
    assert mt.pairwise_disagreement(logits[:1]) == 0.0  # one member: no pairs


# Member probabilities; averaged: [.7, .3], [.35, .65], [.72, .28]; targets 0, 0, 1.
PROBS = torch.tensor(
    [[[0.8, 0.2], [0.3, 0.7], [0.72, 0.28]], [[0.6, 0.4], [0.4, 0.6], [0.72, 0.28]]], dtype=torch.float64
)
PROB_LOGITS, PROB_TARGETS = PROBS.log(), torch.tensor([0, 0, 1])


def test_known_calibration_metrics():
    assert mt.negative_log_likelihood(PROB_LOGITS, PROB_TARGETS) == pytest.approx(
        -(math.log(0.7) + math.log(0.35) + math.log(0.28)) / 3, abs=1e-12
    )
    assert mt.brier_score(PROB_LOGITS, PROB_TARGETS) == pytest.approx((0.18 + 0.845 + 1.0368) / 3, abs=1e-12)
    member = [-math.log(p) for p in (0.8, 0.3, 0.28, 0.6, 0.4, 0.28)]
    assert mt.mean_member_nll(PROB_LOGITS, PROB_TARGETS) == pytest.approx(sum(member) / 6, abs=1e-12)
    # Bins (10/15, 11/15]: confidences .7 (right) and .72 (wrong) -> |1 - 1.42|; (9/15, 10/15]: .65 (wrong).
    got = mt.expected_calibration_error(PROB_LOGITS, PROB_TARGETS)
    assert got == pytest.approx((0.42 + 0.65) / 3, abs=1e-12)
    # One bin holding everything: |accuracy - mean confidence| = |1/3 - (.7 + .65 + .72) / 3|.
    got = mt.expected_calibration_error(PROB_LOGITS, PROB_TARGETS, num_bins=1)
    assert got == pytest.approx(abs(1 - 2.07) / 3, abs=1e-12)


def test_known_values_through_the_accumulator():
    acc = EnsembleMetrics(2, 3)
    acc.update(TIE_LOGITS[:, :3], TIE_TARGETS[:3])
    acc.update(TIE_LOGITS[:, 3:], TIE_TARGETS[3:])
    got = acc.compute()
    assert got["member_acc"] == [0.25, 0.75] and got["oracle_acc"] == 1.0
    assert got["ensemble_mean_acc"] == 0.75 and got["ensemble_top5_acc"] == 1.0  # top-3 of 3 classes
    assert got["oracle_assignment"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    assert got["disagreement"] == 1.0 and got["num_examples"] == 4
    json.dumps(got, allow_nan=False)


def test_streaming_matches_where_plain_float_summation_would_not():
    # Per-example values spanning many magnitudes: a running float sum depends on the batching.
    g = gen(2)
    scales = torch.logspace(-3, 3, 400, dtype=torch.float64).view(1, -1, 1)
    logits = torch.randn(2, 400, 5, generator=g, dtype=torch.float64) * scales
    targets = torch.randint(0, 5, (400,), generator=g)
    whole = mt.negative_log_likelihood(logits, targets)
    acc = EnsembleMetrics(2, 5)
    for part in torch.arange(400).split(7):
        acc.update(logits[:, part], targets[part])
    assert acc.compute()["nll"] == whole
    assert whole == math.fsum(ensemble_nll(logits, targets).tolist()) / 400


def test_exact_sum():
    values = [1e16, 1.0, -1e16, 3.5, 1e-300]
    assert ExactSum().add(values).value() == math.fsum(values) == 4.5
    split = ExactSum().add(values[:2]).merge(ExactSum().add(values[2:]))
    assert split.value() == 4.5 and split.value(2) == 6.5
    assert ExactSum().add([1.0, math.inf]).value() == math.inf
    assert math.isnan(ExactSum().add([math.inf, 1.0, -math.inf]).value())
    doubled = ExactSum().add([0.1, 0.2])
    assert doubled.merge(doubled).value() == math.fsum([0.1, 0.2, 0.1, 0.2])


# ---------------------------------------------------------------- errors


def test_metrics_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\), got values in \[0, 3\]"):
        mt.oracle_accuracy(TIE_LOGITS, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"average must be one of \('probs', 'scores'\), got 'mean'"):
        mt.ensemble_mean_accuracy(TIE_LOGITS, TIE_TARGETS, average="mean")
    with pytest.raises(ValueError, match="top-k k: got 4; expected an integer in 1..3"):
        mt.ensemble_topk_accuracy(TIE_LOGITS, TIE_TARGETS, 4)
    with pytest.raises(ValueError, match="num_classes must equal the logits' C = 3, got 4"):
        mt.oracle_assignment(TIE_LOGITS, TIE_TARGETS, 4)
    with pytest.raises(ValueError, match="num_bins: got 0; expected an integer >= 1"):
        mt.expected_calibration_error(TIE_LOGITS, TIE_TARGETS, num_bins=0)
    with pytest.raises(ValueError, match=r"logits must have shape \(M, B, C\)"):
        mt.pairwise_disagreement(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"with \(M, C\) = \(2, 4\), got \(2, 4, 3\)"):
        EnsembleMetrics(2, 4).update(TIE_LOGITS, TIE_TARGETS)
    with pytest.raises(ValueError, match="num_members: got 0; expected an integer >= 1"):
        EnsembleMetrics(0, 4)
    with pytest.raises(RuntimeError, match="needs at least one update"):
        EnsembleMetrics(2, 3).compute()
    with pytest.raises(ValueError, match="cannot merge"):
        EnsembleMetrics(2, 3).merge(EnsembleMetrics(3, 3))


# ---------------------------------------------------------------- non-finite outputs

NAN, INF = float("nan"), float("inf")


def _non_finite_logits() -> torch.Tensor:
    """TIE_LOGITS with a third member: NaN on examples 0 and 2 of member 1, inf on example 3 of member 1, -inf
    on every class of example 3 of member 2; member 0 stays finite."""
    logits = torch.cat([TIE_LOGITS, TIE_LOGITS[:1]])
    logits[1, 0], logits[1, 2, 1], logits[1, 3, 0], logits[2, 3] = NAN, NAN, INF, -INF
    return logits


NON_FINITE = (
    "non-finite outputs in member 1 (3 of 4 examples), member 2 (1 of 4 examples): NaN or +inf logits, or "
    "-inf on every class, have no probabilities to score; expected finite logits (-inf on some classes is "
    "allowed)"
)
PURE = [
    mt.member_accuracy,
    mt.ensemble_mean_accuracy,
    lambda x, y: mt.ensemble_mean_accuracy(x, y, average="scores"),
    lambda x, y: mt.ensemble_topk_accuracy(x, y, 2),
    mt.oracle_accuracy,
    lambda x, y: mt.oracle_assignment(x, y, 3),
    mt.negative_log_likelihood,
    mt.brier_score,
    mt.expected_calibration_error,
    mt.mean_member_nll,
    lambda x, y: mt.pairwise_disagreement(x),
]


def test_nan_logits_never_score_a_perfect_accuracy():
    nan = torch.full((2, 4, 3), NAN)  # argmax of NaN hit every target: ensemble_mean_acc was 1.0
    with pytest.raises(mt.NonFiniteOutputs, match=r"member 0 \(4 of 4 examples\), member 1 \(4 of 4"):
        mt.ensemble_mean_accuracy(nan, torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize("metric", PURE)
def test_every_metric_refuses_non_finite_logits_naming_the_members(metric):
    with pytest.raises(mt.NonFiniteOutputs) as err:
        metric(_non_finite_logits(), TIE_TARGETS)
    assert str(err.value) == NON_FINITE and (err.value.counts, err.value.num_examples) == ([0, 3, 1], 4)


def test_the_accumulator_counts_non_finite_outputs_over_every_batch():
    logits, acc = _non_finite_logits(), EnsembleMetrics(3, 3)
    for rows in ([0], [1, 2], [3]):  # the finite example 1 is counted too
        acc.update(logits[:, rows], TIE_TARGETS[rows])
    with pytest.raises(mt.NonFiniteOutputs) as err:
        acc.compute()
    assert str(err.value) == NON_FINITE  # as the pure functions on the whole set say it
    merged = EnsembleMetrics(3, 3).merge(acc).merge(acc)
    with pytest.raises(mt.NonFiniteOutputs, match=r"member 1 \(6 of 8 examples\), member 2 \(2 of 8"):
        merged.compute()
    acc.reset()
    acc.update(logits[:, [1]], TIE_TARGETS[[1]])
    assert acc.compute()["num_examples"] == 1


def test_a_minus_inf_class_mask_scores_as_a_probability_of_zero():
    """A model may mask classes with -inf (softmax and argmax are defined): every metric equals that of the
    mask -1e300 (probability 0 in float64 too), in the pure functions and the accumulator."""
    logits = torch.cat([TIE_LOGITS, TIE_LOGITS[:1]]).double()
    masked, finite = logits.clone(), logits.clone()
    masked[1, :2, 2], masked[2, 1:, 0] = -INF, -INF  # no target masked; was refused: "non-finite outputs ..."
    finite[1, :2, 2], finite[2, 1:, 0] = -1e300, -1e300
    for metric in PURE:  # oracle_assignment breaks ties at random: the same draws for both
        values = [
            (torch.manual_seed(0), torch.as_tensor(metric(x, TIE_TARGETS)))[1] for x in (masked, finite)
        ]
        assert torch.equal(*values)
    results = []
    for x in (masked, finite):
        torch.manual_seed(0)
        acc = EnsembleMetrics(3, 3)
        acc.update(x, TIE_TARGETS)
        results.append(acc.compute())
    assert results[0] == results[1]
    masked[1, 3, 2] = -INF  # the target's class masked: probability 0, NLL inf
    assert (
        mt.mean_member_nll(masked, TIE_TARGETS) == INF and mt.member_accuracy(masked, TIE_TARGETS)[1] == 0.5
    )


# Members masking disjoint classes: every class's mean score is -inf (softmax NaN, argmax torch's class 0).
DISJOINT = torch.tensor(
    [[[-INF, 0.0, 1.0], [-INF, 0.0, 1.0]], [[0.0, -INF, 1.0], [0.0, -INF, 1.0]], [[0.0, 3.0, -INF]] * 2],
    dtype=torch.float64,
)  # (M=3, B=2, C=3): mean probabilities (0.105, 0.407, 0.487) -> class 2


def test_score_averaging_of_disjoint_masks_falls_back_to_the_mean_probabilities():
    """`ensemble_scores` is `mean_scores` but where every class is -inf: there the log of the members' mean
    probabilities (its softmax is that mean); a class all mask stays -inf."""
    from mheads.ensemble.combine import ensemble_log_probs, ensemble_probs, ensemble_scores, mean_scores

    assert torch.equal(ensemble_scores(DISJOINT), ensemble_log_probs(DISJOINT))
    assert torch.allclose(torch.softmax(ensemble_scores(DISJOINT), dim=-1), ensemble_probs(DISJOINT))
    assert (mean_scores(DISJOINT) == -INF).all()  # the energy score's mean: +inf energy
    three = torch.cat([DISJOINT[:, :1], torch.full((3, 1, 1), -INF, dtype=torch.float64)], dim=-1)
    assert ensemble_scores(three)[0, 3] == -INF  # (C=4): class 3 masked by every member
    plain = torch.randn(3, 5, 4, generator=gen(3), dtype=torch.float64)
    plain[0, :3, 1] = -INF  # a mask on some classes: unchanged, bit for bit
    assert torch.equal(ensemble_scores(plain), mean_scores(plain))
    targets = torch.tensor([1, 2])  # 1: the class the mean finite scores (0, 1, 2/3) picked before
    for average in ("scores", "probs"):
        assert mt.ensemble_mean_accuracy(DISJOINT, targets, average=average) == 0.5
        assert mt.ensemble_topk_accuracy(DISJOINT, targets, 2, average=average) == 1.0  # top 2: classes 2, 1
    acc = EnsembleMetrics(3, 3)
    acc.update(DISJOINT, targets)
    assert acc.compute()["ensemble_mean_acc_scores"] == 0.5


def test_score_averaging_of_disjoint_masks_is_unchanged_by_shifting_a_member():
    """Score averaging and softmax ignore a constant added to one member's logits; the rule for disjoint
    masks did not (the reviewer's case: class 0, class 2 after shifting member 0 by +200)."""
    from mheads.ensemble.combine import ensemble_scores

    logits = torch.tensor([[[-INF, -INF, -100.0]], [[5.0, 0.0, -INF]]], dtype=torch.float64)
    shifted = logits.clone()
    shifted[0] += 200.0
    for x in (logits, shifted):
        assert ensemble_scores(x).argmax(dim=-1).tolist() == [2]  # mean probabilities (0.497, 0.003, 0.5)
        assert mt.ensemble_mean_accuracy(x, torch.tensor([2]), average="scores") == 1.0
    assert torch.allclose(ensemble_scores(logits), ensemble_scores(shifted), rtol=0, atol=1e-15)


def test_one_non_finite_member_among_many_is_named_with_a_short_message():
    logits = torch.zeros(20, 2, 3)
    logits[3:, 1, 0] = NAN
    with pytest.raises(mt.NonFiniteOutputs) as err:
        mt.oracle_accuracy(logits, torch.tensor([0, 1]))
    assert "member 3 (1 of 2 examples)" in str(err.value) and "member 10 (1 of 2 examples) and 9 more" in str(
        err.value
    )


# ---------------------------------------------------------------- properties


@st.composite
def ensembles(draw, max_members=4, max_batch=8):
    """Small float64 `(M, B, C)` logits with frequent exact ties, and targets."""
    m = draw(st.integers(1, max_members))
    b = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, 5))
    values = st.one_of(st.sampled_from([0.0, 1.0, -3.0]), st.floats(-30, 30, allow_nan=False))
    logits = torch.tensor(draw(st.lists(values, min_size=m * b * c, max_size=m * b * c)), dtype=torch.float64)
    targets = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=b, max_size=b)))
    return logits.view(m, b, c), targets


def whole_set_values(logits, targets, seed):
    c = logits.shape[-1]
    return {
        "num_examples": logits.shape[1],
        "ensemble_mean_acc": mt.ensemble_mean_accuracy(logits, targets),
        "ensemble_mean_acc_scores": mt.ensemble_mean_accuracy(logits, targets, average="scores"),
        "ensemble_top5_acc": mt.ensemble_topk_accuracy(logits, targets, min(5, c)),
        "oracle_acc": mt.oracle_accuracy(logits, targets),
        "member_acc": mt.member_accuracy(logits, targets).tolist(),
        "oracle_assignment": mt.oracle_assignment(logits, targets, c, generator=gen(seed)).tolist(),
        "nll": mt.negative_log_likelihood(logits, targets),
        "brier": mt.brier_score(logits, targets),
        "ece": mt.expected_calibration_error(logits, targets),
        "disagreement": mt.pairwise_disagreement(logits),
        "mean_member_nll": mt.mean_member_nll(logits, targets),
    }


@PROPERTY
@given(ensembles(), st.integers(0, 2**16), st.randoms(use_true_random=False))
def test_streaming_equals_whole_set_exactly(case, seed, rnd):
    logits, targets = case
    m, b, c = logits.shape
    cuts = sorted(rnd.sample(range(1, b), rnd.randint(0, b - 1))) if b > 1 else []
    bounds = [0, *cuts, b]
    streamed = EnsembleMetrics(m, c, gen(seed))
    for lo, hi in zip(bounds, bounds[1:]):
        streamed.update(logits[:, lo:hi], targets[lo:hi])
    at_once = EnsembleMetrics(m, c, gen(seed))
    at_once.update(logits, targets)
    got = streamed.compute()
    assert got == at_once.compute()
    assert {key: got[key] for key in whole_set_values(logits, targets, seed)} == whole_set_values(
        logits, targets, seed
    )
    json.dumps(got, allow_nan=False)
    # Two accumulators fed halves and merged give the same values too (oracle ties aside: separate draws).
    first, second = EnsembleMetrics(m, c), EnsembleMetrics(m, c)
    half = (b + 1) // 2
    first.update(logits[:, :half], targets[:half])
    if half < b:
        second.update(logits[:, half:], targets[half:])
    merged = first.merge(second).compute()
    assert {k: v for k, v in merged.items() if k != "oracle_assignment"} == {
        k: v for k, v in got.items() if k != "oracle_assignment"
    }


@PROPERTY
@given(ensembles())
def test_nll_ordering_and_metric_bounds(case):
    logits, targets = case
    members = member_nll(logits, targets)  # (M, B)
    ensemble = ensemble_nll(logits, targets)  # (B,)
    slack = 1e-12 * (1 + members.abs().max())
    assert (members.min(dim=0).values <= ensemble + slack).all()
    assert (ensemble <= members.mean(dim=0) + slack).all()
    assert mt.negative_log_likelihood(logits, targets) <= mt.mean_member_nll(logits, targets) + float(slack)

    oracle = mt.oracle_accuracy(logits, targets)
    assert all(oracle >= acc for acc in mt.member_accuracy(logits, targets).tolist())
    c = logits.shape[-1]
    topk = [mt.ensemble_topk_accuracy(logits, targets, k) for k in range(1, c + 1)]
    assert topk[0] == mt.ensemble_mean_accuracy(logits, targets) and topk[-1] == 1.0
    assert all(a <= b for a, b in zip(topk, topk[1:]))
    assert 0.0 <= mt.brier_score(logits, targets) <= 2.0 + 1e-12
    assert 0.0 <= mt.expected_calibration_error(logits, targets) <= 1.0
    assert 0.0 <= mt.pairwise_disagreement(logits) <= 1.0


@PROPERTY
@given(st.integers(2, 4), st.integers(1, 8), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_permuting_members_changes_no_metric(m, b, c, seed):
    g = gen(seed)
    logits = torch.randn(m, b, c, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, c, (b,), generator=g)
    perm = list(range(m))
    random.Random(seed).shuffle(perm)
    base, moved = EnsembleMetrics(m, c), EnsembleMetrics(m, c)
    base.update(logits, targets)
    moved.update(logits[perm], targets)
    base, moved = base.compute(), moved.compute()
    for key in ("member_acc", "member_nll", "oracle_assignment"):
        want = base.pop(key)
        assert moved.pop(key) == [want[p] for p in perm]
    for key, value in base.items():  # averaging in another member order may round differently
        assert moved[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# ---------------------------------------------------------------- accelerator


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = gen(4)
    logits, targets = torch.randn(3, 64, 10, generator=g), torch.randint(0, 10, (64,), generator=g)
    cpu, cuda = EnsembleMetrics(3, 10, gen(1)), EnsembleMetrics(3, 10, gen(1))
    cpu.update(logits, targets)
    cuda.update(logits.cuda(), targets.cuda())
    got, want = cuda.compute(), cpu.compute()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
