"""Behaviour the type checker's fixes in mheads.models changed (issue 33): the Caffe fillers of NIN,
CIFAR10-Quick and CaffeNet take a layer without a bias (they raised on ``None``) and still fill one that
has it."""

import pytest
import torch
from torch import nn

from mheads.models import caffenet, cifar10_quick, nin


@pytest.mark.parametrize(
    "fill, bias",
    [
        (lambda layer: cifar10_quick._gauss(layer, 0.1), 0.0),
        (lambda layer: caffenet._init(layer, 0.01, 1.0), 1.0),
    ],
)
def test_fillers_take_layers_with_and_without_bias(fill, bias):
    assert fill(nn.Linear(4, 3, bias=False)).bias is None
    assert torch.equal(fill(nn.Conv2d(2, 3, 3)).bias, torch.full((3,), bias))
    assert torch.equal(fill(nn.Linear(4, 3)).bias, torch.full((3,), bias))


def test_nin_conv_without_bias():
    assert nin._conv(2, 3, 3, 0.01, "caffe", bias=False).bias is None
    assert torch.equal(nin._conv(2, 3, 3, 0.01, "he").bias, torch.zeros(3))
