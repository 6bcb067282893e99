"""`ensemble_log_probs`: a class every member masks with -inf."""

import math

import torch

from mheads.ensemble.combine import ensemble_log_probs, member_log_probs


def test_ensemble_log_probs_bit_for_bit_without_masks():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    before = torch.logsumexp(member_log_probs(logits), dim=0) - math.log(3)
    assert torch.equal(ensemble_log_probs(logits), before)


def test_class_every_member_masks_is_inf_with_finite_gradient():
    logits = torch.tensor([[[1.0, 0.0, -torch.inf]], [[0.0, 2.0, -torch.inf]]], requires_grad=True)
    out = ensemble_log_probs(logits)
    assert out[0, 2] == -torch.inf
    out[:, :2].sum().backward()
    assert torch.isfinite(logits.grad).all()
