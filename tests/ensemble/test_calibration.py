"""Tests for mheads.ensemble.calibration: adaptive and class-wise ECE, reliability bins, temperature
scaling."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import calibration as cb
from mheads.ensemble.combine import ensemble_nll, member_nll
from properties import property_settings

PROPERTY = property_settings(100)
SLOW_PROPERTY = property_settings(5, fast=2)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def b(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- adaptive ECE

CONFIDENCE, CORRECT = t([0.9, 0.5, 0.7, 0.6]), b([True, True, True, False])  # sorted: .5 T, .6 F, .7 T, .9 T


@pytest.mark.parametrize(
    "num_bins, expected",
    [
        (1, abs(3 - 2.7) / 4),  # one bin: 3 correct against confidences summing to 2.7
        (2, (abs(1 - 1.1) + abs(2 - 1.6)) / 4),  # {.5, .6} and {.7, .9}
        (4, (0.5 + 0.6 + 0.3 + 0.1) / 4),  # one example per bin
        (15, (0.5 + 0.6 + 0.3 + 0.1) / 4),  # more bins than examples: the empty ones add nothing
    ],
)
def test_known_adaptive_ece(num_bins, expected):
    assert cb.adaptive_ece(CONFIDENCE, CORRECT, num_bins) == pytest.approx(expected, abs=1e-15)


def test_equal_mass_sizes_follow_array_split():
    # N = 5 into 2 bins: sizes 3, 2 (the first, least confident bins take the remainder).
    confidence, correct = t([0.1, 0.2, 0.3, 0.4, 0.5]), b([True, False, False, False, True])
    # {.1, .2, .3}: |1 - .6|; {.4, .5}: |1 - .9| -> 0.5 / 5. Sizes 2, 3 would give (0.7 + 0.2) / 5.
    assert cb.adaptive_ece(confidence, correct, 2) == pytest.approx(0.1, abs=1e-15)
    assert cb.reliability_bins(confidence, correct, 2)["count"].tolist() == [3, 2]


def test_equal_mass_ties_share_a_bin_whatever_their_correctness():
    # Two equal confidences, one right and one wrong: a threshold cannot separate them, so they share the
    # first bin (accuracy 1/2 at confidence 1/2: perfectly calibrated) and the second bin stays empty. Sorting
    # the wrong one first and cutting between them gave 0.5.
    for correct in (b([True, False]), b([False, True])):
        assert cb.adaptive_ece(t([0.5, 0.5]), correct, 2) == 0.0
        assert cb.reliability_bins(t([0.5, 0.5]), correct, 2)["accuracy"].tolist() == [0.5]


def test_a_calibrated_tie_group_has_zero_adaptive_ece():
    # 1000 examples all at confidence 0.7, 700 of them right: every cut falls inside the one tie group, and
    # sorting incorrect-first filled the low bins with the errors (0.399 with 15 bins).
    confidence = torch.full((1000,), 0.7, dtype=torch.float64)
    correct = torch.arange(1000) % 10 < 7
    assert cb.adaptive_ece(confidence, correct) == pytest.approx(0.0, abs=1e-12)
    assert cb.reliability_bins(confidence, correct)["count"].tolist() == [1000]


def test_a_tie_group_straddling_a_cut_goes_whole_to_the_lower_bin():
    # Sorted: .1 F, .4 T, .4 F, .4 T, .9 T; bins of 3 and 2 would cut the .4 group after its second member.
    # Edges: the 3rd confidence (.4) and the 5th (.9): the whole .4 group joins bin 0 -> {.1 .4 .4 .4}, {.9}.
    confidence, correct = t([0.4, 0.9, 0.1, 0.4, 0.4]), b([True, True, False, False, True])
    expected = (abs(2 - 1.3) + abs(1 - 0.9)) / 5
    assert cb.adaptive_ece(confidence, correct, 2) == pytest.approx(expected, abs=1e-15)
    assert cb.reliability_bins(confidence, correct, 2)["count"].tolist() == [4, 1]


@SLOW_PROPERTY
@given(st.integers(0, 2**31 - 1))
def test_perfectly_calibrated_data_has_small_adaptive_ece(seed):
    g = gen(seed)
    confidence = torch.rand(20000, generator=g, dtype=torch.float64) * 0.9 + 0.1
    correct = torch.rand(20000, generator=g, dtype=torch.float64) < confidence
    assert cb.adaptive_ece(confidence, correct) < 0.03
    # The same confidences with accuracy conf^2 are over-confident by E[c - c^2] ~ 0.16.
    overconfident = torch.rand(20000, generator=g, dtype=torch.float64) < confidence.square()
    assert cb.adaptive_ece(confidence, overconfident) > 0.1


@PROPERTY
@given(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=20),
    st.integers(1, 8),
    st.randoms(use_true_random=False),
)
def test_adaptive_ece_laws(pairs, num_bins, rnd):
    confidence, correct = t([c / 4 for c, _ in pairs]), b([h for _, h in pairs])
    value = cb.adaptive_ece(confidence, correct, num_bins)
    order = torch.tensor(rnd.sample(range(len(pairs)), len(pairs)))
    assert cb.adaptive_ece(confidence[order], correct[order], num_bins) == pytest.approx(value, abs=1e-15)
    # The triangle inequality: merging bins can only lower the error; one bin is |accuracy - mean conf|.
    overall = abs(correct.double().mean().item() - confidence.mean().item())
    assert value >= overall - 1e-12
    assert cb.adaptive_ece(confidence, correct, 1) == pytest.approx(overall, abs=1e-12)
    bins = cb.reliability_bins(confidence, correct, num_bins)
    assert int(bins["count"].sum()) == len(pairs)
    assert value == pytest.approx(
        float((bins["count"] * (bins["accuracy"] - bins["confidence"]).abs()).sum()) / len(pairs), abs=1e-12
    )


# ---------------------------------------------------------------- class-wise ECE and equal-width bins


def test_known_classwise_ece():
    probs, targets = t([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]), torch.tensor([0, 2])
    # Two bins (0, .5] and (.5, 1]. Class 0: .6 vs 1 -> .4; .2 vs 0 -> .2. Class 1: .3 and .2 vs 0 share bin 0
    # -> .5. Class 2: .1 vs 0 -> .1; .6 vs 1 -> .4. Each over N = 2, then the mean over classes.
    expected = ((0.4 + 0.2) / 2 + 0.5 / 2 + (0.1 + 0.4) / 2) / 3
    assert cb.classwise_ece(probs, targets, 2) == pytest.approx(expected, abs=1e-15)


def test_classwise_bin_edges_are_right_closed():
    # 0.5 lies in the first bin (0, .5]: class 0 gets .5 vs 1 and .75 vs 0 in separate bins (1.25 / 2).
    # Class 1: .5 vs 0 and .25 vs 1 share bin 0: |(0 - .5) + (1 - .25)| / 2 = .125.
    probs, targets = t([[0.5, 0.5], [0.75, 0.25]]), torch.tensor([0, 1])
    assert cb.classwise_ece(probs, targets, 2) == pytest.approx((0.625 + 0.125) / 2, abs=1e-15)


def test_classwise_ece_of_one_hot_truth_is_zero():
    targets = torch.tensor([0, 2, 1, 2])
    probs = torch.nn.functional.one_hot(targets, 3).double()
    assert cb.classwise_ece(probs, targets) == 0.0
    # Flipped: three examples certain of a wrong class, each wrong in two classes: 6 gaps of 1 over N C = 12.
    assert cb.classwise_ece(probs.flip(1), targets) == 0.5


def test_known_equal_width_reliability_bins():
    bins = cb.reliability_bins(CONFIDENCE, CORRECT, 2, adaptive=False)  # (0, .5] holds .5; (.5, 1] the rest
    assert bins["count"].tolist() == [1, 3]
    assert bins["confidence"].tolist() == pytest.approx([0.5, 2.2 / 3])
    assert bins["accuracy"].tolist() == pytest.approx([1.0, 2 / 3])


# ---------------------------------------------------------------- temperature scaling


def sampled_labels(logits: torch.Tensor, temperature: float, g: torch.Generator) -> torch.Tensor:
    """`logits: (N, C)` -> labels drawn from softmax(logits / temperature)."""
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=g).squeeze(1)


@SLOW_PROPERTY
@given(st.integers(0, 2**31 - 1))
def test_fit_recovers_a_known_temperature(seed):
    g = gen(seed)
    z = torch.randn(10000, 10, generator=g, dtype=torch.float64) * 4
    labels = sampled_labels(z, 2.5, g)
    fitted = cb.fit_temperature(z.unsqueeze(0), labels)
    assert fitted.shape == () and fitted.dtype == torch.float64
    assert fitted.item() == pytest.approx(2.5, abs=0.1)
    # Members scaled by s_m see the same data at temperature 2.5 s_m: NLL(s z / T) depends on s / T only.
    scales = t([1.0, 0.5, 3.0])
    per_member = cb.fit_temperature(z * scales.view(-1, 1, 1), labels, per_member=True)
    assert per_member.shape == (3,)
    assert (per_member / scales).tolist() == pytest.approx([fitted.item()] * 3, rel=1e-6)


def test_fit_reaches_a_stationary_point():
    g = gen(3)
    logits = torch.randn(3, 2000, 5, generator=g, dtype=torch.float64) * 3
    targets = sampled_labels(logits.mean(dim=0), 1.7, g)
    for per_member, nll in (
        (False, lambda z, y: ensemble_nll(z, y).mean()),
        (True, lambda z, y: member_nll(z, y).mean(dim=1)),
    ):
        temperature = cb.fit_temperature(logits, targets, per_member=per_member)
        u = temperature.log().clone().requires_grad_()
        scaled = logits / (u.exp().view(-1, 1, 1) if per_member else u.exp())
        nll(scaled, targets).sum().backward()
        assert float(u.grad.abs().max()) < 1e-7  # d mean NLL / d log T
        assert torch.equal(temperature, cb.fit_temperature(logits, targets, per_member=per_member))


def test_fit_stops_at_the_range_boundary():
    # Every example right with a wide margin: the NLL keeps falling as T -> 0.
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]], dtype=torch.float64)
    fitted = cb.fit_temperature(logits, torch.tensor([0, 1]))
    assert fitted.item() == pytest.approx(math.exp(cb.LOG_T_RANGE[0]), rel=1e-6)


@PROPERTY
@given(
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 2**31 - 1),
    st.sampled_from([torch.float32, torch.float64, torch.float16]),
)
def test_temperature_one_changes_nothing(m, n, c, seed, dtype):
    logits = (torch.randn(m, n, c, generator=gen(seed), dtype=torch.float64) * 10).to(dtype)
    for one in (1, 1.0, torch.tensor(1.0), torch.ones(m), torch.ones(m, dtype=torch.float64)):
        scaled = cb.apply_temperature(logits, one)
        assert scaled.dtype == dtype and torch.equal(scaled, logits)


def test_apply_temperature_per_member():
    logits = torch.ones(2, 3, 4)
    scaled = cb.apply_temperature(logits, t([2.0, 0.5]))
    assert scaled[0].unique().tolist() == [0.5] and scaled[1].unique().tolist() == [2.0]
    assert cb.apply_temperature(logits, 4).unique().tolist() == [0.25]


@pytest.mark.parametrize(
    "temperature, message",
    [
        (0.0, "temperature: got 0.0; expected a number > 0.0"),
        (-1, "temperature: got -1"),
        (float("inf"), "temperature: got inf"),
        (torch.tensor([1.0, 2.0, 3.0]), r"temperature: got shape \(3,\); expected \(\) or \(M,\) = \(2,\)"),
        (torch.tensor([1.0, 0.0]), r"temperature: got \[1.0, 0.0\]; expected finite values > 0"),
        (torch.tensor(float("nan")), "temperature: got nan"),
    ],
)
def test_bad_temperature(temperature, message):
    with pytest.raises(ValueError, match=message):
        cb.apply_temperature(torch.zeros(2, 3, 4), temperature)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"logits: got \(3, 4\)"):
        cb.apply_temperature(torch.zeros(3, 4), 1.0)
    with pytest.raises(TypeError, match="per_member: got 1"):
        cb.fit_temperature(torch.zeros(1, 2, 3), torch.tensor([0, 1]), per_member=1)
    with pytest.raises(ValueError, match=r"logits: got shape \(1, 0, 3\)"):
        cb.fit_temperature(torch.zeros(1, 0, 3), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match=r"targets: got values in \[0, 3\]"):
        cb.fit_temperature(torch.zeros(1, 2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_bins: got 0"):
        cb.adaptive_ece(CONFIDENCE, CORRECT, 0)
    with pytest.raises(ValueError, match=r"confidence: got values in \[0.5, 1.5\]; expected probabilities"):
        cb.adaptive_ece(t([0.5, 1.5]), b([True, True]))
    with pytest.raises(ValueError, match=r"correct: got shape \(1,\)"):
        cb.adaptive_ece(t([0.5, 0.5]), b([True]))
    with pytest.raises(ValueError, match=r"probs: got shape \(3,\); expected \(B, C\)"):
        cb.classwise_ece(t([0.5, 0.5, 0.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"probs: got shape \(0, 3\)"):
        cb.classwise_ece(torch.zeros(0, 3), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match=r"probs: got values in \[-0.5, 1.5\]"):
        cb.classwise_ece(t([[1.5, -0.5]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"targets: got shape \(2,\); expected \(B,\) = \(1,\)"):
        cb.classwise_ece(t([[0.5, 0.5]]), torch.tensor([0, 1]))
