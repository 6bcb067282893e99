"""Checkpoint storage: atomic writes, round trip, pruning, partial/corrupt/unsafe files, crash safety."""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import json
import math
import os
import pickle
import random
import signal
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from mheads.core.atomic import OutputError, atomic_write_bytes, atomic_write_text
from mheads.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointMismatch,
    CheckpointWriteError,
    check_compatible,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

META = {"architecture": "toy", "members": 2, "split": "conv1", "num_classes": 3, "input_shape": [3, 8, 8]}


def small_weights(step: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 3), float(step)), "b": torch.arange(3) + step}


def save(run: Path, step: int, keep: int = 3, pinned=()) -> Path:
    return save_checkpoint(run, step, small_weights(step), {"step": step}, META, keep=keep, pinned=pinned)


def folder_names(run: Path) -> list[str]:
    return sorted(os.listdir(run / "checkpoints"))


def assert_same(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def recommit(folder: Path) -> None:
    """Rewrite COMMITTED so that its checksums match the files as they are (a crafted folder)."""
    marker = json.loads((folder / "COMMITTED").read_text())
    for name in marker["files"]:
        data = (folder / name).read_bytes()
        marker["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "COMMITTED").write_text(json.dumps(marker))


# ---------------------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    atomic_write_text(target, "a: 1\n")
    atomic_write_bytes(target, b"a: 2\n")
    assert target.read_bytes() == b"a: 2\n"
    assert os.listdir(tmp_path) == ["config.yaml"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    real = getattr(os, failing)

    def broken(*args, **kwargs):
        if failing == "write":  # a disk that fills up after a few bytes
            real(args[0], bytes(args[1])[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OutputError, match=r"metrics\.json: \[Errno 28\] No space left on device") as info:
        atomic_write_text(target, "new content")
    monkeypatch.undo()
    assert str(target) in str(info.value)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_write_under_a_file_names_the_path(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(OutputError, match=r"plain/out\.txt: \[Errno 20\] Not a directory"):
        atomic_write_text(tmp_path / "plain" / "out.txt", "x")


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    model(torch.randn(7, 5)).sum().backward()
    optimizer.step()
    schedule.step()
    shared = torch.randn(3, 3)
    weights = {
        **model.state_dict(),
        "half": torch.randn(2, 3).half(),
        "bf16": torch.randn(4).bfloat16(),
        "mask": torch.rand(5) > 0.5,
        "strided": torch.randn(4, 6)[:, ::2],  # not contiguous
        "tied_a": shared,
        "tied_b": shared,  # same storage: safetensors alone would refuse this
        "param": torch.nn.Parameter(torch.randn(2)),
        "empty": torch.empty(0, 3),
    }
    state = {
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "step": 12,
        "best": float("inf"),
        "history": [1.5, None, True, "x", (1, 2)],
        "ordered": OrderedDict(a=torch.tensor([1, 2])),
        "rng": torch.get_rng_state(),  # a uint8 tensor
    }
    path = save_checkpoint(tmp_path, 12, weights, state, META)
    assert path == tmp_path / "checkpoints" / "step-00000012"

    for source in (path, tmp_path):  # a checkpoint folder or its run folder
        loaded = load_checkpoint(source)
        assert isinstance(loaded, Checkpoint)
        assert (loaded.step, loaded.path, loaded.meta) == (12, path, META)
        assert list(loaded.weights) == sorted(weights)  # sorted by name, whatever the saved order
        for name, tensor in weights.items():
            assert_same(tensor.detach().contiguous(), loaded.weights[name], name)
        assert_same(state, loaded.state)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(loaded.state["optimizer"])  # what resume does


# ---------------------------------------------------------------------------------- argument checking


class Opaque:
    pass


@pytest.mark.parametrize(
    ("state", "culprit"),
    [
        ({"data": {"order": np.arange(3)}}, r"state\['data'\]\['order'\] is a numpy\.ndarray"),
        ({"loss": np.float64(1.0)}, r"state\['loss'\] is a numpy\.float64"),
        ({"hooks": [1, Opaque()]}, r"state\['hooks'\]\[1\] is a test_checkpoint\.Opaque"),
        ({"seen": {1, 2}}, r"state\['seen'\] is a set"),
        ({"pairs": {(0, 1): 2}}, r"state\['pairs'\] has key \(0, 1\) of type tuple"),
        ({"grad": torch.eye(2).to_sparse()}, r"state\['grad'\] is a torch\.Tensor"),
    ],
)
def test_save_refuses_state_that_is_not_plain_data(tmp_path, state, culprit):
    with pytest.raises(CheckpointError, match=culprit):
        save_checkpoint(tmp_path, 1, small_weights(1), state, META)
    assert not (tmp_path / "checkpoints").exists()  # refused before touching the disk


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"step": -1}, r"step: got -1; expected an integer >= 0"),
        ({"step": 2.0}, r"step: got 2\.0; expected an integer >= 0"),
        ({"keep": 1}, r"keep \(the newest is never deleted\): got 1; expected an integer >= 2"),
        ({"meta": {"lr": float("nan")}}, r"meta\['lr'\] is nan; meta numbers must be finite"),
        ({"meta": {1: "x"}}, r"meta has key 1 of type int; meta keys must be str"),
        ({"meta": {"shape": torch.Size([3])}}, r"meta\['shape'\] is a torch\.Size"),
        ({"weights": {"w": [1.0]}}, r"weights\['w'\] must be a dense tensor, got a list"),
        ({"weights": {0: torch.ones(1)}}, r"weights keys must be str, got int 0"),
        ({"state": [1]}, r"state must be a dict, got list"),
    ],
)
def test_save_validates_arguments(tmp_path, kwargs, culprit):
    args = {"step": 1, "weights": small_weights(1), "state": {}, "meta": META, "keep": 3, **kwargs}
    with pytest.raises(CheckpointError, match=culprit):
        save_checkpoint(tmp_path, **args)
    assert not (tmp_path / "checkpoints").exists()


# --------------------------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("keep", [2, 3])
def test_pruning_keeps_the_newest_k(tmp_path, keep):
    for step in range(0, 70, 10):
        save(tmp_path, step, keep=keep)
        committed = list_checkpoints(tmp_path)
        assert committed[-1].name == f"step-{step:08d}"
        assert len(committed) == min(keep, step // 10 + 1)
    newest = [f"step-{s:08d}" for s in range(70 - 10 * keep, 70, 10)]
    assert [p.name for p in list_checkpoints(tmp_path)] == newest
    assert folder_names(tmp_path) == [p.name for p in list_checkpoints(tmp_path)]
    assert latest_checkpoint(tmp_path).name == "step-00000060"


def test_pinned_steps_survive_pruning(tmp_path):
    for step in range(0, 70, 10):
        save(tmp_path, step, keep=2, pinned=(10, 30, 99))
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step-{s:08d}" for s in (10, 30, 50, 60)]


def test_pruning_removes_stale_leftovers_and_keeps_newer_ones(tmp_path):
    save(tmp_path, 1)
    ckdir = tmp_path / "checkpoints"
    (ckdir / ".tmp-step-00000002-0badc0de").mkdir()  # a save killed before its rename
    (ckdir / ".trash-step-00000001-0badc0de").mkdir()  # a prune killed before its rmtree
    (ckdir / "step-00000003").mkdir()  # renamed, killed before COMMITTED
    (ckdir / ".tmp-step-00000009-0badc0de").mkdir()  # newer than anything committed: left alone
    (ckdir / "notes.txt").write_text("not ours")  # unknown entries are never touched
    save(tmp_path, 5)
    left = [".tmp-step-00000009-0badc0de", "notes.txt", "step-00000001", "step-00000005"]
    assert folder_names(tmp_path) == left


def test_same_step_replaces_a_partial_folder_but_never_a_committed_one(tmp_path):
    save(tmp_path, 1)
    partial = save(tmp_path, 2)
    (partial / "COMMITTED").unlink()
    assert save(tmp_path, 2) == partial
    assert load_checkpoint(partial).step == 2
    marker = (partial / "COMMITTED").read_bytes()
    assert save(tmp_path, 2) == partial  # identical content: nothing to do
    assert (partial / "COMMITTED").read_bytes() == marker
    message = r"step-0+2 already holds a committed checkpoint of step 2 with a different state\.pt, meta"
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path, 2, small_weights(2), {"step": 3}, {**META, "members": 3})
    assert (partial / "COMMITTED").read_bytes() == marker
    assert folder_names(tmp_path) == ["step-00000001", "step-00000002"]


# --------------------------------------------------------------------------------- partial and corrupt


def drop_marker(folder: Path) -> None:
    (folder / "COMMITTED").unlink()


def truncate_weights(folder: Path) -> None:
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(data[: len(data) // 2])


def empty_state(folder: Path) -> None:
    (folder / "state.pt").write_bytes(b"")


def flip_a_byte(folder: Path) -> None:
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    (folder / "weights.safetensors").write_bytes(bytes(data))


def delete_meta(folder: Path) -> None:
    (folder / "meta.json").unlink()


def garble_marker(folder: Path) -> None:
    (folder / "COMMITTED").write_text('{"schema_version": 1, "fil')


def future_marker(folder: Path) -> None:
    marker = json.loads((folder / "COMMITTED").read_text())
    (folder / "COMMITTED").write_text(json.dumps({**marker, "schema_version": 2}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (drop_marker, r"step-00000002 is not committed \(no COMMITTED marker"),
        (truncate_weights, r"weights\.safetensors is truncated: \d+ bytes, the commit marker says \d+"),
        (empty_state, r"state\.pt is empty: 0 bytes, the commit marker says \d+"),
        (flip_a_byte, r"weights\.safetensors fails its sha256 checksum"),
        (delete_meta, r"meta\.json is missing"),
        (garble_marker, r"COMMITTED is not valid JSON"),
        (future_marker, r"COMMITTED has schema version 2; this version of mheads reads \[1\]"),
    ],
)
def test_partial_or_corrupt_checkpoint_is_skipped_and_refused(tmp_path, damage, message):
    good = save(tmp_path, 1)
    bad = save(tmp_path, 2)
    damage(bad)
    assert latest_checkpoint(tmp_path) == good
    assert list_checkpoints(tmp_path) == [good]
    assert load_checkpoint(tmp_path).step == 1
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert save(tmp_path, 3).name == "step-00000003"  # the next save cleans the damaged folder up...
    if damage is flip_a_byte:  # ...unless only its content changed: pruning reads no data
        # (the load refuses it)
        assert folder_names(tmp_path) == ["step-00000001", "step-00000002", "step-00000003"]
    else:
        assert folder_names(tmp_path) == ["step-00000001", "step-00000003"]


def test_each_file_is_hashed_once_when_written_and_once_when_read(tmp_path, monkeypatch):
    """Saving with K kept checkpoints hashes the three new files only; resuming hashes the newest once."""
    import mheads.runs.checkpoint as ck

    calls = []
    real = ck.hashlib.sha256

    def counting(data=b""):
        calls.append(len(data))
        return real(data)

    for step in range(1, 4):
        save(tmp_path, step, keep=5)
    monkeypatch.setattr(ck.hashlib, "sha256", counting)
    save(tmp_path, 4, keep=5)
    assert len(calls) == 3  # weights, state, meta of step 4: none of the three kept checkpoints is re-read
    calls.clear()
    assert ck.load_latest(tmp_path).step == 4
    assert len(calls) == 3


def test_meta_with_an_unsupported_schema_version_is_refused(tmp_path):
    folder = save(tmp_path, 1)
    doc = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**doc, "schema_version": 99}))
    recommit(folder)
    with pytest.raises(CheckpointError, match=r"meta\.json has schema version 99; this version of mheads"):
        load_checkpoint(folder)


