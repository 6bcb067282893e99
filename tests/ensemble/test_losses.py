"""Tests for mheads.ensemble.losses (ensemble-aware losses, paper section 6) and
mheads.ensemble.assignment."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble.assignment import topk_assignment
from mheads.ensemble.losses import (
    LOSS_NAMES,
    LOSSES,
    LossResult,
    annealed_mcl_loss,
    annealed_temperature,
    compute_loss,
    confident_mcl_loss,
    independent_ce,
    mcl_assignment,
    mcl_ce_loss,
    mcl_loss,
    prob_averaged_ce,
    relaxed_mcl_loss,
    score_averaged_ce,
    scored_mcl_loss,
)
from properties import property_settings

PROPERTY = property_settings(200)
LN3, LN2 = math.log(3.0), math.log(2.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def needs(name: str, logits: torch.Tensor, k: int = 1, scores: torch.Tensor | None = None) -> dict:
    """What loss `name` needs beyond the common arguments: k (1 for a single-winner loss) and, for a scored
    loss, the scoring heads' logits (`scores`, default all zero)."""
    spec = LOSSES[name]
    out = {"k": 1 if spec.single_winner else k}
    if spec.scores:
        out["score_logits"] = torch.zeros(logits.shape[:2], dtype=logits.dtype) if scores is None else scores
    return out


# ---------------------------------------------------------------- known answers

# Member 0: p(y) = 3/4 on example 0, 1/2 on example 1; member 1: p(y) = 1/4 on both.
KNOWN_LOGITS = torch.tensor([[[0.0, LN3], [0.0, 0.0]], [[LN3, 0.0], [0.0, LN3]]], dtype=torch.float64)
KNOWN_TARGETS = torch.tensor([1, 0])
NLL00, NLL01, NLL1 = math.log(4 / 3), LN2, math.log(4.0)
KL_QUARTER = 0.5 * math.log(4 / 3)  # KL(U || [1/4, 3/4])


def test_known_independent_ce():
    expected = (NLL00 + NLL01) / 2 + (NLL1 + NLL1) / 2
    assert independent_ce(KNOWN_LOGITS, KNOWN_TARGETS).item() == pytest.approx(expected, abs=1e-12)


def test_known_score_averaged_ce():
    # Mean scores: [ln3/2, ln3/2] -> p(1) = 1/2; [0, ln3/2] -> p(0) = 1 / (1 + sqrt 3).
    expected = (LN2 + math.log(1 + math.sqrt(3))) / 2
    assert score_averaged_ce(KNOWN_LOGITS, KNOWN_TARGETS).item() == pytest.approx(expected, abs=1e-12)


def test_known_prob_averaged_ce():
    # Mean target probabilities: (3/4 + 1/4) / 2 = 1/2 and (1/2 + 1/4) / 2 = 3/8.
    expected = (LN2 + math.log(8 / 3)) / 2
    assert prob_averaged_ce(KNOWN_LOGITS, KNOWN_TARGETS).item() == pytest.approx(expected, abs=1e-12)


def test_known_mcl_and_assignment():
    assert mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, k=1).item() == pytest.approx((NLL00 + NLL01) / 2, abs=1e-12)
    assignment = mcl_assignment(KNOWN_LOGITS, KNOWN_TARGETS, k=1)
    assert assignment.tolist() == [[True, True], [False, False]]
    independent = independent_ce(KNOWN_LOGITS, KNOWN_TARGETS)
    assert torch.equal(mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, k=2), independent)


def test_known_weighted_losses():
    weights = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    got = independent_ce(KNOWN_LOGITS, KNOWN_TARGETS, weights=weights).item()
    assert got == pytest.approx(2 * NLL00 / 2 + 2 * NLL1 / 2, abs=1e-12)
    # Example 1 is not in member 0's sample, so it goes to member 1 despite member 0's lower loss.
    assignment = mcl_assignment(KNOWN_LOGITS, KNOWN_TARGETS, k=1, weights=weights)
    assert assignment.tolist() == [[True, False], [False, True]]
    got = mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, k=1, weights=weights).item()
    assert got == pytest.approx(2 * NLL00 / 2 + NLL1 / 2, abs=1e-12)
    result = compute_loss("mcl", KNOWN_LOGITS, KNOWN_TARGETS, weights=weights)
    assert result.per_member.tolist() == pytest.approx([NLL00, NLL1 / 2], abs=1e-12)


