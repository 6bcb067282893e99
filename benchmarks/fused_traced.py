"""Fused (torch.func.vmap over stacked parameters) against the member loop for traced branches: a
torchvision-style ResNet and a ViT cut with torch.fx, M members, training step (forward + backward) and
inference. Prints the median time of interleaved rounds and loop time / fused time (> 1: fused is faster).

    python benchmarks/fused_traced.py [--members 4] [--batch 32] [--rounds 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tree"))
import zoo  # noqa: E402  the test zoo's models

from mheads.tree import TreeNet, fused_nodes  # noqa: E402

WORKLOADS = {  # name -> (factory, split, input shape without the batch)
    "resnet-layer1": (lambda: zoo.ResNet(num_classes=10, width=32), "layer1", (3, 32, 32)),
    "resnet-conv1": (lambda: zoo.ResNet(num_classes=10, width=32), "conv1", (3, 32, 32)),
    "vit-blocks.0": (
        lambda: zoo.ViT(num_classes=10, dim=64, depth=4, patch=4, image=32),
        "blocks.0",
        (3, 32, 32),
    ),
    "vit-patch_embed": (
        lambda: zoo.ViT(num_classes=10, dim=64, depth=4, patch=4, image=32),
        "patch_embed",
        (3, 32, 32),
    ),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = args.device
    cpu = platform.processor() or platform.machine()
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else cpu
    print(
        f"# {name}, {torch.get_num_threads()} threads, torch {torch.__version__}, M={args.members}, "
        f"batch {args.batch}, median of {args.rounds} interleaved rounds"
    )
    print(f"{'workload':<18} {'phase':<6} {'loop ms':>9} {'fused ms':>9} {'loop/fused':>10}")
    for wname, (make, split, shape) in WORKLOADS.items():
        torch.manual_seed(0)
        trees = {
            m: TreeNet(make, args.members, split, seed=0, exec_mode=m).to(dev) for m in ("loop", "fused")
        }
        trees["fused"].load_state_dict(trees["loop"].state_dict())
        assert fused_nodes(trees["fused"].root) >= 1
        x = torch.randn(args.batch, *shape, device=dev)
        y = torch.randint(0, 10, (args.batch,), device=dev)
        for phase in ("train", "infer"):

            def step(tree):
                if phase == "train":
                    tree.train()
                    loss = F.cross_entropy(tree(x).flatten(0, 1), y.repeat(args.members))
                    loss.backward()
                else:
                    tree.eval()
                    with torch.no_grad():
                        tree(x)

            times = {"loop": [], "fused": []}
            for m in times:  # warm-up
                step(trees[m])
            for _ in range(args.rounds):
                for m in times:  # interleaved, so drift on a shared machine hits both alike
                    _sync(dev)
                    t = time.perf_counter()
                    step(trees[m])
                    _sync(dev)
                    times[m].append(time.perf_counter() - t)
            loop, fused = (statistics.median(times[m]) * 1e3 for m in ("loop", "fused"))
            print(f"{wname:<18} {phase:<6} {loop:9.2f} {fused:9.2f} {loop / fused:10.2f}")


if __name__ == "__main__":
    main()
