"""Markdown tables for RESULTS.md from a committed `seeds.csv` (so the page quotes the tables, never retyped
numbers): one row per cell, per metric either `mean ± std` over seeds or the per-seed values followed by
`mean ± std` (the form `scripts/check_results.py` checks).

    python -m mheads.experiments.any_task.tables experiments/results/any-task-multimodal-cpu \
        --metrics oracle_error:3:seeds distortion:3 emd:3 mixture_nll:3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mheads.experiments.any_task import record


def table(folder: str | Path, metrics: list[str], cells: list[str] | None = None) -> str:
    """`metrics`: "name:digits" or "name:digits:seeds" (the per-seed values too; "seeds3": with 3 digits, so
    that the mean of the written values rounds to the written mean). A metric a cell lacks is a dash."""
    rows = record.read(Path(folder) / "seeds.csv")
    cells = cells or list(dict.fromkeys(r["cell"] for r in rows))
    header, rule = ["cell"], ["---"]
    specs = []
    for spec in metrics:
        name, digits, *seeds = spec.split(":")
        seed_digits = int(seeds[0][5:] or digits) if seeds else None
        specs.append((name, int(digits), seed_digits))
        if seed_digits is not None:
            header.append(f"{name}, per seed")
            rule.append("---:")
        header.append(f"{name}, mean ± std")
        rule.append("---:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for cell in cells:
        out = [cell]
        for name, digits, seeds in specs:
            vs = [float(r["value"]) for r in rows if r["cell"] == cell and r["metric"] == name]
            if seeds is not None:
                out.append(" / ".join(f"{v:.{seeds}f}" for v in vs) if vs else "-")
            if not vs:
                out.append("-")
            elif len(vs) == 1:
                out.append(f"{vs[0]:.{digits}f} (one value)")
            else:
                out.append(f"{statistics.mean(vs):.{digits}f} ± {statistics.stdev(vs):.{digits}f}")
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--cells", nargs="+")
    args = p.parse_args(argv)
    print(table(args.folder, args.metrics, args.cells))


if __name__ == "__main__":
    main()
