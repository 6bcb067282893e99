"""How much memory a run may use: the cgroup limits from the process's own cgroup up to the root (v2 and v1's
memory controller, read from fake trees), and the address-space limit (RLIMIT_AS), under a real cap."""

from __future__ import annotations

import json

from memcap import run_capped
from mheads.core import resources
from mheads.core.resources import available_memory, cgroup_memory_left

GIB = 2**30


def _write(root, path: str, **files: int | str) -> None:
    folder = root.joinpath(*path.strip("/").split("/")) if path.strip("/") else root
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name.replace("_", ".", 1)).write_text(f"{value}\n")


def test_v2_takes_the_tightest_level_from_the_process_cgroup_up(tmp_path):
    mount, own = tmp_path / "fs", tmp_path / "cgroup"
    own.write_text("0::/system.slice/slurmstepd.scope/job_5/step_0\n")
    _write(mount, "/system.slice", memory_max="max", memory_current=40 * GIB)
    _write(mount, "/system.slice/slurmstepd.scope/job_5", memory_max=4 * GIB, memory_current=1 * GIB)
    _write(mount, "/system.slice/slurmstepd.scope/job_5/step_0", memory_max="max", memory_current=GIB)
    assert cgroup_memory_left(own, mount) == 3 * GIB  # the job's limit, two levels above the process
    _write(mount, "/system.slice/slurmstepd.scope/job_5/step_0", memory_max=2 * GIB, memory_current=GIB)
    assert cgroup_memory_left(own, mount) == GIB  # the step's own, tighter
    _write(mount, "/system.slice/slurmstepd.scope/job_5/step_0", memory_max=GIB, memory_current=2 * GIB)
    assert cgroup_memory_left(own, mount) == 0  # over its limit: nothing left, never negative


def test_v1_memory_controller_and_levels_not_mounted_here(tmp_path):
    mount, own = tmp_path / "fs", tmp_path / "cgroup"
    own.write_text("12:pids:/user.slice\n4:memory,hugetlb:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n")
    _write(mount, "/memory", memory_limit_in_bytes=9223372036854771712, memory_usage_in_bytes=5 * GIB)
    _write(mount, "/memory/process_api/abc", memory_limit_in_bytes=3 * GIB, memory_usage_in_bytes=GIB)
    assert cgroup_memory_left(own, mount) == 2 * GIB
    # a container that sees only its own cgroup at the mount's root: the path named is not there
    own.write_text("0::/docker/0123abcd\n")
    _write(mount, "/", memory_max=6 * GIB, memory_current=GIB)
    assert cgroup_memory_left(own, mount) == 5 * GIB
    own.write_text("0::/\n")
    (mount / "memory.max").write_text("max\n")
    assert cgroup_memory_left(own, mount) is None  # no limit anywhere
    assert cgroup_memory_left(tmp_path / "absent", tmp_path / "nothing") is None


def test_available_memory_is_the_smallest_bound(monkeypatch):
    free = available_memory()
    monkeypatch.setattr(resources, "cgroup_memory_left", lambda: 12345)
    assert available_memory() == 12345
    monkeypatch.setattr(resources, "cgroup_memory_left", lambda: None)
    monkeypatch.setattr(resources, "address_space_left", lambda: 999)
    assert available_memory() == 999
    monkeypatch.setattr(resources, "address_space_left", lambda: None)
    assert available_memory() >= min(free, 1)


def test_rlimit_as_is_honoured():
    code = (
        "import json, resource; from mheads.core.resources import address_space_left, available_memory;"
        "print(json.dumps([resource.getrlimit(resource.RLIMIT_AS)[0], address_space_left(), "
        "available_memory()]))"
    )
    cap, left, avail = json.loads(run_capped(["-c", code], timeout=60).stdout)
    assert 0 < left < cap and avail <= left  # what the cap leaves after what the process already maps


def test_the_capped_child_cannot_allocate_past_the_cap_and_is_killed_at_its_timeout():
    # Guards the hostile-input tests that run under tests/memcap.py: its forked children really are capped
    # and bounded in time.
    import subprocess

    import pytest

    big = run_capped(["-c", "import sys; b = bytearray(4 * 2**30); print(len(b))"], timeout=60)
    assert big.returncode == 1 and big.stdout == "" and "MemoryError" in big.stderr, big
    said = run_capped(["-c", "import sys; print(sys.argv[1:]); raise SystemExit(7)", "a", "b"], timeout=60)
    assert (said.returncode, said.stdout) == (7, "['a', 'b']\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_capped(["-c", "import time; time.sleep(60)"], timeout=1)
    assert run_capped(["-c", "print('after')"], timeout=60).stdout == "after\n"


def test_two_server_replies_that_arrive_together_are_both_read():
    # A fast child's exit status can reach the pipe with its pid; a buffered readline() took both in and the
    # next select() waited out its timeout (then "the memcap server did not ..." or ProcessLookupError).
    import os

    from memcap import PipeLines

    read, write = os.pipe()
    with open(read, "rb", buffering=0) as stream:
        lines = PipeLines(stream)
        os.write(write, b"4242\n0\n")
        assert lines.next(5) == "4242" and lines.next(0.5) == "0"
        assert lines.next(0.05) is None  # nothing more yet
        os.write(write, b"par")
        os.write(write, b"tial\n")
        assert lines.next(5) == "partial"
        os.close(write)
        assert lines.next(5) == ""  # the writer is gone
