"""Timing, hardware description and output for the benchmarks.

Shared machines are noisy: every comparison runs its contenders side by side in interleaved rounds (the order
rotates each round, so no contender always follows the same neighbour) and reports medians; only ratios
measured in one run are meaningful.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from mheads.runs.folder import hardware as run_hardware


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def interleaved(
    contenders: dict[str, Callable[[], object]],
    *,
    rounds: int,
    steps: int,
    warmup: int,
    sync: Callable[[], None],
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per round (the mean of ``steps`` calls)."""
    if rounds < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"rounds/steps/warmup: got {rounds}/{steps}/{warmup}; expected >= 1 / >= 1 / >= 0")
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    sync()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = contenders[name]
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            out[name].append((time.perf_counter() - t0) / steps)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """Interquartile range (0 for fewer than 4 samples)."""
    if len(xs) < 4:
        return 0.0
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


def matmul_fn(device: torch.device, n: int) -> tuple[Callable[[], object], float]:
    """A large float32 ``torch.mm`` and its FLOP count: the machine's practical dense-math peak."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return (lambda: torch.mm(a, b)), 2.0 * n**3


_SIMD = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve")


def _cpu_details() -> dict[str, str]:
    """Family/model numbers (VMs often shorten the model name) and the SIMD extensions that bound the peak."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "flags", "Features") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "cpu_family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",
        "cpu_simd": " ".join(f for f in _SIMD if f in flags) or "unknown",
    }


def _git_rev() -> str:
    """The checkout's commit, with "+dirty" when tracked files differ from it (read-only git commands)."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff-index", "--quiet", "HEAD", "--"], cwd=here, timeout=10
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty == 1 else "")) if rev else "unknown"


def hardware(device: torch.device) -> dict[str, str]:
    """What produced the numbers: the run folders' hardware record (CPU model, cores, threads, torch, python)
    plus the CPU's family and SIMD, the usable cores, the device measured and the commit."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    info = {k: str(v) for k, v in run_hardware().items()}
    info.update(_cpu_details())
    info.update(
        cores_usable=str(usable),
        device=str(device),
        accelerator=torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        git=_git_rev(),
    )
    if device.type == "cuda":
        # cuDNN convolutions may use TF32 while the float32 torch.mm reference does not: fractions above 100%.
        info["cudnn_tf32"] = str(torch.backends.cudnn.allow_tf32)
        info["matmul_tf32"] = str(torch.backends.cuda.matmul.allow_tf32)
    return info


@dataclass
class Row:
    """One measured line of the table."""

    section: str
    name: str
    median_ms: float
    iqr_ms: float
    min_ms: float
    images_per_s: float | None
    ratio: float | None = None  # against ``ratio_to`` (higher is better)
    ratio_to: str = ""
    target: float | None = None  # the target for ``ratio``, if any
    gflop_per_s: float | None = None
    frac_matmul_peak: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def meets(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        return "yes" if self.ratio >= self.target else "NO"


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def format_table(rows: list[Row]) -> str:
    head = ["name", "ms/step", "IQR", "img/s", "ratio", "vs", "target", "met", "GFLOP/s", "of mm peak"]
    lines: list[list[str]] = []
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append([f"## {section}"] + [""] * (len(head) - 1))
        lines.append(
            [
                r.name,
                f"{r.median_ms:.1f}",
                f"{r.iqr_ms:.1f}",
                _fmt(r.images_per_s, ".0f"),
                _fmt(r.ratio, ".2f"),
                r.ratio_to,
                _fmt(r.target, ".2f"),
                r.meets,
                _fmt(r.gflop_per_s, ".1f"),
                _fmt(r.frac_matmul_peak, ".0%"),
            ]
        )
    body = [x for x in lines if not x[0].startswith("## ")] + [head]
    widths = [max(len(x[i]) for x in body) for i in range(len(head))]

    def fmt_line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt_line(head), "  ".join("-" * w for w in widths)]
    for cells in lines:
        out.append(cells[0] if cells[0].startswith("## ") else fmt_line(cells))
    return "\n".join(out)


def write_csv(path: Path, rows: list[Row], hw: dict[str, str]) -> None:
    """One line per measurement, each carrying the hardware and versions (a CSV that explains itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "section",
        "name",
        "median_ms",
        "iqr_ms",
        "min_ms",
        "samples",
        "images_per_s",
        "ratio",
        "ratio_to",
        "target",
        "meets",
        "gflop_per_s",
        "frac_matmul_peak",
        "note",
    ]
    extra_keys = sorted({k for r in rows for k in r.extra} - set(fields))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields + extra_keys + list(hw))
        for r in rows:
            d = asdict(r)
            d["meets"] = r.meets
            d["samples"] = r.extra.get("samples", "")
            w.writerow(
                [d[k] if d[k] is not None else "" for k in fields]
                + [r.extra.get(k, "") for k in extra_keys]
                + list(hw.values())
            )
