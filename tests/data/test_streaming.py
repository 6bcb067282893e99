"""The streaming loader: the batches of resident data, any worker count, shards and tars, bad files."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import balanced_labels, random_images, write_image_folder
from safetensors.torch import load_file

from mheads.config import Config, ConfigError, config_from_settings
from mheads.data import DataError
from mheads.data.index import index_source, streamable
from mheads.data.loader import TorchData, choose_loader, prepare
from mheads.data.shards import write_shards, write_varied_folder
from mheads.data.transforms import eval_view, random_resized_crop
from mheads.train.loop import fit

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A fixed-size (16x16) PNG image folder, lossless so both loaders see the same pixels."""
    root = tmp_path_factory.mktemp("imgs") / "set"
    train = (random_images(48, 3, 16, 16, seed=1), balanced_labels(48, 4))
    test = (random_images(16, 3, 16, 16, seed=2), balanced_labels(16, 4))
    write_image_folder(root, {"train": train, "test": test}, CLASSES, fmt="PNG")
    return root


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    return write_varied_folder(tmp_path_factory.mktemp("varied") / "set", 40, 12, 4, sizes=(20, 40), seed=3)


def _cfg(source, **data) -> Config:
    return config_from_settings(
        {
            "model.name": "cifar10_quick",
            "model.members": 2,
            "model.split": "conv1",
            "data.source": str(source),
            "data.normalize": "per_channel",
            "data.crop_padding": 2,
            "data.flip": True,
            "data.bagging": True,
            **{f"data.{k}": v for k, v in data.items()},
            "train.iterations": 6,
            "train.batch_size": 8,
            "train.eval_every": 3,
            "train.eval_batch_size": 16,
            "train.checkpoint_every": 0,
            "train.threads": 1,
            "train.device": "cpu",
            "train.seed": 5,
            "optim.lr": 0.01,
        }
    )


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def _same(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_streamed_fixed_size_set_trains_exactly_like_resident(folder, tmp_path):
    resident = fit(_cfg(folder, loader="resident"), tmp_path / "r", progress=False)
    streamed = fit(_cfg(folder, loader="stream", workers=0), tmp_path / "s0", progress=False)
    two = fit(_cfg(folder, loader="stream", workers=2), tmp_path / "s2", progress=False)
    assert _same(tmp_path / "r", tmp_path / "s0") and _same(tmp_path / "r", tmp_path / "s2")
    assert resident["ensemble_mean_acc"] == streamed["ensemble_mean_acc"] == two["ensemble_mean_acc"]
    assert streamed["skipped_images"] == 0 and streamed["data_wait_s"] >= 0
    info = json.loads((tmp_path / "s2" / "run.json").read_text())
    assert info["data"]["loader"] == "stream" and info["data"]["workers"] == 2


def test_label_split_specialists_stream_like_resident(folder, tmp_path):
    split = {"label_split": [[0, 1], [2, 3]], "bagging": False}
    fit(_cfg(folder, loader="resident", **split), tmp_path / "r", progress=False)
    fit(_cfg(folder, loader="stream", workers=1, **split), tmp_path / "s", progress=False)
    assert _same(tmp_path / "r", tmp_path / "s")


def test_shards_and_plain_tar_read_the_same_examples(folder, tmp_path):
    shards = tmp_path / "shards"
    paths = write_shards(folder, shards, per_shard=20)
    assert [p.name for p in paths] == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
        "test-000000.tar",
    ]
    plain = tmp_path / "set.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(folder, arcname=".")
    ref = index_source(folder)
    for other in (index_source(shards), index_source(plain)):
        for a, b in ((ref.train, other.train), (ref.test, other.test)):
            assert len(a) == len(b) and np.array_equal(a.labels, b.labels)
            assert all(a.read(i) == b.read(i) for i in range(len(a)))
    assert index_source(shards).classes == CLASSES and index_source(plain).kind == "tar"
    fit(_cfg(folder, loader="stream", workers=0), tmp_path / "f", progress=False)
    fit(_cfg(shards, loader="stream", workers=1), tmp_path / "sh", progress=False)
    assert _same(tmp_path / "f", tmp_path / "sh")


def test_varied_sizes_random_resized_crop_is_a_function_of_seed_and_batch(varied, tmp_path):
    kw = dict(
        image_size=16, train_crop="random_resized", eval_resize=18, normalize="mean_image", crop_padding=0
    )
    m0 = fit(_cfg(varied, workers=0, **kw), tmp_path / "w0", progress=False)
    fit(_cfg(varied, workers=2, **kw), tmp_path / "w2", progress=False)
    assert _same(tmp_path / "w0", tmp_path / "w2")
    assert json.loads((tmp_path / "w0" / "run.json").read_text())["data"]["image_shape"] == [3, 16, 16]
    assert 0.0 <= m0["ensemble_mean_acc"] <= 1.0


