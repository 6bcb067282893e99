"""How much memory there is to use, for the checks that refuse a run before it allocates more than that.

On the CPU the answer is the smallest of: what the machine has free (``MemAvailable``); what the memory limit
of each cgroup from the process's own (``/proc/self/cgroup``) up to the root leaves after that cgroup's
current use (batch schedulers nest a job's limit several levels below the root: Slurm's
``/system.slice/slurmstepd.scope/job_N/step_0``); and what the address-space limit (``RLIMIT_AS``, ``ulimit
-v``) leaves after the address space the process already maps.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["address_space_left", "available_memory", "cgroup_memory_left", "gib"]

_UNLIMITED = 1 << 62


def available_memory(device="cpu") -> int:
    """Bytes a new allocation can use on ``device``: the free memory of a GPU; on the CPU the smallest of
    ``MemAvailable`` (falling back to the physical memory), the cgroup limits and ``RLIMIT_AS`` (see the
    module docstring)."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    avail = _meminfo_available()
    for bound in (cgroup_memory_left(), address_space_left()):
        if bound is not None:
            avail = min(avail, bound)
    return avail


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _UNLIMITED


def _own_cgroups(cgroup_file: Path) -> list[tuple[str, str]]:
    """``(hierarchy, path)`` of the process's memory cgroups: ``("", path)`` for cgroup v2 (``0::/path``),
    ``("memory", path)`` for the v1 memory controller (``N:memory,...:/path``)."""
    try:
        text = cgroup_file.read_text(errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            found.append(("", path))
        elif "memory" in controllers.split(","):
            found.append(("memory", path))
    return found


def cgroup_memory_left(
    cgroup_file: str | os.PathLike = "/proc/self/cgroup", mount: str | os.PathLike = "/sys/fs/cgroup"
) -> int | None:
    """The least that any memory cgroup from the process's own up to the root leaves (its limit less its
    current use), or None where no level sets a limit. ``cgroup_file`` and ``mount`` are the process's cgroup
    list and the cgroup file system's mount point (v2 unified there, v1's memory controller under
    ``memory/``)."""
    mount = Path(mount)
    own = _own_cgroups(Path(cgroup_file)) or [("", "/"), ("memory", "/")]  # no list: the root of each
    least = None
    for hierarchy, path in own:
        base = mount / hierarchy if hierarchy else mount
        names = (
            ("memory.max", "memory.current")
            if not hierarchy
            else ("memory.limit_in_bytes", "memory.usage_in_bytes")
        )
        parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
        # the process's own cgroup first, then each parent; a level not visible here (a container that does
        # not mount its own cgroup namespace) is passed over
        for depth in range(len(parts), -1, -1):
            folder = base.joinpath(*parts[:depth])
            limit = _read_int(folder / names[0])
            if limit is None:
                continue
            left = max(limit - (_read_int(folder / names[1]) or 0), 0)
            least = left if least is None else min(least, left)
    return least


def address_space_left(status_file: str | os.PathLike = "/proc/self/status") -> int | None:
    """What ``RLIMIT_AS`` leaves after the address space already mapped (``VmSize``), or None without a
    limit."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open(status_file) as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(soft - used, 0)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) and anything unreadable: None


def gib(n: float) -> str:
    """``n`` bytes as GiB, for messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"
