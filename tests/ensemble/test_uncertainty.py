"""Tests for mheads.ensemble.uncertainty (entropy decomposition, OOD criteria) and
mheads.ensemble.uncertainty_report."""

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble import metrics as mt
from mheads.ensemble import uncertainty as un
from mheads.ensemble.calibration import adaptive_ece, classwise_ece
from mheads.ensemble.combine import ensemble_probs
from mheads.ensemble.detection import detection_metrics
from mheads.ensemble.selective import aurc, eaurc
from mheads.ensemble.uncertainty_report import uncertainty_arrays, uncertainty_report
from properties import property_settings

PROPERTY = property_settings(100)
BIG = 1000.0  # exp(-1000) is 0 in float64: logits of 0 and -BIG give exact probabilities 1/n
LN2 = math.log(2.0)


def from_probs(*members: list[list[float]]) -> torch.Tensor:
    """Logits `(M, B, C)` whose softmax is the given member probabilities (strictly positive)."""
    return torch.tensor(members, dtype=torch.float64).log()


def entropy(p: list[float]) -> float:
    return -math.fsum(x * math.log(x) for x in p if x > 0)


@st.composite
def member_logits(draw, max_members=4, max_batch=6, max_classes=5, integer=False):
    m, b, c = (draw(st.integers(1, n)) for n in (max_members, max_batch, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    g = torch.Generator().manual_seed(seed)
    if integer:  # few distinct values: ties in argmaxes and confidences
        return torch.randint(-2, 3, (m, b, c), generator=g).to(torch.float64)
    return torch.randn(m, b, c, generator=g, dtype=torch.float64) * scale


# ---------------------------------------------------------------- entropy decomposition


def test_known_entropy_decomposition():
    # Example 0: two certain members that disagree -> all epistemic. Example 1: two identical uniform
    # members -> all aleatoric. Example 2 (hand-computed below): members [.2, .8] and [.6, .4].
    logits = torch.cat(
        [
            torch.tensor([[[0.0, -BIG]], [[-BIG, 0.0]]], dtype=torch.float64),
            torch.zeros(2, 1, 2, dtype=torch.float64),
            from_probs([[0.2, 0.8]], [[0.6, 0.4]]),
        ],
        dim=1,
    )
    total, aleatoric, epistemic = un.entropy_decomposition(logits)
    for value in (total, aleatoric, epistemic):
        assert value.shape == (3,) and value.dtype == torch.float64
    expected_total = [LN2, LN2, entropy([0.4, 0.6])]
    expected_aleatoric = [0.0, LN2, (entropy([0.2, 0.8]) + entropy([0.6, 0.4])) / 2]
    assert total.tolist() == pytest.approx(expected_total, abs=1e-14)
    assert aleatoric.tolist() == pytest.approx(expected_aleatoric, abs=1e-14)
    assert epistemic.tolist() == pytest.approx(
        [LN2, 0.0, expected_total[2] - expected_aleatoric[2]], abs=1e-14
    )
    assert epistemic[2] > 0.05


def test_known_entropy_four_classes():
    # Member 0 uniform on {0, 1}, member 1 uniform on {2, 3}: mean uniform on 4 -> ln 4 = ln 2 + ln 2.
    logits = torch.tensor([[[0.0, 0.0, -BIG, -BIG]], [[-BIG, -BIG, 0.0, 0.0]]], dtype=torch.float64)
    total, aleatoric, epistemic = un.entropy_decomposition(logits)
    assert total.item() == pytest.approx(math.log(4.0), abs=1e-15)
    assert aleatoric.item() == pytest.approx(LN2, abs=1e-15)
    assert epistemic.item() == pytest.approx(LN2, abs=1e-15)


@PROPERTY
@given(member_logits())
def test_decomposition_laws(logits):
    total, aleatoric, epistemic = un.entropy_decomposition(logits)
    assert bool((epistemic >= 0).all())
    assert bool((aleatoric >= -1e-15).all())
    assert bool((total <= math.log(logits.shape[2]) + 1e-12).all())
    # total = aleatoric + epistemic up to rounding (the clamp only removes rounding noise)
    assert torch.allclose(aleatoric + epistemic, total, rtol=0, atol=1e-12)
    # MI = mean_m KL(p_m || mean p), computed independently
    log_p = torch.log_softmax(logits, dim=-1)
    log_mean = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
    kl = (log_p.exp() * (log_p - log_mean)).sum(dim=-1).mean(dim=0)
    assert torch.allclose(epistemic, kl.clamp(min=0), rtol=0, atol=1e-12)


@PROPERTY
@given(member_logits(max_members=1), st.integers(1, 5))
def test_identical_members_have_no_mutual_information(one, copies):
    logits = one.expand(copies, -1, -1)
    total, aleatoric, epistemic = un.entropy_decomposition(logits)
    assert float(epistemic.abs().max()) <= 1e-12
    assert torch.allclose(total, aleatoric, rtol=0, atol=1e-12)


@PROPERTY
@given(member_logits(), st.randoms(use_true_random=False))
def test_permuting_members_changes_no_score(logits, rnd):
    order = list(range(logits.shape[0]))
    rnd.shuffle(order)
    for name, score in un.CRITERIA.items():
        assert torch.allclose(score(logits), score(logits[order]), rtol=0, atol=1e-12), name


# ---------------------------------------------------------------- OOD criteria


def test_known_ood_scores():
    # Example 0: members [.2, .8] and [.6, .4] (mean [.4, .6]); example 1: [.9, .1] and [.7, .3].
    logits = from_probs([[0.2, 0.8], [0.9, 0.1]], [[0.6, 0.4], [0.7, 0.3]])
    assert un.max_prob_score(logits).tolist() == pytest.approx([-0.6, -0.8], abs=1e-15)
    assert un.max_member_prob_score(logits).tolist() == pytest.approx([-0.8, -0.9], abs=1e-15)
    assert un.disagreement_score(logits).tolist() == [1.0, 0.0]
    assert un.entropy_score(logits).tolist() == pytest.approx([entropy([0.4, 0.6]), entropy([0.8, 0.2])])
    mi0 = entropy([0.4, 0.6]) - (entropy([0.2, 0.8]) + entropy([0.6, 0.4])) / 2
    assert un.mutual_info_score(logits)[0].item() == pytest.approx(mi0, abs=1e-15)


def test_known_energy_is_of_the_mean_logits():
    # Mean of the member logits [1, 2] and [3, 0] is [2, 1]: energy = -log(e^2 + e^1).
    logits = torch.tensor([[[1.0, 2.0]], [[3.0, 0.0]]], dtype=torch.float64)
    assert un.energy_score(logits).item() == pytest.approx(-math.log(math.exp(2) + math.exp(1)), abs=1e-14)
    # Shifting every logit down (less evidence) raises the energy: higher = more OOD.
    assert un.energy_score(logits - 5).item() == pytest.approx(un.energy_score(logits).item() + 5)


def test_known_disagreement_fractions():
    # Three members predict 0, 0, 1: two of the three pairs differ. One member: no pairs, score 0.
    logits = torch.tensor([[[1.0, 0.0]], [[2.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    assert un.disagreement_score(logits).tolist() == pytest.approx([2 / 3])
    assert un.disagreement_score(logits[:1]).tolist() == [0.0]


def test_criteria_registry():
    assert list(un.CRITERIA) == [
        "max_prob",
        "entropy",
        "mutual_info",
        "energy",
        "disagreement",
        "max_member_prob",
    ]
    logits = torch.randn(3, 7, 4, dtype=torch.float32)
    for name, score in un.CRITERIA.items():
        value = score(logits)
        assert value.shape == (7,) and value.dtype == torch.float64, name


def test_more_uncertain_inputs_score_higher():
    confident = torch.tensor([[[8.0, 0.0, 0.0]], [[8.0, 0.0, 0.0]]])
    diffuse = torch.tensor([[[0.3, 0.0, 0.0]], [[0.0, 0.3, 0.0]]])
    for name, score in un.CRITERIA.items():
        assert score(diffuse).item() > score(confident).item(), name


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(2, 3), "logits: got shape (2, 3); expected (M, B, C)"),
        (torch.zeros(2, 0, 3), "logits: got shape (2, 0, 3)"),
        (torch.zeros(2, 3, 4, dtype=torch.int64), "logits: got dtype torch.int64"),
        (torch.tensor([[[0.0, float("nan")]]]), "logits: got non-finite values"),
        (torch.tensor([[[0.0, float("inf")]]]), "logits: got non-finite values"),
        (torch.full((1, 1, 2), -float("inf")), "logits: got non-finite values"),  # -inf on every class
    ],
)
def test_bad_logits(bad, message):
    for score in un.CRITERIA.values():
        with pytest.raises(ValueError) as info:
            score(bad)
        assert message in str(info.value)
    with pytest.raises(ValueError, match="logits: got"):
        un.entropy_decomposition(bad)


def test_bad_logits_type():
    with pytest.raises(TypeError, match="logits: got list"):
        un.entropy_decomposition([[[0.0]]])


@pytest.mark.parametrize(
    "targets, message",
    [
        (torch.tensor([0, 1]), r"targets: got shape \(2,\); expected \(B,\) = \(3,\)"),
        (torch.tensor([[0, 1, 2]]), "targets: got shape"),
        (torch.tensor([0.0, 1.0, 2.0]), "targets: got dtype torch.float32"),
        (torch.tensor([True, False, True]), "targets: got dtype torch.bool"),
        (torch.tensor([0, 1, 4]), r"targets: got values in \[0, 4\]; expected values in \[0, 4\)"),
        (torch.tensor([-1, 1, 2]), r"targets: got values in \[-1, 2\]"),
    ],
)
def test_bad_targets(targets, message):
    with pytest.raises(ValueError, match=message):
        un.checked_float64_logits_targets(torch.zeros(2, 3, 4), targets)


# ---------------------------------------------------------------- report


def test_report_is_json_and_matches_the_pure_functions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 50, 4, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 4, (50,), generator=g)
    ood = torch.randn(3, 30, 4, generator=g, dtype=torch.float64) * 0.5
    report = uncertainty_report(logits, targets, ood)
    assert json.loads(json.dumps(report)) == report
    probs = ensemble_probs(logits)
    confidence, correct = probs.amax(dim=-1), probs.argmax(dim=-1) == targets
    assert report["num_examples"] == 50 and report["num_ood_examples"] == 30
    assert report["adaptive_ece"] == adaptive_ece(confidence, correct)
    assert report["classwise_ece"] == classwise_ece(probs, targets)
    assert report["aurc"] == aurc(confidence, correct)
    assert report["eaurc"] == eaurc(confidence, correct) and 0 <= report["eaurc"] <= report["aurc"]
    assert list(report["risk_at_coverage"]) == ["0.5", "0.8", "0.9", "0.95", "1.0"]
    assert report["risk_at_coverage"]["1.0"] == pytest.approx(1 - mt.ensemble_mean_accuracy(logits, targets))
    assert list(report["oracle_at_k"]) == ["1", "2", "3"]
    assert report["oracle_at_k"]["3"] == report["top1_set_coverage"] == mt.oracle_accuracy(logits, targets)
    total, aleatoric, epistemic = un.entropy_decomposition(ood)
    assert report["ood_entropy"]["total"] == pytest.approx(total.mean().item(), abs=1e-14)
    assert report["ood_entropy"]["epistemic"] == pytest.approx(epistemic.mean().item(), abs=1e-14)
    assert set(report["ood"]) == set(un.CRITERIA)
    for name, score in un.CRITERIA.items():
        assert report["ood"][name] == detection_metrics(score(logits), score(ood))
    assert report["ood_conventions"]["fpr95_in"].startswith("the OOD literature's FPR95: in-distribution")
    # diffuse OOD logits: the total entropy separates them well
    assert report["ood"]["entropy"]["auroc"] > 0.8


def test_report_without_ood():
    logits = torch.randn(2, 10, 3)
    report = uncertainty_report(logits, torch.randint(0, 3, (10,)), num_bins=5, coverages=(0.5,))
    assert "ood" not in report and "ood_entropy" not in report
    assert list(report["risk_at_coverage"]) == ["0.5"]


def test_arrays_for_figures():
    logits = torch.randn(2, 10, 3)
    arrays = uncertainty_arrays(logits, torch.randint(0, 3, (10,)), torch.randn(2, 4, 3))
    assert arrays["confidence"].shape == (10,) and arrays["correct"].dtype == torch.bool
    assert {k: v.shape for k, v in arrays["scores"].items()} == {k: (10,) for k in un.CRITERIA}
    assert {k: v.shape for k, v in arrays["ood_scores"].items()} == {k: (4,) for k in un.CRITERIA}
    assert "ood_scores" not in uncertainty_arrays(logits, torch.zeros(10, dtype=torch.int64))


def test_report_bad_ood_logits():
    logits, targets = torch.randn(2, 10, 3), torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"ood_logits: got shape \(2, 4, 5\); expected \(M, K, C\)"):
        uncertainty_report(logits, targets, torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"ood_logits: got shape \(3, 0, 3\)"):
        uncertainty_report(logits, targets, torch.randn(3, 0, 3))
    with pytest.raises(ValueError, match="num_bins: got 0"):
        uncertainty_report(logits, targets, num_bins=0)


def test_a_minus_inf_class_mask_is_scored_as_a_probability_of_zero():
    """-inf on some classes (a model's class mask; no target masked) gives the report and every OOD score of
    the mask -1e300 (probability 0 in float64 too); it was refused as non-finite."""
    from mheads.ensemble.uncertainty_report import uncertainty_report

    g = torch.Generator().manual_seed(0)
    logits, ood = (
        torch.randn(3, 40, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 20, 5, generator=g, dtype=torch.float64),
    )
    targets = torch.randint(0, 5, (40,), generator=g)
    reports = []
    for mask in (-float("inf"), -1e300):
        z, o = logits.clone(), ood.clone()
        z[1, torch.arange(40), (targets + 1) % 5] = mask
        z[2, :, 4] = torch.where(targets != 4, mask, z[2, :, 4])
        o[0, :, 0] = mask
        reports.append((uncertainty_report(z, targets, o), [score(z) for score in un.CRITERIA.values()]))
    (masked, masked_scores), (finite, finite_scores) = reports
    assert masked == finite
    assert all(torch.equal(a, b) for a, b in zip(masked_scores, finite_scores))