def test_known_mcl_ce_mix():
    mcl = (NLL00 + NLL01) / 2
    independent = (NLL00 + NLL01) / 2 + NLL1
    got = mcl_ce_loss(KNOWN_LOGITS, KNOWN_TARGETS, k=1, mix=0.25).item()
    assert got == pytest.approx(0.25 * mcl + 0.75 * independent, abs=1e-12)


def test_known_confident_mcl():
    # Member 0 is assigned both examples; member 1 pays beta * KL(U || p) = beta * KL_QUARTER on each.
    expected = (NLL00 + NLL01) / 2 + 0.75 * KL_QUARTER
    got = confident_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, k=1, beta=0.75)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_known_ties_give_the_tied_value_and_k_members():
    logits = torch.zeros(3, 5, 4, dtype=torch.float64)  # every member has CE log 4 everywhere
    targets = torch.tensor([0, 1, 2, 3, 0])
    for k in (1, 2, 3):
        assert mcl_loss(logits, targets, k, gen()).item() == pytest.approx(k * math.log(4), abs=1e-12)
        assert mcl_assignment(logits, targets, k, generator=gen()).sum(dim=0).tolist() == [k] * 5


def test_prob_averaged_ce_is_finite_where_every_softmax_underflows():
    # Every member gives the target log-probability -1e4 (exp underflows in any float type): loss 1e4.
    logits = torch.zeros(3, 2, 2)
    logits[..., 1] = 1e4
    loss = prob_averaged_ce(logits, torch.tensor([0, 0]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1e4, rel=1e-6)
    naive = -torch.log(torch.softmax(logits, -1).mean(0)[:, 0]).mean()
    assert not torch.isfinite(naive)  # the formula the issue rules out


@property_settings(200)
@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(2, 5),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 1e2, 1e4]),
)
def test_prob_averaged_ce_matches_float64_reference(m, b, c, seed, scale):
    g = gen(seed)
    logits = ((torch.rand(m, b, c, generator=g) * 2 - 1) * scale).float()
    targets = torch.randint(0, c, (b,), generator=g)
    got = prob_averaged_ce(logits, targets)
    want = prob_averaged_ce(logits.double(), targets)
    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- compute_loss


def test_compute_loss_per_member_and_assignment():
    for name in LOSS_NAMES:
        result = compute_loss(name, KNOWN_LOGITS, KNOWN_TARGETS, generator=gen(), **needs(name, KNOWN_LOGITS))
        assert isinstance(result, LossResult)
        assert result.loss.ndim == 0 and result.per_member.shape == (2,)
        assert not result.per_member.requires_grad
        if name in ("score_averaged_ce", "prob_averaged_ce"):
            assert result.per_member.tolist() == pytest.approx([(NLL00 + NLL01) / 2, NLL1], abs=1e-12)
            assert result.assignment is None
        else:
            torch.testing.assert_close(result.per_member.sum(), result.loss.detach())
            assert (result.assignment is None) == (name == "independent_ce")
    assignment = compute_loss("mcl", KNOWN_LOGITS, KNOWN_TARGETS).assignment
    assert assignment.tolist() == [[True, True], [False, False]]


