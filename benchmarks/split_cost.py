"""What sharing a trunk saves, on any registered model: the training-step time of an M-member TreeNet split at
each parameterized layer, against the independent ensemble (no split), timed in interleaved rounds in one
process, beside the speed-up its FLOP count predicts. The step is the one `mheads train` takes: one forward to
member logits (M, B, C), the summed member cross-entropies, one backward, one SGD step.

    python benchmarks/split_cost.py --model nin_cifar --option width=0.25 --option init=he \\
        --out benchmarks/results/cpu/split_cost-nin.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import Row, format_table, hardware, interleaved, median, spread, write_csv  # noqa: E402
from mheads.models import create_model, model_factory, parameterized_layers  # noqa: E402
from mheads.tree.flops import count_macs  # noqa: E402
from mheads.tree.treenet import TreeNet  # noqa: E402
from workloads import Setup, mheads_train_step  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar10_quick", help="registered base network (mheads list-models)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model option (a YAML value), e.g. width=0.25; repeatable",
    )
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument(
        "--splits",
        default=None,
        help="comma-separated split points, 'none' for the independent ensemble (default: none "
        "and every parameterized layer but the last)",
    )
    p.add_argument(
        "--exec",
        default="loop",
        choices=("loop", "fused", "auto"),
        dest="exec_mode",
        help="TreeNet execution mode (the `cpu` sweeps train in loop mode)",
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="steps per timed sample")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="CSV file for the rows (with the hardware)")
    a = p.parse_args(argv)
    for name in ("members", "batch", "image_size", "classes", "rounds", "steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: got {getattr(a, name)}; expected an integer >= 1")
    if a.warmup < 0:
        p.error(f"--warmup: got {a.warmup}; expected an integer >= 0")
    a.options = {}
    for item in a.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--option: got {item!r}; expected KEY=VALUE, e.g. width=0.25")
        a.options[key] = yaml.safe_load(value)
    return a


def model_kwargs(a: argparse.Namespace) -> dict:
    return {"num_classes": a.classes, "image_size": a.image_size, **a.options}


def splits(a: argparse.Namespace) -> list[str | None]:
    layers = parameterized_layers(create_model(a.model, **model_kwargs(a)))
    if a.splits is None:
        return [None] + layers[:-1]
    out = []
    for s in (s.strip() for s in a.splits.split(",")):
        if s != "none" and s not in layers[:-1]:
            raise SystemExit(
                f"--splits: {s!r} is not a split point of {a.model}; choose from none, "
                f"{', '.join(layers[:-1])}"
            )
        out.append(None if s == "none" else s)
    return out


def measure(a: argparse.Namespace) -> list[Row]:
    setup = Setup(device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(a.batch, 3, a.image_size, a.image_size, generator=g).contiguous(
                memory_format=setup.memory_format
            ),
            torch.randint(0, a.classes, (a.batch,), generator=g),
        )
        for _ in range(4)
    ]
    steps, flops = {}, {}
    for split in splits(a):
        net = TreeNet(
            model_factory(a.model, **model_kwargs(a)), a.members, split, seed=0, exec_mode=a.exec_mode
        ).to(memory_format=setup.memory_format)
        name = f"split {split}"
        flops[name] = count_macs(net, (3, a.image_size, a.image_size)).train_flops(a.batch)
        steps[name] = mheads_train_step(setup, net, batches, sgd=dict(lr=0.001, momentum=0.9))
    times = interleaved(steps, rounds=a.rounds, steps=a.steps, warmup=a.warmup, sync=lambda: None)
    base, base_flops = median(times["split None"]), flops["split None"]
    section = f"training step vs split point, {a.model} {a.options or ''} x{a.members}, batch {a.batch}"
    rows = []
    for name, xs in times.items():
        rows.append(
            Row(
                section,
                name,
                1000 * median(xs),
                1000 * spread(xs),
                1000 * min(xs),
                a.batch / median(xs),
                ratio=base / median(xs),
                ratio_to="split None",
                gflop_per_s=flops[name] / median(xs) / 1e9,
                note=f"FLOP ratio vs None {base_flops / flops[name]:.2f}x",
                extra={
                    "samples": len(xs),
                    "flop_ratio_vs_independent": round(base_flops / flops[name], 4),
                    "train_mflops_per_image": round(flops[name] / a.batch / 1e6, 2),
                },
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    rows = measure(a)
    print(format_table(rows))
    for r in rows:
        print(f"{r.name}: {r.note}")
    hw = hardware(torch.device("cpu"))
    print("hardware: " + ", ".join(f"{k}={v}" for k, v in hw.items()))
    if a.out is not None:
        write_csv(a.out, rows, hw)
        print(f"rows written to {a.out}")


if __name__ == "__main__":
    main()
