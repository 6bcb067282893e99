"""The eval report of a task run (issue 32), in-process on tiny runs of `mheads.fit` (the shapes of
tests/train/test_fit_tasks.py: a tabular regression with Gaussian heads, multiple hypotheses on one input
feature, non-square segmentation): the report file holds exactly `task.metrics` of the run's outputs, win
shares sum to 1, the figures are written, the printed tables name each metric and member, and
`mheads.evaluate` returns the same numbers."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mheads
from mheads.data.loader import TorchData
from mheads.data.pairs import TensorPairs
from mheads.report.task_report import format_task_report, report_task_run
from mheads.tasks import multi_hypothesis, regression, segmentation

BASE = {
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.iterations": 2,
    "model.members": 3,
    "optim.lr": 0.01,
    "train.seed": 3,
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def table():
    x = torch.randn(40, 3, generator=gen())
    return TensorPairs(x, torch.stack([x.sum(1), x[:, 0] - x[:, 1]], 1))  # targets (N, 2)


def two_modes():
    x = torch.rand(32, 1, generator=gen(1))  # one input feature, a 1-D target: the hypotheses figure
    return TensorPairs(x, torch.where(torch.rand(32, 1, generator=gen(2)) < 0.5, -1.0, 1.0) + x)


def masks():
    img = torch.randint(0, 256, (12, 1, 6, 10), generator=gen(3), dtype=torch.uint8)  # H != W
    return TensorPairs(img, (img[:, 0] > 127).long())


CASES = {
    "regression": (
        lambda: nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)),
        table,
        regression(2, head="gaussian"),
        {"loss.name": "mcl"},
        ["predicted_vs_true", "coverage", "win_share"],
    ),
    "multi_hypothesis": (
        lambda: nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 2)),
        two_modes,
        multi_hypothesis(1),
        {"loss.name": "mcl_scored"},
        ["hypotheses", "win_share"],
    ),
    "segmentation": (
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)),
        masks,
        segmentation(2),
        {"loss.name": "mcl"},
        ["class_iou", "win_share"],
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def reported(request, tmp_path_factory):
    """A tiny fitted run of the case and its report on the Dataset it trained on."""
    net, data, task, extra, _ = CASES[request.param]
    ds = data()
    out = tmp_path_factory.mktemp(request.param) / "run"
    result = mheads.fit(net, ds, ds, out=out, task=task, progress=False, settings={**BASE, **extra})
    report = report_task_run(result.run, dataset=TorchData(ds), tree=result.tree)
    return request.param, result, ds, report


def _outputs(tree, ds):
    x, y = (torch.stack(v) for v in zip(*[ds[i] for i in range(len(ds))]))
    with torch.no_grad():
        return tree(x.float() / 255 if x.dtype == torch.uint8 else x).float(), y


def test_the_report_file_holds_task_metrics_of_the_runs_outputs(reported):
    case, result, ds, report = reported
    written = json.loads(Path(report["report_file"]).read_text())
    assert report["report_file"].endswith("eval-report-dataset.json")
    assert written["task"] == case and written["data"] == "(a Dataset given from Python)"
    outputs, y = _outputs(result.tree, ds)
    expected = CASES[case][2].metrics(outputs, y)
    assert {k: written["metrics"][k] for k in expected} == expected  # the same outputs: the same numbers


def test_win_shares_sum_to_one_per_member(reported):
    _, result, _, report = reported
    shares = report["metrics"]["win_share"]
    assert len(shares) == 3 and sum(shares) == pytest.approx(1.0, abs=1e-12)


def test_the_figures_are_written_next_to_the_classification_ones(reported):
    case, result, _, report = reported
    names = [p.rsplit("/", 1)[-1] for p in report["figures"]]
    assert sorted(names) == sorted(f"{n}-dataset.png" for n in CASES[case][4])
    for path in report["figures"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(result.run / "plots") in path


def test_the_printed_report_names_each_metric_its_meaning_and_each_member(reported):
    case, _, _, report = reported
    text = format_task_report("run", report["metrics"])
    lines = text.splitlines()
    assert lines[0] == f"run: task {case}, {report['metrics']['num_examples']} examples"
    key = {
        "regression": "| oracle_rmse ",
        "multi_hypothesis": "| oracle_error ",
        "segmentation": "| mean_iou ",
    }
    (row,) = [line for line in lines if line.startswith(key[case])]
    assert "oracle" in row.split("|")[3] or "IoU" in row.split("|")[3]  # its meaning
    shares = [line for line in lines if line.endswith("% |")]
    assert len(shares) == 3 and all(line.startswith(f"| {m} ") for m, line in enumerate(shares))


def test_mheads_evaluate_returns_the_same_numbers(reported):
    _, result, ds, report = reported
    again = mheads.evaluate(result, ds)
    assert {k: again[k] for k in report["metrics"]} == report["metrics"]