def test_compute_loss_matches_functions():
    g = gen(3)
    logits, targets = torch.randn(3, 6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    w = torch.randint(0, 3, (3, 6), generator=g).float()
    pairs = [
        ("independent_ce", independent_ce(logits, targets, weights=w), {"weights": w}),
        ("score_averaged_ce", score_averaged_ce(logits, targets), {}),
        ("prob_averaged_ce", prob_averaged_ce(logits, targets), {}),
        ("mcl", mcl_loss(logits, targets, 2, gen(), weights=w), {"k": 2, "weights": w}),
        ("mcl_ce", mcl_ce_loss(logits, targets, 2, 0.3, gen(), weights=w), dict(k=2, mix=0.3, weights=w)),
        (
            "cmcl",
            confident_mcl_loss(logits, targets, 2, 0.5, gen(), weights=w),
            dict(k=2, beta=0.5, weights=w),
        ),
    ]
    for name, expected, kwargs in pairs:
        result = compute_loss(name, logits, targets, generator=gen(), **kwargs)
        assert torch.equal(result.loss, expected), name


def test_per_member_names_the_diverging_member_even_when_unassigned():
    logits = torch.randn(3, 4, 5, generator=gen())
    logits[2, 1] = float("nan")
    targets = torch.tensor([0, 1, 2, 3])
    for name in LOSS_NAMES:
        result = compute_loss(name, logits, targets, **needs(name, logits))
        assert not torch.isfinite(result.loss), name
        assert torch.isfinite(result.per_member[:2]).all() and torch.isnan(result.per_member[2]), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bogus"}, "unknown loss name 'bogus'; valid names are independent_ce, score_averaged_ce"),
        ({"k": 0}, "k: got 0; expected an integer in 1..2"),
        ({"k": 3}, "k: got 3; expected an integer in 1..2"),
        ({"k": 1.0}, "k: got 1.0; expected an integer"),
        ({"mix": 1.5}, "mix: got 1.5; expected a number >= 0.0 and <= 1.0"),
        ({"mix": -0.1}, "mix: got -0.1"),
        ({"beta": -1.0}, "beta: got -1.0; expected a number >= 0.0"),
        ({"beta": float("inf")}, "beta: got inf"),
        ({"name": "prob_averaged_ce", "weights": torch.ones(2, 2)}, "takes no per-member weights"),
        ({"weights": torch.ones(2, 3)}, r"weights must have shape \(M, B\) = \(2, 2\)"),
        ({"weights": -torch.ones(2, 2)}, "weights must be finite and >= 0"),
        ({"weights": torch.ones(2, 2, dtype=torch.bool)}, "weights must be a real"),
    ],
)
def test_compute_loss_rejects_bad_arguments(kwargs, match):
    kwargs = {"name": "mcl", **kwargs}
    with pytest.raises(ValueError, match=match):
        compute_loss(kwargs.pop("name"), KNOWN_LOGITS, KNOWN_TARGETS, **kwargs)


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), r"logits must have shape \(M, B, C\)"),
        (torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long), r"targets must have shape \(B,\) = \(3,\)"),
        (torch.zeros(2, 3, 4), torch.zeros(3), "targets must be an integer tensor"),
        (torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long), "floating-point"),
        (torch.zeros(2, 3, 4), torch.tensor([0, 4, 1]), r"targets must lie in \[0, 4\), got values in \[0,"),
        (torch.zeros(2, 0, 4), torch.zeros(0, dtype=torch.long), "M, B, C >= 1"),
    ],
)
def test_losses_reject_bad_inputs(logits, targets, match):
    for loss in (independent_ce, score_averaged_ce, prob_averaged_ce, mcl_loss):
        with pytest.raises(ValueError, match=match):
            loss(logits, targets)


def test_mcl_rejects_bad_assignment():
    with pytest.raises(ValueError, match=r"assignment must have shape \(M, B\) = \(2, 2\)"):
        mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, assignment=torch.ones(2, 3, dtype=torch.bool))


# ---------------------------------------------------------------- gradients


def _float64_case(m=3, b=4, c=5, seed=0):
    g = gen(seed)
    logits = torch.randn(m, b, c, generator=g, dtype=torch.float64, requires_grad=True)
    return logits, torch.randint(0, c, (b,), generator=g)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck_every_loss(name):
    logits, targets = _float64_case()
    weights = None
    if name not in ("score_averaged_ce", "prob_averaged_ce"):
        weights = torch.tensor([[1, 0, 2, 1], [1, 1, 0, 3], [0, 2, 1, 1]], dtype=torch.float64)

    extra = needs(name, logits, k=2, scores=torch.randn(3, 4, generator=gen(1), dtype=torch.float64))

    def fn(x):
        # A fixed generator keeps any tie-break identical between the perturbed evaluations.
        return compute_loss(
            name, x, targets, mix=0.4, beta=0.6, weights=weights, generator=gen(), **extra
        ).loss

    assert torch.autograd.gradcheck(fn, (logits,))


def test_score_averaged_gives_every_member_the_same_gradient():
    logits, targets = _float64_case()
    (grad,) = torch.autograd.grad(score_averaged_ce(logits, targets), logits)
    for m in range(1, 3):
        torch.testing.assert_close(grad[m], grad[0], rtol=0, atol=1e-15)
    # ... which is 1/M of the gradient of the cross-entropy of the mean.
    mean = logits.detach().mean(0).requires_grad_(True)
    (mean_grad,) = torch.autograd.grad(F.cross_entropy(mean, targets), mean)
    torch.testing.assert_close(grad[0], mean_grad / 3)


