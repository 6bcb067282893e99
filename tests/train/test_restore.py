"""What training checks of its data before reading it (mheads.train.restore): data.normalize mean_image or
per_channel on inputs read as tensors (an .npz file, a table, a Dataset of inputs that are not square images)
is one line before training; it was ignored without a word (the model saw the inputs unnormalized). A run
folder that recorded it before null was the default resumes as it trained, with no flag; a resume on inputs
of another description than its checkpoint recorded (int64 then, uint8 now) is refused in one line."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

import mheads
from mheads.config import ConfigError
from mheads.runs.checkpoint import CheckpointMismatch
from mheads.runs.folder import NORMALIZER_FILE

SETTINGS = {"model.members": 2, "train.iterations": 1, "train.batch_size": 4, "train.eval_every": 0}


def _npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.integers(0, 256, (8, 1, 6, 6), dtype=np.uint8), y=np.arange(8) % 2)
    return path


def _net():
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 2))


@pytest.mark.parametrize("mode", ["mean_image", "per_channel"])
def test_normalizing_inputs_read_as_tensors_is_refused_before_training(tmp_path, mode):
    settings = {**SETTINGS, "data.source": str(_npz(tmp_path)), "data.normalize": mode}
    with pytest.raises(ConfigError) as caught:
        mheads.fit(_net(), out=tmp_path / "run", settings=settings)
    said = str(caught.value)
    assert said.startswith(f"data.normalize: got {mode!r}; expected null or none for inputs read as tensors")
    assert "\n" not in said and not (tmp_path / "run" / "model.safetensors").exists()
    features = torch.utils.data.TensorDataset(torch.rand(8, 5), torch.arange(8) % 2)  # a Dataset's too
    with pytest.raises(ConfigError, match=rf"^data.normalize: got {mode!r}"):
        mheads.fit(nn.Linear(5, 2), features, out=tmp_path / "b", settings={**settings, "data.source": None})


@pytest.mark.parametrize("mode", [None, "none"])
def test_inputs_read_as_tensors_train_with_normalize_null_or_none(tmp_path, mode):
    settings = {**SETTINGS, "data.source": str(_npz(tmp_path)), "data.normalize": mode}
    assert mheads.fit(_net(), out=tmp_path / "run", settings=settings).tree.num_members == 2


def _weights(run):
    return load_file(run / "model.safetensors")


def _old_style_run(tmp_path, mode, iterations=1):
    """A run on an .npz trained as today, then its config.yaml saying ``mode`` as a run started before null
    was the default recorded it (mean_image was ignored there: no normalizer.safetensors was saved)."""
    settings = {**SETTINGS, "data.source": str(_npz(tmp_path)), "train.threads": 1}
    run = tmp_path / "run"
    mheads.fit(_net(), out=run, settings={**settings, "train.iterations": iterations}, progress=False)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"]["normalize"] = mode
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert not (run / NORMALIZER_FILE).exists()
    return run, settings


@pytest.mark.parametrize("mode", ["mean_image", "per_channel"])
def test_a_run_that_recorded_mean_image_on_tensor_inputs_resumes_exactly_as_it_trained(
    tmp_path, mode, caplog
):
    run, settings = _old_style_run(tmp_path, mode)
    full = tmp_path / "full"
    mheads.fit(_net(), out=full, settings={**settings, "train.iterations": 2}, progress=False)
    with caplog.at_level(logging.INFO, logger="mheads"):  # as `mheads train --resume` reads config.yaml
        more = {**settings, "data.normalize": mode, "train.iterations": 2}
        mheads.fit(_net(), out=run, settings=more, resume=True, progress=False)
    assert all(torch.equal(w, _weights(full)[k]) for k, w in _weights(run).items())  # the run never stopped
    assert f"data.normalize {mode!r}, recorded by this run before null was the default" in caplog.text
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["normalize"] == mode  # its record kept
    history = [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"step": 1, "changes": {"train.iterations": [1, 2]}}]
    assert not (run / NORMALIZER_FILE).exists()


def test_mean_image_asked_on_resume_of_a_run_that_recorded_another_mode_or_a_normalizer_is_refused(tmp_path):
    run, settings = _old_style_run(tmp_path, "mean_image")
    for mode in ("per_channel",):  # not what the folder recorded: asked anew
        with pytest.raises(ConfigError, match=rf"^data.normalize: got {mode!r}; expected null or none"):
            mheads.fit(_net(), out=run, settings={**settings, "data.normalize": mode}, resume=True)
    (run / NORMALIZER_FILE).write_bytes(b"")  # a normalizer there: the folder's mode did apply to something
    with pytest.raises(ConfigError, match=r"^data.normalize: got 'mean_image'; expected null or none"):
        mheads.fit(_net(), out=run, settings={**settings, "data.normalize": "mean_image"}, resume=True)


class _Floats(nn.Module):
    """An MLP on 5 numbers of any dtype (int64 0-255 as stored, uint8 as [0, 1] floats)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(x.float())


