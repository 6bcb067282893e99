"""Run every cell of an experiment for each seed, resumably, then write the tables and figures.

A cell whose run folder holds ``metrics.json`` is done and is not rerun; a cell with checkpoints but no
``metrics.json`` was interrupted and continues from its newest checkpoint (exactly); anything else starts
fresh.

Runs are deterministic given their config, so a cell whose config equals a finished run of another sweep
beside this one (same seed; only the run's name and bookkeeping fields may differ) is not trained again: its
run folder becomes a relative symlink to that run, and the table says which cells were reused and from where.
Cells that share a cross-entropy pretraining continue from one run's checkpoint at its end
(``mheads.reproduce.fork``), also listed.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from mheads.config import ConfigError
from mheads.core.seeding import label_split_trial_seed
from mheads.reproduce.figures import draw_figures
from mheads.reproduce.fork import ce_prefix, find_fork_donor, fork_run, forked_from, plan_keep_steps
from mheads.reproduce.reuse import find_equivalent_run, result_key  # noqa: F401 (result_key: part of the API)
from mheads.reproduce.spec import Spec, load_spec
from mheads.reproduce.tables import (
    check_priors,
    collect,
    pool,
    read_seed_rows,
    seed_rows,
    write_seed_rows,
    write_tables,
)
from mheads.runs.entries import read_run_file, read_run_json
from mheads.runs.folder import RUN_MARKERS, hardware
from mheads.train.loop import fit


def _ordered(spec: Spec, keep_steps: dict[str, list[int]]):
    """Cells in dependency order; where cells share a cross-entropy pretraining, the longest prefix first (it
    keeps the checkpoints the others continue from)."""
    done, order = set(), []
    pending = list(spec.cells)
    if any(keep_steps.values()):
        pending.sort(key=lambda c: -ce_prefix(c.config))
    while pending:
        progress = False
        for cell in list(pending):
            if cell.init_from_cell is None or cell.init_from_cell in done:
                order.append(cell)
                done.add(cell.name)
                pending.remove(cell)
                progress = True
        if not progress:
            raise ValueError(
                f"{spec.name}: init_from_cell dependencies form a cycle: {[c.name for c in pending]}"
            )
    return order


def select_cells(spec: Spec, names: list[str]) -> Spec:
    """``spec`` with only the cells ``names`` and those they depend on (init_from_cell, clusters_of)."""
    by_name = {c.name: c for c in spec.cells}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"--cells: {spec.name} has no cell {', '.join(map(repr, unknown))}; "
            f"its cells: {', '.join(by_name)}"
        )
    wanted, stack = set(), list(names)
    while stack:
        cell = by_name[stack.pop()]
        if cell.name not in wanted:
            wanted.add(cell.name)
            stack += [d for d in (cell.init_from_cell, (cell.label_split or {}).get("clusters_of")) if d]
    return dataclasses.replace(spec, cells=[c for c in spec.cells if c.name in wanted])


def resolve_label_split(cell, cfg, seed_dir: Path) -> list[list[int]]:
    """The per-member label lists of a specialist cell: a random even split, or clusters of a generalist."""
    from mheads.data import load_dataset
    from mheads.reproduce.label_split import cluster_labels, label_score_covariance, random_split_lists

    spec = cell.label_split
    if "random" in spec:
        num_classes = load_dataset(cfg.data.source).num_classes
        return random_split_lists(
            num_classes, cfg.model.members, label_split_trial_seed(spec["random"], cfg.train.seed)
        )
    generalist = seed_dir / spec["clusters_of"]
    cov = label_score_covariance(generalist, cfg)
    return cluster_labels(cov, cfg.model.members, seed=cfg.train.seed)


def _check_same_optim(cfg, run: Path) -> None:
    """A finished run is this cell's result only if it trained with the cell's optimizer settings: the
    recipe's defaults changed once (issue 34: Caffe's bias rate in the `cpu` and `paper` scales), and a folder
    of runs from before must not pass for the new recipe."""
    path = run / "config.yaml"
    if not path.exists():
        return
    from mheads.config import config_from_dict, read_yaml

    # through the dataclasses: a run written before a field existed has that field's default
    have = dataclasses.asdict(config_from_dict(read_yaml(path)).optim)
    want = dataclasses.asdict(cfg.optim)
    diff = [f"optim.{k}: {have[k]!r} there, {want[k]!r} here" for k in want if have.get(k) != want[k]]
    if diff:
        raise ConfigError(
            f"{run}: finished with other optimizer settings than this cell "
            f"({'; '.join(diff)}); pass --set for the settings it ran with, or a new --out"
        )


def run_cell(cfg, run: Path) -> dict:
    """Finished metrics of one run, training or resuming it as needed."""
    if (run / "metrics.json").exists():
        done = read_run_file(run, "metrics.json")  # its entries checked first (no link, FIFO); bounded
        _check_same_optim(cfg, run)
        return done
    started = run.is_dir() and any((run / m).exists() for m in RUN_MARKERS)
    # writes metrics.json (atomically), with wall_time_s
    metrics = fit(cfg, run, resume=started, overwrite=False)
    if metrics is None:  # fit returns None off the root rank only; a sweep runs in one process
        raise RuntimeError(f"{run}: training returned no metrics")
    return metrics


@dataclasses.dataclass
class _Sweep:
    """What one sweep of ``out`` gathers as its runs finish: their metrics per cell (for the figures), their
    per-seed rows (``seeds.csv``), and the notes of the tables' header (runs trained once for several cells,
    the hardware that trained them)."""

    spec: Spec
    out: Path
    scale: str
    overrides: Sequence[str]
    ident: dict
    priors: list
    results: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    rows: list[dict] = dataclasses.field(default_factory=list)  # per seed: seeds.csv
    # table notes: cells trained once elsewhere; where
    shared: _Notes = dataclasses.field(default_factory=lambda: _Notes(reused={}, forked={}, hardware=set()))

    def tables(self, source) -> str:
        """Write ``seeds.csv`` (this sweep's rows pooled with earlier ones) and the tables; their markdown."""
        every = pool(self.rows, self.priors, self.spec)
        write_seed_rows(self.out / "seeds.csv", every)
        self.shared["hardware"] = {
            r["hardware"] for r in every
        }  # derived: rows a later run replaced drop out
        return write_tables(
            self.spec,
            collect(self.spec, every),
            self.out,
            _header(self.scale, source, sorted({r["seed"] for r in every}), self.shared, self.overrides),
        )

    def record(self, cell, seed: int, run: Path, metrics: dict) -> None:
        """Add one finished run's metrics (with its costs, where the table asks for them) and its row."""
        metrics = with_costs(self.spec, run, metrics)
        self.results.setdefault(cell.name, []).append(metrics)
        self.rows.extend(seed_rows(self.spec, self.ident, cell.name, seed, metrics, trained_on(run)))


def _start_sweep(spec: Spec, name: str, scale: str, out: Path, overrides: Sequence[str], pool_with) -> _Sweep:
    """A sweep of ``out`` with the earlier rows it pools with: ``out``'s own seeds.csv (seeds an earlier
    pooling brought in), then ``pool_with``; a prior of another sweep stops here, before any training."""
    ident = {
        "experiment": name.replace("_", "-"),
        "scale": scale,
        "data": data_label(spec.cells[0].config.data.source),
        "overrides": "; ".join(overrides),
    }
    if pool_with is None:
        pool_with = []
    elif isinstance(pool_with, (str, Path)):
        pool_with = [pool_with]
    sources = ([out / "seeds.csv"] if (out / "seeds.csv").is_file() else []) + [Path(p) for p in pool_with]
    priors = [(str(p), read_seed_rows(p)) for p in sources]
    check_priors(priors, spec, ident)
    return _Sweep(spec=spec, out=out, scale=scale, overrides=overrides, ident=ident, priors=priors)


def _cell_config(cell, seed: int, out: Path, keep_steps: dict[str, list[int]]):
    """The config of ``cell``'s run for ``seed``: the seed, the checkpoints other cells continue from, and
    the specialist label split or the run it starts from."""
    cfg = copy.deepcopy(cell.config)
    cfg.train.seed = seed
    cfg.train.keep_steps = sorted(set(cfg.train.keep_steps) | set(keep_steps.get(cell.name, [])))
    if cell.label_split is not None:
        cfg.data.label_split = resolve_label_split(cell, cfg, out / f"seed-{seed}")
        cfg.train.init_from = None
    elif cell.init_from_cell is not None:
        cfg.train.init_from = str(out / f"seed-{seed}" / cell.init_from_cell)
    return cfg


def _note_shared(sweep: _Sweep, cell, seed: int, run: Path) -> None:
    """Note in the header a run trained once for several cells: linked to a twin, or forked from a donor."""
    label = f"{cell.row}{', ' + cell.col if cell.col else ''} (seed {seed})"
    if run.is_symlink():
        sweep.shared["reused"][label] = f"`{os.readlink(run)}`"
    elif (fork := forked_from(run)) is not None:
        sweep.shared["forked"][label] = (
            f"`{os.path.relpath(fork['run'], run.parent.resolve())}` at iteration {fork['iteration']}"
        )


def _sweep_cell(sweep: _Sweep, name: str, cell, seed: int, keep_steps, selected: set, reuse: bool) -> None:
    """Train (or resume, link, fork) one cell for one seed and record it; a cell not asked for joins the
    table only if an earlier sweep finished it."""
    run = sweep.out / f"seed-{seed}" / cell.name
    if cell.name not in selected:
        if (run / "metrics.json").exists():
            sweep.record(cell, seed, run, read_run_file(run, "metrics.json"))
        return
    cfg = _cell_config(cell, seed, sweep.out, keep_steps)
    print(f"== {name} [{sweep.scale}] seed {seed}: {cell.name}", flush=True)
    if reuse:
        _share(cfg, seed, sweep.out, run)
    _note_shared(sweep, cell, seed, run)
    sweep.record(cell, seed, run, run_cell(cfg, run))
    sweep.tables(cfg.data.source)  # after every run: an interrupted sweep still leaves its table


def reproduce(
    name: str,
    scale: str,
    data: str | None,
    out: str | Path,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    first_seed: int = 0,
    reuse: bool = True,
    cells: list[str] | None = None,
    pool_with: str | Path | Sequence[str | Path] | None = None,
) -> str:
    """Run (or finish) the experiment ``name`` at ``scale`` and return its markdown table.

    With ``reuse``, a cell identical to a finished run in a sibling sweep folder links to it instead of
    retraining. ``cells`` restricts the sweep to those cells (and the cells they start from); the table still
    lists every cell, with the numbers of those an earlier sweep of ``out`` finished. ``pool_with`` names
    the ``seeds.csv`` of an earlier sweep (or a list of them, the first to hold a cell and seed wins) of the
    same experiment, scale, data and recipe overrides (perhaps on other hardware, or with other
    ``tables.RESOURCE_KEYS`` such as ``train.threads``): its runs (cell and seed) that this sweep does not
    have join the table's mean +- std. Every sweep writes
    its per-seed numbers, pooled ones included, to ``out/seeds.csv`` and keeps them on later reruns of
    ``out``. Figures draw this sweep's own runs of its first seed; a first seed other than 0 names its figures
    ``*_seedN.png``, beside (not over) seed 0's.
    """
    spec = load_spec(name, scale, data, overrides)
    out = Path(out)
    sweep = _start_sweep(spec, name, scale, out, overrides, pool_with)
    selected = {c.name for c in (select_cells(spec, cells) if cells else spec).cells}
    out.mkdir(parents=True, exist_ok=True)
    keep_steps = dict(zip((c.name for c in spec.cells), plan_keep_steps([c.config for c in spec.cells])))
    if not reuse:
        keep_steps = {}
    for seed in range(first_seed, first_seed + seeds):
        for cell in _ordered(spec, keep_steps):
            _sweep_cell(sweep, name, cell, seed, keep_steps, selected, reuse)
    text = sweep.tables(spec.cells[0].config.data.source)
    draw_figures(spec, out, sweep.results, seed=first_seed)
    return text


COST_METRICS = ("params_k", "shared_params_pct", "train_mflops_per_image")


def with_costs(spec, run: Path, metrics: dict) -> dict:
    """``metrics`` plus what the ensemble costs, where the spec's table asks for it (Table 2): parameters (in
    thousands), the share of a member's parameters in layers it shares, and training FLOPs per image (3 x the
    forward multiply-adds x 2, shared layers counted once: mheads.tree.flops)."""
    if not any(m in COST_METRICS for m in spec.metrics):
        return metrics
    from mheads.train.build import tree_from_meta
    from mheads.tree.flops import count_macs

    meta = read_run_json(run)["meta"]
    counts = metrics["param_counts"]
    tree = tree_from_meta(meta)
    flops = count_macs(tree, (meta["in_channels"], meta["image_size"], meta["image_size"])).train_flops()
    return {
        **metrics,
        "params_k": counts["total"] / 1000,
        "shared_params_pct": 100 * counts["shared"] / counts["per_member"][0],
        "train_mflops_per_image": flops / 1e6,
    }


def _share(cfg, seed: int, out: Path, run: Path) -> None:
    """Link ``run`` to a finished identical run, or fork it from a shared pretraining, when there is one."""
    if run.exists() or run.is_symlink():
        return
    twin = find_equivalent_run(cfg, seed, out.resolve().parent, run)
    if twin is not None:
        run.parent.mkdir(parents=True, exist_ok=True)
        run.symlink_to(os.path.relpath(twin.resolve(), run.parent.resolve()), target_is_directory=True)
        print(f"   same config as {twin}: reusing it", flush=True)
        return
    donor = find_fork_donor(cfg, seed, out.resolve().parent, run)
    if donor is not None:
        fork_run(cfg, run, *donor)
        print(f"   continuing from {donor[1]} (the same cross-entropy pretraining)", flush=True)


def describe_hardware(hw: dict) -> str:
    """One line for a hardware record (``mheads.runs.folder.hardware``): CPU, cores, GPU if any, torch."""
    gpu = f", GPU {hw['gpu']}" if hw.get("gpu") else ""
    return f"{hw.get('cpu', 'unknown CPU')}, {hw.get('cores', '?')} cores{gpu}, torch {hw.get('torch', '?')}"


def trained_on(run: Path) -> str:
    """The hardware that trained a run, from its run.json (this machine's where the record is missing); a
    run.json that is a link, a FIFO or not a JSON object is refused (``read_run_json``), not passed over."""
    if not os.path.lexists(run / "run.json"):  # a dangling link is refused below
        return describe_hardware(hardware())
    try:
        return describe_hardware(read_run_json(run)["hardware"])
    except (KeyError, TypeError):
        return describe_hardware(hardware())


class _Notes(TypedDict, total=False):
    """What a table's header says besides the numbers: runs trained once for several cells (run label ->
    the run it links to, or the run and iteration it continued from) and what trained the runs (described;
    absent or empty: this machine)."""

    reused: dict[str, str]
    forked: dict[str, str]
    hardware: set[str]


def _header(scale: str, source, seeds: list[int], shared: _Notes, overrides: Sequence[str] = ()) -> str:
    source = source or "embedded Fashion-MNIST subset"
    where = "; ".join(sorted(shared.get("hardware") or {describe_hardware(hardware())}))
    text = (
        f"Scale `{scale}`, data {source}, {_seed_list(seeds)}; trained on {where}. "
        f"Cells: mean ± std over seeds (paper in its column)."
    )
    if overrides:
        text += " Every cell with " + ", ".join(f"`{o}`" for o in overrides) + " (`--set`)."
    if shared["reused"]:
        text += (
            "\n\nReused runs (identical config, trained once): "
            + "; ".join(f"{k} = {v}" for k, v in shared["reused"].items())
            + "."
        )
    if shared["forked"]:
        text += (
            "\n\nRuns continued from another run's cross-entropy pretraining (identical up to there, "
            "trained once; their wall times include it): "
            + "; ".join(f"{k} from {v}" for k, v in shared["forked"].items())
            + "."
        )
    return text


def _seed_list(seeds: list[int]) -> str:
    if not seeds:
        return "no seeds finished yet"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def data_label(source) -> str:
    """The data set a sweep trained on, as ``seeds.csv`` names it: the file or folder name (paths differ
    between machines), or ``embedded``."""
    return Path(str(source).rstrip("/")).name if source else "embedded"