def test_mcl_k1_gives_a_gradient_only_to_the_assigned_member():
    logits, targets = _float64_case(m=4, b=16, c=6)
    assignment = mcl_assignment(logits, targets, k=1)
    (grad,) = torch.autograd.grad(mcl_loss(logits, targets, k=1), logits)
    touched = grad.abs().sum(dim=-1) > 0  # (M, B)
    assert torch.equal(touched, assignment)
    assert assignment.sum(dim=0).tolist() == [1] * 16


def test_independent_ce_gives_each_member_its_own_gradient():
    logits, targets = _float64_case()
    (grad,) = torch.autograd.grad(independent_ce(logits, targets), logits)
    for m in range(3):
        alone = logits.detach()[m].requires_grad_(True)
        (want,) = torch.autograd.grad(F.cross_entropy(alone, targets), alone)
        torch.testing.assert_close(grad[m], want)


# ---------------------------------------------------------------- tie-breaking


def test_ties_are_broken_uniformly():
    # All 4 members tied on 4000 examples: each should get ~1000 (sd ~27). Fixed seed, 5-sigma band.
    costs = torch.zeros(4, 4000)
    counts = topk_assignment(costs, 1, generator=gen(123)).sum(dim=1)
    assert ((counts - 1000).abs() < 140).all(), counts
    # k = 2: all 6 member pairs equally likely (~667 each, sd ~24).
    chosen = topk_assignment(costs, 2, generator=gen(7))
    pair_ids = [tuple(torch.nonzero(chosen[:, i]).flatten().tolist()) for i in range(4000)]
    pair_counts = [pair_ids.count(p) for p in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]]
    assert sum(pair_counts) == 4000 and all(abs(n - 4000 / 6) < 125 for n in pair_counts), pair_counts


def test_ties_break_among_the_tied_only():
    costs = torch.tensor([[1.0] * 300, [0.5] * 300, [1.0] * 300, [2.0] * 300])
    chosen = topk_assignment(costs, 2, generator=gen(1))
    assert chosen[1].all() and not chosen[3].any()
    assert 100 < int(chosen[0].sum()) < 200
    assert (chosen[0] ^ chosen[2]).all()  # exactly one of the tied pair per example


def test_same_seed_same_assignment_and_batching_does_not_matter():
    logits, targets = torch.zeros(3, 50, 4), torch.randint(0, 4, (50,), generator=gen(5))
    a = mcl_assignment(logits, targets, generator=gen(9))
    b = mcl_assignment(logits, targets, generator=gen(9))
    assert torch.equal(a, b)
    assert not torch.equal(a, mcl_assignment(logits, targets, generator=gen(10)))
    g = gen(9)
    parts = [mcl_assignment(logits[:, s], targets[s], generator=g) for s in (slice(0, 17), slice(17, 50))]
    assert torch.equal(torch.cat(parts, dim=1), a)


def test_ineligible_members_are_never_assigned():
    costs = torch.tensor([[0.0, 0.0, 5.0], [1.0, 1.0, 1.0], [2.0, 2.0, 0.0]])
    eligible = torch.tensor([[False, True, True], [True, False, True], [True, False, False]])
    chosen = topk_assignment(costs, 2, generator=gen(), eligible=eligible)
    # Example 0: members 1 and 2; example 1: only member 0 is eligible; example 2: members 0 and 1.
    assert chosen.tolist() == [[False, True, True], [True, False, True], [True, False, False]]


# ---------------------------------------------------------------- properties


@st.composite
def ensembles(draw, min_members=1, max_members=4):
    """Small (M, B, C) float64 logits with frequent exact ties, targets and bootstrap-like weights."""
    m = draw(st.integers(min_members, max_members))
    b = draw(st.integers(1, 5))
    c = draw(st.integers(2, 4))
    values = st.one_of(st.sampled_from([0.0, 1.0, -2.0]), st.floats(-10, 10, allow_nan=False))
    logits = torch.tensor(draw(st.lists(values, min_size=m * b * c, max_size=m * b * c)), dtype=torch.float64)
    targets = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=b, max_size=b)))
    counts = draw(st.lists(st.integers(0, 3), min_size=m * b, max_size=m * b))
    weights = torch.tensor(counts, dtype=torch.float64)
    seed = draw(st.integers(0, 2**16))
    return logits.view(m, b, c), targets, weights.view(m, b), seed


