"""The command line on any task (issue 32): `mheads train` on a CSV table (regression), an .npz file
(multiple hypotheses) and a folder of non-square images with a parallel folder of masks (segmentation);
`mheads eval` prints the task's metrics; `mheads predict` answers per table row / array / image, in JSON and
CSV."""

import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mheads.cli.commands import main

MODELS = """
from torch import nn


def features_net(num_classes=2, in_channels=3, **_):  # num_classes: the task's head width
    return nn.Sequential(nn.Linear(in_channels, 8), nn.ReLU(), nn.Linear(8, num_classes))


def seg_net(num_classes=2, in_channels=1, **_):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, num_classes, 1))
"""


@pytest.fixture(autouse=True)
def models(tmp_path, monkeypatch):
    (tmp_path / "taskmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))


def _train(tmp_path, source, model, task, extra=()):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model: {{name: 'taskmodels:{model}', members: 2}}\ntask: {{name: {task}}}\n"
        f"data: {{source: '{source}', test_fraction: 0.25}}\n"
        "train: {iterations: 2, batch_size: 8, eval_every: 2}\n"
    )
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run")]
    for item in extra:
        args += ["--set", item]
    assert main(args) == 0
    return tmp_path / "run"


def test_a_csv_table_trains_regression_evaluates_and_predicts_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    table = tmp_path / "t.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "y"])
        for row in x:
            w.writerow([*row, row.sum()])
    run = _train(
        tmp_path,
        table,
        "features_net",
        "regression",
        ["data.features=[a, b, c]", "data.targets=y", "task.head=gaussian", "loss.name=mcl"],
    )
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--model", "taskmodels:features_net"]) == 0
    printed = capsys.readouterr().out.splitlines()
    metrics = json.loads(printed[-1])  # the tables, the report and figures written, then the metrics
    assert metrics["task"] == "regression" and metrics["num_examples"] == 8 and "coverage" in metrics
    assert any(line.startswith("| coverage 0.9 ") for line in printed)
    assert f"report: {run / 'eval-report.json'}" in printed
    assert json.loads((run / "eval-report.json").read_text())["metrics"]["rmse"] == metrics["rmse"]
    assert (run / "plots/predicted_vs_true.png").stat().st_size > 0
    own = (run / "eval-report.json").read_bytes()
    (tmp_path / "other.csv").write_text(table.read_text())
    args = ["eval", "--run", str(run), "--data", str(tmp_path / "other.csv"), "--no-figures"]
    assert main([*args, "--model", "taskmodels:features_net"]) == 0
    assert f"report: {run / 'eval-report-other.csv.json'}" in capsys.readouterr().out.splitlines()
    assert (run / "eval-report.json").read_bytes() == own  # each data set keeps its own report
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c\n0,0,0\n1,2,3\n")
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                str(rows),
                "--format",
                "json",
                "--model",
                "taskmodels:features_net",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == [f"{rows}:1", f"{rows}:2"]
    assert len(records[0]["members"]) == 2 and "variance" in records[0]["members"][0]
    assert (
        main(
            ["predict", "--run", str(run), str(rows), "--format", "csv", "--model", "taskmodels:features_net"]
        )
        == 0
    )
    lines = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert "members_1_variance_0" in lines[0] and len(lines) == 3
    assert "oracle_member" not in lines[0]  # rows without the target column: no oracle


