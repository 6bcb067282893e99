"""Our numbers next to the paper's: mean +- std over seeds, as markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path

from mheads.config import ConfigError
from mheads.core.atomic import atomic_write_text
from mheads.report.tables import table


def metric_value(metrics: dict, name: str) -> float:
    """A percentage from a run's metrics: ``ensemble_mean_acc``, ``oracle_acc``, ``member_acc_<m>``,
    ``member_acc_mean``, or any other numeric key (reported as is)."""
    if name.startswith("member_acc_"):
        accs = metrics["member_acc"]
        tail = name[len("member_acc_") :]
        return 100 * (sum(accs) / len(accs) if tail == "mean" else accs[int(tail)])
    value = metrics[name]
    if value is None:  # written as null: a NaN or infinity (strict JSON)
        return math.nan
    # e.g. ensemble_mean_acc_scores
    return 100 * value if name.endswith("_acc") or "_acc_" in name else float(value)


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def _has(run: dict, metric: str) -> bool:
    if metric.startswith("member_acc_"):
        tail = metric[len("member_acc_") :]
        return tail == "mean" or int(tail) < len(run["member_acc"])
    return metric in run


SEED_FIELDS = (
    "experiment",
    "scale",
    "data",
    "overrides",
    "cell",
    "seed",
    "metric",
    "value",
    "wall_time_s",
    "hardware",
)
# what a pooled row must share with the sweep it joins; overrides: the sweep's --set, "; "-joined
_IDENTITY = ("experiment", "scale", "data", "overrides")
_OPTIONAL = {"overrides": ""}  # columns a seeds.csv written before them lacks, and their value there
# --set keys that choose where and how fast a run trains, not its recipe: seeds trained with other values of
# these (one CPU thread beside a sweep, on a GPU) pool with each other
RESOURCE_KEYS = frozenset(
    {
        "train.threads",
        "train.device",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.eval_batch_size",
        "train.flush_denormal",
        "train.log_every",
        "train.sync",
    }
)


def recipe_overrides(overrides: str) -> str:
    """A sweep's ``"; "``-joined ``--set`` overrides without those of ``RESOURCE_KEYS``: what two sweeps'
    overrides must agree on for their seeds to pool."""
    kept = [o.strip() for o in overrides.split(";") if o.strip()]
    return "; ".join(o for o in kept if o.split("=", 1)[0].strip() not in RESOURCE_KEYS)


def seed_rows(spec, ident: dict, cell: str, seed: int, metrics: dict, hardware: str) -> list[dict]:
    """One run's numbers as per-seed rows (``seeds.csv``): one per table metric the run has. ``ident`` names
    the sweep (``experiment``, ``scale``, ``data``, ``overrides``)."""
    return [
        {
            **ident,
            "cell": cell,
            "seed": seed,
            "metric": m,
            "value": metric_value(metrics, m),
            "wall_time_s": float(metrics.get("wall_time_s", 0.0)),
            "hardware": hardware,
        }
        for m in spec.metrics
        if _has(metrics, m)
    ]


def collect(spec, rows: list[dict]) -> list[dict]:
    """One record per (cell, metric): seeds, mean, std, paper value, from per-seed rows (``seed_rows``)."""
    out = []
    for cell in spec.cells:
        mine = [r for r in rows if r["cell"] == cell.name]
        walls = {r["seed"]: r["wall_time_s"] for r in mine}  # one wall time per run
        for metric in spec.metrics:
            values = [r["value"] for r in sorted(mine, key=lambda r: r["seed"]) if r["metric"] == metric]
            mean, std = mean_std(values)
            out.append(
                {
                    "cell": cell.name,
                    "row": cell.row,
                    "col": cell.col or "",
                    "metric": metric,
                    "seeds": len(values),
                    "mean": mean,
                    "std": std,
                    "paper": _paper(cell.paper.get(metric, "")),
                    "wall_time_s": sum(walls.values()),
                }
            )
    return out


def write_seed_rows(path: Path, rows: list[dict]) -> None:
    """Every run's numbers, one row per (cell, seed, metric): what a later sweep pools its seeds with. Written
    atomically: an interrupted write leaves the previous file."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=SEED_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(sorted(rows, key=lambda r: (r["seed"], r["cell"], r["metric"])))
    atomic_write_text(path, buf.getvalue())


