"""mheads.tasks.classification: today's math behind the Task interface, unchanged."""

import math

import pytest
import torch

from mheads.ensemble import metrics as mt
from mheads.ensemble.losses import LOSS_NAMES, LOSSES, compute_loss, ensemble_loss
from mheads.tasks import Task, TaskMetrics, classification


def batch(seed=0, m=3, b=7, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, b, c, generator=g, dtype=torch.float64), torch.randint(0, c, (b,), generator=g)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_task_loss_is_compute_loss_and_the_generic_path_agrees(name, smoothing):
    """`Classification.loss` is compute_loss; the generic `Task.loss` (member losses -> ensemble_loss, or the
    task's combined loss) gives the same numbers: bit for bit for the member losses, to rounding for the two
    averaged ones (computed through another expression)."""
    logits, targets = batch()
    task = classification(4, label_smoothing=smoothing)
    kw = {"k": 1 if LOSSES[name].single_winner else 2, "temperature": 0.5}
    if LOSSES[name].scores:
        kw["score_logits"] = torch.randn(3, 7, dtype=torch.float64)
    want = compute_loss(
        name, logits, targets, label_smoothing=smoothing, generator=torch.Generator().manual_seed(3), **kw
    )
    got = task.loss(name, logits, targets, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(got.loss, want.loss)
    generic = Task.loss(task, name, logits, targets, generator=torch.Generator().manual_seed(3), **kw)
    if LOSSES[name].average is None:
        assert torch.equal(generic.loss, want.loss) and torch.equal(generic.per_member, want.per_member)
        assert torch.equal(generic.assignment, want.assignment) if want.assignment is not None else True
    else:
        assert generic.loss.item() == pytest.approx(want.loss.item(), rel=1e-12)
        if not smoothing:  # compute_loss reports the members' unsmoothed cross-entropy there
            assert torch.allclose(generic.per_member, want.per_member, rtol=1e-12)


def test_metrics_are_the_ensemble_metrics_and_batching_does_not_matter():
    logits, targets = batch(1, b=20)
    task = classification(4)
    got = task.metrics(logits, targets)
    assert got["ensemble_mean_acc"] == mt.ensemble_mean_accuracy(logits, targets)
    assert got["ensemble_mean_acc_scores"] == mt.ensemble_mean_accuracy(logits, targets, average="scores")
    assert got["oracle_acc"] == mt.oracle_accuracy(logits, targets)
    assert got["member_acc"] == mt.member_accuracy(logits, targets).tolist()
    assert got["nll"] == pytest.approx(mt.negative_log_likelihood(logits, targets), rel=1e-14)
    assert got["mean_member_nll"] == pytest.approx(mt.mean_member_nll(logits, targets), rel=1e-14)
    acc = TaskMetrics(task)
    for lo in range(0, 20, 6):
        acc.update(logits[:, lo : lo + 6], targets[lo : lo + 6])
    assert acc.compute() == got


def test_oracle_is_the_best_member_and_its_top1_error():
    # Example 0: only member 1 is right; example 1: members 0 and 2 are right (lowest index); example 2: none.
    logits = torch.tensor(
        [
            [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]],
            [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]],
            [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]],
        ]
    )
    targets = torch.tensor([0, 0, 1])
    oracle = classification(2).oracle(logits, targets)
    assert oracle.member.tolist() == [1, 0, 0] and oracle.error.tolist() == [0.0, 0.0, 1.0]
    assert 1 - oracle.error.mean().item() == pytest.approx(mt.oracle_accuracy(logits, targets))


def test_combine_head_width_and_checks():
    logits, targets = batch()
    task = classification(4)
    assert task.head_width() == 4
    assert torch.allclose(task.combine(logits), torch.softmax(logits, -1).mean(0))
    with pytest.raises(ValueError, match="num_classes = 5"):
        classification(5).loss("mcl", logits, targets)
    with pytest.raises(ValueError, match="num_classes: got None"):
        classification().head_width()
    with pytest.raises(ValueError, match="label_smoothing: got 2"):
        classification(label_smoothing=2)