def test_resume_on_inputs_of_another_dtype_is_refused_in_one_line(tmp_path):
    """A run on int64 vectors 0-255 (as the .npz reader read uint8 before the uint8 rule) resumed on uint8:
    the model would see [0, 1] floats; it resumed without a word."""
    values = torch.randint(0, 256, (8, 5))
    settings = {**SETTINGS, "train.threads": 1}
    mheads.fit(_Floats(), TensorDataset(values, torch.arange(8) % 2), out=tmp_path / "run", settings=settings)
    uint8 = TensorDataset(values.to(torch.uint8), torch.arange(8) % 2)
    with pytest.raises(CheckpointMismatch) as caught:
        mheads.fit(_Floats(), uint8, out=tmp_path / "run", settings=settings, resume=True)
    said = str(caught.value)
    assert (
        "\n" not in said
        and said.startswith("checkpoint ")
        and said.endswith(
            ": input: the run trained on int64 (5,), the data now gives uint8 pixels (5,); uint8 reaches the "
            "model as [0, 1] floats, other dtypes as stored; resume on inputs as recorded (int64 (5,); "
            "convert them where only the dtype changed), or train a new run in another folder"
        )
    )
    done = mheads.fit(
        _Floats(),
        TensorDataset(values, torch.arange(8) % 2),
        out=tmp_path / "run",
        settings=settings,
        resume=True,
    )  # the same inputs: resumed as before
    assert done.tree.num_members == 2


def test_mheads_train_resume_of_a_run_that_recorded_mean_image_on_an_npz_needs_no_flag(tmp_path, monkeypatch):
    from mheads.cli import main

    (tmp_path / "restoremodels.py").write_text(
        "from torch import nn\n\n\ndef net(**_):\n    return nn.Sequential(nn.Flatten(), nn.Linear(36, 2))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config, run = tmp_path / "c.yaml", tmp_path / "run"
    config.write_text(
        f"model: {{name: 'restoremodels:net', members: 2}}\ndata: {{source: '{_npz(tmp_path)}'}}\n"
        "train: {iterations: 1, batch_size: 4, eval_every: 0, threads: 1}\n"
    )
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(
        yaml.safe_dump({**saved, "data": {**saved["data"], "normalize": "mean_image"}})
    )
    resume = ["train", "--resume", str(run), "--model", "restoremodels:net", "--no-progress"]
    assert main([*resume, "--set", "train.iterations=2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 2


@pytest.mark.parametrize("mode", ["mean_image", "per_channel"])
def test_a_run_that_recorded_mean_image_on_tensor_inputs_resumed_with_normalize_unset_changes_nothing(
    tmp_path, mode, caplog
):
    """``mheads.fit(..., resume=True)`` with the settings it trained with, ``data.normalize`` unset (null: its
    inputs as stored, as the recorded mode gave them): no change to warn of or record (it warned
    ``data.normalize 'mean_image' -> None`` and recorded it in config_history.jsonl)."""
    run, settings = _old_style_run(tmp_path, mode)
    with caplog.at_level(logging.INFO, logger="mheads"):
        mheads.fit(_net(), out=run, settings={**settings, "train.iterations": 2}, resume=True, progress=False)
    assert "data.normalize" not in caplog.text
    # rewritten for train.iterations: the settings it trains with now (null, which gives the same)
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["normalize"] is None
    history = [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"step": 1, "changes": {"train.iterations": [1, 2]}}]
