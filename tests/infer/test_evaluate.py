"""Re-evaluating a run folder (infer/evaluate.py): a run trained on a user's Python Datasets is refused
without data, never evaluated on the embedded Fashion-MNIST set its null data.source would otherwise read."""

import json

import pytest
import torch

import mheads
from mheads.cli import main
from mheads.config import ConfigError
from mheads.data import DataError
from mheads.data.pairs import TensorPairs
from mheads.infer.evaluate import PYTHON_DATA, evaluate_run, trained_on_python_data


@pytest.fixture
def python_run(tmp_path):
    """The parts the check reads of the folder fit writes for a user's Datasets: config and run.json."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: python}\n")
    (run / "run.json").write_text(json.dumps({"data": {"source": PYTHON_DATA}, "meta": {}}))
    return run


def test_a_run_on_python_datasets_is_refused_without_data(python_run):
    with pytest.raises(
        ConfigError, match=r"trained on Python Datasets, which its folder does not hold; expected --data"
    ):
        evaluate_run(python_run)


@pytest.mark.parametrize("split", ["test", "train"])
def test_mheads_eval_of_such_a_run_ends_with_one_line(python_run, split, capsys):
    """It printed metrics of the embedded Fashion-MNIST test split as a 28x28 grey 10-class run's own."""
    assert main(["eval", "--run", str(python_run), "--split", split, "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mheads: error: --run {python_run}: trained on Python Datasets")
    assert err.count("\n") == 1


def test_only_a_run_json_naming_python_datasets_counts(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"data": {"source": "embedded fashion-mnist subset"}}))
    assert not trained_on_python_data(tmp_path)
    assert not trained_on_python_data(tmp_path / "missing")


def _flat_net():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 8, 10))


def test_a_test_set_without_the_highest_classes_evaluates_in_the_runs_numbering(tmp_path):
    """A 10-class run on a user's test set whose labels stop at 6 was refused: 'num_classes 7 (model takes
    10)'. Labels above the run's classes are still refused."""
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    result = mheads.fit(
        _flat_net(),
        TensorPairs(x, y),
        out=tmp_path / "run",
        settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
    )
    few = TensorPairs(x[:7], torch.arange(7))
    metrics = mheads.evaluate(tmp_path / "run", few, model=_flat_net())
    assert metrics["num_examples"] == 7 and len(metrics["classes"]) == 10
    assert metrics["oracle_acc"] == mheads.evaluate(result, few)["oracle_acc"]
    with pytest.raises(DataError, match=r"num_classes 11 \(model takes 10\)"):
        mheads.evaluate(tmp_path / "run", TensorPairs(x[:2], torch.tensor([0, 10])), model=_flat_net())
