"""Plain-text tables for the terminal and markdown files."""

from __future__ import annotations

from typing import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A markdown-compatible table; ``align`` has one of 'l'/'r' per column (default: first left, rest
    right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r):
        return (
            "| "
            + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))
            + " |"
        )

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align))
        + "|"
    )
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def format_run_summary(name: str, m: dict) -> str:
    members = " ".join(pct(a) for a in m["member_acc"])
    rows = [
        [
            name,
            members,
            pct(m["ensemble_mean_acc"]),
            pct(m["oracle_acc"]),
            f"{m.get('nll', float('nan')):.3f}",
            f"{m.get('ece', float('nan')):.3f}",
        ]
    ]
    return table(["run", "member acc (%)", "ensemble-mean (%)", "oracle (%)", "NLL", "ECE"], rows)
