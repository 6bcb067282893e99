"""mheads.fit: a user's own module and torch Datasets, through the same loop and run folder as the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import mheads
from mheads.config import ConfigError
from mheads.data import DataError


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


class SmallResNet(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.stage(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Images(torch.utils.data.Dataset):
    """(uint8 image, label) pairs, as a user's Dataset might give them."""

    classes = ["a", "b", "c"]

    def __init__(self, n, seed, as_float=False, scale=1.0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randint(0, 256, (n, 3, 12, 12), generator=g, dtype=torch.uint8)
        self.x[:, 0] = (self.y[:, None, None] * 80).to(torch.uint8)  # learnable: channel 0 encodes the class
        self.as_float, self.scale = as_float, scale

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = self.scale * self.x[i].float() / 255 if self.as_float else self.x[i]
        return x, int(self.y[i])


SETTINGS = {
    "model.members": 2,
    "model.split": "stem",
    "loss.name": "mcl",
    "train.iterations": 4,
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.eval_batch_size": 16,
    "train.threads": 1,
    "optim.lr": 0.01,
}


def test_fit_trains_a_user_module_on_user_datasets(tmp_path):
    base = SmallResNet()
    metrics = mheads.fit(base, Images(64, 0), Images(32, 1), out=tmp_path / "run", settings=SETTINGS)
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "eval.jsonl", "metrics.json", "model.safetensors"):
        assert (run / name).is_file(), name
    assert metrics["classes"] == ["a", "b", "c"] and len(metrics["member_acc"]) == 2
    assert json.loads((run / "metrics.json").read_text())["oracle_acc"] == metrics["oracle_acc"]
    assert "name: python" in (run / "config.yaml").read_text()
    fresh = SmallResNet()
    fresh.load_state_dict(load_file(str(run / "members" / "member_1.safetensors")))  # the user's own layout


def seeded_base(seed=7):
    torch.manual_seed(seed)  # member 0 is the module's own weights: the same module, the same run
    return SmallResNet()


def test_fit_is_deterministic_and_resumes_exactly(tmp_path):
    settings = dict(SETTINGS, **{"data.bagging": True, "data.crop_padding": 2, "data.flip": True})
    mheads.fit(seeded_base(), Images(64, 0), Images(32, 1), out=tmp_path / "a", settings=settings)
    mheads.fit(seeded_base(), Images(64, 0), Images(32, 1), out=tmp_path / "b", settings=settings)
    # "b" stopped after its checkpoint at iteration 2, as a crash would leave it; resume from there
    for name in ("metrics.json", "model.safetensors", "members"):
        target = tmp_path / "b" / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000004")
    mheads.fit(
        seeded_base(), Images(64, 0), Images(32, 1), out=tmp_path / "b", settings=settings, resume=True
    )
    wa, wb = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("a", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_fit_takes_float_images_a_registered_name_and_a_treenet(tmp_path):
    m = mheads.fit(
        SmallResNet(),
        Images(48, 0, as_float=True),
        None,
        out=tmp_path / "f",
        settings=dict(SETTINGS, **{"model.split": None}),
    )
    assert 0 <= m["ensemble_mean_acc"] <= 1
    m = mheads.fit(
        "cifar10_quick",
        None,
        out=tmp_path / "reg",  # the embedded Fashion-MNIST subset
        settings={
            "model.members": 2,
            "train.iterations": 2,
            "train.batch_size": 8,
            "data.train_limit": 64,
            "data.test_limit": 32,
            "train.eval_every": 0,
        },
    )
    assert len(m["classes"]) == 10
    tree = mheads.TreeNet(SmallResNet(), 3, "stage.0", seed=5)
    m = mheads.fit(tree, Images(48, 0), Images(16, 2), out=tmp_path / "tree", settings=SETTINGS)
    assert len(m["member_acc"]) == 3  # the TreeNet given decides the members


def test_fit_names_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="loss.nme: unknown key|loss.nme"):
        mheads.fit(SmallResNet(), Images(8, 0), out=tmp_path / "x", settings={"loss.nme": "mcl"})
    with pytest.raises(DataError, match=r"train\[0\]: float image with values outside \[0, 1\]"):
        bad = Images(8, 0, as_float=True, scale=3.0)  # floats far above 1: normalized data, not images
        mheads.fit(SmallResNet(), bad, out=tmp_path / "y", settings=SETTINGS)
    with pytest.raises(ConfigError, match="train: got int; expected a map-style torch Dataset"):
        mheads.fit(SmallResNet(), 5, out=tmp_path / "z", settings=SETTINGS)


def test_the_cli_trains_a_model_named_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes, width=4):\n"
        "    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(width, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from mheads.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {name: 'user_nets:tiny', members: 2, split: '0', options: {width: 6}}\n"
        "data: {train_limit: 64, test_limit: 32}\n"
        "train: {iterations: 2, batch_size: 8, eval_every: 0, checkpoint_every: 0}\n"
    )
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert (tmp_path / "run" / "members" / "member_1.safetensors").is_file()
    config.write_text("model: {name: 'user_nets:nope'}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run2")]) == 2


def test_from_torch_datasets_reads_pil_and_grey_images():
    from PIL import Image

    from mheads.data.from_torch import from_torch_datasets

    pil = [(Image.fromarray(np.full((5, 6, 3), i, np.uint8)), i % 2) for i in range(4)]
    grey = [(torch.full((5, 6), 7, dtype=torch.uint8), torch.tensor(1)) for _ in range(2)]
    ds = from_torch_datasets(pil)
    assert ds.train.images.shape == (4, 3, 5, 6) and ds.classes == ["0", "1"]
    assert from_torch_datasets(grey).train.images.shape == (2, 1, 5, 6)
