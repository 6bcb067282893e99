"""Evaluation during training (``mheads.train.evaluate``; named apart from tests/infer/test_evaluate.py, which
pytest would take for the same module): what a split's metrics are made of."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mheads.config import config_from_settings
from mheads.ensemble.metrics import NonFiniteOutputs
from mheads.train.comm import LocalComm
from mheads.train.evaluate import evaluate


class _Batches:
    """A split of 6 examples in batches of 4 and 2, three classes."""

    num_classes = 3

    def eval_batches(self, split, batch_size):
        x = torch.arange(6, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor([0, 1, 2, 0, 1, 2])
        yield x[:4], y[:4]
        yield x[4:], y[4:]


class _Members(nn.Module):
    """Two members: logits `(2, B, 3)` that favour the target class, member 1 NaN on inputs >= 3."""

    def forward(self, x):
        logits = torch.nn.functional.one_hot(x[:, 0].long() % 3, 3).float().expand(2, -1, -1).clone()
        logits[1, x[:, 0] >= 3] = float("nan")
        return logits


def test_outputs_that_are_nan_stop_the_evaluation_naming_the_member_and_examples():
    cfg = config_from_settings({"model.members": 2})
    model = _Members()
    with pytest.raises(NonFiniteOutputs, match=r"^non-finite outputs in member 1 \(3 of 6 examples\): "):
        evaluate(
            model, _Batches(), cfg, LocalComm()
        )  # its argmax counted NaN as right: ensemble_mean_acc 1.0
    assert model.training  # put back as it was
    model.forward = lambda x: _Members.forward(model, x).nan_to_num(0.0)
    assert evaluate(model, _Batches(), cfg, LocalComm())["member_acc"] == [1.0, 4 / 6]  # zeros: class 0


class _Fails(nn.Module):
    """A model whose forward raises on the second batch."""

    def forward(self, x):
        if x[0, 0] >= 4:
            raise RuntimeError("out of memory")
        return torch.zeros(2, x.shape[0], 3)


@pytest.mark.parametrize("mode", [True, False])
def test_a_model_that_raises_mid_split_is_handed_back_in_its_mode(mode):
    model = _Fails().train(mode)
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate(model, _Batches(), config_from_settings({"model.members": 2}), LocalComm())
    assert model.training is mode  # was left in eval mode: training went on without dropout or BN updates


class _Points(nn.Module):
    """Two members' point predictions `(2, B, 1)`, member 0 NaN on inputs >= 4."""

    def forward(self, x):
        out = x.expand(2, -1, -1).clone()
        out[0, x[:, 0] >= 4] = float("nan")
        return out


def test_a_tasks_outputs_that_are_nan_stop_the_evaluation_naming_the_member():
    from mheads.tasks import regression

    data = _Batches()
    data.eval_batches = lambda split, size: (
        (x, y.float().unsqueeze(1)) for x, y in _Batches().eval_batches(split, size)
    )
    cfg = config_from_settings({"model.members": 2})
    with pytest.raises(NonFiniteOutputs, match=r"^non-finite outputs in member 0 \(2 of 6 examples\): "):
        evaluate(_Points(), data, cfg, LocalComm(), task=regression(1))  # rmse was nan in eval.jsonl


def test_a_model_that_masks_a_class_with_minus_inf_is_evaluated():
    """-inf on some classes (a class mask) has a softmax: scored as probability 0, as the mask -1e30 is (it
    stopped training's first evaluation as non-finite outputs)."""
    cfg = config_from_settings({"model.members": 2})
    model = _Members()
    model.forward = lambda x: (
        _Members.forward(model, x).nan_to_num(0.0) + torch.tensor([0.0, 0.0, -torch.inf])
    )
    masked = evaluate(model, _Batches(), cfg, LocalComm())
    model.forward = lambda x: _Members.forward(model, x).nan_to_num(0.0) + torch.tensor([0.0, 0.0, -1e30])
    finite = evaluate(model, _Batches(), cfg, LocalComm())
    nll = {"nll", "mean_member_nll", "member_nll"}  # class 2's targets have probability 0: NLL inf
    assert masked["member_acc"] == [4 / 6, 0.5] and masked["nll"] == torch.inf
    assert {k: v for k, v in masked.items() if k not in nll} == {
        k: v for k, v in finite.items() if k not in nll
    }
