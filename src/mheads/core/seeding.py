"""Derived seeds: every random stream in a run is a pure function of the run's seed and a position.

Exact resume needs randomness that depends only on *where* training is (member, epoch, iteration),
never on how much randomness was drawn before, so each stream gets its own generator seeded by
hashing the run seed together with a tag and the position. Hashing (rather than `seed + i`) keeps
streams of neighbouring seeds unrelated: run 0's member 1 is not run 1's member 0.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["Stream", "derive_seed", "derived_generator", "label_split_trial_seed", "member_init_seeds"]


class Stream:
    """The tag of every random stream a run draws from (one per purpose, so that adding a consumer of
    randomness never shifts the numbers another one draws). Changing a tag changes every run that uses it."""

    EPOCH = "epoch"  # the order of the training set in each epoch (data.batching.BatchPlan)
    STEP = "step"  # the global generator during one update: dropout and anything else drawing globally
    AUGMENT = "augment"  # crops and flips of one batch
    MCL = "mcl"  # MCL's random tie-breaking in one batch
    ORACLE_TIES = "oracle-ties"  # tie-breaking of the oracle assignment at evaluation
    COMPILE_CHECK = "compile-check"  # the batch torch.compile is checked on
    BOOTSTRAP = "bootstrap"  # bagging: each member's bootstrap sample
    LABEL_SPLIT = "label-split"  # a random even split of the labels among members
    CROP = "crop"  # a streamed example's random-resized crop (per batch and place in the batch)
    SUBSET = "subset"  # data.train_limit / test_limit: which examples of each class a limited split keeps
    VAL_SPLIT = "val-split"  # the training examples held out for calibration (data.val_fraction)
    NORMALIZER = "normalizer"  # the sample of training images streamed normalization statistics come from


_SEED_BITS = 63  # torch.Generator.manual_seed takes any 64-bit value; 63 keeps it a positive Python int


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed determined only by `seed` and `keys`, identical across machines and Python runs.

    `keys` are ints or strings, e.g. ``derive_seed(seed, "epoch", 3)``; a string tag per purpose keeps
    the streams of different purposes apart.
    """
    parts = (seed, *keys)
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, (int, str)):
            field = "seed" if i == 0 else f"keys[{i - 1}]"
            raise TypeError(f"{field} must be an int or str, got {type(part).__name__} {part!r}")
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << _SEED_BITS) - 1)


def derived_generator(seed: int, *keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` on `device` seeded with ``derive_seed(seed, *keys)``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *keys))
    return generator


def member_init_seeds(seed: int, num_members: int) -> list[int]:
    """One initialization seed per member (the random-initialization strategy), derived from the run seed.

    A linear formula rather than :func:`derive_seed`: every published TreeNet run was initialized with it, so
    changing it would change every result in RESULTS.md. Member m's seed does not depend on
    ``num_members``."""
    return [(int(seed) * 1_000_003 + 7919 * m + 1) % (2**63) for m in range(num_members)]


def label_split_trial_seed(trial: int, run_seed: int) -> int:
    """The seed of random label-split trial ``trial`` for the run seed ``run_seed``
    (``reproduce label-split``); the published trials used this formula."""
    return int(trial) + 1000 * int(run_seed)
