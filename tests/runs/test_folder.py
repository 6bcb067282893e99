"""The run folder: who may resume it after a torchrun restart; a handed-over folder's links."""

import os

import pytest

from mheads.runs.checkpoint import CheckpointError
from mheads.runs.folder import prepare_out_dir


def test_a_torchrun_restart_resumes_only_the_run_its_own_job_began(tmp_path, monkeypatch):
    from mheads.runs.folder import LAUNCH_FILE, record_launch, restarted_here

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    record_launch(run)
    assert (run / LAUNCH_FILE).read_text() == "job-a\n"
    assert not restarted_here(run)  # the first attempt
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert restarted_here(run)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")  # another job's restart: an older run, not ours
    assert not restarted_here(run)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    (run / "config.yaml").unlink()  # our attempt died before writing anything to resume: start afresh
    assert not restarted_here(run)


def test_overwrite_clears_every_eval_report_of_the_replaced_run(tmp_path):
    from mheads.runs.folder import prepare_out_dir

    out = tmp_path / "run"
    out.mkdir()
    for name in (
        "config.yaml",
        "eval-report.json",
        "eval-report-cifar10.json",
        "eval-report-x-1a2b.json",
        "notes.txt",
    ):
        (out / name).write_text("x")
    prepare_out_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]


def test_overwrite_clears_every_entry_mheads_writes_but_the_lock(tmp_path):
    """CLEARED_BY_OVERWRITE is built from runs.entries' list: every file and folder checked is cleared."""
    from mheads.runs.entries import LOCK_FILE, RUN_FILES, RUN_FOLDERS
    from mheads.runs.folder import prepare_out_dir

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    for name in RUN_FOLDERS:
        (out / name).mkdir(exist_ok=True)
        (out / name / "inner").write_text("x")
    for name in RUN_FILES:
        (out / name).write_text("x")
    prepare_out_dir(out, resume=False, overwrite=True)
    assert os.listdir(out) == [LOCK_FILE]


def test_resume_refuses_a_checkpoints_folder_linked_outside_the_run(tmp_path):
    # train --resume wrote its checkpoints through the link (and pruned old ones there).
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    (run / "checkpoints").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"checkpoints: is a symbolic link"):
        prepare_out_dir(run, resume=True, overwrite=False)


def test_overwrite_removes_a_link_never_what_it_points_to(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    (outside / "step-00000001").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    (run / "checkpoints").symlink_to(outside)
    (run / "metrics.json").symlink_to(outside / "missing")  # a dangling link
    prepare_out_dir(run, resume=False, overwrite=True)
    assert sorted(os.listdir(run)) == [] and (outside / "step-00000001").is_dir()