def read_seed_rows(path: Path) -> list[dict]:
    """The rows of a ``seeds.csv`` (or of the one in a results folder), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / "seeds.csv"
    if not path.is_file():
        older = " (its results.csv predates seeds.csv)" if (path.parent / "results.csv").is_file() else ""
        raise ConfigError(
            f"{path}: no such file{older}; expected a seeds.csv that a sweep wrote "
            f"(or the folder holding one)"
        )
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _seed_rows(path, csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:  # another file's bytes, or a field over csv's limit
        raise ConfigError(
            f"{path}: not a seeds.csv a sweep wrote ({type(err).__name__}: {str(err)[:100]})"
        ) from None


# inf would be pooled into every mean and std of its cell without a word; nan is how a sweep writes a metric
# its run recorded as null (metric_value), and its cell shows "-" in the tables, as in the sweep that wrote it
_LIMITS = {
    "seed": "an integer >= 0",
    "value": "a number (nan: a metric its run recorded as null)",
    "wall_time_s": "a number >= 0",
}


def _seed_rows(path: Path, reader: csv.DictReader) -> list[dict]:
    missing = set(SEED_FIELDS) - set(reader.fieldnames or []) - set(_OPTIONAL)
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {sorted(missing)}; a seeds.csv has {', '.join(SEED_FIELDS)}"
        )
    rows: list[dict] = []
    seen: dict[tuple[str, int, str], int] = {}  # (cell, seed, metric) -> its line
    for line, r in enumerate(reader, start=2):
        try:
            row: dict = {
                **{k: r.get(k, _OPTIONAL.get(k)) for k in _IDENTITY},
                "cell": r["cell"],
                "seed": int(r["seed"]),
                "metric": r["metric"],
                "value": float(r["value"]),
                "wall_time_s": float(r["wall_time_s"] or 0.0),
                "hardware": r["hardware"],
            }
        except (ValueError, TypeError) as err:  # TypeError: a short line (missing fields are None)
            raise ConfigError(f"{path}, line {line}: {err}") from None
        for field, allowed in _LIMITS.items():
            fine = not math.isinf(row[field]) if field == "value" else row[field] >= 0  # False for NaN
            if not fine:
                raise ConfigError(f"{path}, line {line}: {field}: got {r[field]!r}; expected {allowed}")
        key = (row["cell"], row["seed"], row["metric"])
        if key in seen:
            raise ConfigError(
                f"{path}: lines {seen[key]} and {line} both hold cell "
                f"{key[0]!r}, seed {key[1]}, {key[2]}; a seeds.csv has one row for each"
            )
        seen[key] = line
        rows.append(row)
    return rows


def _same(field: str, row: dict, ident: dict) -> bool:
    if field == "overrides":
        return recipe_overrides(row[field]) == recipe_overrides(ident[field])
    return row[field] == ident[field]


def check_priors(priors: list[tuple[str, list[dict]]], spec, ident: dict) -> None:
    """Refuse a prior (``(name, rows)``) of another experiment, scale or data; say which of its rows ``pool``
    leaves out (cells or metrics the spec no longer has)."""
    cells, metrics = {c.name for c in spec.cells}, set(spec.metrics)
    for name, prior in priors:
        for r in prior:
            wrong = [f"{k} {r[k]!r} (this sweep: {ident[k]!r})" for k in _IDENTITY if not _same(k, r, ident)]
            if wrong:
                raise ConfigError(
                    f"{name}: its rows are of another sweep: {', '.join(wrong)}; pool only seeds of the same "
                    f"experiment, scale, data and --set overrides (those of "
                    f"{', '.join(sorted(RESOURCE_KEYS))} may differ)"
                )
        dropped = sorted(
            {
                r["cell"] if r["cell"] not in cells else r["metric"]
                for r in prior
                if r["cell"] not in cells or r["metric"] not in metrics
            }
        )
        if dropped:
            print(
                f"   {name}: leaving out rows of cells or metrics {spec.name} does not have: "
                f"{', '.join(dropped)}",
                flush=True,
            )


def pool(rows: list[dict], priors: list[tuple[str, list[dict]]], spec) -> list[dict]:
    """``rows`` (this sweep's) plus, from each ``(name, rows)`` of ``priors`` in turn (``check_priors``), the
    rows of runs not already there: a (cell, seed) comes from this sweep if it ran it, else from the first
    prior that has it; rows of cells or metrics the spec does not have are left out."""
    cells, metrics = {c.name for c in spec.cells}, set(spec.metrics)
    out, have = list(rows), {(r["cell"], r["seed"]) for r in rows}
    for _, prior in priors:
        fresh = [
            r
            for r in prior
            if (r["cell"], r["seed"]) not in have and r["cell"] in cells and r["metric"] in metrics
        ]
        out += fresh
        have |= {(r["cell"], r["seed"]) for r in fresh}
    return out


def write_tables(spec, records: list[dict], out: Path, header: str) -> str:
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["cell"])
        w.writeheader()
        w.writerows(records)
    pivot = any(c.col for c in spec.cells)
    if pivot:
        rows_order = list(dict.fromkeys(c.row for c in spec.cells))
        cols_order = list(dict.fromkeys(c.col for c in spec.cells))
        blocks = []
        for metric in spec.metrics:
            cellmap = {(r["row"], r["col"]): r for r in records if r["metric"] == metric}
            body = []
            for row in rows_order:
                line = [row]
                for col in cols_order:
                    r = cellmap.get((row, col))
                    line.append(
                        "-" if r is None else f"{fmt(r['mean'], r['std'], r['seeds'])} ({r['paper'] or '-'})"
                    )
                body.append(line)
            blocks.append(
                f"**{metric}**, ours (paper):\n\n" + table([""] + [str(c) for c in cols_order], body)
            )
        md = "\n\n".join(blocks)
    else:
        heads = ["", *[h for m in spec.metrics for h in (f"{m} (ours)", "paper")], "seeds", "wall (s)"]
        body = []
        for cell in spec.cells:
            recs = [r for r in records if r["cell"] == cell.name]
            line = [cell.row]
            for r in recs:
                line += [fmt(r["mean"], r["std"], r["seeds"]), str(r["paper"]) if r["paper"] != "" else "-"]
            line += [seeds_label(recs), f"{recs[0]['wall_time_s']:.0f}" if recs else "-"]
            body.append(line)
        random_cells = {c.name for c in spec.cells if c.label_split and "random" in c.label_split}
        trials = [
            r for r in records if r["cell"] in random_cells and r["metric"] == spec.metrics[0] and r["seeds"]
        ]
        if trials:
            vals = [r["mean"] for r in trials]
            body.append(
                [
                    f"random splits: mean (min-max) of {len(vals)}",
                    f"{sum(vals) / len(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})",
                    "91.83 (87.62-94.65)",
                ]
                + [""] * (len(heads) - 3)
            )
        md = table(heads, body)
    text = f"# {spec.title}\n\n{header}\n\n{md}\n"
    if spec.note:
        text += f"\n{spec.note}\n"
    (out / "results.md").write_text(text)
    return text


def seeds_label(recs: list[dict]) -> str:
    """A row's seed count: one number when every metric averages the same seeds, else also the metrics that
    average fewer (a pooled seed lacking them): no column silently rests on fewer seeds than the row says."""
    if not recs:
        return "0"
    most = max(r["seeds"] for r in recs)
    fewer = [f"{r['metric']}: {r['seeds']}" for r in recs if r["seeds"] < most]
    return str(most) + (f" ({', '.join(fewer)})" if fewer else "")


def _paper(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
