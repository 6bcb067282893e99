"""The resource check: sizes that would exhaust the machine are refused (exit 2, naming the field and the
estimate) before anything large is allocated. Each case runs in a separate process (forked by
``tests/memcap.py``) under a 6 GiB address-space limit, so a regression fails the test instead of the
machine."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from memcap import mheads_capped
from mheads.config import config_from_settings
from mheads.train.resources import estimate_bytes

TINY = {
    "model": {"name": "cifar10_quick", "members": 2},
    "data": {"train_limit": 64, "test_limit": 32},
    "train": {
        "iterations": 1,
        "batch_size": 8,
        "eval_every": 1,
        "checkpoint_every": 0,
        "threads": 1,
        "device": "cpu",
    },
}
LIMIT = 6 << 30


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.members=10000000000",
            r"model.members: got 10000000000; this run would need about .* GiB \(parameters",
        ),
        (
            "train.batch_size=100000000",
            r"train.batch_size: got 100000000; this run would need about .*activations",
        ),
        ("data.crop_padding=100000", r"data.crop_padding: got 100000; this run would need about .*inputs"),
        (
            "train.accumulate=100000000000000000000",
            r"train.accumulate: got 100000000000000000000; expected an integer "
            r"at most 9007199254740992",
        ),
        ("optim.lr=1e308", r"optim.lr: got 1e\+308; expected a learning rate whose product .* float32"),
    ],
)
def test_sizes_that_would_exhaust_the_machine_exit_2_naming_the_field(tmp_path, override, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    argv = ["train", "--config", cfg, "--out", tmp_path / "run", "--set", override, "--no-progress"]
    proc = mheads_capped(*argv, cap=LIMIT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr


def test_the_estimate_scales_with_members_batch_and_padding():
    from mheads.models import create_model

    base = create_model("cifar10_quick", num_classes=10, in_channels=3, image_size=32)
    shape = (3, 32, 32)
    one = estimate_bytes(config_from_settings({"model.members": 1, "train.batch_size": 10}), base, shape)
    four = estimate_bytes(config_from_settings({"model.members": 4, "train.batch_size": 20}), base, shape)
    assert four["parameters"] == 4 * one["parameters"] > 0
    assert four["activations"] == 2 * one["activations"] > 0  # stepped one member at a time, twice the batch
    mcl = estimate_bytes(
        config_from_settings({"model.members": 4, "train.batch_size": 20, "loss.name": "mcl"}), base, shape
    )
    assert mcl["activations"] == 8 * one["activations"]  # a joint loss keeps all 4 members alive at once
    padded = estimate_bytes(
        config_from_settings({"train.batch_size": 10, "data.crop_padding": 4}), base, shape
    )
    assert padded["inputs"] == one["inputs"] * 40 * 40 // (32 * 32)
    assert base.training and all(not p.grad_fn for p in base.parameters())  # the dry run left no trace
    bn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    bn(torch.zeros(1, 3, 8, 8))
    stats = bn[1].running_mean.clone(), bn[1].num_batches_tracked.clone()
    estimate_bytes(config_from_settings({}), bn, (3, 8, 8))
    assert torch.equal(bn[1].running_mean, stats[0]) and torch.equal(bn[1].num_batches_tracked, stats[1])
