"""mheads.infer.predict_format's JSON: one key per line, each list of numbers on one line, and the same
values as ``json.dumps(records, indent=1)`` (what ``mheads predict --format json`` wrote before)."""

import json

import torch

from mheads.infer.predict_format import format_predictions
from mheads.infer.predict_task import task_records
from mheads.tasks import segmentation


def test_a_segmentation_output_is_one_line_per_mask_row_and_reads_back_as_before():
    masks = torch.arange(2 * 12 * 16).reshape(2, 12, 16) % 5  # (B=2, H=12, W=16)
    records = [
        {"path": f"img{i}.png", "task": "segmentation", "prediction": masks[i].tolist(), "entropy": 0.25}
        for i in range(2)
    ]
    text = format_predictions(records, "json")
    assert len(text.splitlines()) <= 40 < len(json.dumps(records, indent=1).splitlines())
    assert json.loads(text) == json.loads(json.dumps(records, indent=1)) == records
    row = json.dumps(masks[0, 3].tolist())
    assert any(line.strip() == row + "," for line in text.splitlines())  # a mask row on one line
    assert '    "entropy": 0.25' in text.splitlines()  # one key per line


def test_every_kind_of_value_reads_back_as_before():
    records = [
        {"path": "a [1,  2].png", "top": [{"class": "cat", "prob": 0.5}], "members": [], "ood": None},
        {"path": "b.png", "error": "unreadable", "scores": [1, -2.5e-07, True, None, "x"], "d": {}},
        {"index": 3, "nested": [[[1.0, 2.0]], [], [[3.0]]], 7: [float("inf")]},
    ]
    text = format_predictions(records, "json")
    assert json.loads(text) == json.loads(json.dumps(records, indent=1))
    assert '"path": "a [1,  2].png"' in text  # a string is never reflowed


def test_real_segmentation_records_round_trip():
    outputs = torch.randn(2, 2, 3, 12, 16, generator=torch.Generator().manual_seed(0))  # (M, B, C, H, W)
    records = task_records(segmentation(3), outputs, [("index", 0), ("index", 1)])
    text = format_predictions(records, "json")
    assert json.loads(text) == records
    assert len(text.splitlines()) < 150 < len(json.dumps(records, indent=1).splitlines())


def test_a_classification_records_oracle_in_text_and_csv():
    import csv
    import io

    base = {
        "temperature": 1.0,
        "top": [{"class": "cat", "prob": 0.6}],
        "members": [{"class": "dog", "prob": 0.7}, {"class": "cat", "prob": 0.9}],
        "entropy": 0.5,
        "aleatoric": 0.4,
        "epistemic": 0.1,
        "disagreement": 1.0,
        "ood": None,
    }
    records = [
        {"path": "rows.csv:1", **base, "target": "cat", "oracle": {"member": 1, "correct": True}},
        {"path": "rows.csv:2", **base, "target": "ship", "oracle": {"member": None, "correct": False}},
        {"path": "rows.csv:3", "error": "unreadable"},
    ]
    lines = format_predictions(records, "text").splitlines()
    assert lines[0].endswith("| target cat: m1 right") and lines[1].endswith("| target ship: no member right")
    header, *rows = list(csv.reader(io.StringIO(format_predictions(records, "csv"))))
    assert header[-4:] == ["target", "oracle_member", "oracle_correct", "error"]
    assert [row[-4:] for row in rows] == [
        ["cat", "1", "1", ""],
        ["ship", "", "0", ""],
        ["", "", "", "unreadable"],
    ]
    plain = format_predictions([{"path": "x", **base}], "csv").splitlines()[0].split(",")
    assert "oracle_member" not in plain and plain[-1] == "error"  # no targets: the columns as before
