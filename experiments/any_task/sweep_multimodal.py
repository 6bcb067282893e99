"""The multimodal regression benchmark (issue 32, example a) over seeds: every ensemble loss on the same
TreeNet of MLPs (`train_multimodal.model`), with the multiple-hypotheses task's metrics, plus two rows of
Gaussian heads (the regression task) for the mixture's NLL. Writes `seeds.csv`, `results.csv` and
`curves.csv` (each member's hypothesis over an x grid, seed 0) to `--out`; `figures.py multimodal` draws
them.

Cells: "independent" (each member's own MSE), "averaged" (MSE of the members' mean), "mcl" (k = 1), "rwta"
(relaxed WTA, epsilon 0.05), "amcl" (annealed MCL, T0 = 1 falling over the first half of training, then MCL),
"mcl_scored" (resilient MCL: MCL plus each member's scoring head trained by BCE on "won");
"gaussian_independent" and "gaussian_mcl": Gaussian heads (a mean and a variance per member) trained by their
NLL, independently or by MCL. Only "mcl_scored" learns scores; every other cell weighs its members equally
(its score column is held at 0), so its distortion and EMD are those of the uniform mixture of its hypotheses
(Gaussian cells: of their means). The NLL (`mixture_nll`: of the equal-weight Gaussian mixture) is defined
only for the Gaussian cells.

    python -m mheads.experiments.any_task.sweep_multimodal --out experiments/results/any-task-multimodal-cpu
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import torch

from mheads.ensemble.wta import annealed_temperature
from mheads.experiments.any_task import loop, multimodal, record, train_multimodal
from mheads.tasks import multi_hypothesis, regression

CELLS = (
    "independent",
    "averaged",
    "mcl",
    "rwta",
    "amcl",
    "mcl_scored",
    "gaussian_independent",
    "gaussian_mcl",
)
# smoke: the test's size; bench: the committed tables (about 15 s a cell on one loaded CPU core).
SCALES = {
    "smoke": {
        "members": 5,
        "n": 512,
        "batch": 128,
        "steps": 100,
        "width": 32,
        "lr": 1e-2,
        "test": 256,
        "draws": 64,
    },
    "bench": {
        "members": 5,
        "n": 4096,
        "batch": 256,
        "steps": 2000,
        "width": 64,
        "lr": 3e-3,
        "test": 1024,
        "draws": 256,
    },
}
T0 = 1.0  # annealed MCL's first temperature, about the squared distances' scale early in training


def uniform_scores(out: torch.Tensor) -> torch.Tensor:
    """`(M, B, 2)` with the score column replaced by 0: equal weights, and no gradient into the score head."""
    return torch.cat([out[..., :1], torch.zeros_like(out[..., 1:])], dim=-1)


def train_cell(cell: str, s: dict, seed: int) -> torch.nn.Module:
    x, y = multimodal.sample(s["n"], seed)
    net = train_multimodal.model(s["members"], s["width"], seed)
    gaussian = cell.startswith("gaussian_")
    task = regression(1, head="gaussian") if gaussian else multi_hypothesis(1)
    loss = cell.removeprefix("gaussian_")
    params: dict[str, Any] = {"epsilon": 0.05} if loss == "rwta" else {}
    schedule = None
    if loss == "amcl":
        schedule = lambda step: {"temperature": annealed_temperature(T0, s["steps"] // 2, step)}  # noqa: E731
    transform = None if gaussian or loss == "mcl_scored" else uniform_scores
    loop.train(
        net,
        task,
        loss,
        loop.sampled(x, y, s["batch"], seed),
        steps=s["steps"],
        lr=s["lr"],
        seed=seed,
        schedule=schedule,
        transform=transform,
        **params,
    )
    return net


@torch.no_grad()
def evaluate(cell: str, net: torch.nn.Module, s: dict, seed: int) -> dict[str, float]:
    xt, yt = multimodal.sample(s["test"], seed + 1000)
    out = net(xt)
    samples = multimodal.true_samples(xt, s["draws"], seed + 2000)
    metrics: dict[str, float] = {}
    if cell.startswith("gaussian_"):
        g = regression(1, head="gaussian").metrics(out, yt)
        metrics.update(
            {"mixture_nll": g["mixture_nll"], "rmse": g["rmse"], "coverage_90": g["coverage"]["0.9"]}
        )
    if cell != "mcl_scored":
        out = uniform_scores(out)
    h = multi_hypothesis(1).metrics(out, yt, samples=samples)
    metrics.update({k: h[k] for k in ("oracle_error", "distortion", "weighted_mean_error", "emd")})
    return metrics


@torch.no_grad()
def curves(cell: str, net: torch.nn.Module, grid: torch.Tensor) -> list[dict]:
    out = net(grid.unsqueeze(-1))
    if cell != "mcl_scored":
        out = uniform_scores(out)
    combined = multi_hypothesis(1).combine(out)
    return [
        {
            "cell": cell,
            "member": m,
            "x": float(grid[i]),
            "y": float(combined.points[m, i, 0]),
            "weight": float(combined.weights[m, i]),
        }
        for m in range(out.shape[0])
        for i in range(len(grid))
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: thread wake-ups cost more than they save
    s = SCALES[args.scale]
    rows, lines = [], []
    grid = torch.linspace(-1, 1, 201)
    for seed in args.seeds:
        oracle = {}
        for cell in args.cells:
            start = time.perf_counter()
            net = train_cell(cell, s, seed)
            metrics = evaluate(cell, net, s, seed)
            wall = time.perf_counter() - start
            oracle[cell] = metrics["oracle_error"]
            rows += record.seed_rows(
                "any-task-multimodal", args.scale, "multimodal.sample", cell, seed, metrics, wall
            )
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            if seed == args.seeds[0]:
                lines += curves(cell, net, grid)
        for cell in ("mcl", "mcl_scored", "rwta", "amcl"):
            if cell in oracle and "independent" in oracle:
                ratio = {"oracle_error_ratio": oracle[cell] / oracle["independent"]}
                rows += record.seed_rows(
                    "any-task-multimodal",
                    args.scale,
                    "multimodal.sample",
                    f"{cell}/independent",
                    seed,
                    ratio,
                    0.0,
                )
    out = record.write(args.out, rows)
    with open(Path(out) / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=("cell", "member", "x", "y", "weight"))
        writer.writeheader()
        writer.writerows(lines)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
