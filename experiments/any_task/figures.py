"""Figures of the any-task examples from their committed tables (no training): each reads a result folder
written by a `sweep_*` script and saves PNGs next to its CSVs.

    python -m mheads.experiments.any_task.figures multimodal experiments/results/any-task-multimodal-cpu
    python -m mheads.experiments.any_task.figures sunspots experiments/results/any-task-sunspots-fit-cpu
    python -m mheads.experiments.any_task.figures shapes experiments/results/any-task-shapes-fit-cpu

- multimodal -> `hypotheses.png`: per cell (seed 0) the test data as points, the true modes dashed, each
  member's hypothesis as a curve over x whose opacity and width follow its weight (the learned score for
  "mcl_scored", 1/M elsewhere).
- sunspots -> `forecasts.png`: the test years' series and, from every `t_out`-th origin, each member's
  forecast (opacity by score for "mcl_scored"; the Gaussian mixture's members' 90% intervals shaded).
- shapes -> `oracle_iou_vs_m.png`: oracle mean IoU (and the ensemble's) against M, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from mheads.experiments.any_task import multimodal, record

COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
)


def _pyplot():
    import matplotlib  # optional: only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def multimodal_figure(folder: Path, test: int = 1024, seed: int = 0) -> Path:
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    rows = record.read(folder / "curves.csv")
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    x, y = multimodal.sample(test, seed + 1000)
    grid = torch.linspace(-1, 1, 201)
    points, weights = multimodal.modes(grid)
    fig, axes = plt.subplots(
        2, (len(cells) + 1) // 2, figsize=(3.2 * ((len(cells) + 1) // 2), 6.4), sharex=True, sharey=True
    )
    for ax, cell in zip(axes.flat, cells):
        ax.scatter(x[:, 0], y[:, 0], s=2, color="0.75", rasterized=True)
        for j in range(points.shape[1]):
            on = weights[:, j] > 0
            ax.plot(grid[on], points[on, j], "k--", lw=0.7)
        own = [r for r in rows if r["cell"] == cell]
        members = sorted({int(r["member"]) for r in own})
        for m in members:
            mine = [r for r in own if int(r["member"]) == m]
            xs = np.array([float(r["x"]) for r in mine])
            ys = np.array([float(r["y"]) for r in mine])
            w = np.array([float(r["weight"]) for r in mine]) * len(members)  # 1 = an equal share
            xy = np.column_stack([xs, ys])
            segments = np.stack([xy[:-1], xy[1:]], axis=1)
            share = np.clip((w[:-1] + w[1:]) / 2, 0.0, 2.0) / 2  # in [0, 1]
            color = np.array(plt.matplotlib.colors.to_rgba(COLORS[m % len(COLORS)]))
            rgba = np.tile(color, (len(segments), 1))
            rgba[:, 3] = 0.15 + 0.85 * share
            ax.add_collection(LineCollection(segments, colors=rgba, linewidths=0.8 + 2.4 * share))
        ax.set_title(cell, fontsize=9)
    for ax in axes.flat[len(cells) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.suptitle(
        "Multimodal regression: each member's hypothesis over x (seed 0); dashed: the true modes", fontsize=10
    )
    fig.tight_layout()
    path = folder / "hypotheses.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sunspots_figure(folder: Path) -> Path:
    plt = _pyplot()
    from mheads.experiments.any_task import sunspots

    rows = record.read(folder / "forecasts.csv")
    cells = [
        c
        for c in ("independent", "mcl", "mcl_scored", "gaussian_independent")
        if any(r["cell"] == c for r in rows)
    ]
    values = sunspots.series()
    first = min(int(r["year"]) for r in rows)
    years = np.arange(1700, 1700 + len(values))
    keep = years >= first - 10
    fig, axes = plt.subplots(len(cells), 1, figsize=(9, 2.2 * len(cells)), sharex=True, sharey=True)
    for ax, cell in zip(np.atleast_1d(axes), cells):
        ax.plot(years[keep], values[keep], color="k", lw=1.2, label="observed")
        own = [r for r in rows if r["cell"] == cell]
        members = sorted({int(r["member"]) for r in own})
        for window in sorted({int(r["window"]) for r in own}):
            for m in members:
                mine = [r for r in own if int(r["window"]) == window and int(r["member"]) == m]
                yr = [int(r["year"]) for r in mine]
                f = np.array([float(r["forecast"]) for r in mine])
                w = float(mine[0]["weight"]) * len(members)
                alpha = float(np.clip(0.2 + 0.6 * w / 2, 0.15, 1.0))
                ax.plot(yr, f, color=COLORS[m % len(COLORS)], lw=1, alpha=alpha)
                if mine[0]["std"]:
                    sd = np.array([float(r["std"]) for r in mine])
                    ax.fill_between(
                        yr, f - 1.645 * sd, f + 1.645 * sd, color=COLORS[m % len(COLORS)], alpha=0.06
                    )
        ax.set_title(cell, fontsize=9)
        ax.set_ylabel("sunspots")
    np.atleast_1d(axes)[-1].set_xlabel("year")
    fig.suptitle(
        "Sunspots, test years: each member's 8-year forecast from every 8th origin (seed 0)", fontsize=10
    )
    fig.tight_layout()
    path = folder / "forecasts.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def shapes_figure(folder: Path) -> Path:
    plt = _pyplot()
    rows = record.read(folder / "seeds.csv")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for loss, color in (("independent", "tab:blue"), ("mcl", "tab:red"), ("amcl", "tab:green")):
        for metric, style in (("oracle_mean_iou", "-o"), ("mean_iou", ":s")):
            ms, means, stds = [], [], []
            for m in (1, 2, 4, 8):
                cell = "independent_M1" if m == 1 else f"{loss}_M{m}"
                vs = [float(r["value"]) for r in rows if r["cell"] == cell and r["metric"] == metric]
                if vs:
                    ms.append(m)
                    means.append(statistics.mean(vs))
                    stds.append(statistics.stdev(vs) if len(vs) > 1 else 0.0)
            label = f"{loss}, {'oracle' if metric.startswith('oracle') else 'ensemble'} mean IoU"
            ax.errorbar(ms, means, yerr=stds, fmt=style, color=color, capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4])
    ax.set_xticklabels(["1", "2", "4"])
    ax.set_xlabel("members M")
    ax.set_ylabel("mean IoU (held-out images)")
    ax.legend(fontsize=7)
    ax.set_title("Ambiguous shapes: mean IoU against M (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    path = folder / "oracle_iou_vs_m.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


FIGURES = {"multimodal": multimodal_figure, "sunspots": sunspots_figure, "shapes": shapes_figure}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("example", choices=sorted(FIGURES))
    p.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    print(FIGURES[args.example](args.folder))


if __name__ == "__main__":
    main()
