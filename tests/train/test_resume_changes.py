"""A run resumed with other settings records them: the folder never describes a run that did not happen."""

import json
import logging

import yaml

from mheads.config import config_from_settings
from mheads.train.loop import fit

BASE = {
    "model.members": 2,
    "data.train_limit": 200,
    "data.test_limit": 100,
    "train.iterations": 4,
    "train.batch_size": 16,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.device": "cpu",
    "train.threads": 1,
}


def test_resume_with_changed_settings_records_them_and_rewrites_the_config(tmp_path):
    out = tmp_path / "run"
    fit(config_from_settings(BASE), out, progress=False)
    more = config_from_settings({**BASE, "train.iterations": 6, "optim.lr": 0.0005})
    fit(more, out, resume=True, progress=False)
    history = [json.loads(line) for line in (out / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"step": 4, "changes": {"optim.lr": [0.001, 0.0005], "train.iterations": [4, 6]}}]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.0005 and saved["train"]["iterations"] == 6
    assert json.loads((out / "metrics.json").read_text())["iterations"] == 6
    fit(more, out, resume=True, progress=False)  # the same settings again: nothing new to record
    assert len((out / "config_history.jsonl").read_text().splitlines()) == 1


def test_resume_with_normalize_unset_of_an_image_run_that_recorded_mean_image_changes_nothing(
    tmp_path, caplog
):
    """A run from before null was the default recorded mean_image; null is mean_image for images, so resuming
    it with settings that leave data.normalize unset (fit(resume=True), train --resume --config) is no change:
    no warning, no config_history.jsonl, its config.yaml as it was. A real change of mode is still
    recorded."""
    small = {**BASE, "train.iterations": 2, "train.eval_every": 0}
    out = tmp_path / "run"
    fit(config_from_settings({**small, "data.normalize": "mean_image"}), out, progress=False)
    written = (out / "config.yaml").read_text()
    with caplog.at_level(logging.WARNING, logger="mheads"):
        fit(config_from_settings(small), out, resume=True, progress=False)
        assert "changed settings" not in caplog.text
        assert not (out / "config_history.jsonl").exists() and (out / "config.yaml").read_text() == written
        per_channel = config_from_settings({**small, "data.normalize": "per_channel"})
        fit(per_channel, out, resume=True, progress=False)
    history = [json.loads(line) for line in (out / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"step": 2, "changes": {"data.normalize": ["mean_image", "per_channel"]}}]
    assert "data.normalize 'mean_image' -> 'per_channel'" in caplog.text
