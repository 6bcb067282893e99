"""Snapshot and restore the global random generators as plain data (tensors and numbers).

Exact resume should derive randomness from the seed and the training position; this covers code
that still draws from the global generators. The snapshot is made of tensors, ints, floats and str
only, so it fits a checkpoint's `state.pt`, which is read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states as plain data for `state.pt`: torch CPU (and CUDA if initialized), `random`, numpy.

    Exact resume should derive randomness from the seed and the step; this covers code that still
    draws from the global generators. Everything is a tensor or a number (weights_only-loadable).
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # Mersenne Twister words are < 2**32, so int64 holds them exactly.
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state`. CUDA states are restored for the devices present (none on CPU)."""
    missing = [k for k in ("torch", "python", "numpy") if k not in state]
    if missing:
        raise ValueError(f"RNG state lacks {missing}; expected the dict made by capture_rng_state")
    cpu = state["torch"]
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8:
        raise ValueError(f"RNG state 'torch' must be a uint8 tensor, got {type(cpu).__name__}")
    py, npy = state["python"], state["numpy"]
    try:
        random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"RNG state for random/numpy is malformed: {exc}") from exc
    torch.set_rng_state(cpu)
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
