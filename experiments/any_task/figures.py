"""Figures of the any-task examples from their committed tables (no training): each reads a result folder
written by a `sweep_*` script and saves PNGs next to its CSVs.

    python -m mheads.experiments.any_task.figures multimodal experiments/results/any-task-multimodal-cpu
    python -m mheads.experiments.any_task.figures sunspots experiments/results/any-task-sunspots-fit-cpu
    python -m mheads.experiments.any_task.figures shapes experiments/results/any-task-shapes-fit-cpu
    python -m mheads.experiments.any_task.figures text experiments/results/any-task-text-cpu

- multimodal -> `hypotheses.png`: per cell (seed 0) the test data as points, the true modes dashed, each
  member's hypothesis as a curve over x whose opacity and width follow its weight (the learned score for
  "mcl_scored", 1/M elsewhere).
- sunspots -> `forecasts.png`: the test years' series and, from every `t_out`-th origin, each member's
  forecast (opacity by score for "mcl_scored"; the Gaussian mixture's members' 90% intervals shaded).
- shapes -> `oracle_iou_vs_m.png`: oracle mean IoU (and the ensemble's) against M, mean ± std over seeds.
- text -> `accuracy.png`: per loss (members independent, then sharing one trunk: `shared_*`) the ensemble,
  oracle and member accuracy, mean ± std bars over seeds with each seed as a dot and the one-model ceiling
  (5/6); beside it the two part metrics, where recorded.
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


TEXT_LOSSES = ("independent", "mcl", "mcl_ce", "rwta")
TEXT_LOSSES += tuple(f"shared_{c}" for c in TEXT_LOSSES)  # the same losses, the members sharing one trunk
TEXT_METRICS = (("ensemble_acc", "ensemble"), ("oracle_acc", "oracle"), ("member_acc", "member (mean)"))
TEXT_PARTS = (
    ("clear_ensemble_acc", "ensemble, unambiguous part"),
    ("ambiguous_oracle_acc", "oracle, ambiguous part"),
)
TEXT_COLUMNS = ("scale", "cell", "seed", "metric", "value")
SEED_MARKERS = ("o", "s", "^", "D", "v", "P")


def text_values(rows: list[dict], source: str = "seeds.csv") -> dict[tuple[str, str], dict[int, float]]:
    """`{(loss, metric): {seed: value}}` from `seeds.csv` rows (finite values only); a missing column, or a
    loss that lacks one of `TEXT_METRICS`, is an error naming it."""
    for col in TEXT_COLUMNS:
        if rows and col not in rows[0]:
            raise ValueError(
                f"{source}: column {col!r} is missing; the text figure needs {list(TEXT_COLUMNS)}"
            )
    values: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        v = float(r["value"])
        if np.isfinite(v):
            values.setdefault((r["cell"], r["metric"]), {})[int(r["seed"])] = v
    losses = [c for c in TEXT_LOSSES if any(k[0] == c for k in values)]
    if not losses:
        raise ValueError(
            f"{source}: column 'cell' has none of {list(TEXT_LOSSES)}; the text figure draws those losses"
        )
    for loss in losses:
        for metric, _ in TEXT_METRICS:
            if (loss, metric) not in values:
                allowed = [m for m, _ in TEXT_METRICS]
                raise ValueError(
                    f"{source}: cell {loss!r} has no metric {metric!r}; "
                    f"the text figure needs {allowed} for each loss"
                )
    return values


def _seed_bars(ax, values, losses, metrics, seeds) -> None:
    """Grouped bars per loss, one per metric: mean ± sample std over seeds, each seed's value a dot (side by
    side within the bar, one marker per seed, so a seed can be followed across bars)."""
    width = 0.8 / len(metrics)
    for j, (metric, label) in enumerate(metrics):
        x = np.arange(len(losses)) + (j - (len(metrics) - 1) / 2) * width
        per = [values[(loss, metric)] for loss in losses]
        means = [statistics.mean(p.values()) for p in per]
        stds = [statistics.stdev(p.values()) if len(p) > 1 else 0.0 for p in per]
        ax.bar(x, means, width * 0.9, color=COLORS[j], alpha=0.55, label=label)
        ax.errorbar(x, means, yerr=stds, fmt="none", ecolor="0.35", capsize=3, lw=1)
        for xi, p in zip(x, per):
            for seed, v in p.items():
                k = seeds.index(seed)
                dx = (k - (len(seeds) - 1) / 2) * width * 0.5 / max(len(seeds) - 1, 1)
                ax.plot(xi + dx, v, SEED_MARKERS[k % len(SEED_MARKERS)], color="k", ms=4, mfc="none", mew=0.8)
    ax.set_xticks(np.arange(len(losses)))
    small = {"fontsize": 8} if len(losses) > 4 else {}
    ax.set_xticklabels([loss.replace("shared_", "shared\n") for loss in losses], **small)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("ensemble loss")


def _legend_rows(ax, rows, below: float = 0.16) -> None:
    """A legend under `ax` with one row per `(handles, labels)` pair (matplotlib fills columns first, so the
    rows are interleaved, short ones padded with blank entries)."""
    ncol = max(len(h) for h, _ in rows)
    blank = ax.plot([], [], alpha=0)[0]
    padded = [(list(h) + [blank] * (ncol - len(h)), list(lb) + [""] * (ncol - len(lb))) for h, lb in rows]
    handles = [p[0][c] for c in range(ncol) for p in padded]
    labels = [p[1][c] for c in range(ncol) for p in padded]
    ax.legend(
        handles,
        labels,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -below),
        ncol=ncol,
        frameon=False,
    )


def text_figure(folder: Path) -> Path:
    plt = _pyplot()
    source = folder / "seeds.csv"
    rows = record.read(source)
    values = text_values(rows, str(source))
    losses = [c for c in TEXT_LOSSES if (c, TEXT_METRICS[0][0]) in values]
    parts = [(m, label) for m, label in TEXT_PARTS if all((loss, m) in values for loss in losses)]
    seeds = sorted({s for v in values.values() for s in v})
    ratios = [3, 2] if parts else [1]
    wide = 0.6 * max(len(losses) - 4, 0) * len(ratios)  # room for the cells past four
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.2 * len(ratios) + 2 + wide, 4.8), width_ratios=ratios)
    axes = np.atleast_1d(axes)
    _seed_bars(axes[0], values, losses, TEXT_METRICS, seeds)
    axes[0].axhline(100 * 5 / 6, color="0.3", ls="--", lw=1, label="one-model ceiling, 5/6 (83.3%)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("whole test set", fontsize=9)
    if parts:
        _seed_bars(axes[1], values, losses, parts, seeds)
        axes[1].set_title("parts of the test set (1/3 of it is ambiguous)", fontsize=9)
        axes[1].set_ylabel("accuracy on the part (%)")
    dots = [
        plt.Line2D([], [], ls="", marker=SEED_MARKERS[k % len(SEED_MARKERS)], color="k", mfc="none")
        for k in range(len(seeds))
    ]
    below = 0.22 if any("\n" in t.get_text() for t in axes[0].get_xticklabels()) else 0.16  # two-line ticks
    _legend_rows(axes[0], [axes[0].get_legend_handles_labels(), (dots, [f"seed {s}" for s in seeds])], below)
    if parts:
        _legend_rows(axes[1], [axes[1].get_legend_handles_labels()], below)
    scale = ", ".join(sorted({r["scale"] for r in rows}))
    fig.suptitle(
        f"Text classifier with ambiguous labels (scale {scale}, seeds {', '.join(map(str, seeds))}): "
        "bars mean ± std over seeds, dots one seed each",
        fontsize=10,
    )
    fig.tight_layout()
    path = folder / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


FIGURES = {
    "multimodal": multimodal_figure,
    "sunspots": sunspots_figure,
    "shapes": shapes_figure,
    "text": text_figure,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("example", choices=sorted(FIGURES))
    p.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    print(FIGURES[args.example](args.folder))


if __name__ == "__main__":
    main()
