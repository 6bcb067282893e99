"""mheads.infer.eval_data: ``mheads eval`` reads only the split it scores, so a corrupt training image does
not stop an evaluation of the test split (it did, and suggested data.on_bad_image, which eval cannot set); a
corrupt image in the scored split is one line saying what eval can do; the metrics are those of reading the
whole data set."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mheads.cli import main
from mheads.config import config_from_settings
from mheads.infer import evaluate as evaluate_module
from mheads.infer.evaluate import evaluate_run
from mheads.train.loop import fit


def _folder(root):
    """2 classes, 4 PNG training and 3 JPEG test images each, 8x8 colour."""
    rng = np.random.default_rng(0)
    for split, n, suffix in (("train", 4, "png"), ("test", 3, "jpg")):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.{suffix}"
                )
    return root


@pytest.fixture(scope="module", params=["resident", "stream"])
def run(request, tmp_path_factory):
    """A 2-member run of one step on the folder, read by each loader."""
    tmp = tmp_path_factory.mktemp(request.param)
    data = _folder(tmp / "data")
    settings = {
        "model.name": "cifar10_quick",
        "model.members": 2,
        "data.source": str(data),
        "data.loader": request.param,
        "data.workers": 0,
        "train.iterations": 1,
        "train.batch_size": 4,
        "train.eval_every": 1,
        "train.device": "cpu",
        "train.threads": 1,
    }
    fit(config_from_settings(settings), tmp / "run", progress=False)
    return tmp / "run", data


def _copy(data, tmp_path, corrupt: str):
    copy = shutil.copytree(data, tmp_path / "data")
    (copy / corrupt).write_bytes(b"not an image")
    return copy


def test_a_corrupt_training_image_does_not_stop_eval_of_the_test_split(run, tmp_path, capsys):
    folder, data = run
    want = evaluate_run(folder, str(data))
    copy = _copy(data, tmp_path, "train/ant/1.png")
    assert main(["eval", "--run", str(folder), "--data", str(copy), "--no-figures"]) == 0
    assert "(test)" in capsys.readouterr().out
    got = evaluate_run(folder, str(copy))
    assert got["num_examples"] == 6 and got["nll"] == want["nll"] and got["oracle_acc"] == want["oracle_acc"]


def test_reading_the_scored_split_alone_gives_the_metrics_of_reading_both(run, monkeypatch):
    folder, data = run
    alone = evaluate_run(folder, str(data))
    monkeypatch.setattr(evaluate_module, "scored_split", lambda *a: None)  # the whole data set, as before
    both = evaluate_run(folder, str(data))
    assert alone.keys() == both.keys()
    assert all(alone[k] == both[k] for k in ("nll", "ece", "member_acc", "oracle_acc", "num_examples"))


def test_a_corrupt_image_of_the_scored_split_says_what_eval_can_do(run, tmp_path, capsys):
    folder, data = run
    copy = _copy(data, tmp_path, "test/bee/2.jpg")
    assert main(["eval", "--run", str(folder), "--data", str(copy), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "on_bad_image" not in err
    assert f"{copy / 'test/bee/2.jpg'}: not an image" in err
    assert "remove or replace it: mheads eval scores every image of the test split" in err


def test_eval_of_the_training_split_reads_past_a_corrupt_test_image(run, tmp_path):
    folder, data = run
    copy = _copy(data, tmp_path, "test/ant/0.jpg")
    assert evaluate_run(folder, str(copy), split="train")["num_examples"] == 8
