"""What training checks of its data before reading it (mheads.train.restore): data.normalize mean_image or
per_channel on inputs read as tensors (an .npz file, a table, a Dataset of inputs that are not square images)
is one line before training; it was ignored without a word (the model saw the inputs unnormalized)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mheads
from mheads.config import ConfigError

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
