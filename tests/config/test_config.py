import pytest

from mheads.config import ConfigError, apply_overrides, config_from_dict, load_config


def test_defaults_are_the_cifar10_quick_recipe():
    c = load_config(None)
    assert (c.model.name, c.model.members, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (
        "cifar10_quick", 4, 0.001, 0.9, 0.004)
    assert (c.train.iterations, c.optim.milestones) == (5000, [4000])


def test_yaml_round_trip(tmp_path):
    c = load_config(None, ["model.split=[[conv1, 2], [conv2, 2]]", "loss.name=mcl", "loss.k=2"])
    p = tmp_path / "c.yaml"
    p.write_text(c.to_yaml())
    again = load_config(p)
    assert again == c and again.model.split == [("conv1", 2), ("conv2", 2)]


@pytest.mark.parametrize("override,match", [
    ("optim.lr=0", r"optim.lr: got 0; expected a number > 0"),
    ("optim.lr=-0.1", r"optim.lr: got -0.1"),
    ("train.batch_size=0", r"train.batch_size: got 0; expected an integer >= 1"),
    ("model.members=0", r"model.members: got 0"),
    ("train.iterations=0", r"train.iterations: got 0"),
    ("loss.k=9", r"loss.k: got 9; expected an integer in 1..4"),
    ("optim.schedule=cosin", r"optim.schedule: got 'cosin' \(did you mean 'cosine'\?\).*every, cosine, plat"),
    ("model.name=resnet", r"model.name: got 'resnet'.*cifar10_quick"),
    ("optim.lrate=1", r"optim.lrate: unknown key; did you mean 'lr'\?"),
    ("trian.seed=1", r"trian: unknown key; did you mean 'train'\?"),
    ("train.keep_checkpoints=1", r"train.keep_checkpoints: got 1; expected an integer >= 2"),
    ("train.keep_steps=[100, 0]", r"train.keep_steps\[1\]: got 0; expected an integer >= 1"),
    ("train.keep_steps=100", r"train.keep_steps: got 100; expected a list of iterations"),
    ("optim.milestones=[4000, x]", r"optim.milestones\[1\]: got 'x'; expected an integer >= 1"),
])
def test_bad_values_name_the_field(override, match):
    overrides = ["loss.name=mcl", override] if override.startswith("loss.k") else [override]
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_malformed_yaml_reports_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  name: cifar10_quick\n  members: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+, column \d+"):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bagging_with_averaged_loss_is_refused():
    with pytest.raises(ConfigError, match="data.bagging"):
        config_from_dict({"data": {"bagging": True}, "loss": {"name": "score_averaged_ce"}})


def test_override_syntax():
    assert apply_overrides({}, ["a.b=3", "c=[1, 2]"]) == {"a": {"b": 3}, "c": [1, 2]}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["novalue"])
