"""Files that would run code, numerical faults and full disks, through the command line.

- A pickle whose unpickling creates a file, offered as a checkpoint (``train --resume``, ``eval``,
  ``train.init_from``) and as a CIFAR batch (``train`` with ``data.source``): refused, the file never created.
- A run that blows up: exit code 3, the message names the iteration and the member, the last
  checkpoint intact.
- A disk that fills up while saving a checkpoint, the evaluation log or the final weights: exit code 2 naming
  the path, the previous checkpoint intact, and resuming once there is space again ends as if
  nothing happened.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cli_harness import committed_steps, leftovers, run_differences, write_config
from mheads.cli import commands as cli
from mheads.runs.checkpoint import latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.timeout(300)


def assert_refused(result, *parts: str, code: int = 2) -> None:
    assert result.returncode == code, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert result.error_line.startswith("mheads: error: "), str(result)
    for part in parts:
        assert part in result.error_line, f"{part!r} not in the message:\n{result.error_line}"


# ------------------------------------------------------------------------------------- crafted pickles


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: the simplest stand-in for running arbitrary code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def crafted_state(victim: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"step": 3, "optimizer": {}, "schedule": {}, "payload": CreatesAFile(victim)}, buffer)
    return buffer.getvalue()


def test_the_crafted_pickles_do_run_code_when_loaded_unsafely(tmp_path):
    # Guards the tests below: their payloads would create the file if anything unpickled them unsafely.
    victim = tmp_path / "pwned"
    torch.load(io.BytesIO(crafted_state(victim)), weights_only=False)["payload"].close()
    assert victim.exists()
    victim.unlink()
    pickle.loads(pickle.dumps({"data": CreatesAFile(victim)}, protocol=2))["data"].close()
    assert victim.exists()


def plant_state(run: Path, victim: Path) -> Path:
    """Put the crafted state.pt in the newest checkpoint and rewrite its commit marker to match, as an
    attacker who can write the folder would: only the safe loader stands in the way."""
    folder = latest_checkpoint(run)
    (folder / "state.pt").write_bytes(crafted_state(victim))
    marker = json.loads((folder / "COMMITTED").read_text())
    for name in marker["files"]:
        data = (folder / name).read_bytes()
        marker["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "COMMITTED").write_text(json.dumps(marker))
    return folder


@pytest.mark.parametrize("entry", ["train --resume", "eval", "train.init_from"])
def test_a_checkpoint_that_would_run_code_is_refused(server, finished, good, tmp_path, entry):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    victim = tmp_path / "pwned"
    folder = plant_state(run, victim)
    if entry == "train --resume":
        argv = ["train", "--resume", run, "--no-progress"]
    elif entry == "eval":
        (run / "model.safetensors").unlink()  # eval then reads the newest checkpoint
        argv = ["eval", "--run", run]
    else:
        argv = ["train", "--config", good, "--out", tmp_path / "new", "--set", f"train.init_from={folder}"]
    result = server.run(*argv)
    assert_refused(result, f"{folder}/state.pt was refused by the safe loader")
    assert "weights_only=False" not in result.stderr
    assert not victim.exists()


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": "batch",
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"{i}.png" for i in range(n)],
    }


def write_cifar10_python(folder: Path, victim: Path, crafted: str) -> None:
    """The CIFAR-10 "python version" layout with ``crafted`` replaced by the file-creating pickle."""
    folder.mkdir(parents=True)
    files = {f"data_batch_{b}": cifar_batch(4, b) for b in range(1, 6)}
    files["test_batch"] = cifar_batch(4, 0)
    files["batches.meta"] = {"label_names": [f"class{c}" for c in range(10)], "num_vis": 3072}
    files[crafted] = {**files[crafted], "data": CreatesAFile(victim)}
    for name, content in files.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))


@pytest.mark.parametrize(
    "crafted,archive", [("data_batch_1", False), ("batches.meta", False), ("test_batch", True)]
)
def test_a_cifar_batch_that_would_run_code_is_refused(server, good, tmp_path, crafted, archive):
    victim = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_python(folder, victim, crafted)
    source, where = folder, f"{folder}/{crafted}"
    if archive:
        source = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        shutil.rmtree(folder)
        where = f"{source}:{folder.name}/{crafted}"
    result = server.run(
        "train", "--config", good, "--out", tmp_path / "out", "--set", f"data.source={source}"
    )
    assert_refused(result, f"{where}: refused to load", "open")
    assert not victim.exists()
    assert not (tmp_path / "out" / "config.yaml").exists()


# ------------------------------------------------------------------------------------- numerical faults


FAULT = re.compile(
    r"mheads: error: non-finite (loss|gradient) at iteration (\d+) in member (\d+)"
    r"(, member \d+)*; no update was applied for that step"
)


def test_a_run_that_blows_up_exits_3_naming_iteration_and_member(server, good, tmp_path):
    out = tmp_path / "out"
    result = server.run(
        "train",
        "--config",
        good,
        "--out",
        out,
        "--no-progress",
        "--set",
        "optim.lr=1e12",
        "--set",
        "train.iterations=20",
    )
    assert result.returncode == 3, str(result)
    assert "Traceback" not in result.stderr, str(result)
    found = FAULT.fullmatch(result.error_line)
    assert found, str(result)
    step = int(found.group(2))
    # A checkpoint follows every iteration: the newest is the one just before the faulty step,
    # untouched by it.
    assert committed_steps(out)[-1] == step and not leftovers(out)
    ck = load_checkpoint(out)
    assert ck.step == step and all(torch.isfinite(w).all() for w in ck.weights.values())
    assert not (out / "model.safetensors").exists()


def test_skip_policy_stops_after_max_skipped_in_a_row(server, good, tmp_path):
    result = server.run(
        "train",
        "--config",
        good,
        "--out",
        tmp_path / "out",
        "--no-progress",
        "--set",
        "optim.lr=1e12",
        "--set",
        "train.iterations=20",
        "--set",
        "train.nan_policy=skip",
        "--set",
        "train.max_skipped=2",
    )
    assert result.returncode == 3, str(result)
    assert re.search(
        r"non-finite \w+ \(2 steps in a row, train.max_skipped\) at iteration \d+ in member \d",
        result.error_line,
    ), str(result)
    assert result.stderr.count("skipped 1 in a row") == 1, str(result)


# ------------------------------------------------------------------------------------------- full disk


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class FullDisk:
    """``os.write`` fails with ENOSPC for files under ``root`` from the first write to a file whose path holds
    ``trigger`` on: a full disk stays full."""

    def __init__(self, root: Path, trigger: str):
        self.root, self.trigger, self.full, self.real = str(root), trigger, False, os.write

    def __call__(self, fd, data):
        path = fd_path(fd)
        if path.startswith(self.root) and (self.full or self.trigger in path):
            self.full = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, data)


def small_cfg(work: Path) -> Path:
    return write_config(work / "small.yaml", train={"iterations": 6, "checkpoint_every": 2, "eval_every": 3})


@pytest.fixture(scope="module")
def uninterrupted(work):
    out = work / "uninterrupted"
    assert cli.main(["train", "--config", str(small_cfg(work)), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize(
    "trigger,newest,culprit",
    [
        (".tmp-step-00000004", 2, "cannot save checkpoint {out}/checkpoints/step-00000004: "),
        ("eval.jsonl", 2, "cannot write {out}/eval.jsonl: "),
        ("model.safetensors", 6, "cannot write {out}/model.safetensors: "),
    ],
    ids=["checkpoint", "eval-log", "final-weights"],
)
def test_a_full_disk_while_saving_keeps_the_last_checkpoint(
    work, uninterrupted, tmp_path, monkeypatch, capsys, trigger, newest, culprit
):
    out = tmp_path / "run"
    argv = ["train", "--config", str(small_cfg(work)), "--out", str(out), "--no-progress"]
    disk = FullDisk(out, trigger)
    monkeypatch.setattr(os, "write", disk)
    assert cli.main(argv) == 2  # an unexpected exception would propagate here, traceback and all
    monkeypatch.undo()
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert disk.full and line.startswith("mheads: error: " + culprit.format(out=out)), err
    assert line.endswith("[Errno 28] No space left on device"), err
    assert committed_steps(out)[-1] == newest and not leftovers(out)
    assert load_checkpoint(out).step == newest  # intact: every checksum verified
    # Space again: resume finishes the run as if the disk had never filled.
    assert cli.main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert run_differences(uninterrupted, out) == []
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in final.values())


@pytest.fixture(scope="module")
def tiny(work):
    """A finished 2-member run of one iteration, trained through the command line (once; tests copy it)."""
    cfg = work / "tiny.yaml"
    cfg.write_text(
        "model: {name: cifar10_quick, members: 2}\ndata: {train_limit: 64, test_limit: 32}\n"
        "train: {iterations: 1, batch_size: 8, eval_every: 1, checkpoint_every: 0, threads: 1}\n"
    )
    run = work / "tiny"
    assert cli.main(["train", "--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    return run


def _tiny_run(tiny: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny, run)
    return run


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda m: m.update(members=0),
            r"run.json: the model description does not build a model \(members: got 0",
        ),
        (
            lambda m: m.update(architecture="zzz"),
            r"run.json: the model description does not build a model \(model: "
            r"unknown name 'zzz'",
        ),
        (lambda m: m.pop("split"), r"run.json: the model description lacks 'split'"),
    ],
)
def test_eval_of_an_edited_run_description_exits_2_naming_the_file(server, tiny, tmp_path, edit, message):
    run = _tiny_run(tiny, tmp_path)
    info = json.loads((run / "run.json").read_text())
    edit(info["meta"])
    (run / "run.json").write_text(json.dumps(info))
    proc = server.run("eval", "--run", run, "--no-figures")  # a forked `mheads` process
    assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr


def test_eval_of_weights_from_another_model_exits_2(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    run = _tiny_run(tiny, tmp_path)
    weights = load_file(str(run / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.zeros(3)
    save_file(weights, str(run / "model.safetensors"))
    from mheads.infer.evaluate import evaluate_run
    from mheads.runs.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"its weights do not fit the model its run.json describes"):
        evaluate_run(run)
