"""A run folder is data someone may hand over: eval, predict, resume, ``train.init_from`` and
``mheads.load_run`` never import or call anything it names (a canary file must not appear), every size it
records is bounded before allocation, and a run trained on a user's model reopens when the user names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import mheads
from cli_harness import write_config
from memcap import mheads_capped
from mheads.runs.checkpoint import CheckpointError

# Imported, this module leaves a canary file: the proof that something a run folder named was imported.
EVIL = """
from pathlib import Path
Path("CANARY-imported").write_text("imported")
def net(**kw):
    Path("CANARY-called").write_text("called")
    raise SystemExit(0)
"""

USERNET = """
from torch import nn
def net(num_classes=10, in_channels=1, image_size=28, width=4):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))
"""


@pytest.fixture(scope="module")
def attack_dir(work):
    """A working folder holding an importable module whose import (or call) leaves a canary file."""
    d = work / "attack"
    d.mkdir()
    (d / "evilmod.py").write_text(EVIL)
    return d


def _canaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("CANARY-*"))


def _hostile_copy(finished: Path, dest: Path, *, meta: dict | None = None, config_model: str | None = None):
    shutil.copytree(finished, dest)
    if meta is not None:
        info = json.loads((dest / "run.json").read_text())
        info["meta"].update(meta)
        (dest / "run.json").write_text(json.dumps(info))
    if config_model is not None:
        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        cfg["model"]["name"] = config_model
        (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.mark.parametrize(
    "arch, options",
    [
        ("subprocess:getoutput", {"cmd": "touch CANARY-called"}),  # called with the options as arguments
        ("evilmod:net", {}),  # imported from the working folder
    ],
)
def test_eval_and_predict_never_import_what_run_json_names(server, finished, attack_dir, arch, options):
    run = _hostile_copy(
        finished,
        attack_dir / f"run-{arch.replace(':', '-')}",
        config_model=arch,
        meta={"architecture": arch, "options": options},
    )
    image = _png(attack_dir)
    for argv in (("eval", "--run", run, "--no-figures"), ("predict", "--run", run, image)):
        r = server.run(*argv, cwd=attack_dir)
        assert r.returncode == 2, str(r)
        assert "never names code to import" in r.error_line and "--model" in r.error_line, str(r)
        assert _canaries(attack_dir) == [], str(r)


def test_a_resumed_run_never_imports_the_model_its_config_names(server, finished, attack_dir):
    run = _hostile_copy(
        finished, attack_dir / "run-resume", config_model="evilmod:net", meta={"architecture": "evilmod:net"}
    )
    r = server.run("train", "--resume", run, "--no-progress", cwd=attack_dir)
    assert r.returncode == 2 and "--model" in r.error_line, str(r)
    assert _canaries(attack_dir) == []


def test_a_resumed_run_never_writes_to_the_cache_folder_its_config_names(server, finished, tmp_path):
    """config.yaml's data.cache_dir is where the decoded data is written: a handed-over folder naming any
    folder of the user's had resume write there; it must be named again on the command line."""
    run = _hostile_copy(finished, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["cache_dir"] = str(elsewhere)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = server.run("train", "--resume", run, "--no-progress")
    assert r.returncode == 2 and f"--set data.cache_dir={elsewhere}" in r.error_line, str(r)
    assert "a run folder never names where to write outside itself" in r.error_line
    assert not elsewhere.exists()
    r = server.run("train", "--resume", run, "--no-progress", "--set", f"data.cache_dir={elsewhere}")
    assert r.returncode == 0, str(r)  # named by the user: used


def test_an_edited_config_model_name_is_not_imported_by_eval(server, finished, attack_dir):
    """Only run.json's registered architecture is used; config.yaml's model.name is never imported."""
    run = _hostile_copy(finished, attack_dir / "run-config-only", config_model="evilmod:net")
    r = server.run("eval", "--run", run, "--no-figures", cwd=attack_dir)
    assert r.returncode == 0, str(r)
    assert _canaries(attack_dir) == []


def test_load_run_and_init_from_refuse_an_import_path_they_were_not_given(
    finished, tmp_path, attack_dir, monkeypatch
):
    run = _hostile_copy(finished, tmp_path / "run", meta={"architecture": "evilmod:net"})
    monkeypatch.chdir(attack_dir)
    monkeypatch.syspath_prepend(str(attack_dir))
    with pytest.raises(CheckpointError, match="never names code to import"):
        mheads.load_run(run)
    assert _canaries(attack_dir) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("members", 10**9),
        ("num_classes", 10**10),
        ("members", 0),
        ("image_size", "28"),
        ("in_channels", 2**40),
    ],
)
def test_sizes_in_run_json_are_bounded_before_allocation(finished, tmp_path, field, value):
    run = _hostile_copy(finished, tmp_path / "run", meta={field: value})
    with pytest.raises(
        CheckpointError,
        match=rf"run.json: the model description does not build a model "
        rf"\({field}: got",
    ):
        mheads.load_run(run)


def test_a_model_too_big_for_memory_is_refused_before_it_is_built(finished, tmp_path):
    """Within every bound, yet 4096 members of a net with 10**7 classes (terabytes): counted on the meta
    device, refused under a 3 GiB address-space cap with the sizes named, never allocated."""
    run = _hostile_copy(finished, tmp_path / "run", meta={"members": 4096, "num_classes": 10**7})
    r = mheads_capped("predict", "--run", run, _png(tmp_path))
    assert r.returncode == 2 and "more than the" in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]


