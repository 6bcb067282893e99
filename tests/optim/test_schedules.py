import pytest

from mheads.optim.schedules import Schedule


def test_cifar10_quick_steps():
    s = Schedule(kind="steps", base_lr=0.001, milestones=[4000])
    assert s.lr_at(0) == 0.001 and s.lr_at(3999) == 0.001
    assert s.lr_at(4000) == pytest.approx(0.0001) and s.lr_at(4999) == pytest.approx(0.0001)


def test_several_milestones_and_every():
    s = Schedule(kind="steps", base_lr=1.0, milestones=[10, 20])
    assert [s.lr_at(i) for i in (9, 10, 19, 20)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    e = Schedule(kind="every", base_lr=0.1, every=200_000)
    assert [e.lr_at(i) for i in (0, 199_999, 200_000, 400_000)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert Schedule(kind="fixed", base_lr=0.5).lr_at(10**6) == 0.5


def test_plateau_divides_when_loss_fails_to_drop_one_percent():
    s = Schedule(kind="plateau", base_lr=0.1, window=3, threshold=0.01)
    for loss in (2.0, 2.0, 2.0):  # first window: sets the reference
        s.observe(loss)
    assert s.lr_at(3) == 0.1
    for loss in (1.5, 1.5, 1.5):  # dropped 25%: keep
        s.observe(loss)
    assert s.lr_at(6) == 0.1
    for loss in (1.495, 1.495, 1.495):  # dropped only 0.33%: divide by 10
        s.observe(loss)
    assert s.lr_at(9) == pytest.approx(0.01)


def test_plateau_state_round_trip():
    s = Schedule(kind="plateau", base_lr=0.1, window=2)
    for loss in (3.0, 3.0, 3.0, 3.0, 1.0):
        s.observe(loss)
    t = Schedule(kind="plateau", base_lr=0.1, window=2)
    t.load_state_dict(s.state_dict())
    for sch in (s, t):
        sch.observe(1.0)
    assert s.lr_at(0) == t.lr_at(0) == pytest.approx(0.01)
    fresh = Schedule(kind="plateau", base_lr=0.1, window=2)
    fresh.load_state_dict(Schedule(kind="plateau", base_lr=0.1, window=2).state_dict())
    assert fresh.lr_at(0) == 0.1


def test_cosine_with_warmup_by_hand():
    import math

    from mheads.optim.schedules import Schedule

    s = Schedule(kind="cosine", base_lr=0.1, total=110, warmup=10)
    assert [round(s.lr_at(i), 12) for i in (0, 4, 9)] == [0.01, 0.05, 0.1]  # linear warm-up to the base rate
    assert s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(60) == pytest.approx(0.05)  # half way through the cosine
    assert s.lr_at(110) == pytest.approx(0.0, abs=1e-12)
    assert s.lr_at(35) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 25 / 100)))
    steps = Schedule(kind="steps", base_lr=1.0, milestones=[5], gamma=0.1, warmup=2)
    assert [steps.lr_at(i) for i in (0, 1, 2, 5)] == [0.5, 1.0, 1.0, pytest.approx(0.1)]


def test_optimizers_and_weight_decay_groups():
    import torch

    from mheads.config import config_from_settings
    from mheads.optim.build import build_optimizer

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    params = list(net.parameters())
    opt, _ = build_optimizer(
        config_from_settings(
            {"optim.nesterov": True, "optim.decay_norm_and_bias": False, "optim.weight_decay": 5e-4}
        ),
        params,
    )
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 5e-4), (3, 0.0)]
    opt, _ = build_optimizer(
        config_from_settings({"optim.name": "adamw", "optim.weight_decay": 0.05}), params
    )
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.05
    from mheads.config import ConfigError

    with pytest.raises(
        ConfigError, match="optim.nesterov: got True; expected false unless optim.name is sgd"
    ):
        config_from_settings({"optim.name": "adamw", "optim.nesterov": True})
