"""The any-task sweeps' tables: the record format (known answers), a smoke sweep's files, and the committed
result folders' shapes (cells, metrics, seeds, hardware)."""

import csv
import math
from pathlib import Path

import pytest

from mheads.experiments.any_task import record, sweep_multimodal, sweep_shapes, sweep_text

RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results"


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summarize_mean_and_sample_std_per_cell_and_metric():
    rows = [
        {"cell": c, "metric": "m", "value": v, "wall_time_s": 1.0}
        for c, v in (("a", 1.0), ("a", 2.0), ("a", 3.0), ("b", 5.0), ("b", math.nan))
    ]
    out = {r["cell"]: r for r in record.summarize(rows)}
    a = out["a"]
    assert (a["mean"], a["std"], a["seeds"], a["wall_time_s"]) == (2.0, 1.0, 3, 3.0)
    assert out["b"]["mean"] == 5.0 and math.isnan(out["b"]["std"]) and out["b"]["seeds"] == 1


def test_a_smoke_sweep_writes_both_tables_and_the_curves(tmp_path):
    sweep_multimodal.main(
        ["--scale", "smoke", "--seeds", "0", "--cells", "independent", "mcl_scored", "--out", str(tmp_path)]
    )
    seeds = _read(tmp_path / "seeds.csv")
    assert tuple(seeds[0]) == record.SEED_FIELDS and "torch" in seeds[0]["hardware"]
    metrics = ("oracle_error", "distortion", "weighted_mean_error", "emd")
    assert [(r["cell"], r["metric"]) for r in seeds] == (
        [(c, m) for c in ("independent", "mcl_scored") for m in metrics]
        + [("mcl_scored/independent", "oracle_error_ratio")]
    )
    ratio = float(seeds[-1]["value"])
    assert ratio == pytest.approx(float(seeds[4]["value"]) / float(seeds[0]["value"]))
    results = _read(tmp_path / "results.csv")
    assert tuple(results[0]) == record.RESULT_FIELDS and len(results) == 9
    assert len(_read(tmp_path / "curves.csv")) == 2 * 5 * 201  # cells x members x grid


def test_shapes_sweep_smoke_cells(tmp_path):
    sweep_shapes.main(
        ["--scale", "smoke", "--seeds", "0", "--cells", "independent_M1", "amcl_M2", "--out", str(tmp_path)]
    )
    results = _read(tmp_path / "results.csv")
    wins = {
        "independent_M1": ["test_win_1"],
        "amcl_M2": [f"{w}_win_{r}" for w in ("test", "train") for r in (1, 2)],
    }
    for cell, win in wins.items():  # 6 metrics and the win shares, largest first
        assert [r["metric"] for r in results if r["cell"] == cell][6:] == win
    assert all(0.0 <= float(r["mean"]) <= 1.0 for r in results if r["metric"] != "ambiguous_oracle_pixel_acc")


