"""Per-group rate and decay multipliers (Caffe's lr_mult / decay_mult; optim.bias_lr_mult, bias_decay_mult,
trunk_lr_mult): known answers for one SGD step, the defaults unchanged, exact resume with groups."""

import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from mheads.config import ConfigError, config_from_dict
from mheads.optim.build import build_optimizer, param_groups, set_rate
from mheads.train.loop import fit
from mheads.tree import TreeNet


def _tree():
    torch.manual_seed(0)
    return TreeNet(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), 2, split="0")


def _cfg(**optim):
    return config_from_dict(
        {"model": {"members": 2}, "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, **optim}}
    )


def test_defaults_build_the_optimizer_as_before():
    tree = _tree()
    params = list(tree.parameters())
    opt, _ = build_optimizer(_cfg(), params, tree)
    assert len(opt.param_groups) == 1 and "lr_mult" not in opt.param_groups[0]
    assert opt.param_groups[0]["params"] == param_groups(params, 0.01, True)
    set_rate(opt, 0.05)
    assert opt.param_groups[0]["lr"] == 0.05


def test_one_sgd_step_with_multipliers_equals_the_hand_computed_update():
    tree = _tree()
    cfg = _cfg(bias_lr_mult=2, bias_decay_mult=0.5, trunk_lr_mult="inverse_members")
    opt, schedule = build_optimizer(cfg, list(tree.parameters()), tree)
    before = {n: p.detach().clone() for n, p in tree.named_parameters()}
    grads = {
        n: torch.full_like(p, 0.5) + 0.1 * torch.arange(p.numel()).reshape(p.shape)
        for n, p in tree.named_parameters()
    }
    for n, p in tree.named_parameters():
        p.grad = grads[n].clone()
    set_rate(opt, schedule.lr_at(0))
    opt.step()
    # rate multiplier: 2 on biases, 1/2 on the trunk (two members share it); decay multiplier 0.5 on biases
    lr_mult = {"root.layers.0.weight": 0.5, "root.layers.0.bias": 1.0}
    for n, p in tree.named_parameters():
        bias = n.endswith("bias")
        mult = lr_mult.get(n, 2.0 if bias else 1.0)
        decay = 0.01 * (0.5 if bias else 1.0)
        # first step of momentum SGD: the buffer is the (decayed) gradient itself
        want = before[n] - 0.1 * mult * (grads[n] + decay * before[n])
        assert torch.allclose(p.detach(), want, rtol=0, atol=1e-7), n


def test_a_number_scales_only_shared_parameters_and_the_rate_follows_the_schedule():
    tree = _tree()
    opt, schedule = build_optimizer(_cfg(trunk_lr_mult=0.25, milestones=[2]), list(tree.parameters()), tree)
    names = {id(p): n for n, p in tree.named_parameters()}
    for it, base in ((0, 0.1), (2, 0.01)):
        set_rate(opt, schedule.lr_at(it))
        for g in opt.param_groups:
            want = base * (0.25 if all(names[id(p)].startswith("root.layers") for p in g["params"]) else 1.0)
            assert g["lr"] == pytest.approx(want)


@pytest.mark.parametrize("value", ["half", -1, True])
def test_bad_trunk_multiplier_is_refused_naming_the_field(value):
    with pytest.raises(ConfigError, match="optim.trunk_lr_mult"):
        _cfg(trunk_lr_mult=value)


def test_multipliers_without_the_tree_are_refused():
    tree = _tree()
    with pytest.raises(ValueError, match="needs the TreeNet"):
        build_optimizer(_cfg(bias_lr_mult=2), list(tree.parameters()))


def _tiny(**optim):
    return config_from_dict(
        {
            "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
            "data": {"train_limit": 256, "test_limit": 100},
            "optim": {"lr": 0.01, "milestones": [3], **optim},
            "train": {
                "iterations": 6,
                "batch_size": 16,
                "eval_every": 2,
                "checkpoint_every": 2,
                "eval_batch_size": 50,
                "threads": 1,
            },
        }
    )


def test_resume_with_groups_is_exact_and_the_multipliers_reach_the_loop(tmp_path):
    cfg = _tiny(bias_lr_mult=2, trunk_lr_mult="inverse_members")
    fit(cfg, tmp_path / "full", progress=False)
    fit(cfg, tmp_path / "part", progress=False)
    shutil.rmtree(tmp_path / "part/checkpoints/step-00000006")  # stopped after step 4, as a crash would
    (tmp_path / "part/model.safetensors").unlink()
    fit(cfg, tmp_path / "part", resume=True, progress=False)
    full, part = (load_file(str(tmp_path / f"{r}/model.safetensors")) for r in ("full", "part"))
    assert all(torch.equal(full[k], part[k]) for k in full)
    fit(_tiny(), tmp_path / "plain", progress=False)
    plain = load_file(str(tmp_path / "plain/model.safetensors"))
    assert not torch.equal(full["root.layers.conv1.bias"], plain["root.layers.conv1.bias"])
