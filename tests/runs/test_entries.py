"""A handed-over run folder's entries: links, FIFOs and devices are refused by name before anything reads or
writes through them; run.json is read bounded."""

from __future__ import annotations

import json
import os

import pytest

from mheads.config import ConfigError
from mheads.runs import entries
from mheads.runs.checkpoint import CheckpointError
from mheads.runs.entries import check_run_entries, read_run_file, read_run_json


def a_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"meta": {"members": 2}}))
    (run / "eval.jsonl").write_text("{}\n")
    return run


def test_a_run_folder_of_regular_files_and_folders_passes(tmp_path):
    run = a_run(tmp_path)
    (run / "unrelated-link").symlink_to(tmp_path)  # not an entry mheads reads or writes
    check_run_entries(run)
    assert read_run_json(run) == {"meta": {"members": 2}}


@pytest.mark.parametrize(
    ("name", "make", "what"),
    [
        ("plots", "dir-link", "a symbolic link"),  # eval and plot would write their figures there
        ("checkpoints", "dir-link", "a symbolic link"),  # resume would write and prune checkpoints there
        ("eval.jsonl", "file-link", "a symbolic link"),
        ("eval-report-ood.json", "file-link", "a symbolic link"),
        ("run.json", "fifo", "not a regular file"),  # a read would hang
        ("metrics.json", "dir", "not a regular file"),
        ("members", "file", "not a folder"),
    ],
)
def test_a_link_fifo_or_wrong_kind_is_refused_naming_the_entry(tmp_path, name, make, what):
    run = a_run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    p = run / name
    if p.is_dir():
        p.rmdir()
    elif p.exists():
        p.unlink()
    if make == "dir-link":
        p.symlink_to(outside)
    elif make == "file-link":
        p.symlink_to(outside / "victim")
    elif make == "fifo":
        os.mkfifo(p)
    elif make == "dir":
        p.mkdir()
    else:
        p.write_text("")
    with pytest.raises(CheckpointError, match=rf"{name}: is {what}; a run folder's entries must be") as info:
        check_run_entries(run)
    assert "\n" not in str(info.value)
    if name != "run.json":
        with pytest.raises(CheckpointError, match=name):
            read_run_json(run)  # checked before run.json is read
    assert (outside / "victim").read_text() == "keep" and os.listdir(outside) == ["victim"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]", r"unreadable run description \(list\)"),
        (b"\xff{}", r"unreadable run description \(UnicodeDecodeError"),
        (b"{" * 10, r"unreadable run description \(JSONDecodeError"),
        (b" " * 100 + b"{}", r"file is 102 bytes; files above 64 bytes .* refused before reading"),
    ],
)
def test_run_json_must_be_a_small_utf8_json_object(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(entries, "MAX_RUN_JSON_BYTES", 64)
    run = a_run(tmp_path)
    (run / "run.json").write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_run_json(run)
    assert str(run / "run.json") in str(info.value) and "\n" not in str(info.value)


def test_a_missing_run_json_says_what_a_run_folder_is(tmp_path):
    run = a_run(tmp_path)
    (run / "run.json").unlink()
    with pytest.raises(ConfigError, match=r"no run.json; is it a run folder written by `mheads train`\?"):
        read_run_json(run)


def test_metrics_json_is_read_as_run_json_is(tmp_path, monkeypatch):
    """read_run_file: the entries checked, a FIFO refused before it is opened, the size bounded, a JSON object
    (mheads reproduce reads each cell's metrics.json with it)."""
    run = a_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"oracle_acc": 50.0}))
    assert read_run_file(run, "metrics.json") == {"oracle_acc": 50.0}
    monkeypatch.setattr(entries, "MAX_RUN_JSON_BYTES", 8)
    with pytest.raises(ConfigError, match=r"metrics.json: file is 20 bytes; files above 8 bytes"):
        read_run_file(run, "metrics.json")
    (run / "metrics.json").unlink()
    with pytest.raises(ConfigError, match=r"no metrics.json; is it a run folder"):
        read_run_file(run, "metrics.json")
    os.mkfifo(run / "metrics.json")
    with pytest.raises(CheckpointError, match=r"metrics.json: is not a regular file"):
        read_run_file(run, "metrics.json")
