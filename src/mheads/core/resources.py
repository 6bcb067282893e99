"""How much memory there is to use, for the checks that refuse a run before it allocates more than that."""

from __future__ import annotations

import os

__all__ = ["available_memory", "gib"]


def available_memory(device: str = "cpu") -> int:
    """Bytes a new allocation can use: ``MemAvailable`` of /proc/meminfo (falling back to the physical memory)
    on the CPU, the free memory of the current CUDA device on a GPU. The cgroup limit applies when lower."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit():
                avail = min(avail, int(text))
        except OSError:
            continue
    return avail


def gib(n: float) -> str:
    """``n`` bytes as GiB, for messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"
