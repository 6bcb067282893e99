"""Where a run computes: the device a config names, and the CPU's denormal setting for the length of a run."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from mheads.config import ConfigError

__all__ = ["flush_denormal", "resolve_device", "resolve_sync"]


def resolve_device(name: str) -> torch.device:
    """``train.device``: ``auto`` is CUDA when one is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: got 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


@contextmanager
def flush_denormal(on: bool):
    """``train.flush_denormal`` for the length of a run (a process-wide CPU setting, off again afterwards)."""
    if not on or not torch.set_flush_denormal(True):  # False: this CPU cannot flush denormals
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def resolve_sync(sync: str, device: torch.device) -> str:
    """``train.sync``: ``auto`` is ``deferred`` on CUDA (a host read there waits for the device) and ``step``
    elsewhere (on a CPU reading a value costs nothing)."""
    if sync == "auto":
        return "deferred" if device.type == "cuda" else "step"
    return sync