@PROPERTY
@given(ensembles(min_members=1, max_members=1))
def test_one_member_reduces_every_loss_to_cross_entropy(case):
    logits, targets, _, seed = case
    want = F.cross_entropy(logits[0], targets)
    for name in LOSS_NAMES:
        # The scoring term is not a cross-entropy of the classes: weight 0 leaves the MCL part.
        got = compute_loss(
            name, logits, targets, generator=gen(seed), score_weight=0.0, **needs(name, logits)
        ).loss
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)


@PROPERTY
@given(ensembles())
def test_k_equal_m_is_independent_ce_and_mcl_grows_with_k(case):
    logits, targets, weights, seed = case
    m = logits.shape[0]
    for w in (None, weights):
        independent = independent_ce(logits, targets, weights=w)
        assert torch.equal(mcl_loss(logits, targets, m, weights=w), independent)
        values = [mcl_loss(logits, targets, k, gen(seed), weights=w).item() for k in range(1, m + 1)]
        # Up to rounding: a tied term may land in another member's sum for the next k.
        assert all(a <= b * (1 + 1e-12) + 1e-300 for a, b in zip(values, values[1:])), values
        chosen = mcl_assignment(logits, targets, 1, weights=w, generator=gen(seed))
        if w is None:
            assert chosen.sum(dim=0).tolist() == [1] * logits.shape[1]
        else:
            assert not (chosen & (w == 0)).any()
    ones = torch.ones_like(weights)
    unweighted = mcl_loss(logits, targets, 1, gen(seed))
    assert torch.equal(mcl_loss(logits, targets, 1, gen(seed), weights=ones), unweighted)


@PROPERTY
@given(ensembles())
def test_mix_and_beta_endpoints(case):
    logits, targets, weights, seed = case
    mcl = mcl_loss(logits, targets, 1, gen(seed), weights=weights)
    assert torch.equal(mcl_ce_loss(logits, targets, 1, 1.0, gen(seed), weights=weights), mcl)
    assert torch.equal(confident_mcl_loss(logits, targets, 1, 0.0, gen(seed), weights=weights), mcl)
    independent = independent_ce(logits, targets, weights=weights)
    assert torch.equal(mcl_ce_loss(logits, targets, 1, 0.0, gen(seed), weights=weights), independent)
    m, b = logits.shape[:2]
    # The chosen assignment beats every "all examples to member j" assignment.
    best = confident_mcl_loss(logits, targets, 1, 1.5, gen(seed))
    for j in range(m):
        fixed = torch.zeros(m, b, dtype=torch.bool)
        fixed[j] = True
        assert best <= confident_mcl_loss(logits, targets, 1, 1.5, assignment=fixed) + 1e-12


