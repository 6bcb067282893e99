"""`model.head: task` on the command line: a base named by import path (`model.name: package.module:function`,
the user's own config) gets the task's head per member, as `mheads.fit(factory, head="task")` gives it, from a
CSV table or an .npz of token dicts, `model.split: output` included; `mheads eval` / `predict` (--model) and
`--resume` rebuild it from run.json's data on the model named again. A registered model is still refused."""

import csv
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mheads
from mheads.cli.commands import main

MODELS = """
from torch import nn


class Features(nn.Module):  # a feature extractor, no head of its own: (B, C) in, (B, 6) out
    def __init__(self, in_channels):
        super().__init__()
        self.stem, self.block = nn.Linear(in_channels, 6), nn.Linear(6, 6)

    def forward(self, x):
        h = self.stem(x).relu()
        return h + self.block(h)


def features(in_channels=3):  # takes no num_classes: the head gives the task's width
    return Features(in_channels)


class Text(nn.Module):  # a token-dict encoder returning a dict of states, as Hugging Face models do
    def __init__(self):
        super().__init__()
        self.emb, self.mix = nn.Embedding(30, 8), nn.Linear(8, 8)

    def forward(self, batch):
        h = self.mix(self.emb(batch["input_ids"])).relu()
        return {"last_hidden_state": h * batch["attention_mask"].unsqueeze(-1)}  # (B, T, 8)


def text():
    return Text()
"""
TRAIN = "train: {iterations: 2, batch_size: 8, eval_every: 2, checkpoint_every: 2, seed: 3}\n"


@pytest.fixture(autouse=True)
def models(tmp_path, monkeypatch):
    (tmp_path / "headmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _out(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


@pytest.fixture
def table(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 3))
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "y"])
        w.writerows([*row, row.sum()] for row in x)
    return path, torch.as_tensor(x[:3], dtype=torch.float32)


def test_an_import_path_base_under_a_task_head_trains_evaluates_and_predicts_a_table(tmp_path, table, capsys):
    source, x = table
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: 'headmodels:features', members: 2, head: task, split: stem}\n"
        "task: {name: regression}\nloss: {name: mcl}\n"
        f"data: {{source: '{source}', test_fraction: 0.25, features: [a, b, c], targets: y}}\n{TRAIN}"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    meta = json.loads((run / "run.json").read_text())["meta"]
    assert meta["architecture"] == "headmodels:features" and meta["split"] == "stem"
    assert meta["head"] == {"features": 6, "layer": "linear", "pool": "none"}
    from headmodels import features

    settings = {"model.split": "stem", "loss.name": "mcl", "data.features": ["a", "b", "c"]}
    settings |= {"data.targets": "y", "data.test_fraction": 0.25, "train.seed": 3, "train.batch_size": 8}
    settings |= {"train.iterations": 2, "train.eval_every": 2, "train.checkpoint_every": 2}
    settings |= {"model.members": 2}
    fitted = mheads.fit(
        functools.partial(features, in_channels=3),
        str(source),
        out=tmp_path / "py",
        task="regression",
        head="task",
        settings=settings,
        progress=False,
    )
    assert _equal(_weights(run), _weights(fitted.run))  # the CLI builds and trains what fit does
    found = json.loads(
        _out(
            capsys, "eval", "--run", str(run), "--model", "headmodels:features", "--no-figures"
        ).splitlines()[-1]
    )
    assert found["rmse"] == json.loads((run / "metrics.json").read_text())["rmse"]
    np.savetxt(tmp_path / "p.csv", x.numpy(), delimiter=",", header="a,b,c", comments="")
    args = ["predict", "--run", str(run), str(tmp_path / "p.csv"), "--format", "json"]
    records = json.loads(_out(capsys, *args, "--model", "headmodels:features"))
    with torch.no_grad():
        expected = fitted.tree(x).mean(0)[:, 0]  # point regression: the members' mean
    assert [r["prediction"][0] for r in records] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.fixture