# Each committed folder as groups of (cells, metrics, seeds): together the groups name every cell of its
# seeds.csv, and for each cell the metrics RESULTS.md quotes from it (sections "Any task (issue 32)" a-d,
# and c's comparison with the earlier plain-loop shapes run), over that many seeds. A lost folder, cell,
# metric or seed fails, and so does a cell the folder holds that is not listed here.
MULTIMODAL = ("oracle_error", "distortion", "weighted_mean_error", "emd")
RATIOS = tuple(f"{c}/independent" for c in ("mcl", "mcl_scored", "rwta", "amcl"))  # oracle_error_ratio
SUNSPOTS = ("single", "independent", "mcl", "mcl_scored", "gaussian_independent")
TEXT = ("ensemble_acc", "oracle_acc", "member_acc", "nll", "clear_ensemble_acc", "ambiguous_oracle_acc")
TEXT += ("test_win_1", "test_win_2", "test_win_3", "params_k")  # 3 members; params_k: a shared trunk once
SHAPES = ("oracle_mean_iou", "mean_iou", "member_pixel_acc", "ambiguous_oracle_pixel_acc", "test_win_1")
COMMITTED = {
    "any-task-multimodal-cpu": (
        (sweep_multimodal.CELLS, MULTIMODAL, 3),
        (("gaussian_independent", "gaussian_mcl"), ("mixture_nll", "coverage_90"), 3),
        (RATIOS, ("oracle_error_ratio",), 3),
    ),
    "any-task-multimodal-fit-cpu": ((("fit:independent", "fit:mcl_scored"), ("oracle_error", "emd"), 3),),
    "any-task-sunspots-fit-cpu": (
        (SUNSPOTS, ("rmse", "oracle_rmse", "member_rmse"), 3),
        (("mcl_scored",), ("weighted_rmse",), 3),
        (("gaussian_independent",), ("mixture_nll_per_year", "coverage_50", "coverage_90"), 3),
        (("persistence", "climatology"), ("rmse",), 1),  # baselines without a model: no seed to vary
    ),
    "any-task-shapes-cpu": (
        (
            ("independent_M1", "independent_M2", "mcl_M2", "independent_M4", "mcl_M4"),
            ("oracle_mean_iou", "mean_iou", "pixel_acc"),
            3,
        ),
    ),
    "any-task-shapes-fit-cpu": (
        (sweep_shapes.CELLS, SHAPES, 3),
        (("mcl_M2", "amcl_M2", "mcl_M4", "amcl_M4"), ("train_win_1",), 3),
        (("mcl_M4", "amcl_M4"), ("train_win_2", "train_win_3", "train_win_4"), 3),
    ),
    "any-task-text-cpu": ((tuple(sweep_text.CELLS), TEXT, 3),),  # members independent, then shared_*
}


@pytest.mark.parametrize("folder", sorted(COMMITTED))
def test_committed_tables_have_every_cell_metric_and_seed(folder):
    path = RESULTS / folder
    seeds = _read(path / "seeds.csv")
    assert all("torch" in r["hardware"] and float(r["wall_time_s"]) >= 0 for r in seeds)
    listed = {cell for cells, _, _ in COMMITTED[folder] for cell in cells}
    assert {r["cell"] for r in seeds} == listed
    results = {(r["cell"], r["metric"]): r for r in _read(path / "results.csv")}
    for cells, metrics, n in COMMITTED[folder]:
        for cell in cells:
            for metric in metrics:
                row = results.get((cell, metric))
                assert row is not None, f"{folder}/results.csv has no {metric} for {cell}"
                ran = {r["seed"] for r in seeds if (r["cell"], r["metric"]) == (cell, metric)}
                assert int(row["seeds"]) == len(ran) == n, (cell, metric, row["seeds"], sorted(ran))
                assert math.isfinite(float(row["mean"])), (cell, metric)


def test_committed_multimodal_mcl_oracle_well_below_independent():
    path = RESULTS / "any-task-multimodal-cpu"
    if not (path / "results.csv").exists():
        pytest.skip("not committed")
    results = {(r["cell"], r["metric"]): r for r in _read(path / "results.csv")}
    ratio = results[("mcl/independent", "oracle_error_ratio")]
    assert int(ratio["seeds"]) == 3 and float(ratio["mean"]) < 0.2
    assert len(_read(path / "curves.csv")) == len(sweep_multimodal.CELLS) * 5 * 201


def test_committed_shapes_guarded_mcl_oracle_above_independent_on_every_seed():
    path = RESULTS / "any-task-shapes-fit-cpu"
    if not (path / "seeds.csv").exists():
        pytest.skip("not committed")
    value = {(r["cell"], r["seed"], r["metric"]): float(r["value"]) for r in _read(path / "seeds.csv")}
    for m in (2, 4):
        for seed in ("0", "1", "2"):
            amcl = value[(f"amcl_M{m}", seed, "oracle_mean_iou")]
            assert amcl > value[(f"independent_M{m}", seed, "oracle_mean_iou")] and amcl > 0.99, (m, seed)
            assert value[(f"amcl_M{m}", seed, "train_win_1")] < 0.6  # no member won (nearly) every image
