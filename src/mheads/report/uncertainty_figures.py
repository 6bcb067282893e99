"""Figures of an ensemble's uncertainty (``mheads eval``): the reliability diagram, the risk-coverage curve
and the histograms of each out-of-distribution criterion on in- and out-of-distribution data. Same
conventions as :mod:`mheads.report.figures` (bare ``Figure`` objects, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from mheads.report.figures import _save

__all__ = ["reliability_diagram", "risk_coverage", "score_histograms"]


def reliability_diagram(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    title: str = "Reliability (equal-mass bins)",
) -> Path:
    """``panels``: label -> {"confidence": (K,), "accuracy": (K,), "count": (K,)} per bin (e.g. before and
    after temperature scaling). Points on the diagonal are calibrated; below it, over-confident."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for label, b in panels.items():
        ax.plot(list(b["confidence"]), list(b["accuracy"]), marker="o", ms=3, label=label)
    ax.set_xlabel("confidence (mean per bin)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def risk_coverage(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "Selective prediction",
) -> Path:
    """``curves``: label -> (coverage, risk). The area under a curve is its AURC (lower is better)."""
    fig = Figure(figsize=(4.8, 3.8))
    ax = fig.subplots()
    for label, (cov, risk) in curves.items():
        ax.plot(list(cov), list(risk), label=label)
    ax.set_xlabel("coverage (fraction of test examples kept)")
    ax.set_ylabel("risk (error rate on the kept)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def score_histograms(
    in_scores: Mapping[str, Sequence[float]],
    out_scores: Mapping[str, Sequence[float]],
    path: str | Path,
    out_label: str = "out of distribution",
    aurocs: Mapping[str, float] | None = None,
) -> Path:
    """One panel per criterion: the distribution of its score (higher = more likely OOD) on the test set and
    on the out-of-distribution set."""
    names = list(in_scores)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        a, b = list(in_scores[name]), list(out_scores[name])
        lo, hi = min(a + b), max(a + b)
        edges = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 10
        ax.hist(a, bins=edges, alpha=0.55, density=True, label="test (in distribution)")
        ax.hist(b, bins=edges, alpha=0.55, density=True, label=out_label)
        extra = f" (AUROC {aurocs[name]:.3f})" if aurocs and name in aurocs else ""
        ax.set_title(f"{name}{extra}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)
