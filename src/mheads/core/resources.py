"""How much memory there is to use, for the checks that refuse a run before it allocates more than that."""

from __future__ import annotations

import os

__all__ = ["available_memory", "gib"]


def available_memory(device="cpu") -> int:
    """Bytes a new allocation can use: ``MemAvailable`` of /proc/meminfo (falling back to the physical memory)
    on the CPU, the free memory of ``device`` on a GPU. Inside a cgroup with a memory limit, what the limit
    leaves after the cgroup's current use, when lower."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
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
    for limit, used in (("memory.max", "memory.current"),
                        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        values = [_read_int(f"/sys/fs/cgroup/{name}") for name in (limit, used)]
        if values[0] is not None:
            avail = min(avail, max(values[0] - (values[1] or 0), 0))
    return avail


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def gib(n: float) -> str:
    """``n`` bytes as GiB, for messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"
