"""fit on any task (issue 32): a tabular regression Dataset (Gaussian heads), a sequence Dataset (multiple
hypotheses with scores in the outputs), non-square images (segmentation) and a dict-input dict-output model
(classification of token ids with an attention mask), plus a user's task. Each trains, resumes exactly (train
N, train N/2 then resume to N: weights torch.equal), bags, evaluates and predicts; tiny sizes."""

import json
import math
import statistics

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mheads
from mheads.config import ConfigError
from mheads.data.pairs import TensorPairs
from mheads.tasks import custom_task, multi_hypothesis, regression, segmentation

BASE = {
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "model.members": 3,
    "optim.lr": 0.01,
    "train.seed": 3,
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def table(n=40):
    x = torch.randn(n, 3, generator=gen())
    return TensorPairs(x, torch.stack([x.sum(1), x[:, 0] - x[:, 1]], 1))  # targets (N, 2)


def mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))  # a mean and a variance per dimension


def sequences(n=32):
    x = torch.randn(n, 2, 9, generator=gen(1))  # (C, T)
    return TensorPairs(x, x[:, 0, -1:] * 2.0)  # (N, 1)


class SeqNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3)
        self.fc = nn.Linear(4, 2)  # a hypothesis and a score logit

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(-1))


def masks(n=12):
    img = torch.randint(0, 256, (n, 1, 6, 10), generator=gen(2), dtype=torch.uint8)  # H != W
    return TensorPairs(img, (img[:, 0] > 127).long())


def segnet():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=24):
        self.ids = torch.randint(1, 20, (n, 7), generator=gen(3))
        self.mask = (torch.arange(7) < torch.randint(3, 8, (n, 1), generator=gen(4))).long()
        self.y = (self.ids[:, 0] > 10).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.y[i]


class HFNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, batch):
        m = batch["attention_mask"].unsqueeze(-1).float()
        h = (self.emb(batch["input_ids"]) * m).sum(1) / m.sum(1)
        return {"logits": self.head(h), "hidden": h}


CASES = {
    "regression": (mlp, table, regression(2, head="gaussian"), {"loss.name": "mcl", "data.bagging": True}),
    "sequence": (SeqNet, sequences, multi_hypothesis(1), {"loss.name": "mcl_scored", "data.bagging": True}),
    "segmentation": (segnet, masks, segmentation(2), {"loss.name": "mcl", "data.bagging": True}),
    "dict": (
        HFNet,
        Tokens,
        "classification",
        {"loss.name": "mcl", "model.output": "logits", "data.bagging": True},
    ),
}


def _fit(case, out, iterations, resume=False):
    model, data, task, extra = CASES[case]
    ds = data()
    return mheads.fit(
        model,
        ds,
        ds,
        out=out,
        task=task,
        resume=resume,
        progress=False,
        settings={**BASE, **extra, "train.iterations": iterations},
    )


