"""Training with the modern winner-takes-all family (rwta, amcl, mcl_scored): the temperature each step
hands to the loss, the scoring heads through fit / checkpoints / resume / re-evaluation, and the collapse
diagnostic (win_fraction in eval.jsonl), exact across resume."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import mheads.train.step as step_module
from mheads.config import Config, ConfigError, LossConfig, ModelConfig, config_from_dict
from mheads.data.resident import prepare_data
from mheads.ensemble.losses import annealed_temperature
from mheads.ensemble.losses import compute_loss as real_compute_loss
from mheads.infer.evaluate import evaluate_run
from mheads.runs.checkpoint import load_checkpoint
from mheads.train.build import build_tree, tree_from_meta, warm_start
from mheads.train.comm import LocalComm
from mheads.train.loop import RunState, fit
from mheads.train.numerics import member_param_map
from mheads.train.step import train_step
from mheads.tree.treenet import TreeNet


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
            "device": "cpu",
        },
    }
    for section, values in over.items():
        base.setdefault(section, {}).update(values)
    return config_from_dict(base)


SCORED = {"model": {"scoring_heads": True}, "loss": {"name": "mcl_scored", "score_weight": 0.5}}


def _evals(run) -> list[dict]:
    return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]


def _step_setup(cfg):
    data = prepare_data(cfg, torch.device("cpu"))
    tree = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
    params = list(tree.parameters())
    return data, tree, params, torch.optim.SGD(params, lr=0.01, momentum=0.9)


# ---------------------------------------------------------------- one step


@pytest.mark.parametrize("name", ["mcl", "mcl_ce", "cmcl", "rwta", "amcl", "mcl_scored"])
def test_train_step_counts_each_members_wins(name):
    over = {"model": {"scoring_heads": True}} if name == "mcl_scored" else {}
    cfg = tiny(loss={"name": name}, train={"accumulate": 2}, **over)
    data, tree, params, opt = _step_setup(cfg)
    loss, per_member, wins = train_step(tree, opt, data, cfg, 0, LocalComm(), params, member_param_map(tree))
    assert wins.dtype == torch.int64 and wins.shape == (2,)
    assert int(wins.sum()) == 2 * 16  # k = 1: every example of both accumulated batches is won once


def test_train_step_counts_nothing_for_losses_that_do_not_assign():
    cfg = tiny(loss={"name": "prob_averaged_ce"})
    data, tree, params, opt = _step_setup(cfg)
    assert train_step(tree, opt, data, cfg, 0, LocalComm(), params, member_param_map(tree))[2] is None


def test_amcl_gets_the_temperature_of_each_iteration(monkeypatch):
    cfg = tiny(loss={"name": "amcl", "temperature": 2.0, "anneal_iterations": 3})
    data, tree, params, opt = _step_setup(cfg)
    seen = []

    def spy(name, logits, targets, **kw):
        seen.append((name, kw["temperature"]))
        return real_compute_loss(name, logits, targets, **kw)

    monkeypatch.setattr(step_module, "compute_loss", spy)
    for it in range(5):
        train_step(tree, opt, data, cfg, it, LocalComm(), params, member_param_map(tree))
    assert seen == [("amcl", annealed_temperature(2.0, 3, it)) for it in range(5)]
    assert [t for _, t in seen][3:] == [0.0, 0.0] and seen[0][1] == 2.0


def test_mcl_scored_trains_the_scoring_heads():
    cfg = tiny(**SCORED)
    data, tree, params, opt = _step_setup(cfg)
    before = {k: v.clone() for k, v in tree.scoring.state_dict().items()}
    train_step(tree, opt, data, cfg, 0, LocalComm(), params, member_param_map(tree))
    after = tree.scoring.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


# ---------------------------------------------------------------- configs


def test_configs_take_the_new_fields_and_refuse_bad_values():
    cfg = tiny(loss={"name": "rwta", "epsilon": 0.2})
    assert cfg.loss.epsilon == 0.2 and cfg.model.scoring_heads is False
    assert "scoring_heads: false" in cfg.to_yaml() and "anneal_iterations: 1000" in cfg.to_yaml()
    bad = [  # (overrides, message)
        (
            {"loss": {"name": "rwta", "epsilon": 1.0}},
            r"loss.epsilon: got 1.0; expected a number >= 0.0 and < 1.0",
        ),
        ({"loss": {"name": "amcl", "temperature": 0.0}}, r"loss.temperature: got 0.0; expected a number > 0"),
        ({"loss": {"name": "amcl", "anneal_iterations": -1}}, r"loss.anneal_iterations: got -1"),
        ({"loss": {"name": "amcl", "k": 2}}, r"loss.k: got 2; expected 1 with loss.name amcl"),
        ({"loss": {"name": "mcl_scored", "score_weight": -1.0}}, r"loss.score_weight: got -1.0"),
        ({"model": {"scoring_heads": "yes"}}, r"model.scoring_heads: got 'yes'; expected true or false"),
    ]
    for over, match in bad:
        with pytest.raises(ConfigError, match=match):
            tiny(**over)


def test_mcl_scored_needs_scoring_heads():
    with pytest.raises(
        ConfigError,
        match=r"model.scoring_heads: got False; expected true with loss.name "
        r"mcl_scored",
    ):
        LossConfig(name="mcl_scored").validate(2, model=ModelConfig(members=2))
    LossConfig(name="mcl_scored").validate(2, model=ModelConfig(members=2, scoring_heads=True))
    with pytest.raises(ConfigError, match="model.scoring_heads: got False; expected true"):  # at config load
        Config(model=ModelConfig(members=2, split="conv1"), loss=LossConfig(name="mcl_scored"))


def test_scoring_heads_are_refused_where_no_model_builds_them(tmp_path, monkeypatch):
    # A distributed run places only the trunk and the branches.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="model.scoring_heads: got True; expected false in a distributed"):
        build_tree(tiny(**SCORED), 10, 1, 28)
    monkeypatch.delenv("WORLD_SIZE")
    # A model handed to fit without heads.
    cfg = tiny(**SCORED)
    plain = TreeNet(lambda: build_tree(tiny(), 10, 1, 28).member(0), 2, None)
    with pytest.raises(
        ConfigError,
        match="model.scoring_heads: got True; expected false for this model: the "
        "TreeNet being trained has no scoring heads",
    ):
        fit(cfg, tmp_path / "run", progress=False, model=plain)


def test_a_module_given_to_mheads_fit_gets_the_scoring_heads_it_asks_for(tmp_path):
    # mheads.fit builds the TreeNet from a module or factory, so model.scoring_heads builds them (was refused)
    import mheads
    from mheads.data.pairs import TensorPairs

    x = torch.randn(64, 3)
    net = lambda: torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))  # noqa: E731
    settings = {
        "model.scoring_heads": True,
        "model.split": "0",
        "loss.name": "mcl_scored",
        "train.iterations": 4,
        "train.batch_size": 8,
        "train.eval_every": 2,
    }
    task = mheads.tasks.multi_hypothesis(2)
    result = mheads.fit(net, TensorPairs(x, x[:, :2]), out=tmp_path / "run", task=task, settings=settings)
    assert result.tree.scoring is not None
    reopened = mheads.load_run(tmp_path / "run", model=net)
    assert reopened.scoring is not None and torch.equal(reopened(x[:4]), result.tree(x[:4]))


# ---------------------------------------------------------------- runs


def test_mcl_scored_trains_checkpoints_resumes_and_reevaluates(tmp_path):
    cfg = tiny(train={"iterations": 6, "eval_every": 3, "checkpoint_every": 2}, **SCORED)
    full = fit(cfg, tmp_path / "full", progress=False)
    for key in ("scored_acc", "score_weighted_acc"):
        assert 0.0 <= full[key] <= 1.0
    weights = load_file(str(tmp_path / "full/model.safetensors"))
    assert {"scoring.heads.0.weight", "scoring.heads.1.bias"} <= set(weights)
    assert weights["scoring.heads.0.weight"].abs().sum() > 0  # trained away from their zero start
    info = json.loads((tmp_path / "full/run.json").read_text())
    assert info["meta"]["scoring_heads"] is True

    # Crash after the step-4 checkpoint (between evaluations: it carries win counts), then resume.
    fit(cfg, tmp_path / "part", progress=False)
    shutil.rmtree(tmp_path / "part/checkpoints/step-00000006")
    (tmp_path / "part/model.safetensors").unlink()
    state = load_checkpoint(tmp_path / "part/checkpoints/step-00000004").state
    assert sum(state["wins"]) == 16  # iteration 4 (one batch of 16) since the evaluation at 3
    resumed = fit(cfg, tmp_path / "part", resume=True, progress=False)
    again = load_file(str(tmp_path / "part/model.safetensors"))
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert _evals(tmp_path / "part") == _evals(tmp_path / "full")
    assert resumed["scored_acc"] == full["scored_acc"]

    # `mheads eval`: the scoring heads are rebuilt from the run's meta and give the same metrics.
    metrics = evaluate_run(tmp_path / "full")
    assert metrics["scored_acc"] == full["scored_acc"]
    assert metrics["score_weighted_acc"] == full["score_weighted_acc"]
    tree = tree_from_meta(info["meta"])
    assert tree.scoring is not None


def test_win_fraction_is_logged_and_exact_across_resume(tmp_path):
    cfg = tiny(
        loss={"name": "rwta", "epsilon": 0.1},
        train={"iterations": 8, "eval_every": 4, "checkpoint_every": 2, "batch_size": 8},
    )
    fit(cfg, tmp_path / "full", progress=False)
    records = _evals(tmp_path / "full")
    for rec in records:
        assert len(rec["win_fraction"]) == 2 and sum(rec["win_fraction"]) == pytest.approx(1.0, abs=1e-12)
        assert all(f * 32 == int(f * 32) for f in rec["win_fraction"])  # counts over 4 x 8 examples
    fit(cfg, tmp_path / "part", progress=False)
    shutil.rmtree(tmp_path / "part/checkpoints/step-00000008")
    shutil.rmtree(tmp_path / "part/checkpoints/step-00000006")
    (tmp_path / "part/model.safetensors").unlink()
    assert load_checkpoint(tmp_path / "part/checkpoints/step-00000004").state["wins"] is None  # just reset
    fit(cfg, tmp_path / "part", resume=True, progress=False)
    assert _evals(tmp_path / "part") == records


def test_losses_without_an_assignment_log_no_win_fraction(tmp_path):
    fit(tiny(train={"iterations": 2}), tmp_path / "run", progress=False)
    assert all("win_fraction" not in rec for rec in _evals(tmp_path / "run"))


def test_run_state_from_an_older_checkpoint_has_no_win_counts():
    old = {"step": 4, "skipped": 0, "skipped_total": 0, "run_loss": 1.5, "run_n": 2}
    assert RunState.from_checkpoint(old).wins is None
    state = RunState(wins=torch.tensor([3, 5]))
    assert state.win_fraction() == {"win_fraction": [0.375, 0.625]}
    assert RunState.from_checkpoint({**old, "wins": [3, 5]}).wins.tolist() == [3, 5]


def test_warm_start_between_trees_with_and_without_heads():
    scored = build_tree(tiny(**SCORED), 10, 1, 28)
    with torch.no_grad():
        scored.scoring.heads[0].bias.fill_(1.0)
    plain = build_tree(tiny(train={"seed": 3}), 10, 1, 28)
    warm_start(plain, scored, None)
    assert all(torch.equal(v, scored.state_dict()[k]) for k, v in plain.state_dict().items())
    fresh = build_tree(tiny(train={"seed": 3}, **SCORED), 10, 1, 28)
    warm_start(fresh, plain, None)
    assert fresh.scoring.heads[0].bias.item() == 0.0
    assert torch.equal(fresh.root.layers[0].weight, scored.root.layers[0].weight)
