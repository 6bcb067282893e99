"""scripts/open_set_tables.py reads its cells from the open-set spec and its criteria from the library (no
copies), and prints n/a, never the other convention's number, for a criterion value a run lacks."""

import json

import open_set_tables as ost
import pytest

from mheads.ensemble.uncertainty import CRITERIA
from mheads.reproduce.spec import load_spec


def test_cells_and_criteria_come_from_the_spec_and_the_library():
    assert ost.CELLS == [(c.name, c.row) for c in load_spec("open-set", "cpu", None).cells]
    assert ost.CRITERIA == list(CRITERIA)


def _write_run(run, auroc: dict, fpr95_in: bool):
    run.mkdir(parents=True)
    crit = {
        k: {"auroc": v, "fpr95_out": 1 - v, **({"fpr95_in": 0.5} if fpr95_in else {})}
        for k, v in auroc.items()
    }
    u = {
        "ensemble_mean_acc": 0.8,
        "oracle_acc": 0.9,
        "nll": 0.6,
        "ece": 0.05,
        "aurc": 0.1,
        "top1_set_coverage": 0.95,
        "calibrated": {"nll": 0.55, "ece": 0.02, "adaptive_ece": 0.03},
        "calibration": {"temperature": 1.5},
        "ood": {"open_set": crit},
    }
    (run / "uncertainty.json").write_text(json.dumps(u))
    (run / "metrics.json").write_text(json.dumps({"wall_time_s": 12.0}))


def test_the_tables_of_a_sweep(tmp_path, monkeypatch, capsys):
    scores = {k: 0.5 + i / 100 for i, k in enumerate(CRITERIA)}
    _write_run(tmp_path / "seed-0/single", scores, fpr95_in=True)
    _write_run(tmp_path / "seed-0/mcl", scores, fpr95_in=False)  # written before fpr95_in existed
    monkeypatch.setattr("sys.argv", ["open_set_tables.py", str(tmp_path)])
    ost.main()
    out = capsys.readouterr().out
    assert "| single model | 80.00 | 90.00 | 0.600 | 0.550 |" in out and "| MCL k=1 |" in out
    assert "independent ensemble" not in out  # no run: no row
    best = max(scores.values())
    assert f"**{best:.3f}**" in out  # the best AUROC in bold
    fpr_in = out.split("in-distribution positive")[1].split("OOD positive")[0]
    assert "| MCL k=1 | " + " | ".join(["n/a"] * len(CRITERIA)) + " |" in fpr_in


def test_help_names_the_sweep_argument(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["open_set_tables.py", "--help"])
    with pytest.raises(SystemExit):
        ost.main()
    assert "sweep" in capsys.readouterr().out
