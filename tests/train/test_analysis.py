"""Temperature scaling on the held-out split, the uncertainty report at the end of training, and
``mheads eval`` / ``mheads predict`` on the run."""

from __future__ import annotations

import csv
import io
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from held_out_run import train_held_out_run
from mheads.cli import main
from mheads.runs.run_files import load_calibration, load_normalizer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "run"
    return out, train_held_out_run(out, iterations=20)


def test_a_held_out_run_is_calibrated_and_reports_open_set_detection(run):
    out, metrics = run
    cal = load_calibration(out, 3)
    assert cal["val_examples"] == 60 and len(cal["member_temperatures"]) == 3
    assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9  # the fit minimizes exactly this NLL
    assert metrics["temperature"] == cal["temperature"] > 0
    report = json.loads((out / "uncertainty.json").read_text())
    assert report["test_examples"] == 100 and report["ood_examples"]["open_set"] == 100
    for crit in ("max_prob", "entropy", "mutual_info", "energy", "disagreement", "max_member_prob"):
        assert metrics[f"ood_auroc_{crit}"] == report["ood"]["open_set"][crit]["auroc"]
        for positive in ("in", "out"):
            fpr95 = report["ood"]["open_set"][crit][f"fpr95_{positive}"]
            assert metrics[f"ood_fpr95_{positive}_{crit}"] == fpr95 and 0.0 <= fpr95 <= 1.0
    assert load_normalizer(out, 1, 28).mode == "mean_image"


def test_eval_reproduces_the_recorded_report_and_draws_it(run, capsys):
    out, metrics = run
    assert main(["eval", "--run", str(out)]) == 0
    text = capsys.readouterr().out
    assert "temperature-scaled" in text
    assert "out-of-distribution: open_set (100 images; AUPR chance: in 0.500, out 0.500)" in text
    report = json.loads((out / "eval-report.json").read_text())
    recorded = json.loads((out / "uncertainty.json").read_text())
    assert report["ood"] == recorded["ood"] and report["calibrated"] == recorded["calibrated"]
    assert report["metrics"]["ensemble_mean_acc"] == metrics["ensemble_mean_acc"]
    for name in ("reliability.png", "risk_coverage.png", "ood_open_set.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_eval_scores_another_data_set_as_out_of_distribution(run, tmp_path, capsys):
    out, _ = run
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "noise" / split / "x").mkdir(parents=True)
        for i in range(20):  # 40x40 noise: streamed, resized to the model's 28x28
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(
                tmp_path / "noise" / split / "x" / f"{i}.png"
            )
    assert main(["eval", "--run", str(out), "--ood", str(tmp_path / "noise"), "--no-figures"]) == 0
    report = json.loads((out / "eval-report.json").read_text())
    assert report["ood_examples"] == {"noise": 20, "open_set": 100}
    assert set(report["ood_conventions"]) >= {"auroc", "aupr_in", "aupr_out", "fpr95_in", "fpr95_out"}
    text = capsys.readouterr().out
    assert "out-of-distribution: noise (20 images; AUPR chance: in 0.833, out 0.167)" in text