def test_load_names_what_is_wrong_with_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "file.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"file\.pt is not a folder"):
        load_checkpoint(tmp_path / "file.pt")
    with pytest.raises(CheckpointError, match=r"is neither a checkpoint folder .* nor a run folder"):
        load_checkpoint(tmp_path)
    save(tmp_path, 4)
    drop_marker(tmp_path / "checkpoints" / "step-00000004")
    with pytest.raises(CheckpointError, match=r"no committed checkpoint in .*checkpoints \(skipped step-0+4"):
        load_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "nowhere") is None


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("weights.safetensors", b"\x08" + bytes(7) + b"{}", r"weights\.safetensors is not a valid safetens"),
        ("state.pt", torch_bytes([1, 2]), r"state\.pt holds a list, expected a dict"),
        ("state.pt", b"PK\x03\x04 not a zip", r"state\.pt cannot be read as torch\.save data"),
        ("meta.json", b'{"schema_version": 1', r"meta\.json is not valid JSON"),
        ("meta.json", b'{"schema_version": 1, "meta": {}}', r"meta\.json lacks an int 'step' and a 'meta'"),
    ],
)
def test_committed_but_malformed_content_is_refused(tmp_path, name, content, message):
    folder = save(tmp_path, 1)
    (folder / name).write_bytes(content)
    recommit(folder)  # checksums match, so only the parsers can catch it
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert str(folder / name) in str(info.value) and "\n" not in str(info.value)


