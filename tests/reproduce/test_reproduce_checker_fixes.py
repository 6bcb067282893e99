"""Behaviour the type checker's fixes in mheads.reproduce changed (issue 33): guided backprop through a
network whose scores ignore the input, and a sweep cell whose training returns no metrics, stop with a
one-line error (they raised AttributeError, or recorded None and failed later)."""

import pytest
import torch
from torch import nn

from mheads.reproduce import sweep
from mheads.reproduce.guided_backprop import guided_saliency


class _Constant(nn.Module):
    """Class scores from a parameter only: the input gets no gradient."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return self.w.expand(x.shape[0], 3)


def test_guided_saliency_refuses_scores_that_ignore_the_input():
    with pytest.raises(ValueError, match=r"net: its scores \(_Constant\) do not depend on the input x"):
        guided_saliency(_Constant(), torch.randn(2, 1, 4, 4), torch.tensor([0, 2]))


def test_guided_saliency_of_a_linear_net_is_its_weight_row():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 1, 2, 2)
    g = guided_saliency(net, x, torch.tensor([1, 2]))
    assert torch.equal(g, net[1].weight.detach()[[1, 2]].view(2, 1, 2, 2))


def test_run_cell_refuses_a_fit_without_metrics(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep, "fit", lambda cfg, run, **kw: None)
    with pytest.raises(RuntimeError, match="training returned no metrics"):
        sweep.run_cell(None, tmp_path / "run")