@PROPERTY
@given(
    st.integers(2, 4),
    st.integers(1, 6),
    st.integers(2, 5),
    st.integers(0, 2**32 - 1),
    st.randoms(use_true_random=False),
)
def test_permuting_members_permutes_the_assignment_and_keeps_every_loss(m, b, c, seed, rnd):
    g = gen(seed)
    logits = torch.randn(m, b, c, generator=g, dtype=torch.float64)
    targets = torch.randint(0, c, (b,), generator=g)
    perm = list(range(m))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    scores = torch.randn(m, b, generator=g, dtype=torch.float64)
    for name in LOSS_NAMES:
        k = min(2, m)
        base = compute_loss(name, logits, targets, **needs(name, logits, k, scores))
        moved = compute_loss(name, logits[perm], targets, **needs(name, logits, k, scores[perm]))
        torch.testing.assert_close(moved.loss, base.loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(moved.per_member, base.per_member[perm], rtol=1e-12, atol=1e-12)
        if base.assignment is not None:
            assert torch.equal(moved.assignment, base.assignment[perm])


@pytest.mark.parametrize(
    "name", ["independent_ce", "mcl", "mcl_ce", "cmcl", "score_averaged_ce", "prob_averaged_ce"]
)
def test_label_smoothing_known_answer_and_zero_changes_nothing(name):
    from mheads.ensemble.losses import compute_loss

    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.tensor([0, 3, 1])
    plain = compute_loss(name, logits, targets, k=2, generator=torch.Generator().manual_seed(1))
    zero = compute_loss(
        name, logits, targets, k=2, label_smoothing=0.0, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(plain.loss, zero.loss)
    # by hand: (1 - eps) * CE + eps * mean over classes of -log p, summed over members
    if name == "independent_ce":
        eps = 0.2
        logp = torch.log_softmax(logits, -1)
        want = sum(
            ((1 - eps) * -logp[m, torch.arange(3), targets] - eps * logp[m].mean(-1)).mean() for m in range(2)
        )
        got = compute_loss(name, logits, targets, label_smoothing=eps).loss
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(
            got,
            sum(torch.nn.functional.cross_entropy(logits[m], targets, label_smoothing=eps) for m in range(2)),
        )
    with pytest.raises(ValueError, match="label_smoothing: got 1.5"):
        compute_loss(name, logits, targets, k=2, label_smoothing=1.5)


# ---------------------------------------------------------------- the modern winner-takes-all family

# One example (target 1), three members: p(y) = 3/4, 1/2, 1/4, so member 0 wins, then member 1.
THREE_LOGITS = torch.tensor([[[0.0, LN3]], [[0.0, 0.0]], [[LN3, 0.0]]], dtype=torch.float64)
THREE_TARGETS = torch.tensor([1])
NLL_A, NLL_B, NLL_C = math.log(4 / 3), LN2, math.log(4.0)


def test_known_relaxed_wta():
    # k = 1: the winner (member 0 on both examples) weighs 1 - eps, the other member eps / (M - 1) = eps.
    result = compute_loss("rwta", KNOWN_LOGITS, KNOWN_TARGETS, epsilon=0.1)
    want = [0.9 * (NLL00 + NLL01) / 2, 0.1 * (NLL1 + NLL1) / 2]
    assert result.per_member.tolist() == pytest.approx(want, abs=1e-12)
    assert result.loss.item() == pytest.approx(sum(want), abs=1e-12)
    assert result.assignment.tolist() == [[True, True], [False, False]]
    # M = 3, k = 1: the two losers share eps = 0.2 equally.
    got = relaxed_mcl_loss(THREE_LOGITS, THREE_TARGETS, k=1, epsilon=0.2).item()
    assert got == pytest.approx(0.8 * NLL_A + 0.1 * NLL_B + 0.1 * NLL_C, abs=1e-12)
    # M = 3, k = 2: both winners weigh 1 - eps, the one loser k eps / (M - k) = 0.4 (weights sum to k).
    got = relaxed_mcl_loss(THREE_LOGITS, THREE_TARGETS, k=2, epsilon=0.2).item()
    assert got == pytest.approx(0.8 * (NLL_A + NLL_B) + 0.4 * NLL_C, abs=1e-12)
    # k = M: nothing to relax.
    assert torch.equal(
        relaxed_mcl_loss(THREE_LOGITS, THREE_TARGETS, k=3, epsilon=0.2),
        independent_ce(THREE_LOGITS, THREE_TARGETS),
    )


def test_known_annealed_mcl():
    # T = 1: q_m = p_m(y) / sum_m p_m(y): [3/4, 1/4] on example 0, [1/2, 1/4] / (3/4) = [2/3, 1/3] on
    # example 1.
    want = (0.75 * NLL00 + 0.25 * NLL1 + (2 / 3) * NLL01 + (1 / 3) * NLL1) / 2
    assert annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 1.0).item() == pytest.approx(want, abs=1e-12)
    # T = 2: q_m proportional to sqrt(p_m(y)).
    r3, r2 = math.sqrt(3), math.sqrt(2)
    want = ((r3 * NLL00 + NLL1) / (r3 + 1) + (r2 * NLL01 + NLL1) / (r2 + 1)) / 2
    assert annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 2.0).item() == pytest.approx(want, abs=1e-12)
    # T -> infinity: uniform weights, the mean of the member losses.
    uniform = independent_ce(KNOWN_LOGITS, KNOWN_TARGETS).item() / 2
    assert annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 1e12).item() == pytest.approx(uniform, rel=1e-9)
    # T = 0 is MCL, and so is a temperature so small that q is exactly one-hot (no NaN from -inf / 0).
    mcl = mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 1, gen())
    assert torch.equal(annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 0.0, gen()), mcl)
    assert torch.equal(annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 1e-30, gen()), mcl)
    # Whatever T, the result carries MCL's hard assignment (the win counts).
    result = compute_loss("amcl", KNOWN_LOGITS, KNOWN_TARGETS, temperature=5.0)
    assert result.assignment.tolist() == [[True, True], [False, False]]


