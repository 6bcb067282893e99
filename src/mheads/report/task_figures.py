"""Figures of a task run's eval report (``mheads eval`` on regression, multi_hypothesis, segmentation):
predicted against true with the ensemble's interval, the interval coverage curve, the members' win shares,
the hypotheses over the data, the per-class IoU of the ensemble and the oracle; and a task run's training
curves from its evaluation log (``mheads plot``). Same conventions as
:mod:`mheads.report.figures` (bare ``Figure`` objects, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from mheads.report.figures import _save

__all__ = [
    "class_iou_bars",
    "coverage_curve",
    "hypotheses_over_data",
    "predicted_vs_true",
    "task_curves",
    "win_share_bars",
]

MAX_PANELS = 4  # target dimensions drawn side by side


def predicted_vs_true(
    target: Sequence[Sequence[float]],
    mean: Sequence[Sequence[float]],
    lower: Sequence[Sequence[float]],
    upper: Sequence[Sequence[float]],
    path: str | Path,
    interval: str = "90% interval",
) -> Path:
    """Per target dimension (the first ``MAX_PANELS``), each example's true value against the ensemble's
    mean prediction, with its interval as a vertical bar; points on the diagonal are exact. Arrays
    ``(N, D)``."""
    dims = min(len(target[0]), MAX_PANELS)
    fig = Figure(figsize=(3.8 * dims, 3.6), layout="constrained")
    axes = fig.subplots(1, dims, squeeze=False)[0]
    for d, ax in enumerate(axes):
        t, m = [row[d] for row in target], [row[d] for row in mean]
        below = [mi - lo[d] for mi, lo in zip(m, lower)]
        above = [hi[d] - mi for mi, hi in zip(m, upper)]
        ax.errorbar(t, m, yerr=[below, above], fmt="o", ms=2.5, lw=0.6, alpha=0.6, label=interval)
        lo_all, hi_all = min(t + [r[d] for r in lower]), max(t + [r[d] for r in upper])
        ax.plot([lo_all, hi_all], [lo_all, hi_all], color="0.5", lw=1, ls="--", label="exact")
        ax.set_xlabel(f"true (dimension {d})" if dims > 1 else "true")
        ax.set_ylabel("predicted (ensemble mean)")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("Predicted vs true", fontsize=10)
    return _save(fig, path)


def coverage_curve(nominal: Sequence[float], observed: Sequence[float], path: str | Path) -> Path:
    """The share of targets inside the mixture's central interval against the interval's probability;
    above the diagonal the intervals are too wide (under-confident), below it too narrow."""
    fig = Figure(figsize=(4.4, 4.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    ax.plot(list(nominal), list(observed), marker="o", ms=3, label="ensemble (mixture)")
    ax.set_xlabel("nominal coverage (central interval probability)")
    ax.set_ylabel("observed coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Interval coverage", fontsize=10)
    return _save(fig, path)


def win_share_bars(
    win_share: Sequence[float], path: str | Path, member_score: Sequence[float] | None = None
) -> Path:
    """Per member, the share of examples where it is the oracle's pick (and, for scored hypotheses, its
    mean normalised score beside it); the dotted line is an even split, 1/M."""
    M = len(win_share)
    fig = Figure(figsize=(1.6 + 0.7 * M, 3.4))
    ax = fig.subplots()
    width = 0.4 if member_score is not None else 0.7
    shift = width / 2 if member_score is not None else 0.0
    ax.bar([m - shift for m in range(M)], list(win_share), width, label="win share (oracle's pick)")
    if member_score is not None:
        ax.bar([m + shift for m in range(M)], list(member_score), width, label="mean score")
    ax.axhline(1 / M, color="0.4", lw=1, ls=":", label="even (1/M)")
    ax.set_xticks(range(M), [str(m) for m in range(M)])
    ax.set_xlabel("member")
    ax.set_ylabel("share of examples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Which member the oracle picks", fontsize=10)
    return _save(fig, path)


def hypotheses_over_data(
    x: Sequence[float],
    target: Sequence[float],
    points: Sequence[Sequence[float]],
    weights: Sequence[Sequence[float]],
    path: str | Path,
) -> Path:
    """A 1-D input against a 1-D target: the data in grey, each member's hypothesis per input in its colour,
    the more opaque the higher its normalised score. ``points``, ``weights``: ``(M, N)``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.subplots()
    ax.scatter(list(x), list(target), s=6, color="0.7", label="data")
    palette = colormaps["tab10"]
    for m, (pts, wts) in enumerate(zip(points, weights)):
        top = max(max(wts), 1e-12)
        colours = [to_rgba(palette(m % 10), alpha=0.15 + 0.85 * w / top) for w in wts]
        ax.scatter(list(x), list(pts), s=9, c=colours, label=f"member {m}")
    ax.set_xlabel("input")
    ax.set_ylabel("target / hypothesis")
    ax.legend(fontsize=7, markerscale=1.5)
    ax.set_title("Hypotheses over the data (opacity: score)", fontsize=10)
    return _save(fig, path)


def class_iou_bars(
    ensemble: Sequence[float | None], oracle: Sequence[float | None], path: str | Path
) -> Path:
    """Per class, the IoU of the ensemble's prediction and of the oracle's (each image predicted by its best
    member); a class in neither target nor prediction has no bar."""
    C = len(ensemble)
    fig = Figure(figsize=(1.6 + 0.6 * C, 3.4))
    ax = fig.subplots()
    for offset, values, label in ((-0.2, ensemble, "ensemble"), (0.2, oracle, "oracle")):
        kept = [(c, v) for c, v in enumerate(values) if v is not None]
        ax.bar([c + offset for c, _ in kept], [v for _, v in kept], 0.4, label=label)
    ax.set_xticks(range(C), [str(c) for c in range(C)])
    ax.set_xlabel("class")
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Per-class IoU", fontsize=10)
    return _save(fig, path)


def task_curves(history: Sequence[dict], metrics: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A task run's evaluation log against iterations: the training loss; the test ``metrics`` each record
    holds as a number (the ensemble's and the oracle's, e.g. rmse and oracle_rmse), with every ``member_*``
    list as thin lines; and, for the assigning losses, each member's share of the training examples
    (``win_fraction``: MCL collapse shows as one member near 1)."""
    steps = [r["step"] for r in history]
    wins = all(isinstance(r.get("win_fraction"), list) for r in history)
    fig = Figure(figsize=(13 if wins else 9, 3.8), layout="constrained")
    axes = fig.subplots(1, 3 if wins else 2)
    axes[0].plot(steps, [r["train_loss"] for r in history], marker="o", ms=3)
    axes[0].set_ylabel("training loss")
    for key in metrics:
        axes[1].plot(steps, [r[key] for r in history], marker="o", ms=3, label=key)
    members = [k for k in history[0] if k.startswith("member_") and isinstance(history[0][k], list)]
    for key in members:
        for m in range(len(history[0][key])):
            axes[1].plot(steps, [r[key][m] for r in history], lw=0.8, alpha=0.6, label=f"{key} {m}")
    axes[1].set_ylabel("test metric")
    axes[1].legend(fontsize=7)
    if wins:
        for m in range(len(history[0]["win_fraction"])):
            axes[2].plot(
                steps, [r["win_fraction"][m] for r in history], marker="o", ms=3, label=f"member {m}"
            )
        axes[2].set_ylim(0, 1)
        axes[2].set_ylabel("share of training examples won")
        axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("iteration")
    fig.suptitle(title)
    return _save(fig, path)
