import json

import pytest
import torch
from safetensors.torch import load_file

import mheads.train.finish as finish_module
import mheads.train.points as points
import mheads.train.restore as restore_module
import mheads.train.step as step_module
from mheads.config import ConfigError, config_from_dict
from mheads.data.resident import prepare_data
from mheads.ensemble.losses import compute_loss as real_compute_loss
from mheads.train.build import build_tree
from mheads.train.comm import LocalComm
from mheads.train.loop import fit
from mheads.train.numerics import NumericalFault, member_param_map
from mheads.train.step import train_step


def tiny(**over):
    base = {
        "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
        "data": {"train_limit": 256, "test_limit": 100},
        "optim": {"lr": 0.01, "milestones": [3]},
        "train": {
            "iterations": 4,
            "batch_size": 16,
            "eval_every": 2,
            "checkpoint_every": 2,
            "eval_batch_size": 50,
            "threads": 1,
        },
    }
    for section, values in over.items():
        base.setdefault(section, {}).update(values)
    return config_from_dict(base)


def test_fit_writes_a_complete_run_folder(tmp_path):
    m = fit(tiny(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "run.json",
        "eval.jsonl",
        "metrics.json",
        "model.safetensors",
        "members/member_0.safetensors",
        "members/member_1.safetensors",
    ):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    for key in (
        "ensemble_mean_acc",
        "oracle_acc",
        "member_acc",
        "oracle_assignment",
        "nll",
        "ece",
        "param_counts",
        "train_time_s",
        "images_per_s",
        "wall_time_s",
    ):
        assert key in saved
    assert saved["oracle_acc"] >= max(saved["member_acc"])
    assert [r["step"] for r in map(json.loads, (run / "eval.jsonl").read_text().splitlines())] == [2, 4]
    info = json.loads((run / "run.json").read_text())
    assert {"command", "git_revision", "hardware"} <= set(info)
    assert m["ensemble_mean_acc"] == saved["ensemble_mean_acc"]
    # a member file is a standalone base network
    from mheads.models import create_model

    net = create_model("cifar10_quick", num_classes=10, in_channels=1, image_size=28)
    net.load_state_dict(load_file(str(run / "members/member_1.safetensors")))


def test_same_seed_gives_bit_identical_weights_and_metrics(tmp_path):
    cfg = tiny(
        loss={"name": "mcl", "k": 1},
        data={"crop_padding": 2, "flip": True, "train_limit": 256, "test_limit": 100},
    )
    a = fit(cfg, tmp_path / "a", progress=False)
    b = fit(cfg, tmp_path / "b", progress=False)
    wa, wb = (
        load_file(str(tmp_path / "a/model.safetensors")),
        load_file(str(tmp_path / "b/model.safetensors")),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    drop = ("train_time_s", "images_per_s", "wall_time_s", "resumed_from_iteration")
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def test_existing_run_is_not_clobbered(tmp_path):
    fit(tiny(train={"iterations": 1, "eval_every": 0, "checkpoint_every": 0}), tmp_path / "r", progress=False)
    from mheads.runs.folder import RunExistsError

    with pytest.raises(RunExistsError, match="already holds a run; pass --resume"):
        fit(tiny(), tmp_path / "r", progress=False)


def test_resume_continues_to_the_same_weights(tmp_path):
    cfg = tiny(train={"iterations": 6, "checkpoint_every": 2})
    fit(cfg, tmp_path / "full", progress=False)
    short = tiny(train={"iterations": 6, "checkpoint_every": 2})
    # Stop after the checkpoint at step 4 as a crash would: remove the final outputs and the step-6
    # checkpoint.
    fit(short, tmp_path / "part", progress=False)
    import shutil

    shutil.rmtree(tmp_path / "part/checkpoints/step-00000006")
    (tmp_path / "part/model.safetensors").unlink()
    from mheads.runs.checkpoint import load_checkpoint

    before = load_checkpoint(tmp_path / "part/checkpoints/step-00000004").state
    m = fit(short, tmp_path / "part", resume=True, progress=False)
    wa = load_file(str(tmp_path / "full/model.safetensors"))
    wb = load_file(str(tmp_path / "part/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [json.loads(line)["step"] for line in (tmp_path / "part/eval.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    # the run's time counts the first process up to its checkpoint, then the resumed one
    assert m["resumed_from_iteration"] == 4
    assert 0 < before["wall_time_s"] < m["wall_time_s"] and 0 < before["train_time_s"] < m["train_time_s"]


def _step_setup(cfg):
    data = prepare_data(cfg, torch.device("cpu"))
    tree = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
    params = list(tree.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    return data, tree, params, opt


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "member-by-member"])
def test_nan_in_one_member_applies_no_update_and_names_it(monkeypatch, joint):
    cfg = tiny(model={"members": 3, "split": None})
    data, tree, params, opt = _step_setup(cfg)
    calls = []
    if joint:
        monkeypatch.setattr(step_module, "members_separable", lambda *args: False)

    def poisoned(name, logits, targets, **kw):
        logits = logits.clone()
        calls.append(1)
        if joint:
            logits[1, 0, 0] = float("nan")
        elif len(calls) == 2:  # member 1's own call
            logits[0, 0, 0] = float("nan")
        return real_compute_loss(name, logits, targets, **kw)

    monkeypatch.setattr(step_module, "compute_loss", poisoned)
    before = {k: v.clone() for k, v in tree.state_dict().items()}
    with pytest.raises(NumericalFault, match="iteration 7 in member 1;") as info:
        train_step(tree, opt, data, cfg, 7, LocalComm(), params, member_param_map(tree))
    assert info.value.members == [1]
    assert all(torch.equal(before[k], v) for k, v in tree.state_dict().items())


def test_nan_policy_skip_counts_and_stops_after_a_run_of_bad_steps(monkeypatch, tmp_path):
    def always_nan(name, logits, targets, **kw):
        return real_compute_loss(name, logits * float("nan"), targets, **kw)

    monkeypatch.setattr(step_module, "compute_loss", always_nan)
    cfg = tiny(train={"nan_policy": "skip", "max_skipped": 3, "iterations": 10})
    with pytest.raises(NumericalFault, match="3 steps in a row"):
        fit(cfg, tmp_path / "r", progress=False)


def test_pretraining_uses_cross_entropy_then_switches(monkeypatch, tmp_path):
    seen = []

    def spy(name, logits, targets, **kw):
        seen.append(name)
        return real_compute_loss(name, logits, targets, **kw)

    monkeypatch.setattr(step_module, "compute_loss", spy)
    fit(
        tiny(
            loss={"name": "mcl", "k": 1, "pretrain_iterations": 2},
            train={"accumulate": 2, "eval_every": 0, "checkpoint_every": 0},
        ),
        tmp_path / "r",
        progress=False,
    )
    assert seen == ["independent_ce"] * 4 + ["mcl"] * 4  # 2 iterations x 2 accumulated batches each


def test_accumulation_matches_one_big_batch():
    cfg = tiny(train={"accumulate": 2, "batch_size": 8}, model={"split": None})
    data, tree, params, opt = _step_setup(cfg)
    opt.param_groups[0]["momentum"] = 0.0
    torch.manual_seed(0)
    ref = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
    ref.load_state_dict(tree.state_dict())
    train_step(tree, opt, data, cfg, 0, LocalComm(), params, member_param_map(tree))
    g = torch.Generator()
    xs, ys = zip(*[data.train_batch(b, g)[:2] for b in (0, 1)])
    loss = real_compute_loss("independent_ce", ref(torch.cat(xs)), torch.cat(ys)).loss
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.01 * p.grad
    for (k, a), b in zip(tree.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_bagging_weights_each_member_by_its_bootstrap_counts():
    cfg = tiny(data={"bagging": True, "train_limit": 1000}, model={"members": 3})
    data = prepare_data(cfg, torch.device("cpu"))
    w = data.weights
    assert w.shape == (3, 1000) and w.sum(dim=1).tolist() == [1000.0] * 3
    unique = (w > 0).float().mean(dim=1)
    assert ((unique > 0.58) & (unique < 0.68)).all()  # 1 - 1/e = 63.2%
    assert not torch.equal(w[0], w[1])
    assert torch.equal(w, prepare_data(cfg, torch.device("cpu")).weights)


def test_identical_members_from_a_trained_run(tmp_path):
    fit(tiny(train={"eval_every": 0, "checkpoint_every": 0}), tmp_path / "src", progress=False)
    cfg = tiny(
        model={"members": 3, "split": None},
        train={"init_from": str(tmp_path / "src"), "init_from_member": 1, "iterations": 1},
    )
    data = prepare_data(cfg, torch.device("cpu"))
    tree = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
    restore_module._initial_weights(tree, cfg)
    x = next(data.eval_batches("test", 4))[0]
    out = tree(x)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_label_split_specialists_only_see_their_labels():
    cfg = tiny(data={"label_split": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]})
    data = prepare_data(cfg, torch.device("cpu"))
    y = data.train_y
    assert torch.equal(data.weights[0] > 0, y < 5) and torch.equal(data.weights[1] > 0, y >= 5)
    with pytest.raises(ConfigError, match=r"data.label_split\[1\]: got label 12"):
        prepare_data(tiny(data={"label_split": [[0], [12]]}), torch.device("cpu"))


def test_flush_denormal_holds_for_the_run_only():
    from mheads.train.device import flush_denormal as _flush_denormal

    tiny_value = torch.tensor([1e-310], dtype=torch.float64)  # a float64 denormal
    with _flush_denormal(True):
        assert (tiny_value * 1.0).item() == 0.0
    assert (tiny_value * 1.0).item() > 0.0
    with _flush_denormal(False):
        assert (tiny_value * 1.0).item() > 0.0


@pytest.mark.parametrize("eval_every,expected", [(2, 2), (3, 2), (0, 1)])
def test_the_final_evaluation_reuses_the_last_one(tmp_path, monkeypatch, eval_every, expected):
    """4 iterations: evaluations at 2 and 4 (eval_every 2), at 3 and 4 (3: the last iteration always
    evaluates), none during training (0). The final metrics are the evaluation at iteration 4, never a second
    pass."""
    calls = []
    real = points.evaluate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in (points, finish_module):  # evaluation points, and the final one where it is not reused
        assert module.evaluate is real
        monkeypatch.setattr(module, "evaluate", counting)
    m = fit(tiny(train={"eval_every": eval_every}), tmp_path / "run", progress=False)
    assert len(calls) == expected
    if eval_every:
        last = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])
        assert last["step"] == 4 and last["ensemble_mean_acc"] == m["ensemble_mean_acc"]


def test_a_config_built_in_python_is_validated():
    from mheads.config import Config, LossConfig, ModelConfig

    with pytest.raises(ConfigError, match=r"loss.k: got 5; expected an integer in 1..2 \(model.members\)"):
        Config(model=ModelConfig(members=2), loss=LossConfig(name="mcl", k=5))
    cfg = tiny()
    cfg.loss.name = "mlc"  # edited after construction: fit checks again before anything is written
    with pytest.raises(ConfigError, match="loss.name: got 'mlc' \\(did you mean 'mcl'\\?\\)"):
        fit(cfg, "/nonexistent/never-created")


def test_config_loss_names_are_the_loss_registry():
    """Adding a loss is one entry in mheads.ensemble.losses.LOSSES: configs accept exactly its names."""
    from mheads.config import LossConfig
    from mheads.ensemble.losses import LOSSES

    for name, spec in LOSSES.items():
        LossConfig(name=name, k=1 if spec.single_winner else 2).validate(members=4)
        if spec.assigns:
            with pytest.raises(ConfigError, match="loss.k"):
                LossConfig(name=name, k=5).validate(members=4)
    with pytest.raises(ConfigError, match="expected one of " + ", ".join(LOSSES)):
        LossConfig(name="nope").validate(members=4)


def test_members_start_from_a_weights_file_with_init_pretrained(tmp_path):
    fit(tiny(model={"members": 1, "split": None}), tmp_path / "donor", progress=False)
    donor = tmp_path / "donor" / "members" / "member_0.safetensors"
    cfg = tiny(
        model={"members": 2, "split": None, "init": "pretrained", "reinit": ["ip2"], "weights": str(donor)},
        train={"iterations": 1, "eval_every": 0, "checkpoint_every": 0},
    )
    tree = build_tree(cfg, 10, 1, 28)
    want = load_file(str(donor))
    for m in range(2):
        got = tree.member(m).state_dict()
        assert torch.equal(got["conv2.weight"], want["conv2.weight"])
        assert not torch.equal(got["ip2.weight"], want["ip2.weight"])  # redrawn per member from its seed
    assert not torch.equal(
        tree.member(0).state_dict()["ip2.weight"], tree.member(1).state_dict()["ip2.weight"]
    )
    with pytest.raises(ConfigError, match="model.weights: .*nowhere.safetensors: no such file"):
        build_tree(tiny(model={"weights": str(tmp_path / "nowhere.safetensors")}), 10, 1, 28)
    bad = tiny(model={"name": "nin_cifar", "weights": str(donor)})
    with pytest.raises(ConfigError, match="model.weights: .* does not fit model.name"):
        build_tree(bad, 10, 1, 32)


def test_independent_members_step_one_by_one_with_the_joint_paths_exact_result(tmp_path, monkeypatch):
    """Independent cross-entropy on independent members: fit runs each member's forward and backward in turn
    (one member's activations alive at a time), ending bit-identical to one joint backward."""
    calls = []
    real = step_module.member_by_member

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    over = dict(
        model={"members": 3, "split": None, "init": "same"},
        data={"train_limit": 256, "test_limit": 100, "bagging": True, "crop_padding": 2, "flip": True},
        train={"accumulate": 2},
        loss={"label_smoothing": 0.1},
        optim={"schedule": "plateau", "window": 2, "milestones": [3]},
    )
    monkeypatch.setattr(step_module, "member_by_member", spy)
    a = fit(tiny(**over), tmp_path / "a", progress=False)
    assert len(calls) == 4 * 2  # every batch of every update
    monkeypatch.setattr(step_module, "members_separable", lambda *args: False)  # the joint path
    b = fit(tiny(**over), tmp_path / "b", progress=False)
    assert len(calls) == 8
    wa, wb = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert {k: a[k] for k in ("nll", "ensemble_mean_acc", "member_acc")} == {
        k: b[k] for k in ("nll", "ensemble_mean_acc", "member_acc")
    }


def test_a_skipped_last_iteration_still_checkpoints_the_iteration_it_reached(tmp_path, monkeypatch):
    from mheads.runs.checkpoint import load_checkpoint

    calls = []

    def nan_at_the_end(name, logits, targets, **kw):
        calls.append(1)
        return real_compute_loss(name, logits * (float("nan") if len(calls) == 4 else 1.0), targets, **kw)

    monkeypatch.setattr(step_module, "compute_loss", nan_at_the_end)
    fit(tiny(train={"nan_policy": "skip", "checkpoint_every": 0}), tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run")
    assert ck.step == ck.state["step"] == 4  # a resume starts after the skipped iteration, as the run did
