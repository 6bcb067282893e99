"""Streamed user Datasets of any shape (mheads.data.dataset_stream, issue 32): batch b equals the resident
TensorData's batch b (inputs, targets, bagging weights; torch.equal) for features, sequences, non-square
images and dict inputs; fit streamed trains the very weights fit resident does and resumes exactly; bad items
are refused in one line naming their index."""

import json
import random
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mheads
from mheads.config import ConfigError, config_from_settings
from mheads.data.dataset_stream import DatasetStream, stream_datasets, stream_from_config
from mheads.data.errors import DataError
from mheads.data.loader import TorchData, prepare
from mheads.data.pairs import TensorPairs
from mheads.data.rows import RowChoice
from mheads.data.stream_failures import StreamWorkerError
from mheads.data.tensor_data import prepare_tensors

CPU = torch.device("cpu")


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Plain(torch.utils.data.Dataset):
    """Pairs without a ``targets`` attribute: the class labels are counted by one pass over the items."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Tokens(Plain):
    """Dict inputs (token ids and an attention mask), the Hugging Face convention."""

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": (self.x[i] > 3).long()}, self.y[i]


def features(n=29):
    x = torch.randn(n, 3, generator=gen(0))
    return TensorPairs(x, torch.stack([x.sum(1), x[:, 0]], 1))  # float targets (N, 2)


def sequences(n=31):
    x = torch.randn(n, 2, 9, generator=gen(1))  # (C, T)
    return Plain(x, torch.randint(0, 3, (n,), generator=gen(2)))


def images(n=23):
    img = torch.randint(0, 256, (n, 1, 6, 10), generator=gen(3), dtype=torch.uint8)  # H != W, uint8
    return TensorPairs(img, (img[:, 0] > 127).long())  # masks


def tokens(n=27):
    return Tokens(torch.randint(0, 9, (n, 5), generator=gen(4)), torch.randint(0, 4, (n,), generator=gen(5)))


CASES = {  # data, the settings that make its run
    "features": (features, {"task.name": "regression", "data.train_limit": 20, "data.val_fraction": 0.2}),
    "sequences": (sequences, {"data.train_limit": 24, "data.test_limit": 11}),  # stratified: a label pass
    "images": (images, {"task.name": "segmentation", "task.num_classes": 2, "data.bootstrap_unique": 1}),
    "tokens": (tokens, {"data.val_fraction": 0.25}),
}
BASE = {"train.batch_size": 8, "train.seed": 5, "model.members": 3, "data.bagging": True}


def _cfg(case, **more):
    settings = {**BASE, **CASES[case][1], **more}
    if settings.get("data.bootstrap_unique") is not None:
        settings["data.bagging"] = False
    return config_from_settings(settings)


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_streamed_batches_are_the_resident_batches(case):
    data, cfg = CASES[case][0], _cfg(case)
    resident = prepare_tensors(cfg, CPU, data(), data())
    stream = stream_from_config(cfg, CPU, data(), data())
    assert stream.classes == resident.classes
    assert {
        k: v for k, v in stream.describe().items() if k not in ("loader", "workers")
    } == resident.describe()
    assert _equal(stream.example_input(), resident.example_input())
    for b in (0, 1, 2, 7, 3, 3):  # in order, a jump ahead (a resume), back, the same batch twice
        for got, want in zip(stream.train_batch(b), resident.train_batch(b)):
            assert _equal(got, want), b
    if cfg.data.bagging:
        assert resident.weights is not None and stream.train_batch(4)[2] is not None
    for split in ("train", "test", "val", "ood"):
        assert stream.split_size(split) == resident.split_size(split)
        pairs = list(zip(stream.eval_batches(split, 5), resident.eval_batches(split, 5), strict=True))
        assert all(_equal(s[0], r[0]) and _equal(s[1], r[1]) for s, r in pairs), split


def test_explicit_arguments_and_a_replicas_shard():
    ds = sequences()
    stream = stream_datasets(
        ds, batch_size=8, seed=5, members=3, device=CPU, bagging=True, classify=True, choice=RowChoice()
    )
    cfg = config_from_settings(BASE)
    resident = prepare_tensors(cfg, CPU, ds)
    assert stream.classes == ["0", "1", "2"] and stream.split_size("test") == len(ds)  # test: the train set
    stream.shard = resident.shard = (1, 2)  # data-parallel replica 1 of 2 reads rows 4..7 of each batch
    for b in range(3):
        got, want = stream.train_batch(b), resident.train_batch(b)
        assert len(got[1]) == 4 and all(_equal(g, w) for g, w in zip(got, want))


def test_the_loader_streams_by_config_and_by_size():
    ds = features(300)  # 300 x 5 float32
    cfg = _cfg("features", **{"data.loader": "stream", "data.workers": 0})
    assert isinstance(prepare(cfg, CPU, dataset=TorchData(ds)), DatasetStream)
    cfg = _cfg("features")  # auto: resident while it fits data.memory_budget_mb
    assert not isinstance(prepare(cfg, CPU, dataset=TorchData(ds)), DatasetStream)
    big = TensorPairs(torch.zeros(600, 500), torch.zeros(600))  # 1.2 MB
    cfg = _cfg("features", **{"data.memory_budget_mb": 1, "data.workers": 0})
    assert isinstance(prepare(cfg, CPU, dataset=TorchData(big)), DatasetStream)


class Bad(Plain):
    def __init__(self, n=20, bad=13, what="nan"):
        super().__init__(torch.randn(n, 4, generator=gen(6)), torch.randint(0, 2, (n,), generator=gen(7)))
        self.bad, self.what = bad, what

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if i == self.bad:
            if self.what == "nan":
                x = x.clone().fill_(float("nan"))
            elif self.what == "shape":
                x = x[:3]
            else:
                y = torch.tensor(7)
        return x, y


@pytest.mark.parametrize(
    "what, message",
    [
        ("nan", r"^train\[13\] input: a non-finite value; expected finite numbers$"),
        ("shape", r"^train input\[13\]: torch.float32 of shape \(3,\) differs from train input\[0\]'s "),
        ("label", r"^train\[13\] target: label 7; expected a class index in 0..1, the classes counted"),
    ],
)
def test_a_bad_item_is_refused_in_one_line_naming_it(what, message):
    ds = Bad(what=what)
    if what == "label":  # classes counted from a `targets` that disagrees with the items: caught where read
        ds.targets = torch.zeros(20, dtype=torch.int64).index_fill_(0, torch.tensor([1]), 1)
    stream = stream_datasets(ds, batch_size=20, seed=0, members=2, device=CPU, classify=what == "label")
    with pytest.raises(DataError, match=message):
        stream.train_batch(0)
    if what != "label":  # classification without `targets`: the pass that counts the classes finds it first
        with pytest.raises(DataError, match=message):
            stream_datasets(ds, batch_size=20, seed=0, members=2, device=CPU, classify=True)


def test_what_cannot_stream_is_refused_in_one_line(tmp_path):
    class Endless(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(3), 0

    with pytest.raises(DataError, match=r"^train: got an IterableDataset \(Endless\); expected a map-style"):
        stream_datasets(Endless(), batch_size=2, seed=0, members=1, device=CPU)
    with pytest.raises(ConfigError, match=r"^task.num_classes: got None; streamed segmentation"):
        stream_from_config(config_from_settings({"task.name": "segmentation"}), CPU, images())
    with pytest.raises(DataError, match=r"^train: targets torch.float32 of shape \(29, 2\); classification"):
        stream_from_config(config_from_settings({}), CPU, features())
    table = tmp_path / "t.csv"
    table.write_text("a,y\n1,2\n3,4\n")
    cfg = config_from_settings(
        {"data.source": str(table), "data.features": ["a"], "data.targets": "y", "task.name": "regression"}
    )
    cfg.data.loader = "stream"
    with pytest.raises(ConfigError, match=r"^data.loader: got 'stream' for data.source .*t.csv, a table"):
        prepare(cfg, CPU)


# fit: the streamed run trains the very weights of the resident one, and resumes exactly


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(9, 4)
        self.head = nn.Linear(4, 4)

    def forward(self, batch):
        m = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((self.emb(batch["input_ids"]) * m).sum(1) / m.sum(1).clamp(min=1))


def _fit(case, out, iterations, loader, resume=False, workers=0):
    data, extra = FITS[case]
    model = {
        "features": lambda: nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)),
        "tokens": TokenNet,
        "noisy": lambda: nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)),
    }[case]
    extra = {k: v for k, v in extra.items() if not k.startswith("data.")}  # all examples, bagging
    settings = {
        **BASE,
        **extra,
        "loss.name": "mcl",
        "optim.lr": 0.05,
        "train.eval_every": 2,
        "train.checkpoint_every": 2,
        "train.iterations": iterations,
        "data.loader": loader,
        "data.workers": workers,
    }
    torch.manual_seed(0)  # the model's initial weights (the same for both runs)
    return mheads.fit(model(), data(), data(), out=out, resume=resume, progress=False, settings=settings)


def _weights(run):
    return load_file(str(run / "model.safetensors"))


@pytest.mark.parametrize("case", ["features", "tokens"])
def test_fit_streamed_equals_resident_and_resumes_exactly(tmp_path, case):
    _fit(case, tmp_path / "resident", 4, "resident")
    streamed = _fit(case, tmp_path / "stream", 4, "stream")
    _fit(case, tmp_path / "part", 2, "stream")
    _fit(case, tmp_path / "part", 4, "stream", resume=True)
    want = _weights(tmp_path / "resident")
    for run in ("stream", "part"):
        got = _weights(tmp_path / run)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), run
    data = json.loads((streamed.run / "run.json").read_text())["data"]
    assert data["loader"] == "stream" and data["workers"] == 0
    key = {"features": "rmse", "tokens": "oracle_acc"}[case]  # evaluated streamed, as the run was
    assert mheads.evaluate(streamed, FITS[case][0]())[key] == pytest.approx(streamed.metrics[key], rel=1e-6)


class Noisy(Plain):
    """A Dataset that augments at random in __getitem__ (torch's, numpy's and Python's generators)."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x + torch.rand(3) + float(np.random.rand()) + random.random(), y


def noisy():
    x = torch.randn(22, 3, generator=gen(8))
    return Noisy(x, x[:, :2] * 2)


# what fit trains below (a randomly augmenting Dataset has no resident twin: read whole, it draws once)
FITS = {
    "features": CASES["features"],
    "tokens": CASES["tokens"],
    "noisy": (noisy, {"task.name": "regression"}),
}


def test_a_randomly_augmenting_dataset_draws_per_batch_and_place_and_leaves_the_process_generators():
    cfg = config_from_settings({**BASE, "task.name": "regression"})
    stream = stream_from_config(cfg, CPU, noisy())
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = stream.train_batch(3)[0]
    assert torch.equal(torch.get_rng_state(), states[0]) and (np.random.get_state()[1] == states[1]).all()
    assert random.getstate() == states[2]
    again = stream_from_config(cfg, CPU, noisy())
    assert torch.equal(again.train_batch(3)[0], first)  # a resume at batch 3 reads the very same batch


def test_a_randomly_augmenting_dataset_resumes_exactly(tmp_path):
    _fit("noisy", tmp_path / "full", 4, "stream")
    _fit("noisy", tmp_path / "part", 2, "stream")
    _fit("noisy", tmp_path / "part", 4, "stream", resume=True)
    got, want = _weights(tmp_path / "part"), _weights(tmp_path / "full")
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["tokens", "noisy"])
def test_two_workers_stream_the_single_process_batches_and_resume_exactly(tmp_path, case):
    _fit(case, tmp_path / "one", 6, "resident" if case == "tokens" else "stream")
    _fit(case, tmp_path / "part", 3, "stream", workers=2)
    _fit(case, tmp_path / "part", 6, "stream", resume=True, workers=2)
    got, want = _weights(tmp_path / "part"), _weights(tmp_path / "one")
    assert all(torch.equal(got[k], want[k]) for k in want)


class Hangs(Plain):
    def __getitem__(self, i):
        if torch.utils.data.get_worker_info() is not None:
            time.sleep(60)  # a worker that never answers
        return super().__getitem__(i)


@pytest.mark.slow
def test_a_worker_that_sends_nothing_ends_the_run_in_one_line():
    ds = Hangs(torch.zeros(8, 2), torch.zeros(8))
    stream = stream_datasets(ds, batch_size=4, seed=0, members=1, device=CPU, workers=1, timeout_s=2.0)
    t0 = time.perf_counter()
    with pytest.raises(
        StreamWorkerError, match=r"^data.workers: no batch came from the worker processes for 2"
    ):
        stream.train_batch(0)
    assert time.perf_counter() - t0 < 30


def test_a_streamed_test_split_unlike_the_training_split_is_refused_at_once():
    train, test = (
        TensorPairs(torch.randn(8, 3), torch.randn(8, 1)),
        TensorPairs(torch.randn(4, 3), torch.randn(4, 2)),
    )
    with pytest.raises(
        DataError, match=r"test\[0\]: target float \(2,\); expected train\[0\]'s float \(1,\)"
    ):
        stream_datasets(train, test, batch_size=4, seed=0, members=2, device=CPU)