def test_predict_on_rows_with_the_target_column_names_each_rows_oracle(tmp_path, capsys):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 3))
    table = tmp_path / "t.csv"
    table.write_text("a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r.sum()}\n" for r in x))
    run = _train(tmp_path, table, "features_net", "regression", ["data.features=[a, b, c]", "data.targets=y"])
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"; draw its plots with: mheads plot {run}")
    predict = ["predict", "--run", str(run), str(table), "--model", "taskmodels:features_net"]
    assert main([*predict, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 12
    for r, row in zip(records, x, strict=True):
        assert r["target"] == pytest.approx([row.sum()], rel=1e-5)
        errors = [(m["mean"][0] - r["target"][0]) ** 2 for m in r["members"]]
        assert r["oracle"]["member"] == int(np.argmin(errors))
        assert r["oracle"]["error"] == pytest.approx(min(errors), rel=1e-4, abs=1e-9)
        assert r["aleatoric"] is None  # point heads
    assert main([*predict, "--format", "csv"]) == 0
    header, first, *_ = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    values = dict(zip(header, first, strict=True))
    assert int(values["oracle_member"]) == records[0]["oracle"]["member"] and values["aleatoric"] == ""


def test_predict_on_rows_whose_targets_do_not_fit_says_why_in_one_stderr_line(tmp_path, capsys):
    """The Python API warns; the CLI prints the same notice as one ``mheads: ...`` line on stderr (no
    Python warning text), on every call, and predicts the rows all the same."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 3))
    table = tmp_path / "t.csv"
    table.write_text("a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r.sum()}\n" for r in x))
    run = _train(tmp_path, table, "features_net", "regression", ["data.features=[a, b, c]", "data.targets=y"])
    text = tmp_path / "text.csv"
    text.write_text("a,b,c,y\n0,0,0,1.5\n1,2,3,cat\n")
    capsys.readouterr()
    predict = ["predict", "--run", str(run), str(text), "--model", "taskmodels:features_net"]
    for _ in range(2):  # the same notice again in one process: printed again
        assert main([*predict, "--format", "json"]) == 0
        out, err = capsys.readouterr()
        (line,) = err.splitlines()
        assert re.match(
            rf"mheads: no oracle in the records: {re.escape(str(text))}: row 2 .*column 'y': got 'cat'.*; "
            r"the inputs are predicted alone$",
            line,
        )
        records = json.loads(out)
        assert len(records) == 2 and not any("oracle" in r or "target" in r for r in records)


def test_an_npz_file_trains_multiple_hypotheses(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.sign(x[:, :1]).astype(np.float32))
    run = _train(tmp_path, tmp_path / "d.npz", "features_net", "multi_hypothesis", ["loss.name=mcl_scored"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "multi_hypothesis" and "oracle_error" in metrics
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--model", "taskmodels:features_net", "--no-figures"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert json.loads(printed[-1])["oracle_error"] == pytest.approx(metrics["oracle_error"], rel=1e-6)
    assert any(line.startswith("| distortion ") for line in printed)
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                str(tmp_path / "d.npz"),
                "--format",
                "json",
                "--model",
                "taskmodels:features_net",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 24 and sum(m["score"] for m in records[0]["members"]) == pytest.approx(1, abs=1e-5)
    for r, target in zip(records, np.sign(x[:, 0]), strict=True):  # the file holds y: each row's oracle
        distances = [abs(m["hypothesis"][0] - target) for m in r["members"]]
        assert r["target"] == [target] and r["oracle"]["member"] == int(np.argmin(distances))
        assert r["oracle"]["error"] == pytest.approx(min(distances), rel=1e-4, abs=1e-9)
    np.savez(tmp_path / "x.npz", x=x)  # the inputs alone: no oracle
    assert (
        main(["predict", "--run", str(run), str(tmp_path / "x.npz"), "--model", "taskmodels:features_net"])
        == 0
    )
    assert all("oracle" not in json.loads(line) for line in capsys.readouterr().out.splitlines())


def test_a_mask_folder_of_non_square_images_trains_segmentation(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / "seg" / folder).mkdir(parents=True)
    rng = np.random.default_rng(2)
    for i in range(8):
        img = rng.integers(0, 256, size=(6, 10), dtype=np.uint8)
        Image.fromarray(img, "L").save(tmp_path / "seg/images" / f"{i}.png")
        Image.fromarray((img > 127).astype(np.uint8), "L").save(tmp_path / "seg/masks" / f"{i}.png")
    run = _train(tmp_path, tmp_path / "seg", "seg_net", "segmentation", ["loss.name=mcl"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "segmentation" and 0 <= metrics["oracle_mean_iou"] <= 1
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--model", "taskmodels:seg_net", "--no-figures"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert json.loads(printed[-1])["oracle_mean_iou"] == pytest.approx(metrics["oracle_mean_iou"], rel=1e-6)
    assert any(line.startswith("| mean_iou ") for line in printed)
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                str(tmp_path / "seg/images/0.png"),
                "--format",
                "json",
                "--model",
                "taskmodels:seg_net",
            ]
        )
        == 0
    )
    (record,) = json.loads(capsys.readouterr().out)
    assert np.asarray(record["prediction"]).shape == (6, 10) and len(record["members"]) == 2
    assert np.asarray(record["members"][1]["mask"]).shape == (6, 10)
    assert torch.tensor(record["members"][0]["agreement"]) <= 1


def test_a_parquet_table_trains_on_named_columns_and_predicts_rows_without_targets(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 3))
    frame = pd.DataFrame({"id": np.arange(30), "c": x[:, 2], "a": x[:, 0], "y": x.sum(1), "b": x[:, 1]})
    frame.to_parquet(tmp_path / "t.parquet")
    run = _train(
        tmp_path,
        tmp_path / "t.parquet",
        "features_net",
        "regression",
        ["data.features=[a, b, c]", "data.targets=y", "task.head=gaussian", "loss.name=mcl"],
    )
    assert json.loads((run / "metrics.json").read_text())["num_examples"] == 8
    frame.drop(columns=["y"]).head(2).to_parquet(tmp_path / "rows.parquet")  # no target column to predict
    (tmp_path / "rows.csv").write_text("b,a,c\n" + "".join(f"{r[1]},{r[0]},{r[2]}\n" for r in x[:2]))
    capsys.readouterr()
    predict = ["predict", "--run", str(run), "--model", "taskmodels:features_net"]
    assert main([*predict, str(tmp_path / "rows.parquet"), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == [f"{tmp_path / 'rows.parquet'}:{i}" for i in (1, 2)]
    assert main([*predict, str(tmp_path / "rows.csv"), "--format", "json"]) == 0
    from_csv = json.loads(capsys.readouterr().out)
    assert [r["members"] for r in records] == [r["members"] for r in from_csv]  # the same rows, by name
    for r in records:
        assert {"prediction", "std", "aleatoric", "epistemic"} <= r.keys() and len(r["members"]) == 2
    assert main([*predict, str(tmp_path / "rows.parquet"), "--format", "csv"]) == 0
    lines = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(lines) == 3 and {"prediction_0", "std_0", "members_1_variance_0"} <= set(lines[0])


def test_plot_of_a_task_run_draws_its_training_curves(tmp_path, capsys):
    run = tmp_path / "run"  # a regression run's records, as training writes them (no heatmap data)
    run.mkdir()
    (run / "metrics.json").write_text(
        json.dumps({"task": "regression", "rmse": 0.5, "member_rmse": [0.6, 0.7]})
    )
    rows = [
        {"step": s, "train_loss": 1.0 / s, "win_fraction": [0.5, 0.5], "rmse": 0.5, "oracle_rmse": 0.3}
        for s in (10, 20)
    ]
    (run / "eval.jsonl").write_text(
        "".join(json.dumps({**r, "member_rmse": [0.6, 0.7]}) + "\n" for r in rows)
    )
    assert main(["plot", str(run)]) == 0  # was exit 2: 'not a run's metrics (... oracle_assignment ...)'
    assert capsys.readouterr().out.startswith(f"wrote {run / 'plots' / 'curves.png'}")
    assert (run / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (run / "eval.jsonl").write_text("")
    assert main(["plot", str(run)]) == 2
    assert "eval.jsonl: no evaluation records" in capsys.readouterr().err


@pytest.mark.slow  # trains and evaluates a run (about 4 s); the fast tier: test_task_eval's refusal
def test_eval_of_a_task_run_whose_member_overflows_to_nan_exits_3_naming_it(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    table = tmp_path / "t.csv"
    table.write_text(
        "a,b,c,y\n" + "".join(f"{a},{b},{c},{a + b + c}\n" for a, b, c in rng.normal(size=(16, 3)))
    )
    run = _train(tmp_path, table, "features_net", "regression", ["data.features=[a, b, c]", "data.targets=y"])
    weights = load_file(run / "model.safetensors")
    first, last = weights["root.branches.1.layers.0.weight"], weights["root.branches.1.layers.2.weight"]
    first[:4], first[4:] = 3e38, -3e38  # member 1: finite weights whose sums overflow to inf (and inf - inf)
    last[:] = 3e38
    save_file(weights, run / "model.safetensors")
    capsys.readouterr()
    args = ["eval", "--run", str(run), "--model", "taskmodels:features_net", "--no-figures"]
    assert main(args) == 3  # printed rmse Infinity beside a fine oracle_rmse 1.08, exit 0
    assert capsys.readouterr().err == (
        "mheads: error: non-finite outputs in member 1 (4 of 4 examples): NaN or inf outputs have no "
        "error to score; expected finite outputs\n"
    )
