"""Figures: the paper's Figure 2 heatmap (share of each class's test examples the oracle gives each member)
and training curves from a run's evaluation log.

Figures are ``matplotlib.figure.Figure`` objects written straight to files: no pyplot, so importing this
module or drawing with it never selects or switches the process's matplotlib backend (a user's notebook or GUI
keeps its own), and no figure stays registered with pyplot after it is saved."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure


def _save(fig, path: str | Path) -> Path:
    if not fig.get_constrained_layout():
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)  # a bare Figure renders PNG with matplotlib's Agg canvas, whatever the backend
    return path


def assignment_heatmap(
    assignment: Sequence[Sequence[float]],
    classes: Sequence[str],
    path: str | Path,
    title: str = "Oracle assignment per class",
) -> Path:
    """assignment: (M, C) fractions in [0, 1]; each column sums to 1. Writes a PNG and returns its path."""
    M, C = len(assignment), len(classes)
    fig = Figure(figsize=(1.0 + 0.62 * C, 1.2 + 0.55 * M))
    ax = fig.subplots()
    im = ax.imshow(
        [[100 * v for v in row] for row in assignment], cmap="viridis", vmin=0, vmax=100, aspect="auto"
    )
    ax.set_xticks(range(C), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(M), [f"member {m}" for m in range(M)])
    for m in range(M):
        for c in range(C):
            v = 100 * assignment[m][c]
            ax.text(
                c, m, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black"
            )
    fig.colorbar(im, ax=ax, label="% of the class's test examples")
    ax.set_title(title)
    return _save(fig, path)


def heatmap_grid(
    panels: Sequence[tuple[str, Sequence[Sequence[float]]]], classes: Sequence[str], path: str | Path
) -> Path:
    """Several assignment heatmaps side by side (Figure 2 (a)-(d)): panels are (title, (M, C) fractions)."""
    n = len(panels)
    fig = Figure(figsize=(4.2 * n + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)
    im = None
    for ax, (title, a) in zip(axes[0], panels):
        im = ax.imshow([[100 * v for v in row] for row in a], cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(classes)), [str(c)[:5] for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(len(a)), [f"m{m}" for m in range(len(a))])
        ax.set_title(title, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.85, label="% of the class's test examples")
    return _save(fig, path)


def training_curves(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Train loss and test accuracies (ensemble-mean, oracle, each member) against iterations."""
    steps = [r["step"] for r in history]
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [r["train_loss"] for r in history], marker="o")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss")
    ax2.plot(steps, [100 * r["ensemble_mean_acc"] for r in history], marker="o", label="ensemble-mean")
    ax2.plot(steps, [100 * r["oracle_acc"] for r in history], marker="s", label="oracle")
    if history:
        for m in range(len(history[0]["member_acc"])):
            ax2.plot(
                steps, [100 * r["member_acc"][m] for r in history], lw=0.8, alpha=0.6, label=f"member {m}"
            )
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("test accuracy (%)")
    ax2.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def finetune_curves(series: Sequence[tuple[str, Sequence[dict]]], path: str | Path, title: str = "") -> Path:
    """Oracle (solid) and ensemble-mean (dashed) test accuracy against fine-tuning iterations, one colour per
    run (Table 6): ``series`` are (label, the run's eval.jsonl records)."""
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, history in series:  # matplotlib's colour cycle, one colour per run
        steps = [r["step"] for r in history]
        (line,) = ax.plot(steps, [100 * r["oracle_acc"] for r in history], marker="o", ms=3, label=label)
        ax.plot(steps, [100 * r["ensemble_mean_acc"] for r in history], ls="--", lw=1, color=line.get_color())
    ax.set_xlabel("fine-tuning iteration")
    ax.set_ylabel("test accuracy (%): oracle solid, ensemble-mean dashed")
    ax.legend(fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    return _save(fig, path)


_LABEL_SLOTS = ((4, -12), (4, 6), (4, -22), (4, 16))  # below, above, further below, further above


def label_offsets(xs: Sequence[float], min_gap: float = 0.08) -> list[tuple[int, int]]:
    """Text offsets (points) for labels of points at ``xs``, in order: a label whose point lies within
    ``min_gap`` of the x span of the previous one takes the next slot (below, above, further below, further
    above), so that labels of crowded points do not print over each other."""
    gap = min_gap * ((max(xs) - min(xs)) if len(xs) > 1 else 0.0)
    slots, out = 0, []
    for i, x in enumerate(xs):
        slots = slots + 1 if i and abs(x - xs[i - 1]) < gap else 0
        out.append(_LABEL_SLOTS[slots % len(_LABEL_SLOTS)])
    return out


def accuracy_vs_sharing(points: Sequence[tuple[str, dict]], path: str | Path, title: str = "") -> Path:
    """Ensemble-mean and oracle accuracy against the share of each member's parameters that its TreeNet shares
    (Table 2): points are (label, metrics with ``shared_params_pct``); a single model is drawn as a line."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    trees = [(label, m) for label, m in points if len(m["member_acc"]) > 1]
    xs = [m["shared_params_pct"] for _, m in trees]
    for key, marker, name in (("ensemble_mean_acc", "o", "ensemble-mean"), ("oracle_acc", "s", "oracle")):
        ax.plot(xs, [100 * m[key] for _, m in trees], marker=marker, label=name)
    for (label, m), offset in zip(trees, label_offsets(xs)):
        far = abs(offset[1]) > 12  # a leader line to the point it names
        ax.annotate(
            label.split(" ")[0],
            (m["shared_params_pct"], 100 * m["ensemble_mean_acc"]),
            textcoords="offset points",
            xytext=offset,
            fontsize=8,
            arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if far else None,
        )
    for label, m in points:
        if len(m["member_acc"]) == 1:
            ax.axhline(100 * m["ensemble_mean_acc"], color="grey", ls="--", lw=1, label=label)
    ax.set_xlabel("parameters of a member shared with the others (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
