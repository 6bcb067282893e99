"""One process per run folder: a second one is refused at once; a killed holder's folder is resumable."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mheads.cli import main
from mheads.runs.lock import LOCK_FILE, RunLock, RunLockedError

HOLD = """
import sys, time
from mheads.runs.lock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(out):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    holder = hold(tmp_path / "run")
    try:
        with pytest.raises(
            RunLockedError,
            match=rf"another mheads process is using this run folder \(pid "
            rf"{holder.pid} on ",
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
        "train: {iterations: 2, batch_size: 8, eval_every: 0, checkpoint_every: 1}\n"
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


HOLD_AND_FORK = """
import os, sys, time
from mheads.runs.lock import RunLock
with RunLock(sys.argv[1]):
    if os.fork() == 0:  # a DataLoader worker, say: it outlives its killed parent for a while
        time.sleep(30)
        os._exit(0)
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_holders_forked_children_do_not_keep_the_lock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_FORK, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    release(proc)
    with RunLock(tmp_path / "run"):  # the child still lives, but closed its copy of the lock at fork
        pass
