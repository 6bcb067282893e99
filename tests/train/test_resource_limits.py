"""The resource check counts what a run will hold before it holds it: a network too large for memory is
sized on the meta device, never built; evaluation batches (``train.eval_batch_size``) are counted beside the
training ones; the streamed normalization pass is bounded; and the address-space limit (RLIMIT_AS) is part
of the memory available. Cases that would allocate if the check regressed run under tests/memcap.py's cap."""

from __future__ import annotations

import re

import pytest
import yaml
from torch import nn

from memcap import mheads_capped, run_capped
from mheads.config import ConfigError, config_from_settings
from mheads.models import create_model
from mheads.train.resources import check_model_size, estimate_bytes, parameter_bytes

TINY = {
    "model": {"name": "cifar10_quick", "members": 2},
    "data": {"train_limit": 64, "test_limit": 32},
    "train": {
        "iterations": 1,
        "batch_size": 8,
        "eval_every": 1,
        "checkpoint_every": 0,
        "threads": 1,
        "device": "cpu",
    },
}


def _train_capped(tmp_path, *overrides: str):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    sets = [a for o in overrides for a in ("--set", o)]
    return mheads_capped(
        "train", "--config", config, "--out", tmp_path / "run", "--no-progress", *sets, timeout=180
    )


def test_parameters_are_counted_on_the_meta_device():
    def huge():  # 10**12 parameters: 4 TB if it were built
        return nn.Sequential(nn.Flatten(), nn.Linear(10**6, 10**6))

    assert parameter_bytes(huge) == (10**12 + 10**6) * 4
    cfg = config_from_settings({"model.members": 4})
    with pytest.raises(
        ConfigError,
        match=r"^model.name: got 'cifar10_quick'; one member of huge would need "
        r"about 11175.9 GiB \(parameters 3725.3 GiB",
    ):
        check_model_size(cfg, huge, what="huge")
    small = lambda: create_model("cifar10_quick", num_classes=10, in_channels=3, image_size=32)  # noqa: E731
    assert check_model_size(cfg, small) == parameter_bytes(small) > 0
    wide = config_from_settings({"model.members": 4000, "optim.name": "adamw"})
    with pytest.raises(ConfigError, match=r"^model.members: got 4000; this run would need about"):
        check_model_size(wide, lambda: nn.Linear(10**4, 10**4))  # 400 MB each, 4000 of them with AdamW


def test_a_registered_network_made_terabytes_by_its_options_is_refused_unbuilt(tmp_path):
    proc = _train_capped(tmp_path, "model.name=nin_cifar", "model.options.width=1000")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        re.search(
            r"model.options: got \{'width': 1000\}; one member of nin_cifar would need about "
            r"[\d.]+ GiB",
            proc.stderr,
        )
        and "Traceback" not in proc.stderr
    ), proc.stderr[-2000:]


def test_a_python_factory_made_terabytes_is_refused_unbuilt(tmp_path):
    code = f"""
import mheads, torch
from torch import nn
class Data(torch.utils.data.Dataset):
    def __len__(self): return 8
    def __getitem__(self, i): return torch.zeros(1, 8, 8, dtype=torch.uint8), i % 2
def wide():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10**6), nn.Linear(10**6, 10**6), nn.Linear(10**6, 2))
try:
    mheads.fit(wide, Data(), out={str(tmp_path / "run")!r}, settings={{"train.device": "cpu"}})
except mheads.config.ConfigError as err:
    print("refused:", err)
"""
    proc = run_capped(["-c", code], timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.match(
        r"refused: model: got 'wide'; one member of wide would need about [\d.]+ GiB", proc.stdout
    ), proc.stdout


def test_eval_batch_size_is_counted():
    base = create_model("cifar10_quick", num_classes=10, in_channels=3, image_size=32)
    one, many = (
        estimate_bytes(config_from_settings({"train.eval_batch_size": e}), base, (3, 32, 32))
        for e in (10, 1000)
    )
    assert many["evaluation"] == 100 * one["evaluation"] > 0
    assert many["activations"] == one["activations"]  # training is unchanged
    capped = estimate_bytes(
        config_from_settings({"train.eval_batch_size": 1000}), base, (3, 32, 32), eval_examples=10
    )
    assert capped["evaluation"] == one["evaluation"]  # no batch is larger than the split it evaluates


def test_an_evaluation_batch_too_large_for_memory_is_refused_before_training(tmp_path):
    # 20000 grey 128x128 images made when read; 20000 x (128 x 128 in + 64 x 126 x 126 out) x 4 bytes x
    # 4 members: about 300 GiB for one evaluation batch, while training batches of 2 are small
    code = f"""
import mheads, torch
from torch import nn
class Large(torch.utils.data.Dataset):
    classes = ["a", "b"]
    targets = [i % 2 for i in range(20000)]
    def __len__(self): return 20000
    def __getitem__(self, i): return torch.full((1, 128, 128), i % 200, dtype=torch.uint8), i % 2
wide = nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2))
settings = {{"data.loader": "stream", "data.workers": 0, "data.stats_images": 8, "train.batch_size": 2,
             "train.eval_batch_size": 20000, "train.iterations": 1, "train.device": "cpu"}}
try:
    mheads.fit(wide, Large(), out={str(tmp_path / "run")!r}, settings=settings)
except mheads.config.ConfigError as err:
    print("refused:", err)
"""
    proc = run_capped(["-c", code], timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.match(
        r"refused: train.eval_batch_size: got 20000; this run would need about [\d.]+ GiB "
        r"\(.*evaluation [\d.]+ GiB\)",
        proc.stdout,
    ), proc.stdout


def test_the_streamed_normalizer_pass_is_bounded(tmp_path):
    from mheads.data.shards import write_varied_folder

    folder = write_varied_folder(tmp_path / "photos", 8, 4, 2, sizes=(12, 20), seed=1)
    proc = _train_capped(
        tmp_path,
        f"data.source={folder}",
        "data.loader=stream",
        "data.workers=1",
        "data.image_size=20000",
        "data.train_limit=null",
        "data.test_limit=null",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        re.search(
            r"data.image_size: got 20000; the normalization statistics \(mean_image\) would need "
            r"about [\d.]+ GiB",
            proc.stderr,
        )
        and "Traceback" not in proc.stderr
    ), proc.stderr[-2000:]


def test_rlimit_as_bounds_the_run(tmp_path):
    # about 5 GiB of activations: within this machine's memory, not within the 3 GiB address-space cap
    proc = _train_capped(tmp_path, "train.batch_size=24000")
    assert proc.returncode == 2, proc.stderr[-2000:]
    found = re.search(
        r"train.batch_size: got 24000; this run would need about ([\d.]+) GiB .* but ([\d.]+) "
        r"(GiB|MiB) of memory is available on cpu",
        proc.stderr,
    )
    assert found and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert float(found.group(2)) < 3 or found.group(3) == "MiB"