class CreatesAFile:
    """Unpickling this opens (creates) `path`: the simplest stand-in for code execution."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


class MakesAFolder(CreatesAFile):
    """Unpickling this calls ``os.mkdir(path)``: a global of a module torch's safe loader blocks outright
    (``posix``), whose refusal is worded apart from other globals'."""

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle", "torch.save os", "raw pickle 4"])
def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path, container):
    folder = save(tmp_path, 1)
    victim = tmp_path / "pwned"
    payload = {"step": 1, "x": (MakesAFolder if " os" in container else CreatesAFile)(victim)}
    if container.startswith("torch.save"):
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
    else:
        data = pickle.dumps(payload, protocol=4 if container.endswith("4") else 2)
    (folder / "state.pt").write_bytes(data)
    recommit(folder)  # checksums match: only the safe loader stands in the way
    with pytest.raises(CheckpointError, match=r"state\.pt was refused by the safe loader") as info:
        load_checkpoint(folder)
    assert not victim.exists()
    assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)
    assert "trusted source" not in str(info.value)  # torch's advice to load it unsafely
    with pytest.raises(CheckpointError, match=r"state\['x'\] is a test_checkpoint\.(CreatesAFile|MakesAF)"):
        save_checkpoint(tmp_path, 2, {}, payload, META)  # and we never write one ourselves
    assert not victim.exists()