def test_known_annealed_mcl_with_bagging_weights():
    # Example 1 is not in member 0's sample: q = [0, 1] there.
    weights = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    want = (0.75 * NLL00 + 0.25 * NLL1 + NLL1) / 2
    got = annealed_mcl_loss(KNOWN_LOGITS, KNOWN_TARGETS, 1.0, weights=weights).item()
    assert got == pytest.approx(want, abs=1e-12)


def test_annealed_mcl_gradient_treats_the_soft_assignment_as_constant():
    logits, targets = _float64_case(m=3, b=5, c=4)
    (grad,) = torch.autograd.grad(annealed_mcl_loss(logits, targets, 0.7), logits)
    x = logits.detach().requires_grad_(True)
    nll = F.cross_entropy(x.reshape(-1, 4), targets.repeat(3), reduction="none").view(3, 5)
    q = torch.softmax(-nll.detach() / 0.7, dim=0)
    (want,) = torch.autograd.grad((q * nll).sum() / 5, x)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


def test_annealed_mcl_names_only_the_diverging_member():
    logits = torch.randn(3, 4, 5, generator=gen())
    logits[2, 1] = float("nan")
    result = compute_loss("amcl", logits, torch.tensor([0, 1, 2, 3]), temperature=1.0)
    assert torch.isfinite(result.per_member[:2]).all() and torch.isnan(result.per_member[2])


def test_annealed_temperature_schedule():
    assert annealed_temperature(2.0, 10, 0) == 2.0
    assert annealed_temperature(2.0, 10, 5) == pytest.approx(2.0 * math.sqrt(1e-3), rel=1e-12)
    assert annealed_temperature(2.0, 10, 9) == pytest.approx(2.0 * 1e-3**0.9, rel=1e-12)
    assert annealed_temperature(2.0, 10, 10) == 0.0 and annealed_temperature(2.0, 10, 500) == 0.0
    assert annealed_temperature(2.0, 0, 0) == 0.0  # no annealing: MCL from the start
    values = [annealed_temperature(1.5, 50, t) for t in range(60)]
    assert all(a > b for a, b in zip(values[:50], values[1:51])) and values[50:] == [0.0] * 10
    with pytest.raises(ValueError, match=r"temperature: got 0.0; expected a number > 0.0"):
        annealed_temperature(0.0, 10, 0)
    with pytest.raises(ValueError, match=r"iteration: got -1; expected an integer >= 0"):
        annealed_temperature(1.0, 10, -1)


def test_known_scored_mcl():
    scores = torch.tensor([[0.0, LN3], [LN3, 0.0]], dtype=torch.float64)
    # BCE against the assignment [[1, 1], [0, 0]]: -log sigmoid(s) for 1, -log(1 - sigmoid(s)) for 0.
    bce = [[LN2, math.log(4 / 3)], [math.log(4.0), LN2]]
    result = compute_loss("mcl_scored", KNOWN_LOGITS, KNOWN_TARGETS, score_logits=scores, score_weight=0.5)
    want = [(NLL00 + NLL01) / 2 + 0.5 * sum(bce[0]) / 4, 0.5 * sum(bce[1]) / 4]
    assert result.per_member.tolist() == pytest.approx(want, abs=1e-12)
    assert result.loss.item() == pytest.approx(sum(want), abs=1e-12)
    got = scored_mcl_loss(KNOWN_LOGITS, scores, KNOWN_TARGETS, score_weight=0.5)
    assert torch.equal(got, result.loss)


