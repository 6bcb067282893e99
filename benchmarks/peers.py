"""End-to-end trainers side by side: ``mheads.fit`` against torchensemble's ``VotingClassifier.fit`` and the
bare plain loop, on the same workload, in one run.

    python benchmarks/peers.py --out DIR [--rounds 5] [--iters 20,60]

Workload: CIFAR10-Quick x4, batch 100, SGD (lr 0.001, momentum 0.9), channels_last everywhere (the peer's
estimator converts its input itself, as a user who wants the speed would write it), one process, the
machine's threads. Each trainer is charged the marginal cost of one iteration (one batch through all M
members): two runs of ``Na`` and ``Nb`` iterations, whose fixed costs (building models and optimizers, data
loaders, the final evaluation and save) cancel in ``(T(Nb) - T(Na)) / (Nb - Na)``. No periodic evaluation or
checkpoint on either side (torchensemble has none), no augmentation. Rounds are interleaved, rotating the
order; the table gives medians and the ratio to the bare loop (higher is better).

torchensemble is optional (``pip install --no-deps torchensemble joblib scikit-learn``: its wheel names
torchvision as a dependency, which it does not import for classifiers and which does not install beside the
CPU torch here); without it the table has the other two rows. torch-uncertainty is left out: it imports
torchvision at import time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import Row, format_table, hardware, median, spread, write_csv  # noqa: E402
from fit_bench import write_synthetic_cifar10  # noqa: E402
from mheads.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig  # noqa: E402
from mheads.models import create_model  # noqa: E402
from mheads.train.allocator import retain_freed_memory  # noqa: E402
from mheads.train.loop import fit  # noqa: E402

M, BATCH, LR, MOMENTUM = 4, 100, 0.001, 0.9
CL = torch.channels_last


class QuickCL(nn.Module):
    """CIFAR10-Quick for torchensemble (which builds estimators from a class): channels_last weights and
    input."""

    def __init__(self):
        super().__init__()
        self.net = create_model("cifar10_quick").to(memory_format=CL)

    def forward(self, x):
        return self.net(x.contiguous(memory_format=CL))


def tensors(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def bare_seconds(iters: int) -> float:
    """The plain loop: 4 modules, 4 SGD optimizers, in-memory batches (built outside the timing)."""
    x, y = tensors(iters * BATCH)
    batches = [
        (x[i * BATCH : (i + 1) * BATCH].contiguous(memory_format=CL), y[i * BATCH : (i + 1) * BATCH])
        for i in range(iters)
    ]
    models = [create_model("cifar10_quick").to(memory_format=CL) for _ in range(M)]
    opts = [torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM) for m in models]
    t0 = time.perf_counter()
    for xb, yb in batches:
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return time.perf_counter() - t0


def torchensemble_seconds(iters: int) -> float:
    from torchensemble import VotingClassifier

    x, y = tensors(iters * BATCH)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    t0 = time.perf_counter()
    ens = VotingClassifier(estimator=QuickCL, n_estimators=M, cuda=False)
    ens.set_optimizer("SGD", lr=LR, momentum=MOMENTUM)
    ens.fit(loader, epochs=1, log_interval=10**9, save_model=False)
    return time.perf_counter() - t0


def mheads_seconds(iters: int, source: Path, work: Path) -> float:
    cfg = Config(
        name="peers",
        model=ModelConfig(name="cifar10_quick", members=M),
        data=DataConfig(source=str(source), normalize="mean_image", test_limit=1000),
        optim=OptimConfig(lr=LR, momentum=MOMENTUM, weight_decay=0.0, schedule="fixed"),
        train=TrainConfig(
            iterations=iters, batch_size=BATCH, eval_every=0, checkpoint_every=0, eval_batch_size=1000
        ),
    ).validate()
    run = work / "mheads-run"
    t0 = time.perf_counter()
    fit(cfg, run, overwrite=True, progress=False)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(run, ignore_errors=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for peers.txt and peers.csv")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--iters", default="20,60", help="Na,Nb: the two run lengths (default 20,60)")
    args = ap.parse_args(argv)
    n_a, n_b = (int(v) for v in args.iters.split(","))
    if not 0 < n_a < n_b:
        ap.error(f"--iters: got {args.iters!r}; expected Na,Nb with 0 < Na < Nb")
    args.out.mkdir(parents=True, exist_ok=True)
    retain_freed_memory()  # the same allocator setting for every contender (fit applies it itself)
    source = write_synthetic_cifar10(args.out / "synthetic-cifar10", n_train=n_b * BATCH, n_test=1000)
    contenders = {
        "bare plain loop (4 modules, 4 SGD)": bare_seconds,
        "mheads fit": lambda n: mheads_seconds(n, source, args.out),
    }
    try:
        import torchensemble  # noqa: F401

        contenders["torchensemble VotingClassifier.fit"] = torchensemble_seconds
    except ImportError:
        print("torchensemble not installed: its row is left out", file=sys.stderr)
    for fn in contenders.values():  # warm-up: imports, allocator, oneDNN primitives
        fn(2)
    per: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            per[name].append((contenders[name](n_b) - contenders[name](n_a)) / (n_b - n_a))
        done = ", ".join(f"{n} {1000 * v[-1]:.1f} ms" for n, v in per.items())
        print(f"round {r + 1}/{args.rounds}: {done}", flush=True)
    noisy = [n for n, v in per.items() if median(v) <= 0]
    if noisy:  # T(Nb) <= T(Na): the machine's noise exceeds Nb - Na iterations of work
        print(
            f"warning: marginal time <= 0 for {', '.join(noisy)}: the difference of {n_b - n_a} iterations "
            "is below this machine's noise; raise --iters or --rounds",
            file=sys.stderr,
        )
    base = per[names[0]]
    section = (
        f"end-to-end trainers, CIFAR10-Quick x{M}, batch {BATCH}, marginal time per iteration "
        f"(T({n_b}) - T({n_a})) / {n_b - n_a}"
    )
    rows = [
        Row(
            section,
            name,
            1000 * median(v),
            1000 * spread(v),
            1000 * min(v),
            BATCH / median(v),
            ratio=median(base) / median(v),
            ratio_to="bare",
            extra={"samples": len(v)},
        )
        for name, v in per.items()
    ]
    hw = hardware(torch.device("cpu"))
    text = "hardware: " + ", ".join(f"{k}={v}" for k, v in hw.items()) + "\n" + format_table(rows)
    print(text)
    (args.out / "peers.txt").write_text(text + "\n")
    write_csv(args.out / "peers.csv", rows, hw)
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(source.with_name(source.name + ".mheads-cache"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
