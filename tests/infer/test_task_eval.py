"""The task run's evaluation (mheads.infer.task_eval): the task's own metrics exactly as `task.metrics` gives
them whatever the batching, and the report's additions on hand-built outputs (win shares, each member's
error, the coverage curve, the members' scores, per-class IoU, the mixture's interval)."""

import math

import pytest
import torch

from mheads.infer.task_eval import (
    COVERAGE_LEVELS,
    TaskEvaluation,
    class_iou,
    evaluate_task,
    mixture_quantile,
)
from mheads.tasks import custom_task, multi_hypothesis, regression, segmentation


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _evaluate(task, outputs, target, inputs=None, batch=3):
    acc = TaskEvaluation(task)
    for i in range(0, outputs.shape[1], batch):
        acc.update(
            outputs[:, i : i + batch],
            target[i : i + batch],
            None if inputs is None else inputs[i : i + batch],
        )
    return acc.compute()


CASES = {
    "regression point": (
        regression(2),
        torch.randn(3, 10, 2, generator=gen(1)),
        torch.randn(10, 2, generator=gen(2)),
    ),
    "regression gaussian": (
        regression(1, head="gaussian"),
        torch.randn(3, 10, 2, generator=gen(3)),
        torch.randn(10, generator=gen(4)),
    ),
    "multi_hypothesis": (
        multi_hypothesis(2),
        torch.randn(4, 10, 3, generator=gen(5)),
        torch.randn(10, 2, generator=gen(6)),
    ),
    "segmentation": (
        segmentation(3),
        torch.randn(2, 10, 3, 4, 5, generator=gen(7)),
        torch.randint(0, 3, (10, 4, 5), generator=gen(8)),
    ),
    "custom": (
        custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2),
        torch.randn(3, 10, 2, generator=gen(9)),
        torch.randn(10, 2, generator=gen(10)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_task_metrics_are_exactly_task_metrics_whatever_the_batching(case):
    task, outputs, target = CASES[case]
    whole = task.metrics(outputs, target)
    metrics, _ = _evaluate(task, outputs, target, batch=3)
    assert {k: metrics[k] for k in whole} == whole
    again, _ = _evaluate(task, outputs, target, batch=10)
    assert again == metrics


@pytest.mark.parametrize("case", list(CASES))
def test_win_shares_are_the_oracles_picks_and_sum_to_one(case):
    task, outputs, target = CASES[case]
    metrics, _ = _evaluate(task, outputs, target)
    picks = task.oracle(outputs, target).member
    M = outputs.shape[0]
    assert metrics["win_share"] == [int((picks == m).sum()) / 10 for m in range(M)]
    assert sum(metrics["win_share"]) == pytest.approx(1.0, abs=1e-12)
    errors = task.errors(outputs, target)
    assert metrics["member_error"] == pytest.approx(errors.mean(dim=1).tolist(), rel=1e-12)


def test_win_shares_and_member_errors_by_hand():
    outputs = torch.tensor([[[0.0], [1.0], [5.0]], [[1.0], [1.0], [2.0]]])  # (M, B, 1) = (2, 3, 1)
    target = torch.tensor([0.0, 1.0, 2.0])
    metrics, _ = _evaluate(regression(1), outputs, target)
    # squared errors: member 0 [0, 0, 9], member 1 [1, 0, 0]; the tie (example 1) goes to member 0
    assert metrics["win_share"] == [2 / 3, 1 / 3]
    assert metrics["member_error"] == [3.0, 1 / 3]
    assert metrics["member_rmse"] == pytest.approx([math.sqrt(3.0), math.sqrt(1 / 3)])


def test_the_coverage_curve_agrees_with_the_tasks_coverage_at_its_levels():
    task, outputs, target = CASES["regression gaussian"]
    metrics, arrays = _evaluate(task, outputs, target)
    curve = dict(zip(metrics["coverage_curve"]["nominal"], metrics["coverage_curve"]["observed"]))
    assert list(curve) == list(COVERAGE_LEVELS)
    for level in (0.5, 0.8, 0.9, 0.95):
        assert curve[level] == metrics["coverage"][str(level)]
    inside = (arrays["lower"] <= arrays["target"]) & (arrays["target"] <= arrays["upper"])  # the 90% interval
    assert inside.double().mean().item() == pytest.approx(curve[0.9], abs=1e-12)
    assert set(arrays) == {"target", "mean", "lower", "upper"} and arrays["mean"].shape == (10, 1)


def test_point_heads_have_no_coverage_curve_and_draw_the_members_range():
    task, outputs, target = CASES["regression point"]
    metrics, arrays = _evaluate(task, outputs, target)
    assert "coverage_curve" not in metrics
    assert torch.equal(arrays["lower"], outputs.double().min(dim=0).values)
    assert torch.equal(arrays["upper"], outputs.double().max(dim=0).values)


def test_mixture_quantile_of_one_gaussian_is_its_quantile():
    mean, var = (
        torch.tensor([[[1.0, -2.0]]], dtype=torch.float64),
        torch.tensor([[[4.0, 0.25]]], dtype=torch.float64),
    )
    q = mixture_quantile(mean, var, 0.95)
    expected = mean[0] + var[0].sqrt() * math.sqrt(2) * torch.special.erfinv(
        torch.tensor(0.9, dtype=torch.float64)
    )
    assert torch.allclose(q, expected, atol=1e-9)


def test_member_scores_are_the_mean_normalised_scores():
    task, outputs, target = CASES["multi_hypothesis"]
    metrics, arrays = _evaluate(task, outputs, target)
    weights = task.combine(outputs.double()).weights
    assert metrics["member_score"] == pytest.approx(weights.mean(dim=1).tolist(), rel=1e-12)
    assert sum(metrics["member_score"]) == pytest.approx(1.0)
    assert arrays == {}  # 2-D targets: no hypotheses-over-data figure


def test_one_feature_one_dimension_hypotheses_keep_their_arrays():
    task = multi_hypothesis(1)
    outputs, x, y = (
        torch.randn(3, 7, 2, generator=gen(11)),
        torch.rand(7, 1, generator=gen(12)),
        torch.randn(7, 1),
    )
    _, arrays = _evaluate(task, outputs, y, inputs=x)
    assert torch.equal(arrays["x"], x[:, 0].double()) and arrays["points"].shape == (3, 7)
    assert torch.allclose(arrays["weights"].sum(dim=0), torch.ones(7, dtype=torch.float64))


def test_class_iou_by_hand_and_its_mean_is_mean_iou():
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # (true, predicted); class 2 nowhere
    assert class_iou(confusion) == [3 / 4, 2 / 3, None]
    task, outputs, target = CASES["segmentation"]
    metrics, _ = _evaluate(task, outputs, target)
    for ious, mean in (("class_iou", "mean_iou"), ("oracle_class_iou", "oracle_mean_iou")):
        present = [v for v in metrics[ious] if v is not None]
        assert sum(present) / len(present) == pytest.approx(metrics[mean], rel=1e-12)


class _Split:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def eval_batches(self, split, batch_size):
        for i in range(0, len(self.y), batch_size):
            yield self.x[i : i + batch_size], self.y[i : i + batch_size]


def test_evaluate_task_runs_the_model_in_eval_mode_and_restores_it():
    net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    members = torch.nn.ModuleList([net, torch.nn.Linear(1, 2)])

    class Ensemble(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.members = members

        def forward(self, x):
            return torch.stack([m(x) for m in self.members])  # (M, B, D + 1)

    model, x, y = Ensemble(), torch.rand(9, 1, generator=gen(13)), torch.randn(9, 1, generator=gen(14))
    metrics, arrays = evaluate_task(model, _Split(x, y), multi_hypothesis(1), batch_size=4)
    with torch.no_grad():
        model.eval()
        expected = multi_hypothesis(1).metrics(model(x), y)
        model.train()
    assert model.training and metrics["task"] == "multi_hypothesis"
    assert metrics["oracle_error"] == pytest.approx(expected["oracle_error"], rel=1e-12)
    assert arrays["points"].shape == (2, 9)


def test_no_batch_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no batch was added"):
        TaskEvaluation(regression(1)).compute()


def test_a_minus_inf_hypothesis_score_is_evaluated_as_weight_zero():
    task, outputs, target = CASES["multi_hypothesis"]
    off, finite = outputs.double(), outputs.double()  # -1e300: a weight of 0, finite in float64
    off[1, ::3, 2], finite[1, ::3, 2] = -math.inf, -1e300  # member 1 switched off on 4 of 10 (was refused)
    metrics, arrays = _evaluate(task, off, target.double())
    assert metrics == _evaluate(task, finite, target.double())[0] and not arrays  # arrays: 1 feature, D = 1


@pytest.mark.parametrize("case", list(CASES))
def test_nan_or_inf_outputs_are_counted_over_every_batch_and_refused(case):
    from mheads.ensemble.metrics import NonFiniteOutputs

    task, outputs, target = CASES[case]
    outputs = outputs.clone()
    outputs[1, 2].view(-1)[0] = float("nan")  # batches of 3: the first and the third hold one each
    outputs[1, 7].view(-1)[-1] = float("inf")
    with pytest.raises(NonFiniteOutputs, match=r"^non-finite outputs in member 1 \(2 of 10 examples\): "):
        _evaluate(
            task, outputs, target
        )  # scored them: rmse nan, a fine oracle_rmse on inf, NaN pixels a class


def test_no_member_wins_an_example_where_no_member_has_an_error():
    """As `Task.oracle` names no member there (NO_MEMBER): a user's loss NaN on every member credited member 0
    with a win."""
    task = custom_task(lambda out, y: torch.where(out[:, 0] > 0, torch.nan, (out - y).abs().mean(-1)))
    outputs = torch.tensor([[[1.0], [-1.0], [1.0]], [[2.0], [-3.0], [-2.0]]])  # (M=2, B=3, 1): finite
    metrics, _ = _evaluate(task, outputs, torch.zeros(3, 1))
    assert task.oracle(outputs, torch.zeros(3, 1)).member.tolist() == [-1, 0, 1]
    assert metrics["win_share"] == [1 / 3, 1 / 3]
