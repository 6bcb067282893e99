"""mheads.train.run_model: a run's weights are refused when a parameter is NaN or infinite (an edited or
damaged file), never when a model's own buffer holds -inf (an attention mask), at reading and at loading."""

import pytest
import torch
from torch import nn

from mheads.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mheads.train.run_model import check_parameters_finite, load_weights_checked


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.register_buffer("mask", torch.tensor([0.0, float("-inf"), 0.0]))  # as causal masks are

    def forward(self, x):
        return self.fc(x.softmax(-1) + self.mask.softmax(-1))


def test_a_minus_inf_buffer_is_read_and_loaded_an_infinite_parameter_is_not(tmp_path):
    model = Masked()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path, 1, weights, {"step": 1}, {"arch": "masked"})
    loaded = load_checkpoint(tmp_path).weights  # was refused: "mask: got non-finite values"
    load_weights_checked(Masked(), loaded, tmp_path)
    check_parameters_finite(Masked(), loaded, tmp_path)
    loaded["fc.weight"][0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"fc\.weight: got non-finite values") as info:
        load_weights_checked(Masked(), loaded, tmp_path)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    loaded["fc.weight"][0, 0], loaded["mask"][0] = 0.0, float("nan")  # NaN is never a buffer's value
    save_checkpoint(tmp_path, 2, loaded, {"step": 2}, {"arch": "masked"})
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: mask: got non-finite values"):
        load_checkpoint(tmp_path)


def test_resume_reads_a_minus_inf_buffer_and_refuses_an_infinite_parameter_on_every_path(tmp_path):
    """The root's check before the run state is shared: a distributed run's parts are loaded elsewhere."""
    from mheads.train.comm import LocalComm
    from mheads.train.restore import _read_checkpoint

    meta = {"arch": "masked"}
    weights = {k: v.clone() for k, v in Masked().state_dict().items()}
    state = {"step": 1, "skipped": 0, "skipped_total": 0, "optimizer": {}, "schedule": {}}
    save_checkpoint(tmp_path, 1, weights, state, meta)
    ck, shared = _read_checkpoint(tmp_path, True, LocalComm(), meta, Masked())
    assert ck is not None and shared is not None and shared["step"] == 1
    weights["fc.bias"][1] = float("-inf")
    save_checkpoint(tmp_path, 2, weights, {**state, "step": 2}, meta)
    with pytest.raises(CheckpointError, match=r"00002/weights\.safetensors: fc\.bias: got non-finite"):
        _read_checkpoint(tmp_path, True, LocalComm(), meta, Masked())