@pytest.mark.parametrize("case", list(CASES))
def test_fit_trains_resumes_exactly_evaluates_and_predicts(tmp_path, case):
    full = _fit(case, tmp_path / "full", 4)
    _fit(case, tmp_path / "part", 2)
    _fit(case, tmp_path / "part", 4, resume=True)
    wa, wb = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("full", "part"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    metrics = json.loads((tmp_path / "full/metrics.json").read_text())
    steps = [json.loads(line)["step"] for line in (tmp_path / "full/eval.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    ds = CASES[case][1]()
    again = mheads.evaluate(full, ds)  # the FitResult: its tree in memory, the run's task from its config
    key = {
        "regression": "oracle_rmse",
        "sequence": "oracle_error",
        "segmentation": "oracle_mean_iou",
        "dict": "oracle_acc",
    }[case]
    assert again[key] == pytest.approx(metrics[key], rel=1e-6)
    first = ds[0][0]
    records = mheads.predict(
        full, first if not isinstance(first, dict) else {k: v.unsqueeze(0) for k, v in first.items()}
    )
    assert len(records) == 1 and len(records[0]["members"]) == 3
    oracle = [r["oracle"] for r in mheads.predict(full, ds)]  # (input, target) pairs: each names its winner
    per_example = statistics.mean(o["correct"] if case == "dict" else o["error"] for o in oracle)
    recomputed = {
        "regression": ("oracle_rmse", math.sqrt(per_example)),
        "sequence": ("oracle_error", per_example),
        "segmentation": ("oracle_pixel_acc", 1 - per_example),
        "dict": ("oracle_acc", per_example),
    }[case]
    assert recomputed[1] == pytest.approx(metrics[recomputed[0]], rel=1e-5)  # eval's oracle, row by row
    assert all(0 <= o["member"] < 3 for o in oracle if o["member"] is not None)


def test_predict_leaves_the_oracle_out_where_targets_do_not_fit_the_run(tmp_path, capsys):
    """A token classifier of classes 0..1 asked of labels 0..2 (the first 2 in the second batch), targets of
    another width for regression: every record is predicted without target and oracle (both were refused),
    and one UserWarning says why (nothing on stderr); fitting targets keep the oracle."""
    tokens = _fit("dict", tmp_path / "dict", 2)
    ds = Tokens(12)
    alone = mheads.predict(tokens, [ds[i][0] for i in range(12)], batch_size=8)
    wrong = [(ds[i][0], torch.tensor(2 if i == 9 else i % 2)) for i in range(12)]
    capsys.readouterr()
    with pytest.warns(UserWarning) as caught:
        assert mheads.predict(tokens, wrong, batch_size=8) == alone
    (line,) = [str(w.message) for w in caught]
    assert line.startswith("no oracle in the records: inputs[9]: target 2; the run's classes are 0..1")
    assert capsys.readouterr().err == ""
    assert all("oracle" in r for r in mheads.predict(tokens, ds, batch_size=8))
    gaussian = _fit("regression", tmp_path / "reg", 2)
    x = table(5).inputs
    with pytest.warns(UserWarning, match="^no oracle in the records: target"):
        records = mheads.predict(gaussian, TensorPairs(x, torch.zeros(5, 3)))
    assert records == mheads.predict(gaussian, x)


def test_regression_metrics_and_records_carry_the_task(tmp_path):
    r = _fit("regression", tmp_path / "r", 2)
    assert r.metrics["task"] == "regression"
    for key in ("rmse", "mae", "oracle_rmse", "mixture_nll", "aleatoric", "epistemic", "coverage"):
        assert key in r.metrics
    assert r.metrics["oracle_rmse"] <= max(r.metrics["member_rmse"])
    rec = mheads.predict(r, table()[0][0])[0]
    assert len(rec["prediction"]) == 2 and len(rec["members"][0]["variance"]) == 2
    total = torch.tensor(rec["aleatoric"]) + torch.tensor(rec["epistemic"])
    assert torch.allclose(torch.tensor(rec["std"]).square(), total, rtol=1e-4)
    meta = json.loads((tmp_path / "r/run.json").read_text())["meta"]
    assert meta["task"]["name"] == "regression" and meta["task"]["dim"] == 2
    assert meta["input"] == {"shape": [3], "dtype": "float32"}
    reopened = mheads.evaluate(tmp_path / "r", table(), model=mlp)  # from the folder, the model named
    assert reopened["oracle_rmse"] == pytest.approx(r.metrics["oracle_rmse"], rel=1e-6)


def test_a_model_whose_head_does_not_fit_the_task_is_refused_in_one_line(tmp_path):
    def narrow():
        return nn.Linear(3, 2)  # point outputs where Gaussian heads need 4

    with pytest.raises(ConfigError, match=r"model: members output shape .* task 'regression' refuses \(4 "):
        mheads.fit(
            narrow,
            table(),
            out=tmp_path / "x",
            task=regression(2, head="gaussian"),
            progress=False,
            settings={**BASE, "train.iterations": 1},
        )


def test_a_user_task_trains_any_assignment_loss_and_reopens_with_the_task(tmp_path):
    task = custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2)
    ds = table()

    def net():
        return nn.Linear(3, 2)

    r = mheads.fit(
        net,
        ds,
        out=tmp_path / "u",
        task=task,
        progress=False,
        settings={**BASE, "train.iterations": 2, "loss.name": "rwta"},
    )
    assert r.metrics["task"] == "custom" and r.metrics["oracle_loss"] <= r.metrics["mean_member_loss"]
    assert "name: python" in (tmp_path / "u/config.yaml").read_text()
    with pytest.raises(ConfigError, match="trained a user's task: pass it again"):
        mheads.predict(tmp_path / "u", ds[0][0], model=net)
    rec = mheads.predict(tmp_path / "u", ds[0][0], model=net, task=task)[0]
    assert len(rec["prediction"]) == 2


def test_a_task_name_and_its_options_come_from_settings(tmp_path):
    r = mheads.fit(
        lambda: nn.Linear(3, 3),
        table(),
        out=tmp_path / "s",
        task="multi_hypothesis",
        progress=False,
        settings={**BASE, "train.iterations": 1, "loss.name": "averaged"},
    )
    assert r.metrics["task"] == "multi_hypothesis" and "distortion" in r.metrics
    with pytest.raises(ConfigError, match="task.name: got 'regresion'"):
        mheads.fit(mlp, table(), out=tmp_path / "t", task="regresion", progress=False)