def test_members_masking_disjoint_classes_score_average_to_the_mean_probabilities():
    """Every class masked (-inf) by some member: `ensemble_mean_acc_scores` read torch's argmax of -inf (class
    0, which member 0 masks) and score_averaged_ce was NaN; both are now those of the mean probabilities (a
    rule that a constant added to one member's logits leaves alone), with a finite gradient."""
    inf = math.inf
    logits = torch.tensor([[[-inf, 0.0, 1.0]], [[0.0, -inf, 1.0]], [[0.0, 3.0, -inf]]], dtype=torch.float64)
    shifted = logits.clone()
    shifted[1] -= 50.0
    task = classification(3)
    for target in (1, 2):  # mean probabilities (0.105, 0.407, 0.487): class 2 (mean finite scores: 1)
        y = torch.tensor([target])
        for x in (logits, shifted):
            got = task.metrics(x, y)
            assert got["ensemble_mean_acc_scores"] == float(target == 2) == got["ensemble_mean_acc"]
            assert got["ensemble_mean_acc_scores"] == mt.ensemble_mean_accuracy(x, y, average="scores")
            x = x.clone().requires_grad_(True)
            for loss in (
                task.loss("score_averaged_ce", x, y).loss,
                compute_loss("score_averaged_ce", x, y).loss,
                task.combined_loss("score_averaged_ce", x, y)[0],
            ):
                assert loss.item() == pytest.approx(got["nll"], rel=1e-12)  # -log of the mean probability
                (grad,) = torch.autograd.grad(loss, x)
                assert torch.isfinite(grad).all()
    every = torch.cat([logits, torch.full((3, 1, 1), -inf, dtype=torch.float64)], dim=-1).requires_grad_(True)
    loss = classification(4).loss("score_averaged_ce", every, torch.tensor([2])).loss  # class 3: all mask it
    assert loss.item() == pytest.approx(got["nll"], rel=1e-12)
    assert torch.isfinite(torch.autograd.grad(loss, every)[0]).all()  # logsumexp's backward of all -inf: NaN


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_independent_is_independent_ce_bit_for_bit(smoothing):
    """The other tasks' "independent" on classification's member losses is "independent_ce": the same
    per-example member losses `(M, B)` (the members' smoothed cross-entropies) and the same loss, weights
    (bagging) included, which is what lets a classification config take either name."""
    logits, targets = batch(2)
    weights = torch.randint(0, 3, (3, 7), generator=torch.Generator().manual_seed(1)).to(torch.float64)
    task = classification(4, label_smoothing=smoothing)
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = log_probs.gather(-1, targets.view(1, -1, 1).expand(3, -1, 1))[..., 0]
    want_nll = -(1 - smoothing) * picked - smoothing * log_probs.mean(dim=-1)
    assert torch.allclose(task.member_losses(logits, targets), want_nll, rtol=1e-14, atol=0)
    ce = compute_loss("independent_ce", logits, targets, weights=weights, label_smoothing=smoothing)
    for got in (
        ensemble_loss("independent", task.member_losses(logits, targets), weights=weights),
        task.loss("independent", logits, targets, weights=weights),
        Task.loss(task, "independent", logits, targets, weights=weights),
    ):
        assert torch.equal(got.loss, ce.loss) and torch.equal(got.per_member, ce.per_member)
        assert got.assignment is None and ce.assignment is None


def test_the_loss_names_and_refusal_are_the_configs():
    from mheads.config.task import TaskConfig, task_loss_names

    task = classification(4)
    assert task.loss_names() == (*LOSS_NAMES, "independent") == task_loss_names(TaskConfig())
    logits, targets = batch()
    with pytest.raises(
        ValueError, match=r"^loss: got 'indep'; expected one of independent_ce, .*, independent for"
    ):
        task.loss("indep", logits, targets)
