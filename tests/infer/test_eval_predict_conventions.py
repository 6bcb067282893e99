"""``mheads eval`` / ``mheads predict`` conventions on a small held-out MCL run: one temperature per predict
record, the OOD flag and its threshold, unreadable images reported per image, edited run files refused in one
line, OOD sets with only a test split or of the other colour kind, and one report per evaluated data set."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from held_out_run import train_held_out_run
from mheads.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conventions") / "run"
    train_held_out_run(out, iterations=10)
    return out


@pytest.fixture(scope="module")
def images(run, tmp_path_factory):
    """Three test images of the run's data as PNG files."""
    from mheads.data import load_embedded

    folder = tmp_path_factory.mktemp("images")
    ds = load_embedded()
    for i in range(3):
        Image.fromarray(ds.test.images[i, 0]).save(folder / f"img{i}.png")
    return folder


@pytest.fixture()
def fresh(run, tmp_path):
    """A copy of the run to edit."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def noise_folder(root, splits=("train", "test"), classes=1, shape=(28, 28), n=6, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{c}" / f"{i}.png")
    return root


# ---------------------------------------------------------------- predict: one temperature, the OOD flag


def test_every_number_of_a_predict_record_uses_the_ensembles_temperature(run, images):
    from mheads.ensemble.uncertainty import entropy_decomposition
    from mheads.infer.predict import load_image, predict
    from mheads.runs.run_files import load_calibration, load_normalizer
    from mheads.train.run_model import load_run

    cal = load_calibration(run, 3)
    assert cal["temperature"] != 1.0 and cal["member_temperatures"] != [cal["temperature"]] * 3
    recs = predict(run, [images], top=1)
    tree = load_run(run)
    x = torch.stack([load_image(images / f"img{i}.png", 1, 28, 28) for i in range(3)])
    with torch.no_grad():
        scaled = tree(load_normalizer(run, 1, 28)(x)).float() / cal["temperature"]
    members = torch.softmax(scaled, dim=-1)
    total, aleatoric, _ = entropy_decomposition(scaled)
    for i, rec in enumerate(recs):
        assert rec["temperature"] == cal["temperature"]
        assert [m["prob"] for m in rec["members"]] == pytest.approx(members[:, i].amax(-1).tolist(), abs=1e-4)
        assert rec["top"][0]["prob"] == pytest.approx(float(members[:, i].mean(0).max()), abs=1e-4)
        # the aleatoric entropy is the mean entropy of exactly the member probabilities shown
        assert rec["aleatoric"] == pytest.approx(float(aleatoric[i]), abs=1e-4)
        assert rec["entropy"] == pytest.approx(float(total[i]), abs=1e-4)
        assert sorted(p["prob"] for p in rec["proposals"]) == sorted(m["prob"] for m in rec["members"])


def test_the_ood_flag_compares_the_fitted_criterion_with_its_threshold(run, images, capsys):
    from mheads.ensemble.uncertainty import CRITERIA
    from mheads.infer.predict import predict
    from mheads.runs.run_files import load_calibration

    flag = load_calibration(run, 3)["ood_threshold"]
    assert flag["criterion"] == "max_member_prob" and flag["tpr"] == 0.95  # MCL: the specialist's confidence
    assert "held-out split" in flag["fitted_on"]
    recs = predict(run, [images], top=1)
    for rec in recs:
        ood = rec["ood"]
        assert ood["criterion"] == "max_member_prob" and ood["flag"] == (ood["score"] > ood["threshold"])
        # the score is the criterion on the temperature-scaled logits: minus the top member confidence
        assert ood["score"] == pytest.approx(-max(m["prob"] for m in rec["members"]), abs=2e-4)
    assert set(CRITERIA) >= {flag["criterion"]}
    assert main(["predict", "--run", str(run), str(images)]) == 0
    out, err = capsys.readouterr()
    assert all(" | OOD: " in line for line in out.splitlines()) and "no OOD flag" not in err


def test_without_a_threshold_the_flag_is_null_and_said_once(fresh, images, capsys):
    cal = json.loads((fresh / "calibration.json").read_text())
    del cal["ood_threshold"]  # a run calibrated before the flag existed
    (fresh / "calibration.json").write_text(json.dumps(cal))
    assert main(["predict", "--run", str(fresh), str(images), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["ood"] for r in json.loads(out)] == [None] * 3
    assert err.count("no OOD flag") == 1


# ---------------------------------------------------------------- predict: unreadable images


def test_one_unreadable_image_is_reported_and_the_others_predicted(run, images, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(images, folder)
    (folder / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")  # between two good ones
    (folder / "empty.jpg").write_bytes(b"")
    assert main(["predict", "--run", str(run), str(folder)]) == 2
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    names = ("empty.jpg", "img0.png", "img1.png", "img2.png")
    assert [ln.split(":")[0] for ln in lines] == [str(folder / f) for f in names]
    assert lines[0].startswith(f"{folder / 'empty.jpg'}: error: ") and " | members: " in lines[1]
    assert lines[2].startswith(f"{folder / 'img1.png'}: error: ") and " | members: " in lines[3]
    assert err.strip().splitlines()[-1] == (
        "mheads: error: 2 of 4 images could not be read (their records say why); the others were predicted"
    )
    assert main(["predict", "--run", str(run), str(folder), "--format", "json"]) == 2
    recs = json.loads(capsys.readouterr().out)
    assert [("error" in r, "top" in r) for r in recs] == [
        (True, False),
        (False, True),
        (True, False),
        (False, True),
    ]
    assert main(["predict", "--run", str(run), str(folder), "--format", "csv"]) == 2
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [bool(r["error"]) for r in rows] == [True, False, True, False]
    assert rows[1]["member2_class"] and rows[1]["ood"] in ("0", "1") and rows[2]["top1_class"] == ""


# ---------------------------------------------------------------- edited run files: exit 2, one line


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"temperature": -1.0}, "temperature: got -1.0; expected a finite number > 0"),
        ({"temperature": 0.0}, "temperature: got 0.0; expected a finite number > 0"),
        ({"member_temperatures": [1.0]}, "member_temperatures: got 1 values; expected a list of 3"),
    ],
)
def test_an_edited_calibration_ends_eval_and_predict_with_one_line(fresh, images, edit, message, capsys):
    cal = json.loads((fresh / "calibration.json").read_text())
    (fresh / "calibration.json").write_text(json.dumps({**cal, **edit}))
    for argv in (
        ["predict", "--run", str(fresh), str(images)],
        ["eval", "--run", str(fresh), "--no-figures"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mheads: error: {fresh / 'calibration.json'}: {message}")
        assert err.count("\n") == 1


def test_a_normalizer_of_the_wrong_shape_ends_eval_and_predict_with_one_line(fresh, images, capsys):
    from mheads.data.preprocess import Normalizer
    from mheads.runs.folder import save_normalizer

    save_normalizer(fresh, Normalizer("mean_image", torch.zeros(3, 32, 32), torch.tensor(1.0)))
    for argv in (
        ["predict", "--run", str(fresh), str(images)],
        ["eval", "--run", str(fresh), "--no-figures"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "normalizer.safetensors: shift: got shape (3, 32, 32); expected (1, 28, 28)" in err
        assert err.count("\n") == 1


def test_a_run_json_that_is_not_utf8_ends_eval_with_one_line(fresh, capsys):
    (fresh / "run.json").write_bytes(b'{"meta": "\xff\xfe"}')
    assert main(["eval", "--run", str(fresh), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"mheads: error: {fresh / 'run.json'}: unreadable run description (UnicodeDecodeError"
    )
    assert err.count("\n") == 1


def _edit_run_json(run, section: str, **fields) -> None:
    info = json.loads((run / "run.json").read_text())
    info[section].update(fields)
    (run / "run.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "classes, wrong",
    [
        (["a", "b"], "['a', 'b'] (2 names)"),
        ("abcde", "'abcde' (a str)"),
        ([1, 2, 3, 4, 5], "(not all strings)"),
    ],
)
def test_predict_refuses_class_names_that_do_not_fit_the_model(fresh, images, classes, wrong, capsys):
    _edit_run_json(fresh, "data", classes=classes)  # each fell back to class numbers without a word
    assert main(["predict", "--run", str(fresh), str(images)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mheads: error: {fresh / 'run.json'}: data.classes is ")
    assert f"{wrong}; expected a list of 5 class names (strings)" in err and err.count("\n") == 1


def test_a_run_json_num_classes_that_is_not_an_integer_names_run_json(fresh, images, capsys):
    _edit_run_json(fresh, "meta", num_classes=True)  # eval named --data: "num_classes 5 (model takes True)"
    for argv in (
        ["predict", "--run", str(fresh), str(images)],
        ["eval", "--run", str(fresh), "--no-figures"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mheads: error: {fresh / 'run.json'}: the model description does not build")
        assert "(num_classes: got True; expected an integer in 1..10000000)" in err and err.count("\n") == 1


def test_eval_of_members_whose_outputs_overflow_to_nan_exits_3_naming_the_member(fresh, capsys):
    from safetensors.torch import load_file, save_file

    weights = load_file(fresh / "model.safetensors")
    top = weights[
        "root.branches.1.layers.ip2.weight"
    ]  # member 1's last layer: finite, overflowing to inf - inf
    top[:] = 3e38
    top[:, ::2] = -3e38
    save_file(weights, fresh / "model.safetensors")
    assert main(["eval", "--run", str(fresh), "--no-figures"]) == 3  # was a ValueError traceback (exit 1)
    err = capsys.readouterr().err
    assert err == (
        "mheads: error: non-finite outputs in member 1 (100 of 100 examples): NaN or +inf logits, or -inf on "
        "every class, have no probabilities to score; expected finite logits (-inf on some classes is "
        "allowed)\n"
    )


def test_eval_jsonl_lines_that_are_not_utf8_objects_are_skipped(fresh):
    from mheads.runs.folder import read_jsonl, truncate_jsonl

    log = fresh / "eval.jsonl"
    good = read_jsonl(log)
    assert good and all(isinstance(r, dict) for r in good)
    log.write_bytes(log.read_bytes() + b'\xff\xfe{"step": 1}\n[1, 2]\n"text"\n{"step": "x"}\n{"step": 3}\n')
    assert read_jsonl(log) == good + [{"step": "x"}, {"step": 3}]
    truncate_jsonl(log, 10)  # on resume: the edited step goes, the good records stay
    assert read_jsonl(log) == good + [{"step": 3}]
    assert main(["plot", str(fresh)]) == 0


# ---------------------------------------------------------------- eval: OOD sets, reports per data set


def test_eval_scores_an_ood_folder_with_only_a_test_split(run, tmp_path, capsys):
    ood = noise_folder(tmp_path / "testonly", splits=("test",), shape=(40, 40))
    assert main(["eval", "--run", str(run), "--ood", str(ood), "--no-figures"]) == 0
    report = json.loads((run / "eval-report.json").read_text())
    assert report["ood_examples"]["testonly"] == 6
    assert "out-of-distribution: testonly (6 images" in capsys.readouterr().out


def test_colour_ood_data_for_a_greyscale_model_is_converted_as_predict_converts_it(run, tmp_path):
    from mheads.infer.evaluate import load_for_eval
    from mheads.report.evaluation import _ood_logits

    cfg, tree, d = load_for_eval(run)
    full = noise_folder(tmp_path / "a" / "rgb", shape=(28, 28, 3), n=4)  # train + test: the data loaders
    only_test = tmp_path / "b" / "rgb"
    shutil.copytree(full / "test", only_test / "test")  # the same files, read as predict reads them
    resident = _ood_logits(tree, cfg, d, str(full))
    files = _ood_logits(tree, cfg, d, str(only_test))
    assert resident.shape == (3, 4, 5) and torch.equal(resident, files)


def test_each_evaluated_data_set_keeps_its_own_report_named_as_printed(run, tmp_path, capsys):
    data = noise_folder(tmp_path / "one" / "noisy", classes=10, n=2)
    with tarfile.open(tmp_path / "noisy.tar.gz", "w:gz") as tar:
        tar.add(data, arcname="noisy")
    own = (run / "eval-report.json").read_bytes()
    written = []
    other = noise_folder(tmp_path / "two" / "noisy", classes=10, n=2)
    for source in (tmp_path / "noisy.tar.gz", data, other):
        assert main(["eval", "--run", str(run), "--data", str(source), "--no-figures"]) == 0
        printed = capsys.readouterr().out.strip().splitlines()[-2]
        assert printed.startswith("report: ")
        path = printed.removeprefix("report: ")
        assert json.loads(Path(path).read_text())["data"] == os.path.abspath(source)
        written.append(path)
    assert written[0] == str(run / "eval-report-noisy.json")  # x.tar.gz is the data set "x"
    # another data set of the same name gets its own report instead of overwriting
    assert len(set(written[1:])) == 2 and written[1].startswith(str(run / "eval-report-noisy-"))
    assert (run / "eval-report.json").read_bytes() == own  # the run's own test set's report is untouched
