"""Token-dict (Hugging Face-style) runs on the command line: an .npz file whose data.inputs is a list of
arrays (input_ids, attention_mask) trains a user's model that takes a dict (`mheads train`), and `mheads eval`
(its own data or --data FILE.npz) and `mheads predict FILE.npz` (no targets needed) reopen it on the model
named with --model; a run trained from Python on dict Datasets reads the arrays its recorded input names."""

import json
import shutil

import numpy as np
import pytest
import torch

import mheads
from mheads.cli.commands import main

MODELS = """
from torch import nn


class Text(nn.Module):  # embedding, mean over the unmasked positions, linear: a dict of token ids in
    def __init__(self, num_classes):
        super().__init__()
        self.emb, self.head = nn.Embedding(30, 8), nn.Linear(8, num_classes)

    def forward(self, batch):
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((self.emb(batch["input_ids"]) * mask).sum(1) / mask.sum(1).clamp(min=1))


def text_net(num_classes=2, **_):
    return Text(num_classes)
"""
NAMES = ["input_ids", "attention_mask"]


@pytest.fixture
def tokens(tmp_path, monkeypatch):
    (tmp_path / "textmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, size=(24, 6))  # int64 (N, T)
    mask = np.ones((24, 6), dtype=np.int64)
    mask[::3, 4:] = 0
    np.savez(tmp_path / "d.npz", input_ids=ids, attention_mask=mask, y=(ids[:, 0] > 15).astype(np.int64))
    np.savez(tmp_path / "p.npz", input_ids=ids[:3], attention_mask=mask[:3])  # to predict: no targets
    return tmp_path, {"input_ids": torch.as_tensor(ids[:3]), "attention_mask": torch.as_tensor(mask[:3])}


def _cli(capsys, *args) -> list[str]:
    capsys.readouterr()
    assert main([*args, "--model", "textmodels:text_net"]) == 0
    return capsys.readouterr().out.splitlines()


def test_an_npz_of_token_ids_trains_evaluates_and_predicts(tokens, capsys):
    tmp_path, batch = tokens
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: 'textmodels:text_net', members: 2}\n"
        f"data: {{source: '{tmp_path / 'd.npz'}', test_fraction: 0.25,\n"
        "  inputs: [input_ids, attention_mask]}\n"
        "train: {iterations: 2, batch_size: 8, eval_every: 2}\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    meta = json.loads((run / "run.json").read_text())["meta"]
    assert meta["input"] == {"dict": {k: {"shape": [6], "dtype": "int64"} for k in NAMES}}
    trained = json.loads((run / "metrics.json").read_text())
    own = json.loads(_cli(capsys, "eval", "--run", str(run))[-1])
    assert own["num_examples"] == 6 and own["ensemble_mean_acc"] == trained["ensemble_mean_acc"]
    shutil.copy(tmp_path / "d.npz", tmp_path / "other.npz")
    other = json.loads(_cli(capsys, "eval", "--run", str(run), "--data", str(tmp_path / "other.npz"))[-1])
    assert other["nll"] == own["nll"]  # the same seeded test split of the same arrays
    out = _cli(capsys, "predict", "--run", str(run), str(tmp_path / "p.npz"), "--format", "json")
    records = json.loads("\n".join(out))
    assert [r["path"] for r in records] == [f"{tmp_path / 'p.npz'}:{i}" for i in range(3)]
    direct = mheads.predict(run, batch, model="textmodels:text_net")  # the dict given from Python
    assert [r["top"] for r in records] == [r["top"] for r in direct] and len(records[0]["members"]) == 2


def test_a_python_run_on_dict_datasets_reads_its_recorded_arrays(tokens, capsys):
    tmp_path, batch = tokens
    from textmodels import text_net

    arrays = np.load(tmp_path / "d.npz")
    items = [({k: torch.as_tensor(arrays[k][i]) for k in NAMES}, int(arrays["y"][i])) for i in range(24)]
    settings = {"model.members": 2, "train.iterations": 2, "train.batch_size": 8, "train.eval_every": 2}
    result = mheads.fit(text_net, items, out=tmp_path / "pyrun", task="classification", settings=settings)
    run = str(tmp_path / "pyrun")
    found = json.loads(
        _cli(capsys, "eval", "--run", run, "--data", str(tmp_path / "d.npz"), "--no-figures")[-1]
    )
    assert found["ensemble_mean_acc"] == pytest.approx(result.metrics["ensemble_mean_acc"])  # both: all 24
    out = _cli(capsys, "predict", "--run", run, str(tmp_path / "p.npz"), "--format", "json")
    assert [r["top"] for r in json.loads("\n".join(out))] == [r["top"] for r in mheads.predict(result, batch)]
    np.savez(tmp_path / "ids.npz", input_ids=arrays["input_ids"][:2])
    capsys.readouterr()
    assert main(["predict", "--run", run, str(tmp_path / "ids.npz"), "--model", "textmodels:text_net"]) != 0
    assert "ids.npz: no array 'attention_mask'; expected one of the file's arrays: 'input_ids'" in (
        capsys.readouterr().err
    )


BERT = """
import transformers
from torch import nn


class Bert(nn.Module):  # a Hugging Face classifier called with the batch's entries as keyword arguments
    def __init__(self, num_classes):
        super().__init__()
        config = transformers.BertConfig(
            vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            num_labels=num_classes,
        )
        self.model = transformers.BertForSequenceClassification(config)

    def forward(self, batch):
        return self.model(**batch)


def bert_net(num_classes=2, **_):
    return Bert(num_classes)
"""


def test_a_tiny_transformers_bert_trains_from_the_command_line(tokens, capsys):
    pytest.importorskip("transformers", reason="transformers (in the dev extra) builds the tiny BERT")
    tmp_path, batch = tokens
    (tmp_path / "bertmodels.py").write_text(BERT)
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: 'bertmodels:bert_net', members: 2, output: logits}\nloss: {name: mcl}\n"
        f"data: {{source: '{tmp_path / 'd.npz'}', inputs: [input_ids, attention_mask]}}\n"
        "train: {iterations: 2, batch_size: 8, eval_every: 2}\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--model", "bertmodels:bert_net"]) == 0
    found = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert found["num_examples"] == 24 and found["nll"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["nll"]
    )
    args = ["predict", "--run", str(run), str(tmp_path / "p.npz"), "--format", "json"]
    assert main([*args, "--model", "bertmodels:bert_net"]) == 0
    records = json.loads(capsys.readouterr().out)
    direct = mheads.predict(run, batch, model="bertmodels:bert_net")
    assert len(records) == 3 and [r["top"] for r in records] == [r["top"] for r in direct]
