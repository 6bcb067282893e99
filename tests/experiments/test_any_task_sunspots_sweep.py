"""Example b's sweep: the baselines' known answers, a smoke sweep's three files, and the committed run
`any-task-sunspots-fit-cpu` (complete, its summary recomputed from its seeds, its baselines recomputed from
the data, and the RESULTS.md claim that MCL's oracle beats the independent ensemble's on every seed)."""

import csv
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("statsmodels")

from mheads.data.pairs import TensorPairs  # noqa: E402
from mheads.experiments.any_task import record, sunspots, sweep_sunspots  # noqa: E402

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "results" / "any-task-sunspots-fit-cpu"
SEEDS = ("0", "1", "2")


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_baselines_known_answers():
    # normalised inputs (mean 10, std 2): persistence repeats the last input year, climatology is the mean
    x = torch.tensor([[[0.0, 1.0]], [[2.0, -1.0]]])  # (N, 1, t_in): last years 12 and 8
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # 12, 12 and 10, 10
    splits, stats = {"test": TensorPairs(x, y)}, {"mean": 10.0, "std": 2.0}
    persistence = sweep_sunspots.baseline("persistence", {}, splits, stats)["rmse"]
    climatology = sweep_sunspots.baseline("climatology", {}, splits, stats)["rmse"]
    assert persistence == pytest.approx(math.sqrt((0 + 0 + 4 + 4) / 4))
    assert climatology == pytest.approx(math.sqrt((4 + 4 + 0 + 0) / 4))


def test_a_smoke_sweep_writes_seeds_results_and_forecasts(tmp_path, monkeypatch):
    monkeypatch.setitem(sweep_sunspots.SCALES, "smoke", {**sweep_sunspots.SCALES["smoke"], "steps": 3})
    smoke = ["--scale", "smoke", "--seeds", "0", "--out", str(tmp_path), "--cells"]
    sweep_sunspots.main([*smoke, "mcl_scored", "gaussian_independent"])
    sweep_sunspots.main([*smoke, *sweep_sunspots.BASELINES, "--append"])
    seeds = _read(tmp_path / "seeds.csv")
    metrics = {
        c: [r["metric"] for r in seeds if r["cell"] == c] for c in dict.fromkeys(r["cell"] for r in seeds)
    }
    assert metrics == {
        "mcl_scored": ["rmse", "oracle_rmse", "member_rmse", "weighted_rmse"],
        "gaussian_independent": ["rmse", "oracle_rmse", "member_rmse"]
        + ["mixture_nll_per_year", "coverage_50", "coverage_90"],
        "persistence": ["rmse"],
        "climatology": ["rmse"],
    }
    assert len(_read(tmp_path / "results.csv")) == 12
    rows = _read(tmp_path / "forecasts.csv")  # not rewritten by the baselines' --append
    assert len(rows) == 2 * 15 * 3 * 4  # cells x every 4th of 57 test windows x members x years
    scored = [float(r["weight"]) for r in rows if r["cell"] == "mcl_scored" and r["window"] == "8"]
    assert sum(scored) == pytest.approx(4.0)  # each year's 3 weights sum to 1
    assert all(float(r["std"]) > 0 for r in rows if r["cell"] == "gaussian_independent")


def test_committed_run_is_complete_and_its_summary_recomputes():
    rows = _read(FOLDER / "seeds.csv")
    assert all(r["hardware"] == "AMD EPYC, 2 cores, torch 2.13.0+cpu" and r["scale"] == "bench" for r in rows)
    for cell in sweep_sunspots.CELLS:
        assert sorted({r["seed"] for r in rows if r["cell"] == cell}) == list(SEEDS), cell
    summary = {(r["cell"], r["metric"]): r for r in record.summarize(record.read(FOLDER / "seeds.csv"))}
    committed = _read(FOLDER / "results.csv")
    assert len(committed) == len(summary) == 21
    for r in committed:
        mine = summary[(r["cell"], r["metric"])]
        assert float(r["mean"]) == pytest.approx(float(mine["mean"]), rel=1e-12), (r["cell"], r["metric"])
    forecasts = _read(FOLDER / "forecasts.csv")
    assert len(forecasts) == 7 * (1 + 4 * 5) * 8  # every 8th of 53 windows x members (single: 1) x years
    assert {int(r["year"]) for r in forecasts} == set(range(1949, 2005))


def test_committed_baselines_recompute_from_the_data():
    s = sweep_sunspots.SCALES["bench"]
    splits, stats = sunspots.load(s["t_in"], s["t_out"], s["test_years"])
    value = {r["cell"]: float(r["value"]) for r in _read(FOLDER / "seeds.csv")}
    for cell in sweep_sunspots.BASELINES:
        assert sweep_sunspots.baseline(cell, s, splits, stats)["rmse"] == pytest.approx(value[cell], rel=1e-6)


def test_committed_mcl_oracle_below_independent_on_every_seed():
    value = {(r["cell"], r["seed"], r["metric"]): float(r["value"]) for r in _read(FOLDER / "seeds.csv")}
    for seed in SEEDS:
        independent = value[("independent", seed, "oracle_rmse")]
        assert value[("mcl", seed, "oracle_rmse")] < 0.7 * independent, seed
        assert value[("mcl", seed, "rmse")] < value[("climatology", "0", "rmse")], seed