@pytest.fixture(scope="module")
def user_run(server, work):
    """A run trained on a user's model given by import path (usernet:net, importable from its folder)."""
    d = work / "user"
    d.mkdir()
    (d / "usernet.py").write_text(USERNET)
    cfg = write_config(
        d / "c.yaml",
        model={"name": "usernet:net", "options": {"width": 4}, "split": "0"},
        data={"bagging": False, "crop_padding": 0, "flip": False},
        train={"iterations": 2, "checkpoint_every": 1, "eval_every": 0},
    )
    r = server.run("train", "--config", cfg, "--out", d / "run", "--no-progress", cwd=d)
    assert r.returncode == 0, str(r)
    return d


def test_a_user_model_run_reopens_when_the_user_names_it(server, user_run):
    run = user_run / "run"
    refused = server.run("eval", "--run", run, "--no-figures", cwd=user_run)
    assert refused.returncode == 2 and "'usernet:net'" in refused.error_line, str(refused)
    ok = server.run("eval", "--run", run, "--no-figures", "--model", "usernet:net", cwd=user_run)
    assert ok.returncode == 0 and "ensemble_mean_acc" in ok.stdout, str(ok)
    resumed = server.run("train", "--resume", run, "--model", "usernet:net", "--no-progress", cwd=user_run)
    assert resumed.returncode == 0, str(resumed)


def test_load_run_takes_the_users_model_as_object_factory_or_path(user_run, monkeypatch):
    monkeypatch.syspath_prepend(str(user_run))
    import usernet
    from safetensors.torch import load_file

    saved = load_file(str(user_run / "run" / "model.safetensors"))
    for model in (usernet.net(width=4), lambda: usernet.net(width=4), "usernet:net"):
        tree = mheads.load_run(user_run / "run", model=model)
        assert not tree.training
        got = tree.state_dict()
        assert all(torch.equal(got[k], v) for k, v in saved.items()), model
    with pytest.raises(CheckpointError, match="do not fit"):
        mheads.load_run(user_run / "run", model=usernet.net(width=8))


def test_resume_from_a_checkpoint_of_another_architecture_exits_2(server, finished, tmp_path):
    """A checkpoint's weights replaced by another model's, its COMMITTED hashes recomputed to match."""
    import hashlib

    from safetensors.torch import save_file

    run = shutil.copytree(finished, tmp_path / "run")
    step = sorted((run / "checkpoints").iterdir())[-1]
    save_file({"trunk.layers.0.weight": torch.zeros(3, 3)}, str(step / "weights.safetensors"))
    marker = json.loads((step / "COMMITTED").read_text())
    data = (step / "weights.safetensors").read_bytes()
    marker["files"]["weights.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (step / "COMMITTED").write_text(json.dumps(marker))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["iterations"] += 1
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = server.run("train", "--resume", run, "--no-progress")
    assert r.returncode == 2 and "its weights do not fit" in r.error_line, str(r)


def _png(folder: Path) -> Path:
    from PIL import Image

    path = folder / "x.png"
    Image.new("L", (28, 28), 128).save(path)
    return path


@pytest.mark.parametrize("edit", ["nan", "inf", "int"])
def test_non_finite_or_integer_final_weights_are_refused_naming_the_tensor(finished, tmp_path, edit):
    """model.safetensors is never saved with NaN/inf or with integers for float weights: NaN gave eval a
    traceback and load_run a silent NaN model; integers were silently converted (every accuracy 10%)."""
    from safetensors.torch import load_file, save_file

    run = _hostile_copy(finished, tmp_path / "run")
    weights = load_file(str(run / "model.safetensors"))
    name = next(k for k, t in weights.items() if t.is_floating_point() and t.numel() > 1)
    if edit == "int":
        weights[name] = weights[name].to(torch.int32)
    else:
        weights[name].view(-1)[0] = float(edit)
    save_file(weights, str(run / "model.safetensors"))
    expected = "got non-finite values" if edit != "int" else "got dtype torch.int32; expected torch.float32"
    with pytest.raises(CheckpointError, match=expected) as info:
        mheads.load_run(run)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_a_run_json_fifo_or_a_plots_link_is_refused_before_anything_is_read_or_written(
    server, finished, tmp_path
):
    """A FIFO named run.json hung eval; plots/ linked outside the folder received eval's figures."""
    import os

    run = _hostile_copy(finished, tmp_path / "run")
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")
    with pytest.raises(CheckpointError, match=r"run.json: is not a regular file"):
        mheads.load_run(run)
    run = _hostile_copy(finished, tmp_path / "run2")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "plots").symlink_to(outside)
    r = server.run("eval", "--run", run)
    assert r.returncode == 2 and "plots: is a symbolic link" in r.error_line, str(r)
    assert list(outside.iterdir()) == []


def test_a_resume_from_an_edited_run_state_is_one_line_naming_the_field(server, finished, tmp_path):
    """A checkpoint's state.pt with a counter that is not an integer (checksums recomputed) gave
    ``int(state["skipped"])``'s ValueError traceback."""
    import hashlib
    import io

    run = _hostile_copy(finished, tmp_path / "run")
    folder = sorted((run / "checkpoints").glob("step-*"))[-1]
    state = torch.load(folder / "state.pt", weights_only=True)
    state["skipped"] = "junk"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (folder / "state.pt").write_bytes(buffer.getvalue())
    marker = json.loads((folder / "COMMITTED").read_text())
    for name in marker["files"]:
        data = (folder / name).read_bytes()
        marker["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "COMMITTED").write_text(json.dumps(marker))
    r = server.run("train", "--resume", run, "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr, str(r)
    assert f"{folder}/state.pt: skipped: got 'junk'; expected an integer >= 0" in r.error_line, str(r)
