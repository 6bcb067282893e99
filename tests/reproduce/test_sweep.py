"""The sweep reads each cell's metrics.json and run.json as a handed-over run folder is read
(runs.entries.read_run_file): a link or a FIFO is refused in one line naming it, never followed or waited
on."""

from __future__ import annotations

import json
import os

import pytest

from mheads.config import Config, ConfigError
from mheads.reproduce.sweep import run_cell, trained_on
from mheads.runs.checkpoint import CheckpointError


def _cell(tmp_path, name: str, make: str):
    """A finished cell's folder whose ``name`` is a link to a file outside, a FIFO, or not a JSON object."""
    run = tmp_path / "seed-0" / "cell"
    run.mkdir(parents=True)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"oracle_acc": 99.0, "hardware": {"cpu": "elsewhere"}}))
    if make == "link":
        (run / name).symlink_to(outside)
    elif make == "fifo":
        os.mkfifo(run / name)
    else:
        (run / name).write_text("[1, 2]")
    return run


@pytest.mark.parametrize(
    ("make", "error", "said"),
    [
        ("link", CheckpointError, "is a symbolic link"),
        ("fifo", CheckpointError, "is not a regular file"),
        ("list", ConfigError, r"unreadable final metrics \(list\)"),
    ],
)
def test_a_cells_metrics_json_is_checked_before_it_is_read(tmp_path, make, error, said):
    """Was: the link's target taken as the cell's metrics, a FIFO waited on forever, a list returned."""
    run = _cell(tmp_path, "metrics.json", make)
    with pytest.raises(error, match=rf"^{run / 'metrics.json'}: {said}") as info:
        run_cell(Config(), run)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make", ["link", "fifo"])
def test_the_hardware_a_cell_names_comes_from_its_own_run_json(tmp_path, make):
    """Was: a linked run.json's hardware named in the table, a FIFO waited on forever."""
    run = _cell(tmp_path, "run.json", make)
    with pytest.raises(CheckpointError, match=rf"^{run / 'run.json'}: is "):
        trained_on(run)


def test_a_cell_without_run_json_or_a_hardware_record_names_this_machine(tmp_path):
    run = tmp_path / "cell"
    run.mkdir()
    here = trained_on(run)
    (run / "run.json").write_text(json.dumps({"meta": {}}))
    assert trained_on(run) == here and "cores" in here
    (run / "run.json").write_text(json.dumps({"hardware": {"cpu": "X", "cores": 3, "torch": "2"}}))
    assert trained_on(run) == "X, 3 cores, torch 2"