def test_auto_streams_only_when_it_must(folder, varied, tmp_path):
    assert choose_loader(_cfg(folder)) == "resident"
    assert choose_loader(_cfg(folder, memory_budget_mb=1)) == "resident"  # 64 images of 16x16 fit a MiB
    assert choose_loader(_cfg(folder, image_size=12)) == "stream"
    assert choose_loader(_cfg(folder, train_crop="random_resized")) == "stream"
    tgz = tmp_path / "set.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(folder, arcname=".")
    assert not streamable(tgz) and choose_loader(_cfg(tgz)) == "resident"
    with pytest.raises(DataError, match="compressed archive cannot be read at random"):
        index_source(tgz)
    with pytest.raises(ConfigError, match="data.loader"):
        _cfg(folder, loader="resident", image_size=12)
    with pytest.raises(ConfigError, match=r"data.crop_scale: got \[0.5, 0.2\]"):
        _cfg(folder, crop_scale=[0.5, 0.2])


def test_bad_files_are_named_before_training_or_skipped(folder, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(folder, root)
    victim = sorted((root / "train" / "b").iterdir())[0]
    victim.write_bytes(b"")
    with pytest.raises(DataError, match=f"{victim}: empty file"):
        fit(_cfg(root, loader="stream", workers=0), tmp_path / "r1", progress=False)
    assert not (tmp_path / "r1" / "model.safetensors").exists()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError, match=f"{victim}: corrupt or truncated image"):
        fit(_cfg(root, loader="stream", workers=1), tmp_path / "r2", progress=False)
    metrics = fit(
        _cfg(root, loader="stream", workers=1, on_bad_image="skip", bagging=False),
        tmp_path / "r3",
        progress=False,
    )
    assert metrics["skipped_images"] >= 1


def test_on_bad_image_skip_replaces_training_images_only(folder, tmp_path):
    """An image of a scored split (test, val) that fails to decode stops the run's evaluation, as mheads eval
    stops: it was replaced by the next one (scored twice) and counted with the training skips."""
    import shutil

    root = shutil.copytree(folder, tmp_path / "bad")
    cfg = _cfg(root, loader="stream", workers=0, on_bad_image="skip", bagging=False, val_fraction=0.25)
    data = prepare(cfg, torch.device("cpu"))
    broken = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # after prepare's header check: fails only to decode
    for split in ("test", "val"):
        ds = {"test": data.test_set, "val": data.val_set}[split]
        victim = ds.source.where(int(ds.indices[1]))
        original = Path(victim).read_bytes()
        Path(victim).write_bytes(broken)
        with pytest.raises(DataError) as err:
            list(data.eval_batches(split, 16))
        assert str(err.value).startswith(f"{victim}: corrupt or truncated image")
        assert str(err.value).endswith(
            f"; remove or replace it: the run's evaluation scores every image of the {split} split "
            "(data.on_bad_image: skip replaces training images only)"
        )
        Path(victim).write_bytes(original)
    assert data.skipped_images == 0
    victim = data.train_set.source.where(int(data.train_set.indices[1]))
    Path(victim).write_bytes(broken)
    _, _, j, replaced, error = data.train_set[(1, 0, 0)]  # a training image: still the next readable one
    assert (j, replaced, error) == (2, 1, "")


def test_fit_streams_user_datasets_of_any_size(tmp_path):
    from PIL import Image

    import mheads

    class Photos(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            rng = np.random.default_rng(seed)
            self.items = [
                (Image.fromarray(rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)), i % 3)
                for i, (h, w) in enumerate(rng.integers(12, 30, (n, 2)))
            ]
            self.classes = ["x", "y", "z"]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    metrics = mheads.fit(
        net,
        Photos(24, 0),
        Photos(9, 1),
        out=tmp_path / "run",
        settings={
            "data.image_size": 10,
            "data.workers": 1,
            "model.members": 2,
            "train.iterations": 3,
            "train.batch_size": 6,
            "train.eval_every": 3,
            "train.device": "cpu",
            "train.threads": 1,
        },
    )
    assert metrics["classes"] == ["x", "y", "z"] and "data_wait_s" in metrics
    assert choose_loader(_cfg(None), TorchData(Photos(3, 0))) == "resident"


