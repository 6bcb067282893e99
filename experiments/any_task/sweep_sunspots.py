"""Sunspot forecasting (issue 32, example b) over seeds: multi-hypothesis forecasters against a single model
and an independent ensemble, all on `train_sunspots.model` (a shared 1-D conv trunk, an MLP head per
member), trained through `mheads.fit(..., task=...)` (`train_sunspots.fit`). Writes `seeds.csv`,
`results.csv` and `forecasts.csv` (seed 0: each member's forecast from every `t_out`-th test origin) to
`--out`; `figures.py sunspots` draws them.

Cells: "single" (one member, MSE), "independent" (M members, each its own MSE), "mcl" (k = 1 on the MSE),
"mcl_scored" (resilient MCL: the multiple-hypotheses task on the `t_out`-vector, a scoring head per member),
"gaussian_independent" (M Gaussian heads, each trained by its NLL: intervals); two baselines without a model:
"persistence" (the window's last year, repeated) and "climatology" (the training years' mean). Metrics in
sunspot numbers on the test years: `rmse` of the ensemble's mean forecast (equal weights), `weighted_rmse`
(mcl_scored: of the score-weighted mean), `oracle_rmse` (per window the member closest to what happened: not a
forecast anyone can issue, the multiple-choice metric), `member_rmse` (the members' mean); Gaussian heads also
the mixture's NLL per window and year (normalised units) and the coverage of its central 50% and 90%
intervals.

    python -m mheads.experiments.any_task.sweep_sunspots --out experiments/results/any-task-sunspots-fit-cpu
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from mheads.experiments.any_task import record, sunspots, train_sunspots
from mheads.tasks import Task, multi_hypothesis, regression

CELLS = ("single", "independent", "mcl", "mcl_scored", "gaussian_independent")
BASELINES = ("persistence", "climatology")  # no training: the last input year repeated; the training mean
# smoke: the test's size; bench: the committed tables.
SCALES = {
    "smoke": {
        "members": 3,
        "t_in": 24,
        "t_out": 4,
        "test_years": 60,
        "steps": 20,
        "batch": 32,
        "channels": 8,
        "lr": 3e-3,
    },
    "bench": {
        "members": 5,
        "t_in": 32,
        "t_out": 8,
        "test_years": 60,
        "steps": 1500,
        "batch": 64,
        "channels": 16,
        "lr": 1e-3,
    },
}


def cell_task(cell: str, t_out: int) -> tuple[Task, str, int]:
    """The task, the loss and the number of members (1 for "single", else the scale's)."""
    if cell == "mcl_scored":
        return multi_hypothesis(t_out), "mcl_scored", 0
    if cell == "gaussian_independent":
        return regression(t_out, head="gaussian"), "independent", 0
    loss = "independent" if cell in ("single", "independent") else cell
    return regression(t_out), loss, 1 if cell == "single" else 0


def baseline(cell: str, s: dict, splits: dict, stats: dict) -> dict[str, float]:
    test = splits["test"]
    y = test.targets * stats["std"] + stats["mean"]
    if cell == "persistence":
        forecast = (test.inputs[:, 0, -1:] * stats["std"] + stats["mean"]).expand_as(y)
    else:
        forecast = torch.full_like(y, stats["mean"])
    return {"rmse": float((forecast - y).square().mean().sqrt())}


def train_cell(cell: str, s: dict, seed: int, splits: dict) -> tuple[torch.nn.Module, Task]:
    task, loss, members = cell_task(cell, s["t_out"])
    return train_sunspots.fit(task, loss, members or s["members"], s, seed, splits), task


@torch.no_grad()
def evaluate(cell: str, net: torch.nn.Module, task: Task, s: dict, splits: dict, stats: dict) -> dict:
    test = splits["test"]
    out = net(test.inputs)  # (M, N, W), normalised units
    d = s["t_out"]
    means = out[..., :d] * stats["std"] + stats["mean"]
    y = test.targets * stats["std"] + stats["mean"]
    point = regression(d).metrics(means, y)
    metrics = {
        "rmse": point["rmse"],
        "oracle_rmse": point["oracle_rmse"],
        "member_rmse": statistics.mean(point["member_rmse"]),
    }
    if cell == "mcl_scored":
        mean = task.combine(out).mean() * stats["std"] + stats["mean"]  # type: ignore[attr-defined]
        metrics["weighted_rmse"] = float((mean - y).square().mean().sqrt())
    if cell == "gaussian_independent":
        g = task.metrics(out, test.targets)
        metrics.update(
            {
                "mixture_nll_per_year": g["mixture_nll"] / d,
                "coverage_50": g["coverage"]["0.5"],
                "coverage_90": g["coverage"]["0.9"],
            }
        )
    return metrics


@torch.no_grad()
def forecasts(cell: str, net: torch.nn.Module, task: Task, s: dict, splits: dict, stats: dict) -> list[dict]:
    """Every `t_out`-th test window's forecasts: member mean (and std for Gaussian heads) per year ahead."""
    test, d = splits["test"], s["t_out"]
    out = net(test.inputs)
    weights = task.combine(out).weights if cell == "mcl_scored" else None  # type: ignore[attr-defined]
    std = (
        task.moments(out)[1].sqrt() * stats["std"]
        if cell == "gaussian_independent"  # type: ignore
        else None
    )
    means = out[..., :d] * stats["std"] + stats["mean"]
    rows = []
    for i in range(0, out.shape[1], d):
        for m in range(out.shape[0]):
            for h in range(d):
                rows.append(
                    {
                        "cell": cell,
                        "window": i,
                        "member": m,
                        "year": stats["split_year"] + i + h,
                        "forecast": float(means[m, i, h]),
                        "std": "" if std is None else float(std[m, i, h]),
                        "weight": 1 / out.shape[0] if weights is None else float(weights[m, i]),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=CELLS + BASELINES, default=list(CELLS))
    p.add_argument("--out", required=True)
    p.add_argument("--append", action="store_true", help="add to --out's seeds.csv instead of replacing it")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: thread wake-ups cost more than they save
    s = SCALES[args.scale]
    splits, stats = sunspots.load(s["t_in"], s["t_out"], s["test_years"])
    rows = record.read(Path(args.out) / "seeds.csv") if args.append else []
    lines: list[dict] = []
    for seed in args.seeds:
        for cell in args.cells:
            start = time.perf_counter()
            if cell in BASELINES:
                rows += record.seed_rows(
                    "any-task-sunspots-fit",
                    args.scale,
                    "statsmodels sunspots",
                    cell,
                    seed,
                    baseline(cell, s, splits, stats),
                    time.perf_counter() - start,
                )
                continue
            net, task = train_cell(cell, s, seed, splits)
            metrics = evaluate(cell, net, task, s, splits, stats)
            wall = time.perf_counter() - start
            rows += record.seed_rows(
                "any-task-sunspots-fit", args.scale, "statsmodels sunspots", cell, seed, metrics, wall
            )
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            if seed == args.seeds[0]:
                lines += forecasts(cell, net, task, s, splits, stats)
    out = record.write(args.out, rows)
    if not lines:
        return
    with open(Path(out) / "forecasts.csv", "w", newline="") as f:
        fields = ("cell", "window", "member", "year", "forecast", "std", "weight")
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(lines)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
