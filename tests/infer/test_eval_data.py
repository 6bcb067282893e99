"""mheads.infer.eval_data: ``mheads eval`` reads only the split it scores, so a corrupt training image does
not stop an evaluation of the test split (it did, and suggested data.on_bad_image, which eval cannot set); a
corrupt image in the scored split is one line saying what eval can do, whether the header check or the
decoder finds it; the metrics are those of reading the whole data set. A resident run's split comes from the
cache training wrote while it verifies; ``--ood`` reads an OOD set's test split alone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mheads.cli import main
from mheads.config import config_from_settings
from mheads.data import imagefolder
from mheads.data.load import load_dataset
from mheads.infer import evaluate as evaluate_module
from mheads.infer.evaluate import evaluate_run
from mheads.report.evaluation import report_run
from mheads.train.loop import fit

_KEYS = ("nll", "ece", "member_acc", "oracle_acc", "ensemble_mean_acc", "num_examples")


def _folder(root, seed=0):
    """2 classes, 4 PNG training and 3 JPEG test images each, 8x8 colour."""
    rng = np.random.default_rng(seed)
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
    """A 2-member run of one step on the folder, read by each loader (resident: writing its cache in the
    run's own cache folder)."""
    tmp = tmp_path_factory.mktemp(request.param)
    data = _folder(tmp / "data")
    settings = {
        "model.name": "cifar10_quick",
        "model.members": 2,
        "data.source": str(data),
        "data.loader": request.param,
        "data.workers": 0,
        "data.cache_dir": str(tmp / "cache"),
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


def _decodes(monkeypatch) -> list[str]:
    """The image files the resident readers decode from now on."""
    seen: list[str] = []
    decode = imagefolder.decode_image

    def counted(data, where):
        seen.append(where)
        return decode(data, where)

    monkeypatch.setattr(imagefolder, "decode_image", counted)
    return seen


@pytest.mark.parametrize("run", ["resident"], indirect=True)
def test_a_resident_run_is_evaluated_from_the_cache_training_wrote(run, tmp_path, monkeypatch):
    folder, data = run
    assert len(list((folder.parent / "cache").glob("*.mheads-cache"))) == 1  # written by the training run
    seen = _decodes(monkeypatch)
    cached = evaluate_run(folder, str(data))
    assert seen == []  # no image decoded
    copy = shutil.copytree(data, tmp_path / "data")  # another path: no cache of it
    decoded = evaluate_run(folder, str(copy))
    assert sorted(seen) == sorted(str(p) for p in copy.glob("test/*/*.jpg"))  # the test split alone
    monkeypatch.setattr(evaluate_module, "scored_split", lambda *a: None)  # both splits, as before
    both = evaluate_run(folder, str(data))
    assert all(cached[k] == decoded[k] == both[k] for k in _KEYS)


@pytest.mark.parametrize("run", ["resident"], indirect=True)
def test_a_cache_no_longer_matching_its_source_is_not_read(run, tmp_path, monkeypatch):
    """A training image corrupted after the cache was written: the cache no longer verifies, so the test split
    is decoded alone and evaluated (a valid cache never holds a corrupt image: it is written only once every
    image decoded)."""
    folder, data = run
    copy = shutil.copytree(data, tmp_path / "data")
    load_dataset(copy, cache_dir=folder.parent / "cache")  # the copy's cache, where the run looks
    seen = _decodes(monkeypatch)
    want = evaluate_run(folder, str(copy))
    assert seen == []
    (copy / "train/ant/1.png").write_bytes(b"not an image")
    got = evaluate_run(folder, str(copy))
    assert len(seen) == 6 and all(got[k] == want[k] for k in _KEYS)


def _truncated(data, tmp_path):
    copy = shutil.copytree(data, tmp_path / "data")
    bad = copy / "test/bee/2.jpg"
    bad.write_bytes(bad.read_bytes()[:120])  # starts like a JPEG: passes the header check, fails to decode
    return copy, bad


def _says_what_eval_can_do(err: str, bad) -> None:
    assert err.count("\n") == 1 and "on_bad_image" not in err
    assert f"{bad}: corrupt or truncated image" in err
    assert err.rstrip().endswith("; remove or replace it: mheads eval scores every image of the test split")


def test_a_truncated_test_image_says_what_eval_can_do(run, tmp_path, capsys):
    """Streamed or decoded whole (resident, no cache of the copy), the same one line."""
    folder, data = run
    copy, bad = _truncated(data, tmp_path)
    assert main(["eval", "--run", str(folder), "--data", str(copy), "--no-figures"]) == 2
    _says_what_eval_can_do(capsys.readouterr().err, bad)


def test_a_run_trained_with_on_bad_image_skip_is_evaluated_on_every_test_image(run, tmp_path, capsys):
    """Eval never skips: a test image it cannot decode stops it naming the file (it was replaced by the next
    readable image, silently, when streamed), as the resident path and the header check always did."""
    folder, data = run
    skipping = shutil.copytree(folder, tmp_path / "run")
    config = skipping / "config.yaml"
    config.write_text(config.read_text().replace("on_bad_image: stop", "on_bad_image: skip"))
    assert "on_bad_image: skip" in config.read_text()
    copy, bad = _truncated(data, tmp_path)
    assert main(["eval", "--run", str(skipping), "--data", str(copy), "--no-figures"]) == 2
    _says_what_eval_can_do(capsys.readouterr().err, bad)


def test_ood_reads_only_the_test_split_of_a_set_with_a_train_split(run, tmp_path):
    folder, _ = run
    ood = _folder(tmp_path / "ood", seed=1)
    want = report_run(folder, ood=[str(ood)], figures=False)
    copy = shutil.copytree(ood, tmp_path / "copy" / "ood")  # same name: same report keys
    (copy / "train/bee/3.png").write_bytes(b"not an image")
    got = report_run(folder, ood=[str(copy)], figures=False)
    assert got["ood_examples"] == want["ood_examples"] == {"ood": 6}
    assert got["ood"] == want["ood"]


def test_ood_with_a_bad_test_image_says_what_eval_can_do(run, tmp_path, capsys):
    folder, _ = run
    ood = _folder(tmp_path / "ood", seed=1)
    (ood / "test/ant/0.jpg").write_bytes(b"not an image")
    assert main(["eval", "--run", str(folder), "--ood", str(ood), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "on_bad_image" not in err
    assert f"{ood / 'test/ant/0.jpg'}: not an image" in err
    assert "remove or replace it: mheads eval scores every image of the test split" in err