def test_transforms():
    from PIL import Image

    img = Image.fromarray(np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3))
    assert eval_view(img, 20, 24).size == (20, 20)
    square = img.crop((0, 0, 20, 20))
    assert eval_view(square, 20, 20) is square
    a = random_resized_crop(img, 16, np.random.default_rng(4))
    b = random_resized_crop(img, 16, np.random.default_rng(4))
    assert a.size == (16, 16) and a.tobytes() == b.tobytes()


def test_prepare_names_what_cannot_stream(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"0" * 10)
    with pytest.raises(DataError, match="x.bin: a file that is not a tar archive"):
        prepare(_cfg(tmp_path / "x.bin", loader="stream"), torch.device("cpu"))
    shards = tmp_path / "sh"
    shards.mkdir()
    with tarfile.open(shards / "train-0.tar", "w") as tar:
        info = tarfile.TarInfo("0001.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(DataError, match=r"0001: sample has \['jpg'\]; expected an image .* and a label"):
        index_source(shards)


def test_class_subsets_and_validation_splits_agree_between_loaders(folder, tmp_path):
    sub = {"classes": ["d", 0, 2], "val_fraction": 0.25, "bagging": False}
    r = prepare(_cfg(folder, loader="resident", **sub), torch.device("cpu"))
    s = prepare(_cfg(folder, loader="stream", workers=0, **sub), torch.device("cpu"))
    assert r.classes == s.classes == ["d", "a", "c"]
    sizes = {"train": 27, "val": 9, "test": 12, "ood": 4}
    assert {k: r.split_size(k) for k in sizes} == {k: s.split_size(k) for k in sizes} == sizes
    for split in ("val", "test", "ood"):
        (rx, ry), (sx, sy) = next(r.eval_batches(split, 64)), next(s.eval_batches(split, 64))
        assert torch.equal(rx, sx) and torch.equal(ry, sy)
    assert set(next(r.eval_batches("test", 64))[1].tolist()) == {0, 1, 2}
    fit(_cfg(folder, loader="resident", **sub), tmp_path / "r", progress=False)
    fit(_cfg(folder, loader="stream", workers=1, **sub), tmp_path / "s", progress=False)
    assert _same(tmp_path / "r", tmp_path / "s")
    with pytest.raises(DataError, match=r"data.classes: got 'zebra'; expected a class of the data set"):
        prepare(_cfg(folder, loader="resident", classes=["zebra", "a"]), torch.device("cpu"))


def test_limits_take_a_seeded_class_stratified_subset(folder):
    from mheads.data.subsets import stratified_limit

    labels = np.repeat(np.arange(4), [50, 30, 15, 5])  # class-sorted, like an image folder
    keep = stratified_limit(labels, 20, seed=0, split="train")
    assert np.bincount(labels[keep]).tolist() == [10, 6, 3, 1] and list(keep) == sorted(keep)
    assert list(keep) == list(stratified_limit(labels, 20, seed=0, split="train"))
    assert list(keep) != list(stratified_limit(labels, 20, seed=1, split="train"))
    assert (
        len(stratified_limit(labels, 7, 0, "test")) == 7 and len(stratified_limit(labels, 500, 0, "x")) == 100
    )
    r = prepare(_cfg(folder, loader="resident", train_limit=8, bagging=False), torch.device("cpu"))
    s = prepare(_cfg(folder, loader="stream", workers=0, train_limit=8, bagging=False), torch.device("cpu"))
    assert sorted(r.train_y.tolist()) == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]  # the folder's first 8 files are all class a
    assert torch.equal(next(r.eval_batches("train", 8))[0], next(s.eval_batches("train", 8))[0])


def test_resizing_streams_any_source_and_embedded_data(tmp_path):
    cfg = _cfg(None, image_size=20, normalize="mean_image", bagging=False)
    cfg.data.source = None  # the embedded Fashion-MNIST subset, 28x28, decoded whole
    assert choose_loader(cfg) == "stream"
    data = prepare(cfg, torch.device("cpu"))
    x, _ = next(data.eval_batches("test", 4))
    assert x.shape == (4, 1, 20, 20) and data.describe()["loader"] == "stream"


def test_descriptors_stay_under_a_cap_and_shards_never_mix_with_old_ones(folder, tmp_path, monkeypatch):
    import mheads.data.index as index_module

    shards = tmp_path / "shards"
    write_shards(folder, shards, per_shard=8)  # 6 train shards and 2 test shards
    monkeypatch.setattr(index_module, "_MAX_OPEN", 2)
    idx = index_source(shards).train
    ref = index_source(folder).train
    assert [idx.read(i) for i in range(len(idx))] == [ref.read(i) for i in range(len(ref))]
    assert len(idx._fds) == 2
    with pytest.raises(DataError, match="already holds .tar files"):
        write_shards(folder, shards, per_shard=20)
