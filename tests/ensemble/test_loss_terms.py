"""Label smoothing over the classes a model did not mask with -inf (`smoothed_nll`)."""

import math

import pytest
import torch

from mheads.ensemble.ce_losses import prob_averaged_ce, score_averaged_ce
from mheads.ensemble.combine import member_log_probs, pick_targets
from mheads.ensemble.loss_terms import smoothed_member_nll, smoothed_nll

INF = float("inf")


def test_no_mask_is_bit_for_bit_the_plain_mean():
    torch.manual_seed(0)
    log_probs = member_log_probs(torch.randn(3, 8, 5))
    targets = torch.randint(0, 5, (8,))
    before = 0.9 * -pick_targets(log_probs, targets) - 0.1 * log_probs.mean(dim=-1)
    assert torch.equal(smoothed_nll(log_probs, targets, 0.1), before)


def test_masked_class_gets_no_target_mass():
    logits = torch.tensor([[[2.0, 0.5, -INF, -1.0]]])  # (1, 1, 4): class 2 masked
    eps = 0.3
    got = smoothed_member_nll(logits, torch.tensor([0]), eps)
    log_probs = torch.log_softmax(logits[..., [0, 1, 3]], dim=-1)[0, 0]
    want = (1 - eps) * -log_probs[0] - eps * log_probs.mean()
    assert math.isclose(got.item(), want.item(), rel_tol=1e-6)


def test_masks_differ_per_member_and_example():
    logits = torch.tensor([[[0.0, -INF, 1.0], [0.0, 1.0, 2.0]], [[-INF, 0.0, 1.0], [3.0, -INF, -INF]]])
    targets = torch.tensor([2, 0])
    got = smoothed_member_nll(logits, targets, 0.2)
    for m in range(2):
        for i in range(2):
            kept = logits[m, i][logits[m, i] > -INF]
            lp = torch.log_softmax(kept, dim=-1)
            target = torch.log_softmax(logits[m, i], dim=-1)[targets[i]]
            want = 0.8 * -target - 0.2 * lp.mean()
            assert math.isclose(got[m, i].item(), want.item(), rel_tol=1e-6, abs_tol=1e-7)


@pytest.mark.parametrize("loss", [score_averaged_ce, prob_averaged_ce])
def test_averaged_losses_finite_with_masked_class(loss):
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4)
    logits[:, 0, 3] = -INF  # every member masks class 3 on example 0
    logits[0, 1, 2] = -INF  # one member masks class 2 on example 1
    logits.requires_grad_(True)
    value = loss(logits, torch.tensor([0, 1, 2]), 0.1)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_member_loss_gradient_finite_and_zero_on_masked_class():
    logits = torch.tensor([[[1.0, -INF, 0.0]]], requires_grad=True)
    smoothed_member_nll(logits, torch.tensor([0]), 0.5).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 0, 1] == 0.0


def test_masked_target_stays_inf():
    logits = torch.tensor([[[1.0, -INF, 0.0]]])
    assert smoothed_member_nll(logits, torch.tensor([1]), 0.1).item() == INF


def test_other_rows_bit_for_bit_beside_a_masked_row():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 5)
    targets = torch.randint(1, 5, (4,))
    plain = smoothed_member_nll(logits, targets, 0.1)
    logits[1, 2, 0] = -INF
    masked = smoothed_member_nll(logits, targets, 0.1)
    keep = torch.ones(2, 4, dtype=torch.bool)
    keep[1, 2] = False
    assert torch.equal(masked[keep], plain[keep])
    assert torch.isfinite(masked).all()
