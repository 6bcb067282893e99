"""Task.loss (issue 32): every ensemble loss on every built-in task and a user's task, from the task's
per-example member losses alone. Laws written here from the losses' definitions, whatever the task: MCL with
k = M is the independent loss, MCL with k = 1 the mean of each example's lowest member loss and its gradient
reaches only that member, MCL-CE mixes the two, relaxed WTA with epsilon 0 and annealed WTA at temperature 0
are MCL, scored MCL reads the score column of multi_hypothesis outputs; identical members tie, and the ties
are broken at random (each member wins about 1/M of the examples)."""

import math
import re

import pytest
import torch

from mheads.ensemble.losses import ENSEMBLE_LOSSES
from mheads.tasks import classification, custom_task, multi_hypothesis, regression, segmentation

F64 = torch.float64
M, B = 3, 5


def _l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).abs().mean(dim=-1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _case(name: str, b: int = B, seed: int = 0):
    """(task, outputs (M, b, ...), targets) with continuous outputs (no ties)."""
    g = _gen(seed)
    if name == "classification":
        out = torch.randn(M, b, 4, generator=g, dtype=F64)
        return classification(4), out, torch.randint(0, 4, (b,), generator=g)
    if name == "segmentation":  # non-square images
        out = torch.randn(M, b, 3, 2, 5, generator=g, dtype=F64)
        return segmentation(3), out, torch.randint(0, 3, (b, 2, 5), generator=g)
    task, width = {
        "regression_point": (regression(2), 2),
        "regression_gaussian": (regression(2, head="gaussian"), 4),
        "multi_hypothesis": (multi_hypothesis(2), 3),
        "custom": (custom_task(_l1, head_width=2), 2),
    }[name]
    return task, torch.randn(M, b, width, generator=g, dtype=F64), torch.randn(b, 2, generator=g, dtype=F64)


TASKS = [
    "classification",
    "regression_point",
    "regression_gaussian",
    "multi_hypothesis",
    "segmentation",
    "custom",
]


def _params(task, name: str) -> dict:
    spec = ENSEMBLE_LOSSES.get(name)
    k = 1 if spec is not None and spec.single_winner else 2
    params = {"k": k, "temperature": 0.5, "generator": _gen(1)}
    if spec is not None and spec.scores and task.name != "multi_hypothesis":
        params["score_logits"] = torch.randn(M, B, generator=_gen(2), dtype=F64)  # scoring heads' logits
    return params


@pytest.mark.parametrize("case", TASKS)
def test_every_loss_the_task_names_trains_every_member_it_should(case):
    task, out, y = _case(case)
    names = task.loss_names()
    assert {"independent", "mcl", "mcl_ce", "rwta", "amcl", "mcl_scored"} <= set(names)
    assert ("cmcl" in names) == (case in ("classification", "segmentation"))  # a categorical output only
    assert len(names) > 7  # and the task's own losses of the combined prediction
    for name in names:
        x = out.clone().requires_grad_(True)
        res = task.loss(name, x, y, **_params(task, name))
        res.loss.backward()
        assert torch.isfinite(res.loss) and torch.isfinite(x.grad).all(), name
        per_member = x.grad.flatten(2).abs().sum(dim=(1, 2))
        assert (per_member > 0).any(), name


@pytest.mark.parametrize("case", TASKS)
def test_mcl_laws_on_the_tasks_own_member_losses(case):
    task, out, y = _case(case)
    losses = task.member_losses(out, y)  # (M, B): the task's only input to the ensemble losses
    assert losses.shape == (M, B)

    def value(name, **params):
        return task.loss(name, out, y, generator=_gen(3), **params).loss

    independent = value("independent")
    assert independent.item() == pytest.approx(losses.mean(dim=1).sum().item(), rel=1e-12)
    assert value("mcl", k=M).item() == pytest.approx(independent.item(), rel=1e-12)
    best = losses.min(dim=0).values.mean()
    assert value("mcl", k=1).item() == pytest.approx(best.item(), rel=1e-12)
    mixed = 0.3 * best + 0.7 * independent
    assert value("mcl_ce", k=1, mix=0.3).item() == pytest.approx(mixed.item(), rel=1e-12)
    assert value("rwta", k=1, epsilon=0.0).item() == pytest.approx(best.item(), rel=1e-12)
    assert value("amcl", k=1, temperature=0.0).item() == pytest.approx(best.item(), rel=1e-12)
    hot = value("amcl", k=1, temperature=1e6)  # annealed WTA at a high temperature: every member equally
    assert hot.item() == pytest.approx(independent.item() / M, rel=1e-4)


@pytest.mark.parametrize("case", TASKS)
def test_mcl_k1_sends_each_examples_gradient_to_its_best_member_only(case):
    task, out, y = _case(case)
    best = task.member_losses(out, y).argmin(dim=0)  # continuous outputs: no ties
    x = out.clone().requires_grad_(True)
    res = task.loss("mcl", x, y, k=1, generator=_gen(0))
    res.loss.backward()
    assert torch.equal(res.assignment, torch.nn.functional.one_hot(best, M).T.bool())
    reached = x.grad.flatten(2).abs().sum(dim=2) > 0  # (M, B)
    assert torch.equal(reached, res.assignment)


def test_scored_mcl_reads_the_score_column_of_multi_hypothesis_outputs():
    task, out, y = _case("multi_hypothesis")
    x = out.clone().requires_grad_(True)
    res = task.loss("mcl_scored", x, y, k=1, score_weight=1.0, generator=_gen(0))
    res.loss.backward()
    won = res.assignment.to(F64)
    scores = out[..., -1]
    bce = -(won * torch.log(torch.sigmoid(scores)) + (1 - won) * torch.log(1 - torch.sigmoid(scores)))
    wta = task.member_losses(out, y).min(dim=0).values.mean()
    assert res.loss.item() == pytest.approx((wta + bce.mean()).item(), rel=1e-12)
    assert (x.grad[..., -1] != 0).all()  # every member's score logit learns whether it won


@pytest.mark.parametrize("case", TASKS)
def test_identical_members_tie_and_ties_are_broken_at_random(case):
    batch = 600
    task, out, y = _case(case, b=batch, seed=4)
    same = out[:1].expand_as(out).contiguous()  # M copies of member 0
    res = task.loss("mcl", same, y, k=1, generator=_gen(5))
    wins = res.assignment.sum(dim=1)
    assert int(wins.sum()) == batch and res.assignment.sum(dim=0).eq(1).all()
    sigma = math.sqrt(batch * (1 / M) * (1 - 1 / M))
    assert all(abs(int(w) - batch / M) < 5 * sigma for w in wins), wins.tolist()
    again = task.loss("mcl", same, y, k=1, generator=_gen(5)).assignment
    assert torch.equal(again, res.assignment)  # seeded: the same draw again


NON_FINITE = [float("nan"), float("inf"), -float("inf")]


def _spoilt(case: str, bad: float):
    """`_case` of 6 examples with member 1's outputs non-finite on examples 1 and 4 (one number each: the
    first of the output on 1, the last on 4: a Gaussian head's variance, a hypothesis' score logit).
    Classification's and segmentation's -inf is on every class (on some, it is a class mask: scored); a
    hypothesis' -inf score switches it off (scored), so a coordinate of its hypothesis on 4 is -inf too."""
    task, out, y = _case(case, b=6)
    out = out.clone()
    if case == "multi_hypothesis" and bad == -math.inf:
        out[1, 4, 1] = bad
    if case == "classification" and bad == -math.inf:
        out[1, 1], out[1, 4] = bad, bad
    if case == "segmentation" and bad == -math.inf:  # one pixel each
        out[1, 1, :, 0, 0], out[1, 4, :, -1, -1] = bad, bad
    out[1, 1].view(-1)[0] = bad
    out[1, 4].view(-1)[-1] = bad
    return task, out, y


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("case", TASKS)
def test_every_task_refuses_nan_or_inf_outputs_naming_the_member_and_examples(case, bad):
    from mheads.ensemble.metrics import NonFiniteOutputs
    from mheads.tasks import TaskMetrics

    task, out, y = _spoilt(case, bad)
    message = r"^non-finite outputs in member 1 \(2 of 6 examples\): " + re.escape(task.non_finite_why) + "$"
    assert case in ("classification", "segmentation") or task.non_finite_why.startswith(
        "NaN or inf outputs have no error"
    )
    with pytest.raises(NonFiniteOutputs, match=message):  # reported rmse nan, a fine oracle_rmse on inf, ...
        task.metrics(out, y)
    acc = TaskMetrics(task)
    for i in (0, 3):  # one bad example in each batch: counted over the whole set
        acc.update(out[:, i : i + 3], y[i : i + 3])
    with pytest.raises(NonFiniteOutputs, match=message):
        acc.compute()
    acc.reset()
    acc.update(out[:, :1], y[:1])  # the finite examples alone score as before
    assert acc.compute() == task.metrics(out[:, :1], y[:1])


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("case", TASKS)
def test_a_member_whose_output_is_not_finite_never_wins_the_oracle(case, bad):
    task, out, y = _case(case, b=8)
    out = out.clone()
    out[0] = bad  # member 0 wins every tie; an argmax of NaN is class 0 (was: right on every target 0)
    best, others = task.oracle(out, y), task.oracle(out[1:], y)
    assert best.member.tolist() == (others.member + 1).tolist()
    assert torch.equal(best.error, others.error)
    out[:, 2] = bad  # no member is finite on example 2: no error to name (was member 0, a valid index)
    best = task.oracle(out, y)
    assert best.member[2] == -1 and math.isnan(best.error[2]) and torch.isfinite(best.error[3:]).all()
    assert best.found.tolist() == [True, True, False] + [True] * 5


def test_the_oracle_names_no_member_where_every_error_is_nan_and_nan_ranks_after_inf():
    from mheads.tasks.base import NO_MEMBER, first_argmin

    task = custom_task(lambda out, y: torch.where(out[:, 0] > 0, torch.nan, (out - y).abs().mean(-1)))
    out = torch.tensor([[[1.0], [-1.0], [1.0]], [[2.0], [-3.0], [-2.0]]])  # (M=2, B=3, 1): finite outputs
    best = task.oracle(out, torch.zeros(3, 1))
    assert best.member.tolist() == [NO_MEMBER, 0, 1] and best.found.tolist() == [False, True, True]
    assert math.isnan(best.error[0]) and best.error[1:].tolist() == [1.0, 2.0]
    member, error = best  # still a pair
    nan, inf = math.nan, math.inf
    assert first_argmin(torch.tensor([[nan, nan, 1.0], [inf, nan, nan]])).tolist() == [1, 0, 0]


def _masked(case: str, mask: float):
    """`_case` of 6 examples with a class other than the target's masked by `mask` (classification: member 1
    on every example, member 0 on the first 3; segmentation: member 1's every pixel, on every image)."""
    task, out, y = _case(case, b=6)
    out = out.clone()
    if case == "classification":
        others = (y + 1) % 4  # never the target
        out[1, torch.arange(6), others] = mask
        out[0, torch.arange(3), others[:3]] = mask
    else:  # (M, B, C, H, W): each pixel's next class
        out[1].scatter_(1, ((y + 1) % 3).unsqueeze(1), mask)
    return task, out, y


@pytest.mark.parametrize("case", ["classification", "segmentation"])
def test_a_member_may_mask_classes_with_minus_inf(case):
    """Softmax and argmax are defined with -inf on some classes: metrics, TaskMetrics and the oracle score the
    mask as a finite one whose probability is 0 (-1e300 in float64); they refused it as non-finite."""
    from mheads.tasks import TaskMetrics

    task, masked, y = _masked(case, -math.inf)
    finite = _masked(case, -1e300)[1]
    assert task.metrics(masked, y) == task.metrics(finite, y)
    acc = TaskMetrics(task)
    acc.update(masked[:, :4], y[:4])
    acc.update(masked[:, 4:], y[4:])
    assert acc.compute() == task.metrics(finite, y)
    got, want = task.oracle(masked, y), task.oracle(finite, y)
    assert torch.equal(got.member, want.member) and torch.equal(got.error, want.error)