def tokens(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, size=(24, 6))
    mask = np.ones((24, 6), dtype=np.int64)
    mask[::3, 4:] = 0
    np.savez(tmp_path / "d.npz", input_ids=ids, attention_mask=mask, y=(ids[:, 0] > 15).astype(np.int64))
    np.savez(tmp_path / "p.npz", input_ids=ids[:3], attention_mask=mask[:3])
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: 'headmodels:text', members: 3, head: task, split: output, output: last_hidden_state,\n"
        "  pool: first}\nloss: {name: mcl}\n"
        f"data: {{source: '{tmp_path / 'd.npz'}', inputs: [input_ids, attention_mask]}}\n{TRAIN}"
    )
    return config, {"input_ids": torch.as_tensor(ids[:3]), "attention_mask": torch.as_tensor(mask[:3])}


def test_a_shared_trunk_on_token_dicts_trains_resumes_exactly_and_reopens(tmp_path, tokens, capsys):
    config, batch = tokens
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "--config", str(config), "--out", str(full), "--set", "train.iterations=4"]) == 0
    assert main(["train", "--config", str(config), "--out", str(part)]) == 0
    assert (
        main(["train", "--resume", str(part), "--model", "headmodels:text", "--set", "train.iterations=4"])
        == 0
    )
    assert _equal(_weights(full), _weights(part))  # resumed from step 2 = the run never stopped
    meta = json.loads((part / "run.json").read_text())["meta"]
    assert meta["split"] == "output"
    assert meta["head"] == {"features": 8, "layer": "linear", "pool": "first", "whole_base": True}
    tree = mheads.load_run(part, model="headmodels:text")
    assert tree.param_counts()["shared"] == 30 * 8 + 8 * 8 + 8  # one trunk, three heads
    found = json.loads(
        _out(capsys, "eval", "--run", str(part), "--model", "headmodels:text", "--no-figures").splitlines()[
            -1
        ]
    )
    assert found["nll"] == pytest.approx(json.loads((part / "metrics.json").read_text())["nll"])
    args = ["predict", "--run", str(part), str(tmp_path / "p.npz"), "--format", "json"]
    records = json.loads(_out(capsys, *args, "--model", "headmodels:text"))
    assert [r["top"] for r in records] == [
        r["top"] for r in mheads.predict(part, batch, model="headmodels:text")
    ]
    with torch.no_grad():
        top = tree(batch).softmax(-1).mean(0).argmax(-1)  # the members' mean probabilities
    assert [int(r["top"][0]["class"]) for r in records] == top.tolist() and len(records[0]["members"]) == 3


def test_a_registered_model_under_a_task_head_is_refused_in_one_line(tmp_path, table, capsys):
    source, _ = table
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: cifar10_quick, head: task}\ntask: {name: regression}\n"
        f"data: {{source: '{source}', features: [a, b, c], targets: y}}\n{TRAIN}"
    )
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "mheads: error: model.head: got 'task' with model.name 'cifar10_quick', a registered model"
    )
    assert "import path 'package.module:function'" in err


def test_the_docs_yaml_example_trains_as_written(tmp_path, monkeypatch):
    """docs/tasks.md's command-line example (the docs test only parses YAML), on a tiny tokens.npz and a
    mymodule.encoder of this file's Text; --set shortens it to 2 iterations."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    block = page.split("### A task head on the command line", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    (tmp_path / "mymodule.py").write_text(MODELS + "\nencoder = text\n")
    ids = np.random.default_rng(1).integers(1, 30, size=(16, 5))
    np.savez(tmp_path / "tokens.npz", input_ids=ids, attention_mask=np.ones_like(ids), label=ids[:, 0] % 2)
    (tmp_path / "my.yaml").write_text(block)
    monkeypatch.chdir(tmp_path)
    args = ["train", "--config", "my.yaml", "--out", "runs/text", "--set", "train.iterations=2"]
    assert main([*args, "--set", "train.batch_size=8", "--set", "train.eval_every=2"]) == 0
    meta = json.loads((tmp_path / "runs/text/run.json").read_text())["meta"]
    assert meta["split"] == "output" and meta["members"] == 3 and meta["head"]["pool"] == "first"
