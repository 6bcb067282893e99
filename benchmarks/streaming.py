"""The streaming loader (``data.loader: stream``): peak memory against data set size, and speed against
device-resident data.

``rss``: generates ImageNet-layout folders of varied-size JPEGs (48-96 pixels a side, any aspect; by default
20,000 and 200,000 training images) and trains CIFAR10-Quick x2 a few hundred iterations on each through the
streaming path (random-resized 32x32 crops, flips), each run in a fresh process. Reports each run's peak
resident memory: the training process and its largest DataLoader worker (``getrusage`` maxima), beside the
decoded size of the set (at its own image sizes, and at 32x32).

``speed``: CIFAR-10 (the JPEG copy, extracted to an image folder) through both loaders, CIFAR10-Quick x4 at
batch 100 with pad-and-crop and flips, in interleaved rounds, each run in a fresh process; reports the
medians of training images per second (data waiting included) and their ratio, and the accuracy both reach.

    python benchmarks/streaming.py rss --work /tmp/mheads-stream
    python benchmarks/streaming.py speed --data ../shared/data/cifar10-jpeg.tar.gz --work /tmp/mheads-stream
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_util import hardware  # noqa: E402


def _write_part(args) -> int:
    """One process's share of a generated folder: classes ``part::parts`` of both splits."""
    root, train, test, classes, part, parts, seed = args
    import numpy as np

    from mheads.data.shards import _image  # the generator's per-image writer

    rng = np.random.default_rng(seed * 1000 + part)
    n = 0
    for split, count in (("train", train), ("test", test)):
        for c in range(part, classes, parts):
            folder = Path(root) / split / f"class_{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count // classes):
                (folder / f"{i}.jpg").write_bytes(_image(c, classes, rng, (48, 96)))
                n += 1
    return n


def generate(root: Path, train: int, test: int, classes: int = 100) -> Path:
    done = root / ".complete"
    if done.exists():
        return root
    parts = os.cpu_count() or 1
    t0 = time.perf_counter()
    with Pool(parts) as pool:
        n = sum(pool.map(_write_part, [(str(root), train, test, classes, p, parts, 0) for p in range(parts)]))
    done.write_text(f"{n}\n")
    print(f"generated {n} JPEGs under {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _train(args) -> None:
    """In a fresh process: one fit, then its metrics and peak memory as one JSON line."""
    import torch  # noqa: F401

    from mheads.config import config_from_settings
    from mheads.train.loop import fit

    settings = json.loads(args.settings)
    cfg = config_from_settings(settings)
    t0 = time.perf_counter()
    metrics = fit(cfg, args.out, overwrite=True, progress=False)
    wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "images_per_s": metrics["images_per_s"],
                "acc": metrics["ensemble_mean_acc"],
                "wait_s": metrics.get("data_wait_s", 0.0),
                "wall_s": wall,
                "rss_mb": me,
                "worker_rss_mb": kids,
                "train_time_s": metrics["train_time_s"],
            }
        )
    )


def _run(settings: dict, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "_train", "--settings", json.dumps(settings), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"training run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _decoded(root: Path) -> tuple[int, int]:
    """(images, bytes) of the training split decoded at native size (from the JPEG headers)."""
    from PIL import Image

    n = total = 0
    for path in (root / "train").rglob("*.jpg"):
        with Image.open(path) as img:
            w, h = img.size
        n += 1
        total += w * h * 3
    return n, total


def rss(args) -> None:
    rows = []
    for n in args.sizes:
        root = generate(args.work / f"varied-{n}", n, max(n // 10, 1000))
        images, native = _decoded(root)
        settings = {
            "model.name": "cifar10_quick",
            "model.members": 2,
            "data.source": str(root),
            "data.loader": "stream",
            "data.image_size": 32,
            "data.train_crop": "random_resized",
            "data.flip": True,
            "data.normalize": "per_channel",
            "data.stats_images": 5000,
            "data.test_limit": 1000,
            "train.iterations": args.iterations,
            "train.batch_size": 100,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
            "train.device": "cpu",
        }
        r = _run(settings, args.work / f"run-{n}")
        r.update(images=images, native_gb=native / 1e9, at32_gb=images * 3 * 32 * 32 / 1e9)
        rows.append(r)
        print(
            f"{images:>8,} train images (decoded {r['native_gb']:.2f} GB native, {r['at32_gb']:.2f} GB at "
            "32x32): "
            f"peak RSS training process {r['rss_mb']:.0f} MB, largest worker {r['worker_rss_mb']:.0f} MB, "
            f"{r['images_per_s']:.0f} img/s, waited {r['wait_s']:.1f} s of {r['train_time_s']:.0f} s",
            flush=True,
        )
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(
            f"growth from {a['images']:,} to {b['images']:,} images: training process "
            f"{100 * (b['rss_mb'] / a['rss_mb'] - 1):+.1f}%, largest worker "
            f"{100 * (b['worker_rss_mb'] / a['worker_rss_mb'] - 1):+.1f}%"
        )


def speed(args) -> None:
    folder = args.work / "cifar10-jpeg"
    if not (folder / "train").is_dir():
        with tarfile.open(args.data) as tar:
            tar.extractall(folder, filter="data")
    base = {
        "model.name": "cifar10_quick",
        "model.members": 4,
        "data.source": str(folder),
        "data.crop_padding": 4,
        "data.flip": True,
        "train.iterations": args.iterations,
        "train.batch_size": 100,
        "train.eval_every": 0,
        "train.checkpoint_every": 0,
        "train.device": "cpu",
        "data.test_limit": 2000,
    }
    contenders = {
        "resident": {**base, "data.loader": "resident"},
        "stream": {**base, "data.loader": "stream"},
    }
    samples: dict[str, list[dict]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            res = _run(contenders[name], args.work / f"speed-{name}")
            samples[name].append(res)
            print(
                f"round {r + 1} {name}: {res['images_per_s']:.1f} img/s, waited {res['wait_s']:.2f} s, "
                f"accuracy {100 * res['acc']:.2f}%",
                flush=True,
            )
    med = {k: statistics.median(s["images_per_s"] for s in v) for k, v in samples.items()}
    print(
        f"median images/s: resident {med['resident']:.1f}, stream {med['stream']:.1f}; "
        f"stream / resident = {med['stream'] / med['resident']:.3f}"
    )
    accs = {k: sorted({round(100 * s["acc"], 4) for s in v}) for k, v in samples.items()}
    print(
        f"accuracy after {args.iterations} iterations: resident {accs['resident']}, stream {accs['stream']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rss")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    r.add_argument("--iterations", type=int, default=300)
    s = sub.add_parser("speed")
    s.add_argument("--data", type=Path, required=True, help="the CIFAR-10 JPEG copy (.tar.gz)")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--iterations", type=int, default=100)
    t = sub.add_parser("_train")
    t.add_argument("--settings", required=True)
    t.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "_train":
        return _train(args)
    args.work.mkdir(parents=True, exist_ok=True)
    import torch

    print(" ".join(f"{k}={v}" for k, v in hardware(torch.device("cpu")).items()), flush=True)
    if args.cmd == "rss":
        rss(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
