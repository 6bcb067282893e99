"""Example b: sunspot windows split by time and normalised with training statistics; the train script runs."""

import pytest
import torch

pytest.importorskip("statsmodels")

from mheads.experiments.any_task import sunspots, train_sunspots  # noqa: E402


def test_windows_split_by_time_with_train_statistics():
    splits, stats = sunspots.load(t_in=24, t_out=4, test_years=60)
    raw = torch.from_numpy(sunspots.series())
    assert raw.shape == (309,) and stats["split_year"] == 1949
    train, test = splits["train"], splits["test"]
    assert train.inputs.shape == (249 - 24 - 4 + 1, 1, 24) and train.targets.shape == (222, 4)
    assert test.inputs.shape == (60 - 4 + 1, 1, 24) and test.targets.shape == (57, 4)
    assert train.inputs.dtype == torch.float32
    assert stats["mean"] == pytest.approx(float(raw[:249].mean()))  # training years only
    values = (raw - stats["mean"]) / stats["std"]
    assert torch.allclose(train.targets[-1].double(), values[245:249], atol=1e-6)  # ends at the split
    assert torch.allclose(test.targets[0].double(), values[249:253], atol=1e-6)  # starts at it
    assert torch.allclose(test.inputs[0, 0].double(), values[225:249], atol=1e-6)
    with pytest.raises(ValueError, match="test_years: got 2; expected an integer in 4.."):
        sunspots.load(t_out=4, test_years=2)


def test_the_train_script_runs_through_fit(monkeypatch):
    monkeypatch.setitem(train_sunspots.SCALES, "smoke", {**train_sunspots.SCALES["smoke"], "steps": 3})
    metrics = train_sunspots.run("mcl", "smoke", 0)
    assert metrics["num_examples"] == 57 and len(metrics["member_rmse"]) == 4
    assert metrics["oracle_rmse"] <= min(metrics["member_rmse"])
