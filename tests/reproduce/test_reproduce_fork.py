"""Cells that share a cross-entropy pretraining continue from one run's checkpoint and end exactly where
training them from scratch ends."""

import copy
import json
import os

import pytest

from mheads.reproduce import reproduce
from mheads.reproduce.fork import ce_prefix, find_fork_donor, fork_run, forked_from, plan_keep_steps
from mheads.reproduce.spec import load_spec
from mheads.runs.checkpoint import CheckpointError
from mheads.train.loop import fit

TIMING = {"train_time_s", "wall_time_s", "images_per_s", "resumed_from_iteration"}


def _cells():
    spec = load_spec("table5", "smoke", None)
    return {c.name: c.config for c in spec.cells}


def _same_run(a, b):
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert {k: v for k, v in ma.items() if k not in TIMING} == {
        k: v for k, v in mb.items() if k not in TIMING
    }
    assert [(r / "eval.jsonl").exists() for r in (a, b)] in ([True, True], [False, False])
    if (a / "eval.jsonl").exists():
        assert (a / "eval.jsonl").read_text() == (b / "eval.jsonl").read_text()


def test_a_fork_ends_bit_identical_to_training_from_scratch(tmp_path):
    cells = _cells()
    donor_cfg, cfg = copy.deepcopy(cells["k1_p2000"]), copy.deepcopy(cells["k2_p2000"])
    assert donor_cfg.loss.pretrain_iterations == cfg.loss.pretrain_iterations == 2 and cfg.loss.k == 2
    for c in (donor_cfg, cfg):
        c.train.eval_every = 1  # evaluation records on both sides of the fork point
        c.data.test_limit = 40  # 19 evaluations over three runs: a fifth of the smoke scale's 200 images
    donor_cfg.train.keep_steps, donor_cfg.train.keep_checkpoints = [2], 2
    donor = tmp_path / "sweep/seed-0/k1"
    fit(donor_cfg, donor)
    # step 2 was pinned: kept although two newer checkpoints (3 and 6) exist and keep_checkpoints is 2
    assert sorted(p.name for p in (donor / "checkpoints").glob("step-*")) == [
        "step-00000002",
        "step-00000003",
        "step-00000006",
    ]

    scratch = tmp_path / "scratch"
    fit(cfg, scratch)

    run = tmp_path / "sweep/seed-0/k2"
    found = find_fork_donor(cfg, 0, tmp_path, run)
    assert found is not None and found[0] == donor.resolve() and found[1].name == "step-00000002"
    fork_run(cfg, run, *found)
    assert [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "run.json").read_text())["forked_from"] == {
        "run": str(donor.resolve()),
        "iteration": 2,
    }
    fit(cfg, run, resume=True)
    _same_run(scratch, run)
    assert json.loads((run / "metrics.json").read_text())["resumed_from_iteration"] == 2
    assert not list(run.parent.glob(".fork-*"))


def test_only_a_run_with_the_same_prefix_and_a_kept_checkpoint_is_a_donor(tmp_path):
    cells = _cells()
    cfg = copy.deepcopy(cells["k2_p2000"])
    other = copy.deepcopy(cells["k1_p2000"])
    other.optim.lr *= 2  # a different pretraining
    other.train.keep_steps = [2]
    short = copy.deepcopy(cells["k1_p100"])  # pretrains 1 iteration only: its step 2 is MCL already
    short.train.keep_steps = [2]
    for c in (cfg, other, short):
        c.data.test_limit = 40  # their final evaluations: not what is tested
    fit(other, tmp_path / "sweep/seed-0/lr")
    fit(short, tmp_path / "sweep/seed-0/short")
    assert find_fork_donor(cfg, 0, tmp_path, tmp_path / "sweep/seed-0/k2") is None
    assert find_fork_donor(cfg, 1, tmp_path, tmp_path / "sweep/seed-1/k2") is None  # another seed


def test_plan_keeps_each_fork_point_on_the_runs_whose_prefix_covers_it():
    cells = _cells()
    names = ["k1_p100", "k1_p2000", "k1_p4000", "k2_p4000"]
    plans = dict(zip(names, plan_keep_steps([cells[n] for n in names])))
    assert [ce_prefix(cells[n]) for n in names] == [1, 2, 5, 5]
    # the other cells' fork points within each prefix
    # (a cell's own fork point only when another cell shares it)
    assert plans == {"k1_p100": [], "k1_p2000": [1], "k1_p4000": [1, 2, 5], "k2_p4000": [1, 2, 5]}


@pytest.mark.slow  # a whole smoke sweep; the fast tests above and below check its parts
def test_table5_sweep_trains_the_shared_pretraining_once(tmp_path):
    text = reproduce("table5", "smoke", None, tmp_path, seeds=1)
    seed = tmp_path / "seed-0"
    first = seed / "k1_p4000"  # the longest cross-entropy prefix runs first and keeps the fork points
    assert not first.is_symlink() and "forked_from" not in json.loads((first / "run.json").read_text())
    assert sorted(p.name for p in (first / "checkpoints").glob("step-*"))[:3] == [
        "step-00000001",
        "step-00000002",
        "step-00000003",
    ]
    forks = {
        r.name: json.loads((r / "run.json").read_text()).get("forked_from")
        for r in seed.iterdir()
        if not r.is_symlink()
    }
    assert forks["k2_p4000"] == {"run": str(first.resolve()), "iteration": 5}
    assert forks["k3_p2000"]["iteration"] == 2
    assert "continued from another run's cross-entropy pretraining" in text and "k=2, P=4000 (seed 0)" in text
    # a forked cell equals the same cell trained from scratch
    fresh = tmp_path / "fresh"
    reproduce("table5", "smoke", None, fresh, seeds=1, reuse=False)
    assert "forked_from" not in json.loads((fresh / "seed-0/k3_p2000/run.json").read_text())
    _same_run(fresh / "seed-0/k3_p2000", seed / "k3_p2000")


@pytest.mark.parametrize("make", ["link", "fifo", "none"])
def test_forked_from_reads_run_json_as_a_run_folder_entry(tmp_path, make):
    """A run.json that is a link or a FIFO is refused in one line (was: the link's target read, naming a
    donor the folder never had; a FIFO waited on forever); no run.json yet: not a fork."""
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"forked_from": {"run": "elsewhere", "iteration": 5}}))
    if make == "none":
        assert forked_from(run) is None
        return
    if make == "link":
        (run / "run.json").symlink_to(outside)
    else:
        os.mkfifo(run / "run.json")
    with pytest.raises(CheckpointError, match=rf"^{run / 'run.json'}: is "):
        forked_from(run)
