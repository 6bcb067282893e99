"""One process per run folder: a second one is refused at once; a killed holder's folder is resumable."""

import os
import signal
import time

import pytest

from mheads.cli import main
from mheads.runs.folder import RunExistsError
from mheads.runs.lock import LOCK_FILE, RunLock, RunLockedError


def hold(out, fork_again: bool = False) -> int:
    """The pid of another process that holds ``out``'s lock until killed: a fork of this one (no interpreter
    start). With ``fork_again`` the holder forks a child of its own while it holds the lock (a DataLoader
    worker, say), which outlives its killed parent for 30 s."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder: never returns into pytest
        try:
            os.close(r)
            with RunLock(out):
                if fork_again and os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                os.write(w, b"held")
                time.sleep(120)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as said:
        assert said.read(4) == b"held", "the holder died before taking the lock"
    return pid


def release(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    holder = hold(tmp_path / "run")
    try:
        with pytest.raises(
            RunLockedError,
            match=rf"another mheads process is using this run folder \(pid "
            rf"{holder} on ",
        ):
            with RunLock(tmp_path / "run"):
                pass
    finally:
        release(holder)
    with RunLock(tmp_path / "run"):  # the OS released the killed holder's lock
        assert (tmp_path / "run" / LOCK_FILE).read_text().startswith(f'{{"pid": {os.getpid()}')


def test_a_train_on_a_held_folder_exits_2_and_leaves_the_holders_record(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {members: 2}\ndata: {train_limit: 64, test_limit: 32}\n"
        "train: {iterations: 2, batch_size: 8, eval_every: 0, checkpoint_every: 1, threads: 1}\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    record = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    holder = hold(out)  # a live run of this folder
    try:
        started = time.monotonic()
        args = ["train", "--config", str(config), "--out", str(out), "--overwrite", "--no-progress"]
        assert main(args) == 2
        assert main(["train", "--resume", str(out), "--no-progress"]) == 2
        assert time.monotonic() - started < 30  # refused at once, not after training
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK_FILE} == {
            k: v for k, v in record.items() if k != LOCK_FILE
        }
    finally:
        release(holder)  # SIGKILL
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # a SIGKILLed holder: resumable


def test_a_killed_holders_forked_children_do_not_keep_the_lock(tmp_path):
    release(hold(tmp_path / "run", fork_again=True))
    with RunLock(tmp_path / "run"):  # the child still lives, but closed its copy of the lock at fork
        pass


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_lock_that_is_a_link_or_a_fifo_is_refused_and_nothing_outside_is_written(tmp_path, kind):
    # A handed-over run folder whose lock links to a file elsewhere: opening it for writing would truncate
    # that file and write the holder's record into it.
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me\n")
    if kind == "symlink":
        (out / LOCK_FILE).symlink_to(victim)
    else:
        os.mkfifo(out / LOCK_FILE)
    what = "a symbolic link" if kind == "symlink" else "not a regular file"
    with pytest.raises(RunExistsError, match=rf"{LOCK_FILE}: is {what}; a run folder's lock must be") as info:
        with RunLock(out):
            pass
    assert "\n" not in str(info.value)
    assert victim.read_text() == "keep me\n"
