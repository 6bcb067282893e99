"""mheads.tasks.custom_task / Task.from_loss: a per-example loss is a whole task."""

import pytest
import torch

from mheads.ensemble.losses import ENSEMBLE_LOSS_NAMES, ENSEMBLE_LOSSES
from mheads.tasks import Task, TaskMetrics, custom_task, regression


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).square().mean(dim=-1)


def test_a_custom_mse_is_the_built_in_point_regression():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 8, 2, generator=g, dtype=torch.float64)
    y = torch.randn(8, 2, generator=g, dtype=torch.float64)
    mine, built_in = Task.from_loss(mse, head_width=2), regression(2)
    assert torch.equal(mine.member_losses(out, y), built_in.member_losses(out, y))
    for name in [n for n in ENSEMBLE_LOSS_NAMES if n != "cmcl"] + ["averaged"]:
        params = {
            "k": 1 if ENSEMBLE_LOSSES.get(name) and ENSEMBLE_LOSSES[name].single_winner else 2,
            "temperature": 0.4,
        }
        if name == "mcl_scored":
            params["score_logits"] = torch.zeros(3, 8, dtype=torch.float64)
        a = mine.loss(name, out, y, generator=torch.Generator().manual_seed(1), **params)
        b = built_in.loss(name, out, y, generator=torch.Generator().manual_seed(1), **params)
        assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-12), name
    metrics = mine.metrics(out, y)
    reference = built_in.metrics(out, y)
    assert metrics["oracle_loss"] == pytest.approx(reference["oracle_rmse"] ** 2, rel=1e-12)
    assert metrics["averaged_loss"] == pytest.approx(reference["rmse"] ** 2, rel=1e-12)
    assert mine.head_width() == 2


def test_metric_combine_and_streaming():
    out = torch.tensor([[[1.0], [4.0]], [[3.0], [0.0]]])  # (2, 2, 1)
    y = torch.tensor([[2.0], [1.0]])
    task = custom_task(
        lambda o, t: (o - t).abs()[:, 0],
        metric=lambda c, t: (c - t).abs()[:, 0] ** 2,
        combine=lambda o: o.max(dim=0).values,
        name="abs",
    )
    assert task.name == "abs"
    assert task.combine(out).tolist() == [[3.0], [4.0]]
    metrics = task.metrics(out, y)
    assert metrics["mean_member_loss"] == pytest.approx((1 + 1 + 3 + 1) / 4)
    assert metrics["oracle_loss"] == pytest.approx((1 + 1) / 2)
    assert metrics["averaged_loss"] == pytest.approx((1 + 3) / 2)  # of the max, the custom combine
    assert metrics["metric"] == pytest.approx((1 + 9) / 2)
    acc = TaskMetrics(task)
    acc.update(out[:, :1], y[:1])
    acc.update(out[:, 1:], y[1:])
    assert acc.compute() == metrics


def test_bad_losses_are_named():
    with pytest.raises(ValueError, match="loss_fn: got int"):
        custom_task(3)
    task = custom_task(lambda o, t: (o - t).sum())
    with pytest.raises(
        ValueError,
        match="loss_fn: returned .* shape \\(\\); expected a floating tensor of "
        "per-example values \\(B,\\) = \\(4,\\)",
    ):
        task.loss("mcl", torch.zeros(2, 4, 1), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="head_width: task 'custom' was built without one"):
        task.head_width()
    with pytest.raises(ValueError, match="expected one of independent, mcl, mcl_ce, rwta"):
        task.loss("cmcl", torch.zeros(2, 4, 1), torch.zeros(4, 1))
