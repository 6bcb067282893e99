"""Figures an experiment asks for (``figures:`` in its spec)."""

from __future__ import annotations

from pathlib import Path

from mheads.plots import heatmap_grid


def draw_figures(spec, out: Path, results: dict[str, list[dict]]) -> list[Path]:
    written = []
    if "assignment_heatmaps" in spec.figures:
        panels = [(c.row, results[c.name][0]["oracle_assignment"]) for c in spec.cells
                  if results.get(c.name) and len(results[c.name][0]["member_acc"]) > 1]
        if panels:
            classes = results[spec.cells[0].name][0]["classes"]
            written.append(heatmap_grid(panels, classes, out / "oracle_assignment.png"))
    return written
