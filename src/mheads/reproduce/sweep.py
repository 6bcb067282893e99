"""Run every cell of an experiment for each seed, resumably, then write the tables and figures.

A cell whose run folder holds ``metrics.json`` is done and is not rerun; a cell with checkpoints but no
``metrics.json`` was interrupted and continues from its newest checkpoint (exactly); anything else starts fresh.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from mheads.engine import fit
from mheads.reproduce.figures import draw_figures
from mheads.reproduce.spec import Spec, load_spec
from mheads.reproduce.tables import collect, write_tables
from mheads.run_dir import RUN_MARKERS, hardware


def _ordered(spec: Spec):
    done, order = set(), []
    pending = list(spec.cells)
    while pending:
        progress = False
        for cell in list(pending):
            if cell.init_from_cell is None or cell.init_from_cell in done:
                order.append(cell)
                done.add(cell.name)
                pending.remove(cell)
                progress = True
        if not progress:
            raise ValueError(f"{spec.name}: init_from_cell dependencies form a cycle: {[c.name for c in pending]}")
    return order


def resolve_label_split(cell, cfg, seed_dir: Path) -> list[list[int]]:
    """The per-member label lists of a specialist cell: a random even split, or clusters of a generalist."""
    from mheads.data import load_dataset
    from mheads.reproduce.label_split import cluster_labels, label_score_covariance, random_split_lists

    spec = cell.label_split
    if "random" in spec:
        num_classes = load_dataset(cfg.data.source).num_classes
        return random_split_lists(num_classes, cfg.model.members, int(spec["random"]) + 1000 * cfg.train.seed)
    generalist = seed_dir / spec["clusters_of"]
    cov = label_score_covariance(generalist, cfg)
    return cluster_labels(cov, cfg.model.members, seed=cfg.train.seed)


def run_cell(cfg, run: Path) -> dict:
    """Finished metrics of one run, training or resuming it as needed."""
    metrics_path = run / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    started = run.is_dir() and any((run / m).exists() for m in RUN_MARKERS)
    t0 = time.perf_counter()
    metrics = fit(cfg, run, resume=started, overwrite=False)
    metrics["wall_time_s"] = time.perf_counter() - t0
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def reproduce(name: str, scale: str, data: str | None, out: str | Path, seeds: int = 1,
              overrides: list[str] = (), first_seed: int = 0) -> str:
    """Run (or finish) the experiment ``name`` at ``scale`` and return its markdown table."""
    spec = load_spec(name, scale, data, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for seed in range(first_seed, first_seed + seeds):
        for cell in _ordered(spec):
            cfg = copy.deepcopy(cell.config)
            cfg.train.seed = seed
            run = out / f"seed-{seed}" / cell.name
            if cell.label_split is not None:
                cfg.data.label_split = resolve_label_split(cell, cfg, out / f"seed-{seed}")
                cfg.train.init_from = None
            elif cell.init_from_cell is not None:
                cfg.train.init_from = str(out / f"seed-{seed}" / cell.init_from_cell)
            print(f"== {name} [{scale}] seed {seed}: {cell.name}", flush=True)
            results.setdefault(cell.name, []).append(run_cell(cfg, run))
            records = collect(spec, results)
            source = cfg.data.source or "embedded Fashion-MNIST subset"
            if "cifar10-jpeg" in str(source):
                source += " (CIFAR-10, JPEG copy)"
            hw = hardware()
            header = (f"Scale `{scale}`, data {source}, seeds {first_seed}..{seed}; {hw['cpu']}, "
                      f"{hw['cores']} cores, torch {hw['torch']}. Cells: mean ± std over seeds (paper in its column).")
            text = write_tables(spec, records, out, header)
    draw_figures(spec, out, results, seed_dir=out / f"seed-{first_seed}")
    return text
