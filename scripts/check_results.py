"""Recompute what RESULTS.md can be checked against from the committed tables, and list every mismatch.

Sources: every ``experiments/results/*/seeds.csv`` (per-seed values) and ``results.csv`` (mean, std over
seeds). Checks, each on every line of RESULTS.md (or the file given):

- a table cell ``m ± s`` right after a cell of per-seed values ``a / b / c``: m and s are the mean and the
  sample standard deviation (n - 1) of those values (to the 0.005 their rounding allows), or a committed
  (mean, std) of the unrounded values;
- ``X (a / b / c)``: X is the mean of the values in brackets (a difference of means quoted with the
  differences of each seed), to the last digit written;
- every ``m ± s`` is a (mean, std) of some committed results.csv row or seeds.csv group, to two decimals;
- every per-seed value in ``a / b / c`` (unsigned, two decimals) is a committed value, to two decimals;
- parameter counts written as exact integers (``582,310``) equal a committed ``params_k`` x 1000.

Lines the checks cannot place (a derived number with no committed source) are listed apart, as "no source",
for a reader to judge; only the first three kinds are errors. Exit status 1 when any error is found.
Run from the repository root: ``python scripts/check_results.py [RESULTS.md]``.
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from pathlib import Path

NUM = r"[+-−]?\d+(?:,\d{3})*\.\d+"
GROUP = re.compile(rf"({NUM})((?:\s*/\s*{NUM}){{1,4}})")
PM = re.compile(r"(\d+\.\d+) ± (\d+\.\d+)")
PAREN = re.compile(rf"({NUM})[^()\d|]{{0,40}}\(({NUM}(?:\s*/\s*{NUM}){{1,4}})")
SLACK = 0.0051  # inputs rounded to two decimals move a mean by up to 0.005
COUNT = re.compile(r"(?<![\d.,])(\d{2,3},\d{3})(?![\d.,])")


def _f(text: str) -> float:
    return float(text.replace("−", "-").replace(",", ""))


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def load(root: Path):
    """(values, pairs, params): committed per-seed values and results-table means, (mean, std) pairs, and
    parameter counts."""
    values, pairs, params = set(), set(), set()
    for path in sorted(root.glob("*/seeds.csv")):
        groups: dict[tuple, list[float]] = {}
        with open(path) as f:
            for r in csv.DictReader(f):
                v = float(r["value"])
                values.add(round(v, 2))
                groups.setdefault((r["cell"], r["metric"]), []).append(v)
                if r["metric"] == "params_k":
                    params.add(round(v * 1000))
        for vs in groups.values():
            if len(vs) > 1:
                pairs.add((round(statistics.mean(vs), 2), round(statistics.stdev(vs), 2)))
    for path in sorted(root.glob("*/results.csv")):
        with open(path) as f:
            for r in csv.DictReader(f):
                mean, std = float(r["mean"]), float(r["std"] or 0)
                if mean != mean:  # a cell without that metric
                    continue
                values.add(round(mean, 2))
                pairs.add((round(mean, 2), round(std, 2)))
                if r["metric"] == "params_k":
                    params.add(round(mean * 1000))
    return values, pairs, params


def check(lines: list[str], values, pairs, params):
    errors, unplaced = [], []
    for no, line in enumerate(lines, 1):
        where = f"RESULTS.md:{no}"
        line = line.replace("**", "")
        for g in GROUP.finditer(line):
            parts = [g.group(1)] + [p.strip() for p in g.group(2).split("/") if p.strip()]
            tail = line[g.end() :]
            # a table cell of per-seed values followed by the cell of their mean ± std
            in_cell = line[: g.start()].rstrip().endswith("|")
            pm = re.match(r"\s*\|\s*(\d+\.\d+) ± (\d+\.\d+)", tail) if in_cell else None
            nums = [_f(p) for p in parts]
            if pm and len(nums) >= 2 and all(not p.startswith(("+", "-", "−")) for p in parts):
                m, s = statistics.mean(nums), statistics.stdev(nums)
                # the values are rounded to 0.01: allow that much in the mean and std written, and
                # accept a pair that a committed table holds (computed from the unrounded values)
                written = (float(pm.group(1)), float(pm.group(2)))
                off = abs(m - written[0]) > SLACK or abs(s - written[1]) > SLACK
                if off and written not in pairs:
                    errors.append(
                        f"{where}: {' / '.join(parts)} has mean ± std {m:.2f} ± {s:.2f}; "
                        f"written {pm.group(1)} ± {pm.group(2)}"
                    )
            if all(not p.startswith(("+", "-", "−")) and _decimals(p) == 2 for p in parts):
                for p in parts:
                    if round(_f(p), 2) not in values:
                        unplaced.append(f"{where}: per-seed value {p} is in no committed table")
        for p in PAREN.finditer(line):
            x, inner = p.group(1), [s.strip() for s in p.group(2).split("/")]
            if len(inner) < 2 or len({_decimals(s) for s in inner + [x]}) != 1:
                continue
            signed = all(s[0] in "+-−" for s in inner) and x[0] in "+-−"
            if not signed:
                continue
            mean = statistics.mean(_f(s) for s in inner)
            if abs(mean - _f(x)) > 0.5 * 10 ** -_decimals(x) + (SLACK - 0.005):
                errors.append(f"{where}: {x} quoted for ({' / '.join(inner)}), whose mean is {mean:+.3f}")
        for m in PM.finditer(line):
            if (round(float(m.group(1)), 2), round(float(m.group(2)), 2)) not in pairs:
                unplaced.append(f"{where}: {m.group(0)} is no committed mean ± std")
        for c in COUNT.finditer(line):
            n = _f(c.group(1))
            near = [q for q in params if abs(q - n) < 10]
            if near and n not in params:
                errors.append(f"{where}: parameter count {c.group(1)}; the committed table says {near[0]:,}")
    return errors, unplaced


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "RESULTS.md")
    values, pairs, params = load(Path("experiments/results"))
    errors, unplaced = check(path.read_text().splitlines(), values, pairs, params)
    for e in errors:
        print("MISMATCH", e)
    for u in unplaced:
        print("no source", u)
    print(f"{len(errors)} mismatches, {len(unplaced)} numbers without a committed source")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
