"""Keep freed memory in the process (glibc ``mallopt``), so CPU training steps stop paying page faults.

PyTorch's CPU allocator is plain ``malloc``. By default glibc hands large freed blocks back to the kernel
(``mmap`` for big allocations, heap trimming for the rest), so every training step faults its activation
buffers back in, one 4 KiB page at a time, each page zeroed by the kernel. A plain loop over separate models
keeps a small, steady working set and glibc's dynamic thresholds settle so that it sees no faults; one
backward over M members (a TreeNet) holds M times the activations and measured 4,000 to 30,000 faults per
CIFAR10-Quick step at M=4, batch 100 (about 3 us each on the project's CPU machines: 5-25% of the step). With
the thresholds raised, freed memory stays in the heap and is reused: no faults once the heap has grown to the
step's peak. The price is that the process keeps its peak memory. Call it once, early, in a process that
trains on the CPU.

Blocks above 32 MiB (glibc's largest mmap threshold on 64-bit) are still mapped per allocation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses larger values on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process. Returns False (and changes nothing) where the
    C library is not glibc (macOS, Windows, musl), True when both settings were accepted. Safe to call
    repeatedly."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
