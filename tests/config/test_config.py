import pytest

from mheads.config import ConfigError, apply_overrides, config_from_dict, load_config


def test_defaults_are_the_cifar10_quick_recipe():
    c = load_config(None)
    assert (c.model.name, c.model.members, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (
        "cifar10_quick",
        4,
        0.001,
        0.9,
        0.004,
    )
    assert (c.train.iterations, c.optim.milestones) == (5000, [4000])


def test_yaml_round_trip(tmp_path):
    c = load_config(None, ["model.split=[[conv1, 2], [conv2, 2]]", "loss.name=mcl", "loss.k=2"])
    p = tmp_path / "c.yaml"
    p.write_text(c.to_yaml())
    again = load_config(p)
    assert again == c and again.model.split == [("conv1", 2), ("conv2", 2)]


@pytest.mark.parametrize(
    "override,match",
    [
        ("optim.lr=0", r"optim.lr: got 0; expected a number > 0"),
        ("optim.lr=-0.1", r"optim.lr: got -0.1"),
        ("train.batch_size=0", r"train.batch_size: got 0; expected an integer >= 1"),
        ("model.members=0", r"model.members: got 0"),
        ("train.iterations=0", r"train.iterations: got 0"),
        ("loss.k=9", r"loss.k: got 9; expected an integer in 1..4"),
        (
            "optim.schedule=cosin",
            r"optim.schedule: got 'cosin' \(did you mean 'cosine'\?\).*every, cosine, plat",
        ),
        ("model.name=resnet", r"model.name: got 'resnet'.*cifar10_quick"),
        ("optim.lrate=1", r"optim.lrate: unknown key; did you mean 'lr'\?"),
        ("trian.seed=1", r"trian: unknown key; did you mean 'train'\?"),
        ("train.keep_checkpoints=1", r"train.keep_checkpoints: got 1; expected an integer >= 2"),
        ("train.keep_steps=[100, 0]", r"train.keep_steps\[1\]: got 0; expected an integer >= 1"),
        ("train.keep_steps=100", r"train.keep_steps: got 100; expected a list of iterations"),
        ("optim.milestones=[4000, x]", r"optim.milestones\[1\]: got 'x'; expected an integer >= 1"),
        ("model.head=both", r"model.head: got 'both'; expected one of none, task"),
        ("model.pool=mean", r"model.pool: got 'mean'; expected none unless model.head is task"),
        ("model.head_in=8", r"model.head_in: got 8; expected null unless model.head is task"),
    ],
)
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


def test_configs_are_read_only_from_small_regular_files(tmp_path):
    import os
    import threading

    from mheads.config import read_yaml
    from mheads.config.loading import MAX_CONFIG_BYTES

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    done = []
    reader = threading.Thread(target=lambda: done.append(pytest.raises(ConfigError, read_yaml, fifo)))
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive() and "not a regular file" in str(done[0].value)  # refused, not a hang
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        read_yaml("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="a config file is at most 1,048,576"):
        read_yaml(big)


def test_duplicate_keys_and_alias_bombs_are_refused(tmp_path):
    from mheads.config import read_yaml

    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  iterations: 10\n  batch_size: 4\n  iterations: 20\n")
    with pytest.raises(
        ConfigError, match=r"dup.yaml: duplicate key 'iterations' at line 4 \(first at line 2\)"
    ):
        read_yaml(dup)
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 7):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nname: *a6\n")  # about 600 bytes standing for 9**7 = 4.8 M values
    with pytest.raises(
        ConfigError,
        match=r"bomb.yaml: the document expands to [\d,]+ values through YAML "
        r"aliases",
    ):
        read_yaml(bomb)
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {lr: 0.1}\noptim: *b\n")  # ordinary anchors still work
    assert read_yaml(ok)["optim"] == {"lr": 0.1}
