"""A user's own training loop three ways, one optimizer step of M independent CIFAR10-Quick members each:

- ``plain``: a plain PyTorch loop over M separate modules (forward, cross-entropy, backward, step, each);
- ``tree``: a TreeNet of the same members, one forward of the whole tree and one backward of the summed
  independent cross-entropy (``compute_loss``) -- what a user writes first;
- ``train_step``: ``mheads.train_step(tree, opt, x, y)``, which steps the members one after another.

Prints the median seconds per step of interleaved rounds and the ratios to the plain loop (> 1: slower than
it). Only ratios measured in one run mean anything on a shared machine.

    python benchmarks/train_step.py [--members 4] [--batch 100] [--rounds 15] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mheads  # noqa: E402
from bench_util import hardware, interleaved, median, synchronizer  # noqa: E402
from mheads import compute_loss, model_factory  # noqa: E402
from mheads.train.allocator import retain_freed_memory  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--no-retain-memory",
        action="store_true",
        help="keep glibc's default malloc thresholds (see mheads.train.allocator)",
    )
    args = ap.parse_args()
    retained = False if args.no_retain_memory else retain_freed_memory()  # the same for every contender
    dev = torch.device(args.device)
    M = args.members
    factory = model_factory("cifar10_quick", num_classes=10)
    trees = {name: mheads.TreeNet(factory, M, None, seed=0).to(dev) for name in ("tree", "train_step")}
    trees["train_step"].load_state_dict(trees["tree"].state_dict())
    plain = [copy.deepcopy(trees["tree"].member(m)) for m in range(M)]

    def sgd(params):
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    plain_opts = [sgd(p.parameters()) for p in plain]
    opts = {name: sgd(t.parameters()) for name, t in trees.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(dev)

    def plain_loop():
        for model, opt in zip(plain, plain_opts):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    def tree_loop():
        opt = opts["tree"]
        opt.zero_grad(set_to_none=True)
        compute_loss("independent_ce", trees["tree"](x), y).loss.backward()
        opt.step()

    def user_step():
        mheads.train_step(trees["train_step"], opts["train_step"], x, y)

    contenders = {"plain": plain_loop, "tree": tree_loop, "train_step": user_step}
    times = interleaved(contenders, rounds=args.rounds, steps=args.steps, warmup=3, sync=synchronizer(dev))
    hw = hardware(dev)
    where = hw["accelerator"] if dev.type == "cuda" else hw.get("cpu")
    print(
        f"# {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"M={M}, batch {args.batch}, median of {args.rounds} interleaved rounds of {args.steps} steps, "
        f"freed memory retained: {retained}"
    )
    base = median(times["plain"])
    print(f"{'contender':<12} {'ms/step':>9} {'/plain':>8}")
    for name, ts in times.items():
        print(f"{name:<12} {1e3 * median(ts):9.2f} {median(ts) / base:8.3f}")


if __name__ == "__main__":
    main()
