"""End-to-end ``mheads.train.loop.fit`` against the bare training-step loop on in-memory tensors.

``fit`` has fixed costs (loading and normalizing the data, building the model, the final evaluation and save)
that a short benchmark would otherwise charge to its iterations. They cancel in a difference: two runs of Na
and Nb iterations with the same cadence differ by exactly (Nb - Na) iterations plus their periodic evaluations
and checkpoints, so the marginal cost of one iteration of ``fit`` is ``(T(Nb) - T(Na)) / (Nb - Na)``.

The cadence keeps the paper recipe's evaluation share: CIFAR10-Quick evaluates 10,000 test images every 1,000
iterations (10 per iteration); here ``E`` iterations evaluate ``10 E`` images. Checkpoints are written every E
iterations, far more often than the recipe's 1,000, so their cost is overstated, not hidden.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from mheads.config import Config, DataConfig, ModelConfig, TrainConfig
from mheads.train.loop import fit

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_synthetic_cifar10(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random images in the CIFAR-10 binary layout (speed does not depend on pixel values)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("data_batch_1.bin", n_train), ("test_batch.bin", n_test)):
        rec = np.empty((n, 1 + 3072), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec[:, 1:] = rng.integers(0, 256, (n, 3072))
        (folder / name).write_bytes(rec.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")
    return folder


def fit_config(
    source: Path,
    *,
    members: int,
    split,
    iterations: int,
    every: int,
    batch: int,
    device: str,
    channels_last: bool,
    threads: int,
    amp: bool = False,
) -> Config:
    return Config(
        name="fit-benchmark",
        model=ModelConfig(name="cifar10_quick", members=members, split=split, exec="auto"),
        # Augmentation on (random crops and flips) so that its cost is part of the measurement.
        data=DataConfig(
            source=str(source), normalize="mean_image", crop_padding=2, flip=True, test_limit=10 * every
        ),
        train=TrainConfig(
            iterations=iterations,
            batch_size=batch,
            eval_every=every,
            checkpoint_every=every,
            eval_batch_size=1000,
            device=device,
            channels_last=channels_last,
            threads=threads,
            amp=amp,
        ),
    ).validate()


def time_fit(cfg: Config, run_dir: Path) -> float:
    t0 = time.perf_counter()
    fit(cfg, run_dir, overwrite=True, progress=False)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(run_dir, ignore_errors=True)
    return elapsed


def marginal_fit_seconds(
    source: Path,
    work: Path,
    *,
    members: int,
    split,
    n_a: int,
    n_b: int,
    every: int,
    batch: int,
    device: str,
    channels_last: bool,
    amp: bool = False,
) -> float:
    """Seconds per iteration of ``fit``, fixed costs cancelled (see the module docstring)."""
    if n_a % every or n_b % every or n_b <= n_a:
        raise ValueError(f"n_a, n_b: got {n_a}, {n_b}; expected multiples of every={every} with n_b > n_a")
    kw = dict(
        members=members,
        split=split,
        every=every,
        batch=batch,
        device=device,
        channels_last=channels_last,
        threads=torch.get_num_threads(),
        amp=amp,
    )
    t_a = time_fit(fit_config(source, iterations=n_a, **kw), work / "fit_a")
    t_b = time_fit(fit_config(source, iterations=n_b, **kw), work / "fit_b")
    return (t_b - t_a) / (n_b - n_a)
