"""The command line's happy paths, as a user runs them: train, eval, plot, list-models."""

import json
import subprocess
import sys

import pytest
import yaml

TINY = {
    "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
    "loss": {"name": "mcl", "k": 1},
    "data": {"train_limit": 128, "test_limit": 100},
    "train": {"iterations": 3, "batch_size": 16, "eval_every": 3, "checkpoint_every": 0, "threads": 1},
}


def mheads(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mheads", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp / "run"
    proc = mheads("train", "--config", cfg, "--out", run, "--set", "optim.lr=0.005")
    assert proc.returncode == 0, proc.stderr
    return run, proc


def test_train_prints_the_summary_and_writes_the_run(trained):
    run, proc = trained
    assert "ensemble-mean" in proc.stdout and "oracle" in proc.stdout
    assert (run / "metrics.json").exists() and (run / "members/member_1.safetensors").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.005  # --set is recorded


def test_eval_reproduces_the_final_metrics(trained):
    run, _ = trained
    proc = mheads("eval", "--run", run)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    saved = json.loads((run / "metrics.json").read_text())
    assert last["ensemble_mean_acc"] == saved["ensemble_mean_acc"]
    assert last["member_acc"] == saved["member_acc"]


def test_plot_writes_heatmap_and_curves(trained):
    run, _ = trained
    proc = mheads("plot", run)
    assert proc.returncode == 0, proc.stderr
    for name in ("assignment.png", "curves.png"):
        png = run / "plots" / name
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_list_models_names_split_points():
    proc = mheads("list-models")
    assert proc.returncode == 0
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("cifar10_quick"))
    assert "conv1, conv2, conv3, ip1, ip2" in line
    assert "cccp1" in proc.stdout and "fc6" in proc.stdout


def test_shard_then_stream_from_the_shards(tmp_path):
    from mheads.data.shards import write_varied_folder

    folder = write_varied_folder(tmp_path / "photos", 24, 8, 3, sizes=(20, 36), seed=4)
    proc = mheads("shard", folder, tmp_path / "shards", "--per-shard", "10")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote 4 shards to {tmp_path / 'shards'}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {"source": str(tmp_path / "shards"), "image_size": 16}}))
    proc = mheads("train", "--config", cfg, "--out", tmp_path / "run", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"]["loader"] == "stream"
    bad = mheads("shard", folder, tmp_path / "x", "--per-shard", "0")
    assert bad.returncode == 2 and "--per-shard: got 0; expected an integer >= 1" in bad.stderr
