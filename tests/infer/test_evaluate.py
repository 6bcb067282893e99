"""Re-evaluating a run folder (infer/evaluate.py): a run trained on a user's Python Datasets is refused
without data, never evaluated on the embedded Fashion-MNIST set its null data.source would otherwise read."""

import json

import pytest

from mheads.cli import main
from mheads.config import ConfigError
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
