"""mheads.ensemble.losses.ensemble_loss: every ensemble loss on per-example member losses `(M, B)`, against
references written here as plain float64 loops, and the laws that hold whatever the task."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble.losses import ENSEMBLE_LOSS_NAMES, ENSEMBLE_LOSSES, ensemble_loss
from properties import property_settings

PROPERTY = property_settings(100)


def case(m=4, b=6, seed=0, bagging=True):
    g = torch.Generator().manual_seed(seed)
    losses = torch.rand(m, b, generator=g, dtype=torch.float64) * 3  # continuous: no ties
    weights = torch.randint(0, 3, (m, b), generator=g).to(torch.float64) if bagging else None
    penalty = torch.rand(m, b, generator=g, dtype=torch.float64)
    scores = torch.randn(m, b, generator=g, dtype=torch.float64)
    return losses, weights, penalty, scores


def k_lowest(costs: list[float], eligible: list[bool], k: int) -> set[int]:
    order = sorted((c, m) for m, c in enumerate(costs) if eligible[m])
    return {m for _, m in order[:k]}


def reference(
    name,
    losses,
    weights,
    penalty,
    scores,
    *,
    k=1,
    mix=0.5,
    beta=0.75,
    epsilon=0.05,
    temperature=0.0,
    score_weight=1.0,
):
    """A float64 loop over examples and members (autograd through scalar ops), written from the papers."""
    m_count, b_count = losses.shape
    w = (lambda m, i: 1.0) if weights is None else (lambda m, i: float(weights[m, i]))
    total = torch.zeros((), dtype=torch.float64)
    for i in range(b_count):
        col = [float(losses[m, i].detach()) for m in range(m_count)]
        eligible = [w(m, i) > 0 for m in range(m_count)]
        if name == "cmcl":
            won = k_lowest([col[m] - beta * float(penalty[m, i]) for m in range(m_count)], eligible, k)
        else:
            won = k_lowest(col, eligible, k)
        if name == "amcl" and temperature > 0:
            z = [math.exp(-col[m] / temperature) if eligible[m] else 0.0 for m in range(m_count)]
            q = [v / sum(z) for v in z]
        for m in range(m_count):
            term = losses[m, i]
            if name == "independent":
                factor = 1.0
            elif name in ("mcl", "mcl_scored") or (name == "amcl" and temperature == 0):
                factor = float(m in won)
            elif name == "mcl_ce":
                factor = mix * float(m in won) + (1 - mix)
            elif name == "cmcl":
                factor, term = 1.0, (losses[m, i] if m in won else beta * penalty[m, i])
            elif name == "rwta":
                factor = (1 - epsilon) if m in won else k * epsilon / (m_count - k)
            elif name == "amcl":
                factor = q[m]
            total = total + w(m, i) * factor * term / b_count
            if name == "mcl_scored":
                s, a = scores[m, i], float(m in won)
                bce = -(a * torch.log(torch.sigmoid(s)) + (1 - a) * torch.log(1 - torch.sigmoid(s)))
                total = total + score_weight * bce / (m_count * b_count)
    return total


PARAMS = {"k": 2, "mix": 0.3, "beta": 0.6, "epsilon": 0.1, "temperature": 0.7, "score_weight": 0.5}


@pytest.mark.parametrize("bagging", [False, True])
@pytest.mark.parametrize("name", ENSEMBLE_LOSS_NAMES)
def test_every_loss_matches_its_loop_reference_in_value_and_gradient(name, bagging):
    losses, weights, penalty, scores = case(bagging=bagging)
    params = dict(PARAMS, k=1) if ENSEMBLE_LOSSES[name].single_winner else dict(PARAMS)
    for temperature in (0.0, 0.7) if name == "amcl" else (0.7,):
        params["temperature"] = temperature
        mine, theirs = losses.clone().requires_grad_(True), losses.clone().requires_grad_(True)
        s_mine, s_theirs = scores.clone().requires_grad_(True), scores.clone().requires_grad_(True)
        got = ensemble_loss(name, mine, weights=weights, penalty=penalty, score_logits=s_mine, **params)
        want = reference(name, theirs, weights, penalty, s_theirs, **params)
        got.loss.backward()
        want.backward()
        assert got.loss.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-14)
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-12, atol=1e-14)
        if name == "mcl_scored":
            assert torch.allclose(s_mine.grad, s_theirs.grad, rtol=1e-12, atol=1e-14)
        assert got.per_member.sum().item() == pytest.approx(got.loss.item(), rel=1e-12)


def test_known_answer_on_a_hand_built_batch():
    # Two examples, three members; member 1 wins example 0, member 2 example 1.
    losses = torch.tensor([[3.0, 2.0], [1.0, 4.0], [2.0, 0.5]], dtype=torch.float64)
    assert ensemble_loss("independent", losses).loss.item() == pytest.approx((3 + 2 + 1 + 4 + 2 + 0.5) / 2)
    result = ensemble_loss("mcl", losses)
    assert result.loss.item() == pytest.approx((1.0 + 0.5) / 2)
    assert result.assignment.tolist() == [[False, False], [True, False], [False, True]]
    assert result.per_member.tolist() == pytest.approx([0.0, 0.5, 0.25])
    assert ensemble_loss("mcl", losses, k=2).loss.item() == pytest.approx((1 + 2 + 0.5 + 2) / 2)
    assert ensemble_loss("independent_ce", losses).loss.item() == pytest.approx(6.25)  # the alias


def test_bad_arguments_name_the_field():
    losses = torch.rand(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="loss: got 'nope'; expected one of independent, mcl"):
        ensemble_loss("nope", losses)
    with pytest.raises(ValueError, match="member_losses: got .* shape \\(3, 4, 1\\)"):
        ensemble_loss("mcl", losses.unsqueeze(-1))
    with pytest.raises(ValueError, match="k: got 4"):
        ensemble_loss("mcl", losses, k=4)
    with pytest.raises(ValueError, match="penalty: got NoneType; loss 'cmcl' needs"):
        ensemble_loss("cmcl", losses)
    with pytest.raises(ValueError, match="score_logits"):
        ensemble_loss("mcl_scored", losses)
    with pytest.raises(ValueError, match="k: got 2; expected 1 for loss 'amcl'"):
        ensemble_loss("amcl", losses, k=2)


def test_ties_are_broken_fairly():
    """Equal member losses: each tied member wins 1/3 of the examples (within 5 sigma of a binomial), and a
    member that loses to the tied pair never wins."""
    batch = 3000
    sigma = math.sqrt(batch / 3 * 2 / 3)
    wins = ensemble_loss("mcl", torch.ones(3, batch), generator=torch.Generator().manual_seed(0)).assignment
    assert all(abs(c - batch / 3) < 5 * sigma for c in wins.sum(dim=1).tolist())
    pair = torch.tensor([[1.0], [1.0], [2.0]]).expand(3, batch)
    wins = ensemble_loss("mcl", pair, generator=torch.Generator().manual_seed(1)).assignment.sum(dim=1)
    assert wins[2] == 0 and abs(int(wins[0]) - batch / 2) < 5 * math.sqrt(batch / 4)
    # With k = 2 of three tied members, each pair is drawn equally often.
    g = torch.Generator().manual_seed(2)
    wins = ensemble_loss("mcl", torch.ones(3, batch), k=2, generator=g).assignment
    pairs = [int((wins[a] & wins[b]).sum()) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert all(abs(c - batch / 3) < 5 * sigma for c in pairs) and sum(pairs) == batch


# ---------------------------------------------------------------- laws


@st.composite
def member_losses(draw, min_members=1, max_members=5):
    m = draw(st.integers(min_members, max_members))
    b = draw(st.integers(1, 6))
    values = draw(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=m * b, max_size=m * b))
    return torch.tensor(values, dtype=torch.float64).view(m, b)


@PROPERTY
@given(member_losses(), st.randoms(use_true_random=False))
def test_permuting_members_changes_nothing(losses, rnd):
    perm = list(range(losses.shape[0]))
    rnd.shuffle(perm)
    penalty, scores = losses.flip(1) * 0.3, losses - 1.0
    for name in ENSEMBLE_LOSS_NAMES:
        params = {
            "k": 1 if ENSEMBLE_LOSSES[name].single_winner else min(2, losses.shape[0]),
            "temperature": 0.5,
            "penalty": penalty,
            "score_logits": scores,
        }
        a = ensemble_loss(name, losses, generator=torch.Generator().manual_seed(0), **params)
        params.update(penalty=penalty[perm], score_logits=scores[perm])
        b = ensemble_loss(name, losses[perm], generator=torch.Generator().manual_seed(0), **params)
        # Ties may be broken differently, but the loss of the chosen members is the same.
        assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-9, abs=1e-12), name


@PROPERTY
@given(member_losses())
def test_k_equal_m_is_independent_and_min_le_mcl_le_amcl_le_mean(losses):
    m, b = losses.shape
    independent = ensemble_loss("independent", losses).loss
    assert torch.equal(ensemble_loss("mcl", losses, k=m).loss, independent)
    assert torch.equal(ensemble_loss("rwta", losses, k=m, epsilon=0.3).loss, independent)
    mixed = ensemble_loss("mcl_ce", losses, k=m, mix=0.4).loss  # 0.4 x + 0.6 x: equal up to rounding
    assert mixed.item() == pytest.approx(independent.item(), rel=1e-14, abs=1e-300)
    best = losses.min(dim=0).values.mean().item()
    mcl = ensemble_loss("mcl", losses).loss.item()
    assert mcl == pytest.approx(best, abs=1e-12)
    # Annealed MCL weighs members by a soft-min: between the best member and the members' mean.
    for temperature in (0.1, 1.0, 100.0):
        amcl = ensemble_loss("amcl", losses, temperature=temperature).loss.item()
        assert best - 1e-9 <= amcl <= losses.mean().item() + 1e-9
