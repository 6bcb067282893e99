"""The Python API in PyTorch's idiom: fit takes a Config and DataLoaders and returns a FitResult; a run
trained from Python reopens from Python (load_run, evaluate, predict); model.output; fit leaves the process's
global state as it found it."""

import json
import logging
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

import mheads
from mheads.config import Config, ConfigError
from mheads.data import DataError


class Net(nn.Module):
    def __init__(self, dropout=0.0, as_dict=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(6, 3)
        self.as_dict = as_dict

    def forward(self, x):
        h = self.drop(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stem(x), 1), 1))
        return {"features": h, "logits": self.fc(h)} if self.as_dict else self.fc(h)


class Images(torch.utils.data.Dataset):
    classes = ["a", "b", "c"]

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.x[:, 0] = (self.y[:, None, None] * 80).to(torch.uint8)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


SETTINGS = {
    "model.members": 2,
    "model.split": "stem",
    "loss.name": "mcl",
    "train.iterations": 3,
    "train.batch_size": 8,
    "train.eval_every": 0,
    "train.checkpoint_every": 0,
    "train.threads": 1,
    "optim.lr": 0.01,
    "data.normalize": "none",
    "train.device": "cpu",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    torch.manual_seed(0)
    return mheads.fit(Net(), Images(48, 0), Images(24, 1), out=out, settings=SETTINGS)


def test_fit_returns_the_tree_the_metrics_and_the_run(trained):
    assert isinstance(trained, mheads.FitResult) and isinstance(trained.tree, mheads.TreeNet)
    assert not trained.tree.training and trained.tree.num_members == 2
    saved = json.loads((trained.run / "metrics.json").read_text())
    assert trained.metrics == saved and trained == saved and dict(trained) == saved
    assert trained["oracle_acc"] == saved["oracle_acc"]  # the dict fit returned before: still readable so
    with pytest.raises(TypeError):
        trained["oracle_acc"] = 1.0  # read-only
    weights = load_file(str(trained.run / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in trained.tree.state_dict().items())
    assert "FitResult(run=" in repr(trained)


def test_a_run_trained_from_python_reopens_from_python(trained):
    tree = mheads.load_run(trained.run, model=Net())
    for a, b in zip(tree.parameters(), trained.tree.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="data: got None; the run .* trained on Python Datasets"):
        mheads.evaluate(trained.run, model=Net())  # its folder holds no data
    # the test set given again as a Dataset, a DataLoader, and the FitResult instead of the folder
    for run, data in ((trained.run, Images(24, 1)), (trained, DataLoader(Images(24, 1), batch_size=5))):
        got = mheads.evaluate(run, data, model=Net())
        assert got["member_acc"] == trained["member_acc"] and got["oracle_acc"] == trained["oracle_acc"]
    # a bare TreeNet sees the batches as given (uint8 scaled to [0, 1]): data.normalize none, so the same
    bare = mheads.evaluate(trained.tree, Images(24, 1), batch_size=7)
    assert bare["member_acc"] == trained["member_acc"]
    with pytest.raises(ConfigError, match="data: got None; a TreeNet is evaluated on a Dataset"):
        mheads.evaluate(trained.tree)


def test_predict_takes_a_tensor_batch_a_dataset_and_image_files(trained, tmp_path):
    from PIL import Image

    data = Images(5, 1)
    by_tensor = mheads.predict(trained.run, data.x, model=Net(), top=2)
    by_dataset = mheads.predict(trained, data, top=2)
    assert [r["index"] for r in by_tensor] == list(range(5))
    assert by_tensor == [{k: v for k, v in r.items() if k not in ("target", "oracle")} for r in by_dataset]
    for r, label in zip(by_dataset, data.y.tolist(), strict=True):  # (image, label) pairs: the oracle too
        right = [m for m, member in enumerate(r["members"]) if member["class"] == Images.classes[label]]
        assert r["target"] == Images.classes[label]
        assert r["oracle"] == {"member": right[0] if right else None, "correct": bool(right)}
    test = mheads.predict(trained, Images(24, 1), batch_size=7)  # the test set: eval's oracle_acc, per image
    assert sum(r["oracle"]["correct"] for r in test) / 24 == pytest.approx(trained["oracle_acc"])
    assert len(by_tensor[0]["top"]) == 2 and len(by_tensor[0]["members"]) == 2
    assert by_tensor[0]["top"][0]["class"] in Images.classes
    one = mheads.predict(trained, data.x[0].float() / 255)  # one [0, 1] float image
    assert one[0]["top"] == mheads.predict(trained, data.x[:1])[0]["top"]
    Image.fromarray(data.x[0].permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    by_file = mheads.predict(trained, [tmp_path / "a.png"])
    assert by_file[0]["path"].endswith("a.png") and by_file[0]["top"] == one[0]["top"]
    with pytest.raises(DataError, match=r"inputs: got torch.uint8 images of shape \(1, 3, 9, 9\)"):
        mheads.predict(trained, torch.zeros(1, 3, 9, 9, dtype=torch.uint8))


class Labelled(torch.utils.data.Dataset):
    """Images(n, 1) paired with labels of the caller's: ones the run never trained on, text."""

    def __init__(self, labels):
        self.images, self.labels = Images(len(labels), 1).x, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_predict_leaves_the_oracle_out_where_labels_are_not_the_runs_classes(trained, capsys):
    """An OOD set with labels, the run's 3 classes asked of 5 (a later batch), text labels: every image is
    predicted as without labels (all were refused), and one UserWarning (nothing on stderr) names the first
    label that does not fit; labels that fit keep the oracle."""
    alone = mheads.predict(trained, Images(10, 1).x, batch_size=4)
    capsys.readouterr()
    for labels, why in (
        ([0, 1, 2, 0, 1, 2, 0, 1, 3, 4], r"inputs\[8\]: target 3; the run's classes are 0\.\.2"),
        (["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"], r"inputs\[0\]: target 'a'; expected a number"),
    ):
        with pytest.warns(UserWarning) as caught:
            assert mheads.predict(trained, Labelled(labels), batch_size=4) == alone
        (line,) = [str(w.message) for w in caught]
        assert re.match(rf"no oracle in the records: {why}.*; the inputs are predicted alone$", line)
        assert capsys.readouterr().err == ""
    fits = mheads.predict(trained, Labelled([2] * 10), batch_size=4)
    assert all(r["target"] == "c" and "oracle" in r for r in fits) and capsys.readouterr().err == ""


def test_fit_takes_a_config_and_dataloaders(tmp_path, caplog):
    cfg = mheads.config.config_from_settings(SETTINGS)
    before = cfg.to_yaml()
    loader = DataLoader(Images(40, 0), batch_size=5, shuffle=True)
    with caplog.at_level(logging.INFO, logger="mheads"):
        result = mheads.fit(
            Net(), loader, DataLoader(Images(16, 1), batch_size=4), out=tmp_path / "c", settings=cfg
        )
    assert cfg.to_yaml() == before  # the caller's Config is never changed
    written = yaml.safe_load((result.run / "config.yaml").read_text())["train"]
    assert written["batch_size"] == 8  # a Config names every value: its own batch size applies
    assert "ignored: sampler/shuffle" in caplog.text
    settings = {k: v for k, v in SETTINGS.items() if k != "train.batch_size"}
    result = mheads.fit(Net(), loader, None, out=tmp_path / "d", settings=settings)
    written = yaml.safe_load((result.run / "config.yaml").read_text())["train"]
    assert written["batch_size"] == 5  # taken from the DataLoader: the settings do not name it


def test_fit_refuses_a_task_its_targets_do_not_fit_and_bad_settings(tmp_path):
    expected = r"targets torch.int64 of shape \(8,\); task regression expects float"
    with pytest.raises(DataError, match=expected):
        mheads.fit(Net(), Images(8, 0), out=tmp_path / "r", settings=SETTINGS, task="regression")
    with pytest.raises(ConfigError, match="task: got int; expected None, a task name"):
        mheads.fit(Net(), Images(8, 0), out=tmp_path / "t", settings=SETTINGS, task=3)
    with pytest.raises(ConfigError, match="settings: got list; expected a mapping of dotted keys"):
        mheads.fit(Net(), Images(8, 0), out=tmp_path / "s", settings=[("loss.name", "mcl")])
    with pytest.raises(ConfigError, match="model.output: got 1.5; expected null, a key"):
        Config().model.__class__(output=1.5).validate()


def test_model_output_picks_from_a_dict_and_is_rebuilt_by_load_run(tmp_path):
    settings = dict(SETTINGS, **{"model.output": "logits"})
    result = mheads.fit(Net(as_dict=True), Images(24, 0), out=tmp_path / "o", settings=settings)
    meta = json.loads((result.run / "run.json").read_text())["meta"]
    assert meta["output"] == "logits" and result.tree.output == "logits"
    tree = mheads.load_run(result.run, model=Net(as_dict=True))
    x = Images(4, 3).x.float() / 255
    assert tree(x).shape == (2, 4, 3)  # (M, B, C): the logits picked from the dict
    torch.testing.assert_close(tree(x), result.tree(x))  # the trained tree is channels_last: not bit for bit


def test_fit_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    """The global RNG state, the thread count and the malloc settings before and after; and the run's own
    randomness (dropout) does not depend on the caller's global RNG."""
    import mheads.train.process as process

    called = []
    monkeypatch.setattr(process, "retain_freed_memory", lambda: called.append(1) or True)
    settings = dict(SETTINGS, **{"train.threads": 1, "loss.name": "independent_ce", "model.split": None})
    before, threads = torch.get_num_threads(), 3  # neither the run's 1 nor the session's: a count to restore
    torch.set_num_threads(threads)
    weights = []
    try:
        for seed in (1, 2):
            torch.manual_seed(seed)
            rng = torch.get_rng_state()
            torch.manual_seed(0)
            base = Net(dropout=0.5)
            torch.set_rng_state(rng)
            mheads.fit(base, Images(24, 0), out=tmp_path / f"g{seed}", settings=settings)
            assert torch.equal(torch.get_rng_state(), rng)
            assert torch.get_num_threads() == threads
            weights.append(load_file(str(tmp_path / f"g{seed}" / "model.safetensors")))
    finally:
        torch.set_num_threads(before)
    assert called == []  # mheads.fit never raises glibc's thresholds (they cannot be read back or restored)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    with process.run_process_state(torch.device("cpu"), None, retain_memory=True):
        pass
    assert called == [1]  # the command line's runs do
