"""The run folder: who may resume it after a torchrun restart."""


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