def test_predict_prints_each_image_with_members_and_proposals(run, tmp_path, capsys):
    out, _ = run
    from mheads.data import load_embedded

    ds = load_embedded()
    for i in range(3):
        Image.fromarray(ds.test.images[i, 0]).save(tmp_path / f"img{i}.png")
    Image.fromarray(np.full((50, 70), 128, np.uint8)).save(tmp_path / "wide.png")  # resized + centre-cropped
    assert main(["predict", "--run", str(out), str(tmp_path), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == [
        str(tmp_path / f) for f in ("img0.png", "img1.png", "img2.png", "wide.png")
    ]
    assert all("| members: " in ln and "| proposals: " in ln for ln in lines)
    assert main(["predict", "--run", str(out), str(tmp_path / "img0.png"), "--format", "json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    classes = json.loads((out / "run.json").read_text())["data"]["classes"]
    assert len(rec["top"]) == 3 and {t["class"] for t in rec["top"]} <= set(classes)
    assert abs(sum(t["prob"] for t in rec["top"])) <= 1.0 + 1e-3 and len(rec["members"]) == 3
    assert [p["prob"] for p in rec["proposals"]] == sorted(
        (p["prob"] for p in rec["proposals"]), reverse=True
    )
    assert main(["predict", "--run", str(out), str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and rows[0]["member2_class"] in classes


def test_predict_matches_the_ensemble_on_the_test_split(run, tmp_path):
    """The image path (PNG, decode, evaluation view, saved normalizer) gives the model eval's very input."""
    from mheads.infer.evaluate import load_for_eval
    from mheads.infer.predict import predict

    out, _ = run
    cfg, tree, data = load_for_eval(out)
    x, _ = next(data.eval_batches("test", 4))
    want = torch.softmax(tree(x).float(), dim=-1).mean(dim=0)  # uncalibrated ensemble
    for j in range(4):  # the test split's first four images, as files
        Image.fromarray(data.test_x[j, 0].numpy()).save(tmp_path / f"{j}.png")
    cal = (out / "calibration.json").read_text()
    (out / "calibration.json").unlink()
    try:
        recs = predict(out, [tmp_path], top=1)
    finally:
        (out / "calibration.json").write_text(cal)
    got = [r["top"][0]["prob"] for r in recs]
    assert got == pytest.approx(want.max(dim=-1).values.tolist(), abs=1e-4)


def test_predict_and_eval_work_on_a_run_from_before_normalizers_and_calibration_were_saved(run, tmp_path):
    import shutil

    from mheads.infer.predict import predict

    out, _ = run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for name in ("normalizer.safetensors", "calibration.json", "uncertainty.json", "eval-report.json"):
        (old / name).unlink(missing_ok=True)
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "x.png")
    recs = predict(old, [tmp_path / "x.png"], top=1)  # the normalizer is refitted on the run's data
    new = predict(
        out, [tmp_path / "x.png"], top=1
    )  # saved normalizer, and temperatures (no effect on argmax)
    assert [m["class"] for m in recs[0]["members"]] == [m["class"] for m in new[0]["members"]]
    assert main(["eval", "--run", str(old), "--no-figures"]) == 0
    report = json.loads((old / "eval-report.json").read_text())
    assert "calibrated" not in report and report["ood"]["open_set"]["entropy"]["auroc"] > 0


class _NoSplits:
    """The one thing `analyse` asks of a data source when it is given the test logits: a split's size."""

    def split_size(self, split: str) -> int:
        return 0


def test_the_report_keeps_the_ood_conventions_beside_the_ood_columns():
    from mheads.config import Config
    from mheads.ensemble.detection import CONVENTIONS
    from mheads.train.analysis import analyse

    g = torch.Generator().manual_seed(0)
    test = torch.randn(3, 12, 4, generator=g), torch.randint(0, 4, (12,), generator=g)
    ood = {"noise": torch.randn(3, 5, 4, generator=g)}
    calibration = {"temperature": 1.5}
    report = analyse(None, _NoSplits(), Config(), calibration, ood, test=test)
    assert report["ood_conventions"] == CONVENTIONS and report["calibrated"]["ood_conventions"] == CONVENTIONS
    assert "ood_conventions" not in analyse(None, _NoSplits(), Config(), test=test)  # no OOD set, no columns


def test_the_no_held_out_note_is_said_once_per_command(caplog):
    """`mheads demo` trains a run per cell; its "no held-out split" note is the same on each: said once."""
    from types import SimpleNamespace

    from mheads.core.notes import once_per_command
    from mheads.train.finish import _uncertainty

    caplog.set_level(logging.INFO, logger="mheads")
    run = SimpleNamespace(comm=SimpleNamespace(world_size=1, is_root=True), data=_NoSplits())
    with once_per_command():
        assert _uncertainty(run) == {} and _uncertainty(run) == {}
    assert _uncertainty(run) == {}  # fit from Python, outside a command: said on each run
    notes = [r.getMessage() for r in caplog.records if "no held-out split" in r.getMessage()]
    assert len(notes) == 2 and notes[0].startswith("temperature scaling and the uncertainty report skipped")