def test_a_checkpoint_file_linked_elsewhere_is_refused_before_it_is_read(tmp_path):
    # The link's target passes the checksums (the attacker wrote the marker): only the link check refuses it.
    folder = save(tmp_path, 1)
    outside = tmp_path / "outside.pt"
    (folder / "state.pt").rename(outside)
    (folder / "state.pt").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"state\.pt is a symbolic link; a checkpoint's files must be"):
        load_checkpoint(folder)


@pytest.mark.parametrize("where", ["weights", "state"])
def test_non_finite_weights_or_optimizer_state_are_refused_naming_the_file_and_tensor(tmp_path, where):
    # Never saved (a non-finite step stops the run or is skipped), so an edited folder: NaN momentum would
    # silently turn every weight NaN on the first resumed step.
    weights = small_weights(1)
    state = {"step": 1, "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}}}, "best": math.inf}
    if where == "weights":
        weights[next(iter(weights))].view(-1)[0] = float("nan")
    else:
        state["optimizer"]["state"][0]["momentum_buffer"][1] = float("inf")
    save_checkpoint(tmp_path, 1, weights, state, META)
    file, name = ("weights.safetensors", next(iter(weights))) if where == "weights" else ("state.pt", "")
    with pytest.raises(CheckpointError, match="got non-finite values") as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert file in message and name in message and "\n" not in message
    if where == "state":
        assert "optimizer['state'][0]['momentum_buffer']" in message  # a Python inf (a schedule's) is fine


# ------------------------------------------------------------------------------------ failing saves


def _under(fd: int, root: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(root))
    except OSError:
        return False


# A save makes 4 writes (weights, state, meta, then COMMITTED after the rename) and 7 fsyncs
# (3 files, the temporary folder, checkpoints/, COMMITTED, the checkpoint folder): fail each in turn.
FAILURES = [("write", n) for n in range(1, 5)] + [("fsync", n) for n in range(1, 8)]
FAILURES += [("rename", 1), ("replace", 1), ("mkdir", 1)]


@pytest.mark.parametrize(("call", "nth"), FAILURES)
def test_a_save_failing_midway_harms_nothing(tmp_path, monkeypatch, call, nth):
    previous = save(tmp_path, 1)
    real = getattr(os, call)
    seen = []

    def flaky(*args, **kwargs):
        on_fd = call in ("write", "fsync")
        if _under(args[0], tmp_path) if on_fd else str(args[0]).startswith(str(tmp_path)):
            seen.append(args[0])
            if len(seen) >= nth:  # a full disk stays full
                if call == "write":  # the disk fills up partway through the file
                    real(args[0], bytes(args[1])[: len(args[1]) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if on_fd else args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, flaky)
    message = r"cannot save checkpoint .*step-00000002: .*No space left on device"
    with pytest.raises(CheckpointWriteError, match=message) as info:
        save(tmp_path, 2)
    monkeypatch.undo()
    assert isinstance(info.value, OutputError) and "\n" not in str(info.value)
    assert folder_names(tmp_path) == ["step-00000001"]  # no temporary folder, no half checkpoint
    assert latest_checkpoint(tmp_path) == previous
    assert load_checkpoint(tmp_path).step == 1
    assert save(tmp_path, 2).name == "step-00000002"  # and the next save works


def test_an_unwritable_run_folder_gives_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("a file where the run folder should be")
    message = r"cannot save checkpoint .*taken/checkpoints/step-00000000: .*taken/checkpoints: \[Errno 20\]"
    with pytest.raises(CheckpointWriteError, match=message):
        save(tmp_path / "taken", 0)


def test_a_permission_error_names_the_path(tmp_path, monkeypatch):
    save(tmp_path, 1)

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(os, "mkdir", denied)  # chmod cannot stop root, who runs these tests
    message = r"\.tmp-step-00000002-[0-9a-f]+: \[Errno 13\] Permission denied"
    with pytest.raises(CheckpointWriteError, match=message):
        save(tmp_path, 2)
    monkeypatch.undo()
    assert folder_names(tmp_path) == ["step-00000001"]


# ------------------------------------------------------------------------------------------ compatibility


def test_check_compatible_names_every_differing_key():
    # Tuples equal lists; keys outside the compared ones are ignored.
    check_compatible(META, {**META, "input_shape": (3, 8, 8), "lr": 0.1})
    expected = {**META, "members": 4, "split": "conv2"}
    with pytest.raises(CheckpointMismatch) as info:
        check_compatible(META, expected, where="runs/a/checkpoints/step-00000010")
    message = str(info.value)
    assert message == (
        "checkpoint runs/a/checkpoints/step-00000010 does not match the configuration: "
        "members: checkpoint has 2, config has 4; split: checkpoint has 'conv1', config has 'conv2'"
    )
    assert info.value.differences == {"members": (2, 4), "split": ("conv1", "conv2")}
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)


def test_check_compatible_missing_keys_and_all_keys():
    with pytest.raises(CheckpointMismatch, match=r"num_classes: checkpoint has no value, config has 10"):
        check_compatible({"architecture": "toy"}, {"architecture": "toy", "num_classes": 10})
    with pytest.raises(CheckpointMismatch, match=r"^checkpoint does not match the configuration: lr: "):
        check_compatible({"lr": 0.1}, {"lr": 0.2}, keys=None)
    check_compatible({"lr": 0.1}, {"lr": 0.2})  # lr is not among the default keys
    with pytest.raises(CheckpointMismatch, match=r"image_size: checkpoint has 32, config has 28$"):
        check_compatible({"image_size": 32, "options": {"w": 2}}, {"image_size": 28, "options": {"w": 2}})


# ------------------------------------------------------------------------------------------ SIGKILL


def start_writer(run: Path) -> int:
    """Fork a writer (no interpreter start: torch is imported here already): it resumes from the newest
    committed step and saves checkpoints in a loop until killed. Its traceback, should it die by itself,
    goes to ``run/writer.err``."""
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        try:
            torch.set_num_threads(1)  # a forked child runs no parallel region (the parent's pool is gone)
            latest = latest_checkpoint(run)
            step = 0 if latest is None else load_checkpoint(latest).step + 1
            while True:
                weights = {"w": torch.full((200_000,), float(step)), "b": torch.arange(1000) + step}
                meta = {"architecture": "toy", "step": step}
                save_checkpoint(run, step, weights, {"step": step}, meta, keep=2)
                step += 1
        except BaseException:
            import traceback

            (run / "writer.err").write_text(traceback.format_exc())
        finally:
            os._exit(1)
    return pid


def died(run: Path) -> str:
    """Failure message: the writer died on its own."""
    err = run / "writer.err"
    return "the writer process died by itself:\n" + (err.read_text() if err.exists() else "(no traceback)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("trials", [5, pytest.param(15, marks=pytest.mark.slow)])
def test_sigkill_while_saving_never_leaves_a_loadable_partial_checkpoint(tmp_path, trials):
    rng = random.Random(1234)
    pid = None
    try:
        newest, partial_seen = -1, 0
        for trial in range(trials):
            pid = start_writer(tmp_path)
            deadline = time.monotonic() + 30
            while trial == 0 and latest_checkpoint(tmp_path) is None and time.monotonic() < deadline:
                time.sleep(0.01)  # however slow the disk, commit once: later trials need something to keep
            time.sleep(rng.uniform(0.01, 0.25))
            with contextlib.suppress(ProcessLookupError):  # a zombie still takes the signal
                os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
            pid = None  # reaped
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, died(tmp_path)

            latest = latest_checkpoint(tmp_path)
            assert latest is not None, "no committed checkpoint after the first trial, or one disappeared"
            loaded = load_checkpoint(tmp_path)
            step = loaded.step
            assert loaded.path == latest and latest.name == f"step-{step:08d}"
            assert torch.equal(loaded.weights["w"], torch.full((200_000,), float(step)))
            assert torch.equal(loaded.weights["b"], torch.arange(1000) + step)
            assert loaded.state == {"step": step} and loaded.meta == {"architecture": "toy", "step": step}
            assert step >= newest, "resume went backwards"
            newest = step
            committed = list_checkpoints(tmp_path)
            assert committed[-1] == latest  # more than keep=2 if kills landed between commit and prune
            others = [n for n in folder_names(tmp_path) if tmp_path / "checkpoints" / n not in committed]
            partial_seen += bool(others)
            for name in others:
                if name.startswith("step-"):
                    assert int(name[5:]) > step
                    with pytest.raises(CheckpointError):
                        load_checkpoint(tmp_path / "checkpoints" / name)
        assert partial_seen >= 1, "no kill landed inside a save: the test did not exercise anything"
        # One save that runs to the end tidies up whatever the kills left behind.
        step = newest + 1
        save_checkpoint(tmp_path, step, {"w": torch.zeros(1)}, {"step": step}, {"step": step}, keep=2)
        assert folder_names(tmp_path) == [f"step-{s:08d}" for s in (newest, step)]
    finally:
        if pid is not None:  # a failed assertion must not leave a writer running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_run_records_are_strict_json(tmp_path):
    from mheads.runs.folder import append_jsonl, read_jsonl, strict_json

    record = {"nll": float("nan"), "rate": float("inf"), "acc": [0.5, float("-inf")], "ok": 1.0}
    assert json.loads(strict_json(record)) == {"nll": None, "rate": None, "acc": [0.5, None], "ok": 1.0}
    append_jsonl(tmp_path / "eval.jsonl", record)
    text = (tmp_path / "eval.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_jsonl(tmp_path / "eval.jsonl")[0]["nll"] is None