def test_scored_mcl_targets_the_assignment():
    g = gen(4)
    logits = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 4, (6,), generator=g)
    scores = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    result = compute_loss(
        "mcl_scored", logits, targets, k=2, score_logits=scores, score_weight=2.0, generator=gen()
    )
    assert torch.equal(result.assignment, mcl_assignment(logits, targets, 2, generator=gen()))
    (grad,) = torch.autograd.grad(result.loss, scores)
    # d/ds of weight * mean BCE(s, alpha) = weight * (sigmoid(s) - alpha) / (M B)
    want = 2.0 * (torch.sigmoid(scores.detach()) - result.assignment.double()) / 18
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)


def test_compute_loss_matches_the_new_functions():
    g = gen(3)
    logits, targets = torch.randn(3, 6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    w = torch.randint(0, 3, (3, 6), generator=g).float()
    scores = torch.randn(3, 6, generator=g)
    pairs = [
        ("rwta", relaxed_mcl_loss(logits, targets, 2, 0.3, gen(), weights=w), dict(k=2, epsilon=0.3)),
        ("amcl", annealed_mcl_loss(logits, targets, 0.5, gen(), weights=w), dict(temperature=0.5)),
        (
            "mcl_scored",
            scored_mcl_loss(logits, scores, targets, 2, 0.7, gen(), weights=w),
            dict(k=2, score_logits=scores, score_weight=0.7),
        ),
    ]
    for name, expected, kwargs in pairs:
        assert torch.equal(
            compute_loss(name, logits, targets, weights=w, generator=gen(), **kwargs).loss, expected
        ), name


@PROPERTY
@given(ensembles())
def test_the_new_losses_reduce_to_mcl_at_their_endpoints(case):
    logits, targets, weights, seed = case
    m = logits.shape[0]
    for w in (None, weights):
        for k in range(1, m + 1):
            mcl = compute_loss("mcl", logits, targets, k=k, weights=w, generator=gen(seed))
            rwta = compute_loss("rwta", logits, targets, k=k, epsilon=0.0, weights=w, generator=gen(seed))
            assert torch.equal(rwta.loss, mcl.loss) and torch.equal(rwta.assignment, mcl.assignment)
            assert torch.equal(rwta.per_member, mcl.per_member)
            scored = compute_loss(
                "mcl_scored",
                logits,
                targets,
                k=k,
                weights=w,
                generator=gen(seed),
                score_logits=torch.zeros(logits.shape[:2], dtype=logits.dtype),
                score_weight=0.0,
            )
            assert torch.equal(scored.loss, mcl.loss) and torch.equal(scored.assignment, mcl.assignment)
            relaxed = compute_loss("rwta", logits, targets, k=k, epsilon=0.3, weights=w, generator=gen(seed))
            assert torch.equal(relaxed.assignment, mcl.assignment)
        mcl = compute_loss("mcl", logits, targets, k=1, weights=w, generator=gen(seed))
        amcl = compute_loss("amcl", logits, targets, temperature=0.0, weights=w, generator=gen(seed))
        assert torch.equal(amcl.loss, mcl.loss) and torch.equal(amcl.assignment, mcl.assignment)
        soft = compute_loss("amcl", logits, targets, temperature=3.0, weights=w, generator=gen(seed))
        assert torch.equal(soft.assignment, mcl.assignment)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "rwta", "epsilon": 1.0}, r"epsilon: got 1.0; expected a number >= 0.0 and < 1.0"),
        ({"name": "rwta", "epsilon": -0.1}, r"epsilon: got -0.1"),
        ({"name": "amcl", "temperature": -1.0}, r"temperature: got -1.0; expected a number >= 0.0"),
        ({"name": "amcl", "temperature": float("nan")}, r"temperature: got nan"),
        ({"name": "amcl", "k": 2}, r"k: got 2; expected 1 for loss 'amcl'"),
        ({"name": "mcl_scored"}, r"score_logits: got NoneType; expected a floating tensor of shape \(M, B\)"),
        (
            {"name": "mcl_scored", "score_logits": torch.zeros(2, 3)},
            r"score_logits: got torch.float32 of shape \(2, 3\)",
        ),
        (
            {"name": "mcl_scored", "score_logits": torch.zeros(2, 2), "score_weight": -1.0},
            r"score_weight: got -1.0; expected a number >= 0.0",
        ),
    ],
)
def test_the_new_losses_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_loss(kwargs.pop("name"), KNOWN_LOGITS, KNOWN_TARGETS, **kwargs)
