"""Communication cost of model-parallel TreeNets: the paper's Figure 13 (section 7, appendix E.3).

For each candidate split layer of a base network, a TreeNet with one member per process is split after that
layer: the trunk on rank 0, one branch per rank, the member logits gathered at rank 0 under the score-averaged
loss. We report the floats broadcast per batch (the trunk output) and the fraction of the forward-backward
time spent communicating, medians over repeated steps:

- ``comm %``: time inside the broadcast/gather collectives (both directions) during a training step, over the
  step time, on rank 0 (the rank holding the shared layers, as in the paper). It includes waiting for slower
  ranks.
- ``xfer %``: the cost of moving the trunk output alone (a barrier-aligned broadcast and its backward reduce,
  the same ops outside a step), over the same step time: the transfer cost the paper plots.

The paper: 0.49% of the forward-backward time for ILSVRC-Alex x5 sharing pool2 (about 36 M floats per batch),
one K20 GPU per node, 5.8 GB/s MPI interconnect. Here: gloo over loopback, N CPU processes on one machine (or
NCCL with ``--backend nccl`` and one GPU per process).

    python benchmarks/comm_cost.py --out runs/comm_cost                       # cifar10_quick, 3 processes
    python benchmarks/comm_cost.py --out DIR --model caffenet --width 0.25 --image-size 115 --procs 2

Writes ``DIR/comm_cost.csv`` (with the hardware and torch version) and ``DIR/comm_cost.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mheads.runs.folder import hardware as run_hardware

CIFAR_MODELS = ("cifar10_quick", "nin_cifar")


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for comm_cost.csv and comm_cost.png")
    p.add_argument("--model", default="cifar10_quick", help="registered base network (mheads list-models)")
    p.add_argument("--width", type=float, default=None, help="width multiplier (nin_*, caffenet)")
    p.add_argument("--image-size", type=int, default=None, help="input side (default: the model's own)")
    p.add_argument(
        "--classes", type=int, default=None, help="classes (default 10 for CIFAR models, else 1000)"
    )
    p.add_argument("--procs", type=int, default=3, help="processes = members, one branch each (default 3)")
    p.add_argument("--batch", type=int, default=100, help="batch size (Caffe's CIFAR10-Quick uses 100)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per split")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per split")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--splits",
        default=None,
        help="comma-separated split layers (default: every parameterized layer but the last, plus "
        "'none' = independent members)",
    )
    p.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    p.add_argument("--timeout", type=float, default=300.0, help="collective timeout, seconds")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for name in ("procs", "batch", "steps", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: got {getattr(a, name)}; expected an integer >= 1")
    if a.warmup < 0:
        p.error(f"--warmup: got {a.warmup}; expected an integer >= 0")
    a.image_size = a.image_size or (32 if a.model in CIFAR_MODELS else 227 if a.model == "caffenet" else 224)
    a.classes = a.classes or (10 if a.model in CIFAR_MODELS else 1000)
    return a


def _model_kwargs(a) -> dict:
    kw = {"num_classes": a.classes, "image_size": a.image_size}
    if a.width is not None:
        kw["width"] = a.width
    return kw


def _splits(a) -> list[str | None]:
    from mheads.models import create_model, parameterized_layers

    layers = parameterized_layers(create_model(a.model, **_model_kwargs(a)))
    if a.splits is None:
        return [None] + layers[:-1]
    out = []
    for s in a.splits.split(","):
        s = s.strip()
        if s != "none" and s not in layers:
            raise SystemExit(
                f"--splits: {s!r} is not a parameterized layer of {a.model}; choose from "
                f"none, {', '.join(layers[:-1])}"
            )
        out.append(None if s == "none" else s)
    return out


def _median_ms(xs: list[float]) -> float:
    return 1000 * statistics.median(xs)


# --- one rank -----------------------------------------------------------------------------------------------
def worker(a) -> None:
    torch.set_num_threads(a.threads)
    import torch.distributed as dist  # the store only; all communication goes through mheads.dist

    from mheads.dist import DistributedTreeNet, Placement, broadcast, init
    from mheads.dist.ops import CommClock, timed
    from mheads.ensemble.losses import compute_loss
    from mheads.models import model_factory
    from mheads.tree.treenet import TreeNet

    rank, world = a.worker, a.procs
    device = torch.device("cuda", rank) if a.backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    comm = init(
        dist.FileStore(a.store, world), rank, world, timeout_s=a.timeout, backend=a.backend, device=device
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size, generator=g).to(device)
    y = torch.randint(0, a.classes, (a.batch,), generator=g).to(device)
    rows = []
    for split in _splits(a):
        tree = TreeNet(model_factory(a.model, **_model_kwargs(a)), world, split, seed=0)
        trunk_shape = None
        if split is not None:
            with torch.no_grad():
                trunk_shape = (a.batch,) + tuple(tree.root.layers(x[:1].cpu()).shape[1:])
        floats = 0 if trunk_shape is None else int(torch.Size(trunk_shape).numel())
        model = DistributedTreeNet(tree, Placement(0, list(range(world)), 0)).to(device)
        steps, comms = [], []
        for it in range(a.warmup + a.steps):
            comm.barrier()
            clock = CommClock()
            t0 = time.perf_counter()
            with timed(clock):
                logits = model(x)
                loss = compute_loss("score_averaged_ce", logits, y).loss if model.is_root else logits.sum()
                loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            if it >= a.warmup:
                steps.append(dt)
                comms.append(clock.seconds)
        xfers = []
        if trunk_shape is not None:
            buf = torch.randn(trunk_shape, device=device).requires_grad_(rank == 0)
            for it in range(a.warmup + a.steps):
                comm.barrier()
                clock = CommClock()
                with timed(clock):
                    out = broadcast(buf, 0)
                    out.backward(torch.ones_like(out))
                if it >= a.warmup:
                    xfers.append(clock.seconds)
        rows.append(
            {
                "split": split or "none",
                "floats_per_batch": floats,
                "step_ms": _median_ms(steps),
                "comm_ms": _median_ms(comms),
                "xfer_ms": _median_ms(xfers) if xfers else 0.0,
            }
        )
        del model, tree
    Path(a.out, f".rank{rank}.json").write_text(json.dumps(rows))
    comm.destroy()


# --- the launcher -------------------------------------------------------------------------------------------
def hardware() -> dict:
    hw = run_hardware()
    return {
        "cpu_model": hw["cpu"],
        "cpu_cores": hw["cores"],
        "torch_version": hw["torch"],
        "python": hw["python"],
    }


def launch(a) -> list[dict]:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        base = [sys.executable, str(Path(__file__).resolve())] + [arg for arg in sys.argv[1:]]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        procs = [
            subprocess.Popen(base + ["--worker", str(r), "--store", store], env=env) for r in range(a.procs)
        ]
        codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"comm_cost: worker exit codes {codes}")
    per_rank = [json.loads((out / f".rank{r}.json").read_text()) for r in range(a.procs)]
    for r in range(a.procs):
        (out / f".rank{r}.json").unlink()
    hw = hardware()
    rows = []
    for i, row0 in enumerate(per_rank[0]):
        fracs = [100 * pr[i]["comm_ms"] / pr[i]["step_ms"] for pr in per_rank]
        rows.append(
            {
                **row0,
                "comm_pct": fracs[0],
                "comm_pct_max_rank": max(fracs),
                "xfer_pct": 100 * row0["xfer_ms"] / row0["step_ms"],
                "model": a.model,
                "width": a.width if a.width is not None else "",
                "image_size": a.image_size,
                "batch": a.batch,
                "procs": a.procs,
                "threads": a.threads,
                "backend": a.backend,
                "steps": a.steps,
                **hw,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    head = (
        f"{'split':>8} {'floats/batch':>13} {'step ms':>9} {'comm ms':>9} {'comm %':>7} {'xfer ms':>9} "
        f"{'xfer %':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['split']:>8} {r['floats_per_batch']:>13,} {r['step_ms']:>9.2f} "
            f"{r['comm_ms']:>9.2f} {r['comm_pct']:>7.2f} {r['xfer_ms']:>9.3f} {r['xfer_pct']:>7.2f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shared = sorted((r for r in rows if r["floats_per_batch"] > 0), key=lambda r: r["floats_per_batch"])
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["floats_per_batch"] for r in shared]
    ax.plot(xs, [r["comm_pct"] for r in shared], "o-", label="in-step comm (rank 0)")
    ax.plot(xs, [r["xfer_pct"] for r in shared], "s--", label="isolated transfer")
    for r in shared:
        ax.annotate(
            r["split"],
            (r["floats_per_batch"], r["comm_pct"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlabel("floats broadcast per batch")
    ax.set_ylabel("% of forward-backward time")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    a = _args(argv)
    if a.worker is not None:
        worker(a)
        return 0
    rows = launch(a)
    out = Path(a.out)
    with open(out / "comm_cost.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    hw = hardware()
    title = (
        f"{a.model} x{a.procs}, batch {a.batch}, {a.backend}, {a.threads} thread(s)/proc\n"
        f"{hw['cpu_model']} ({hw['cpu_cores']} cores), torch {hw['torch_version']}"
    )
    plot(rows, out / "comm_cost.png", title)
    print(title)
    print(table(rows))
    print(f"wrote {out / 'comm_cost.csv'} and {out / 'comm_cost.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
