"""``train.sync: deferred`` (the CUDA default): no host synchronisation inside a training step, the same run
as ``step``, and non-finite updates undone on the device and reported at the next logging point."""

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

import mheads.train.loop as loop
import mheads.train.step as step_module
from mheads.config import config_from_dict
from mheads.ensemble.losses import compute_loss as real_compute_loss
from mheads.train.loop import fit
from mheads.train.numerics import NumericalFault, guarded_step


def tiny(**over):
    base = {
        "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
        "data": {"train_limit": 128, "test_limit": 50, "crop_padding": 2, "flip": True, "bagging": True},
        "loss": {"name": "mcl", "k": 1},
        "optim": {"lr": 0.01, "milestones": [5]},
        "train": {
            "iterations": 8,
            "batch_size": 16,
            "eval_every": 4,
            "checkpoint_every": 4,
            "eval_batch_size": 50,
            "threads": 1,
            "log_every": 2,
        },
    }
    for section, values in over.items():
        base.setdefault(section, {}).update(values)
    return config_from_dict(base)


# Every way a tensor's value reaches Python: each one waits for the device on a GPU.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# The input checks that read values only for CPU tensors (ensemble/combine.py and ensemble/loss_terms.py: they
# are free there and skipped on a GPU), so they do not count.
CPU_ONLY_CHECKS = {"check_logits_targets", "check_weights"}


def _in_cpu_only_check() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name in CPU_ONLY_CHECKS:
            return True
        frame = frame.f_back
    return False


def count_host_reads(monkeypatch, wrapped: str) -> list[str]:
    """Patch the tensor methods that read a value on the host so that each call made while ``loop.<wrapped>``
    (a training step) runs is recorded; returns the record."""
    seen, inside = [], [False]
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def spy(self, *a, _real=real, _name=name, **k):
            if inside[0] and not _in_cpu_only_check():
                seen.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    step = getattr(loop, wrapped)

    def timed_step(*a, **k):
        inside[0] = True
        try:
            return step(*a, **k)
        finally:
            inside[0] = False

    monkeypatch.setattr(loop, wrapped, timed_step)
    return seen


def test_a_deferred_step_reads_nothing_on_the_host(monkeypatch, tmp_path):
    seen = count_host_reads(monkeypatch, "deferred_step")
    fit(tiny(train={"sync": "deferred"}), tmp_path / "run", progress=False)
    assert seen == []


def test_the_host_read_counter_sees_the_step_mode_guard(monkeypatch, tmp_path):
    # the same counter on the per-step guard: it must see the reads deferred mode removes
    seen = count_host_reads(monkeypatch, "train_step")
    fit(tiny(train={"sync": "step"}), tmp_path / "run", progress=False)
    assert "__bool__" in seen and "cpu" in seen


def test_deferred_and_step_runs_are_the_same_run(tmp_path):
    for mode in ("step", "deferred"):
        fit(tiny(train={"sync": mode}), tmp_path / mode, progress=False)
    a, b = (
        load_file(str(tmp_path / "step" / "model.safetensors")),
        load_file(str(tmp_path / "deferred" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [(tmp_path / mode / "eval.jsonl").read_text() for mode in ("step", "deferred")]
    assert history[0] == history[1]


def nan_at(steps: set[int]):
    calls = []

    def loss(name, logits, targets, **kw):
        calls.append(1)
        bad = len(calls) - 1 in steps
        return real_compute_loss(name, logits * (float("nan") if bad else 1.0), targets, **kw)

    return loss


def test_deferred_stop_names_the_first_bad_iteration_at_the_next_logging_point(monkeypatch, tmp_path):
    monkeypatch.setattr(step_module, "compute_loss", nan_at({5}))
    with pytest.raises(NumericalFault, match="iteration 5 in member"):
        fit(tiny(train={"sync": "deferred", "log_every": 3}), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "step-00000004").is_dir()  # the last good checkpoint stays


def test_deferred_skip_undoes_bad_updates_on_the_device(monkeypatch, tmp_path):
    cfg = {"sync": "deferred", "nan_policy": "skip", "checkpoint_every": 0}
    monkeypatch.setattr(step_module, "compute_loss", nan_at({2, 3}))
    fit(tiny(train=cfg), tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_total"] == 2
    for value in load_file(str(tmp_path / "run" / "model.safetensors")).values():
        assert torch.isfinite(value).all()
    monkeypatch.setattr(step_module, "compute_loss", nan_at(set(range(2, 8))))
    with pytest.raises(NumericalFault, match="steps in a row, train.max_skipped"):
        fit(tiny(train={**cfg, "max_skipped": 3}), tmp_path / "again", progress=False)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_guarded_step_is_opt_step_when_finite_and_a_no_op_when_not(name):
    def make():
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5))
        opt = (
            torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
            if name == "sgd"
            else torch.optim.AdamW([p], lr=0.1)
        )
        return p, opt

    p, opt = make()
    q, ref = make()
    for i in range(3):
        p.grad, q.grad = torch.full((5,), 0.5 + i), torch.full((5,), 0.5 + i)
        guarded_step(opt, [p], torch.tensor(True))
        ref.step()
        assert torch.equal(p, q)
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.full((5,), float("nan"))
    guarded_step(opt, [p], torch.tensor(False))
    assert torch.equal(p, before)
    assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())
    # a first step undone leaves the fresh state: the next good step equals a first step
    p, opt = make()
    q, ref = make()
    p.grad = torch.full((5,), float("nan"))
    guarded_step(opt, [p], torch.tensor(False))
    p.grad, q.grad = torch.ones(5), torch.ones(5)
    guarded_step(opt, [p], torch.tensor(True))
    ref.step()
    assert torch.equal(p, q)


def test_deferred_guard_when_the_parameters_with_gradients_change(tmp_path):
    # the scoring heads get gradients only once their loss starts, after the cross-entropy pretraining
    cfg = tiny(
        model={"scoring_heads": True},
        loss={"name": "mcl_scored", "pretrain_iterations": 3},
        train={"sync": "deferred", "log_every": 10},
    )
    fit(cfg, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped_total"] == 0
