"""Ensemble throughput of mheads against the plain PyTorch loop, side by side in one run.

    python benchmarks/throughput.py --out DIR [--quick] [--device cuda [--bf16] [--compile]]

Sections (numbered as in issue 7), all on CIFAR10-Quick with M=4 unless said otherwise:

1. training-step throughput at batch 100: mheads (independent members, loop / fused / torch.func vmap; TreeNet
   sharing conv1) against the plain loop of 4 separate nn.Modules with 4 SGD optimizers;
2. end-to-end ``fit`` (batching, augmentation, loss, metrics, logging, checkpoints) against the bare step
   loop;
3. achieved GFLOP/s (exact conv/linear FLOPs, training = 3 x forward) as a fraction of a large float32
   torch.mm timed in the same rounds;
4. inference at batch 1000 against M times one model;
5. step time against M (1..16) and against the split point (with the trunk's share of the FLOPs);
6. ResNet-20 (a base that is not an nn.Sequential: residual additions in forward), M=4, batch 128, SGD lr 0.1
   momentum 0.9: the plain loop of 4 ResNet-20s with 4 SGD optimizers against mheads independent members
   (each runs the ResNet's own forward) and TreeNets cut with torch.fx after the stem ("bn1") and after the
   first stage ("layer1"), each with its FLOP ratio to the plain loop (the speed-up its FLOPs predict); and
   the cost of the fx cut itself: one ResNet-20's own forward+backward against the same model cut after
   layer1 with segments chained (expected ratio about 1.0).

Contenders run in interleaved rounds and report medians; the table (printed and DIR/throughput.txt) gives
ratios (the numbers to quote) and the CSV (DIR/throughput.csv) repeats the hardware on every line. Targets
that are missed get a torch.profiler table of their top operators (DIR/profile_*.txt).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import (  # noqa: E402
    Row,
    format_table,
    hardware,
    interleaved,
    matmul_fn,
    median,
    spread,
    synchronizer,
    write_csv,
)
from mheads.train.allocator import retain_freed_memory  # noqa: E402
from mheads.tree.flops import count_macs  # noqa: E402
from mheads.tree.fused import resolve_exec_mode  # noqa: E402
from workloads import (  # noqa: E402
    RESNET_SGD_KW,
    Setup,
    base_model,
    compile_gradient_error,
    fx_chain,
    make_batches,
    make_tree,
    mheads_inference,
    mheads_member_step,
    mheads_train_step,
    named_loss,
    plain_inference,
    plain_models,
    plain_train_step,
    vmap_forward,
)

M = 4
TRAIN_BATCH = 100
INFER_BATCH = 1000
IMAGE = (3, 32, 32)
RESNET_BATCH = 128
RESNET_SPLITS = ("bn1", "layer1")  # after the stem, after the first stage


@dataclass(frozen=True)
class Plan:
    """How long each section runs; --quick shrinks everything for development."""

    train_rounds: int
    train_steps: int
    infer_rounds: int
    sweep_rounds: int
    members: tuple[int, ...]
    splits: tuple
    fit_iters: tuple[int, int, int]  # (Na, Nb, cadence E)
    fit_rounds: int
    warmup: int


FULL = Plan(
    train_rounds=11,
    train_steps=2,
    infer_rounds=7,
    sweep_rounds=5,
    members=(1, 2, 4, 8, 16),
    splits=(None, "conv1", "conv2", "conv3", "ip1", "ip2"),
    fit_iters=(10, 50, 10),
    fit_rounds=3,
    warmup=2,
)
QUICK = Plan(
    train_rounds=3,
    train_steps=1,
    infer_rounds=2,
    sweep_rounds=2,
    members=(1, 2, 4),
    splits=(None, "conv1", "ip2"),
    fit_iters=(4, 12, 4),
    fit_rounds=1,
    warmup=1,
)


class Bench:
    """Holds the setup, the rows so far and the contenders (kept for profiling missed targets)."""

    def __init__(self, setup: Setup, plan: Plan, out: Path):
        self.setup, self.plan, self.out = setup, plan, out
        self.sync = synchronizer(setup.device)
        self.rows: list[Row] = []
        self.fns: dict[str, object] = {}
        self.auto = resolve_exec_mode("auto", setup.device)
        self.peak_flops: float | None = None
        self.scratch: list[Path] = []  # removed at the end of the run

    def run(self, section: str, contenders: dict, rounds: int, steps: int) -> dict[str, list[float]]:
        self.fns.update({(section, k): v for k, v in contenders.items()})
        return interleaved(contenders, rounds=rounds, steps=steps, warmup=self.plan.warmup, sync=self.sync)

    def add(
        self,
        section: str,
        name: str,
        secs: list[float],
        images: int,
        *,
        base: list[float] | None = None,
        base_name: str = "",
        target: float | None = None,
        flops: float | None = None,
        note: str = "",
        **extra,
    ) -> Row:
        med = median(secs)
        gflops = flops / med / 1e9 if flops else None
        frac = flops / med / self.peak_flops if flops and self.peak_flops else None
        row = Row(
            section,
            name,
            med * 1e3,
            spread(secs) * 1e3,
            min(secs) * 1e3,
            images / med if images else None,
            ratio=median(base) / med if base is not None else None,
            ratio_to=base_name,
            target=target,
            gflop_per_s=gflops,
            frac_matmul_peak=frac,
            note=note,
            extra={"samples": len(secs), **extra},
        )
        self.rows.append(row)
        return row

    def tree_label(self, split, exec_mode: str) -> str:
        what = "independent" if split is None else f"TreeNet split {split}"
        auto = ", auto" if exec_mode == self.auto else ""
        return f"mheads {what} [{exec_mode}{auto}]"


# --- sections -----------------------------------------------------------------------------------------------
def training(b: Bench) -> None:
    """Sections 1 and 3."""
    s, p = b.setup, b.plan
    sec = f"1+3. training step, M={M}, batch {TRAIN_BATCH}"
    batches = make_batches(s, TRAIN_BATCH)
    nets = {
        (split, mode): make_tree(s, M, split, mode) for split in (None, "conv1") for mode in ("loop", "fused")
    }
    plain = plain_models(s, nets[(None, "loop")])
    mm, mm_flops = matmul_fn(s.device, 4096 if s.device.type == "cuda" else 2048)
    c = {
        "plain loop: 4 nn.Modules, 4 SGD": plain_train_step(s, plain, batches),
        "one model (1 nn.Module, 1 SGD)": plain_train_step(s, plain[:1], batches),
    }
    for (split, mode), net in nets.items():
        c[b.tree_label(split, mode)] = mheads_train_step(s, net, batches)
    if not s.compile:  # torch.func's vmap and torch.compile do not mix here
        for split in (None, "conv1"):
            net = make_tree(s, M, split)
            c[f"mheads {'independent' if split is None else 'TreeNet split conv1'} [vmap, torch.func]"] = (
                mheads_train_step(s, net, batches, forward=vmap_forward(net))
            )
    c["float32 torch.mm (peak reference)"] = mm
    t = b.run(sec, c, p.train_rounds, p.train_steps)
    b.peak_flops = mm_flops / median(t["float32 torch.mm (peak reference)"])
    one = count_macs(plain[0], IMAGE, device=s.device).train_flops(TRAIN_BATCH)
    base = t["plain loop: 4 nn.Modules, 4 SGD"]
    bn = "plain loop"
    b.add(sec, "plain loop: 4 nn.Modules, 4 SGD", base, TRAIN_BATCH, base=base, base_name=bn, flops=M * one)
    b.add(
        sec,
        "one model (1 nn.Module, 1 SGD)",
        t["one model (1 nn.Module, 1 SGD)"],
        TRAIN_BATCH,
        flops=one,
        note="images/s of a single model, for scale",
    )
    for name, secs in t.items():
        if not name.startswith("mheads"):
            continue
        split = None if "independent" in name else "conv1"
        target = None
        if f"{b.auto}, auto]" in name:
            target = 1.0 if split is None else 1.25
        flops = count_macs(nets[(split, "loop")], IMAGE, device=s.device).train_flops(TRAIN_BATCH)
        b.add(sec, name, secs, TRAIN_BATCH, base=base, base_name=bn, target=target, flops=flops)
    b.add(
        sec,
        "float32 torch.mm (peak reference)",
        t["float32 torch.mm (peak reference)"],
        0,
        flops=mm_flops,
        note=f"{mm_flops / 1e9:.1f} GFLOP per call",
    )
    if s.compile:
        err = compile_gradient_error(s, nets[(None, "loop")], batches[0])
        b.rows[-1].note += f"; torch.compile relative gradient error vs eager: {err:.1e}"
        if err > 1e-3:
            print(
                f"WARNING: torch.compile gives wrong training gradients here (relative error {err:.1e}); "
                "its training numbers are not valid",
                file=sys.stderr,
            )


def inference(b: Bench) -> None:
    """Section 4."""
    s, p = b.setup, b.plan
    sec = f"4. inference, M={M}, batch {INFER_BATCH}"
    x = make_batches(s, INFER_BATCH, n=1)[0][0]
    nets = {
        (split, mode): make_tree(s, M, split, mode) for split in (None, "conv1") for mode in ("loop", "fused")
    }
    plain = plain_models(s, nets[(None, "loop")])
    c = {
        "M x one model (plain loop)": plain_inference(s, plain, x),
        "one model": plain_inference(s, plain[:1], x),
    }
    for (split, mode), net in nets.items():
        c[b.tree_label(split, mode)] = mheads_inference(s, net, x)
    t = b.run(sec, c, p.infer_rounds, 1)
    one = count_macs(plain[0], IMAGE, device=s.device).forward_flops(INFER_BATCH)
    base = t["M x one model (plain loop)"]
    b.add(sec, "M x one model (plain loop)", base, INFER_BATCH, base=base, base_name="M x one", flops=M * one)
    b.add(sec, "one model", t["one model"], INFER_BATCH, flops=one)
    for (split, mode), net in nets.items():
        name = b.tree_label(split, mode)
        target = 0.95 if split is None and mode == b.auto else None
        flops = count_macs(net, IMAGE, device=s.device).forward_flops(INFER_BATCH)
        b.add(sec, name, t[name], INFER_BATCH, base=base, base_name="M x one", target=target, flops=flops)


def scaling(b: Bench) -> None:
    """Section 5: step time against M, and against the split point."""
    s, p = b.setup, b.plan
    batches = make_batches(s, TRAIN_BATCH)
    sec = f"5a. training step vs M (independent members), batch {TRAIN_BATCH}"
    c, macs = {}, {}
    for mode in ("loop", "fused"):
        for m in p.members:
            net = make_tree(s, m, None, mode)
            c[f"M={m} [{mode}]"] = mheads_train_step(s, net, batches)
            macs[f"M={m} [{mode}]"] = count_macs(net, IMAGE, device=s.device).train_flops(TRAIN_BATCH)
    t = b.run(sec, c, p.sweep_rounds, 1)
    for mode in ("loop", "fused"):
        base = t[f"M=1 [{mode}]"]
        for m in p.members:
            name = f"M={m} [{mode}]"
            # ratio = M x (step time of one member) / (step time of M): 1.0 is linear growth, > 1 economy of
            # scale.
            b.add(
                sec,
                name,
                t[name],
                TRAIN_BATCH,
                base=[x * m for x in base],
                base_name="M x (M=1)",
                flops=macs[name],
            )
    sec = f"5b. training step vs split point, M={M}, batch {TRAIN_BATCH} [{b.auto}]"
    c, info = {}, {}
    for split in p.splits:
        net = make_tree(s, M, split, b.auto)
        name = f"split {split}"
        count = count_macs(net, IMAGE, device=s.device)
        c[name] = mheads_train_step(s, net, batches)
        info[name] = count
    t = b.run(sec, c, p.sweep_rounds, 2 if p is FULL else 1)
    base = t["split None"]
    full = info["split None"].total_macs
    for name, count in info.items():
        share = count.share("root.layers.")
        b.add(
            sec,
            name,
            t[name],
            TRAIN_BATCH,
            base=base,
            base_name="split None",
            flops=count.train_flops(TRAIN_BATCH),
            note=f"trunk {share:.0%} of the tree's FLOPs; FLOP ratio vs None {full / count.total_macs:.2f}x",
            trunk_flop_share=round(share, 4),
            flop_ratio_vs_independent=round(full / count.total_macs, 4),
        )


def fit_section(b: Bench) -> None:
    """Section 2: fit against the bare step loop on in-memory tensors."""
    from fit_bench import fit_config, marginal_fit_seconds, time_fit, write_synthetic_cifar10

    s, p = b.setup, b.plan
    sec = f"2. end-to-end fit vs bare step loop, M={M}, batch {TRAIN_BATCH}"
    n_a, n_b, every = p.fit_iters
    source = write_synthetic_cifar10(b.out / "synthetic-cifar10", n_train=2000, n_test=10 * every)
    b.scratch += [source, source.with_name(source.name + ".mheads-cache")]  # the data and the loader's cache
    net = make_tree(s, M, None, b.auto)
    bare = mheads_train_step(s, net, make_batches(s, TRAIN_BATCH))
    fit_s, bare_s = [], []
    for _ in range(p.warmup):
        bare()
    for r in range(p.fit_rounds):
        fit_s.append(
            marginal_fit_seconds(
                source,
                b.out,
                members=M,
                split=None,
                n_a=n_a,
                n_b=n_b,
                every=every,
                batch=TRAIN_BATCH,
                device=s.device.type,
                channels_last=s.channels_last,
                amp=s.bf16,
            )
        )
        b.sync()
        t0 = time.perf_counter()
        for _ in range(n_b - n_a):
            bare()
        b.sync()
        bare_s.append((time.perf_counter() - t0) / (n_b - n_a))
    kw = dict(
        members=M,
        split=None,
        every=every,
        batch=TRAIN_BATCH,
        device=s.device.type,
        channels_last=s.channels_last,
        threads=torch.get_num_threads(),
        amp=s.bf16,
    )
    b.fns[(sec, "bare step loop (in-memory tensors)")] = bare
    b.fns[(sec, "fit (marginal s/iteration)")] = lambda: time_fit(
        fit_config(source, iterations=n_b, **kw), b.out / "fit_profile"
    )
    b.add(sec, "bare step loop (in-memory tensors)", bare_s, TRAIN_BATCH, base=bare_s, base_name="bare")
    b.add(
        sec,
        "fit (marginal s/iteration)",
        fit_s,
        TRAIN_BATCH,
        base=bare_s,
        base_name="bare",
        target=0.9,
        note=f"T({n_b} it) - T({n_a} it); eval of {10 * every} images + checkpoint every {every} it; "
        "crop+flip augmentation",
    )


def resnet20(b: Bench, batch: int = RESNET_BATCH) -> None:
    """Section 6: ResNet-20 ensembles (fx-cut TreeNets) against the plain loop, and the fx cut's own cost."""
    s, p = replace(b.setup, model="resnet20"), b.plan
    sec = f"6a. ResNet-20 training step, M={M}, batch {batch}, SGD lr 0.1"
    batches = make_batches(s, batch)
    nets = {split: make_tree(s, M, split) for split in (None, *RESNET_SPLITS)}
    plain = plain_models(s, nets[None])
    base_name, bn = f"plain loop: {M} ResNet-20s, {M} SGD", "plain loop"
    c = {base_name: plain_train_step(s, plain, batches, sgd=RESNET_SGD_KW)}
    loss = named_loss("independent_ce")
    for split, net in nets.items():
        c[b.tree_label(split, "loop")] = mheads_train_step(s, net, batches, sgd=RESNET_SGD_KW, loss=loss)
    one_by_one = "mheads independent [members one by one, what fit does]"
    c[one_by_one] = mheads_member_step(s, nets[None], batches, sgd=RESNET_SGD_KW)
    t = b.run(sec, c, p.train_rounds, p.train_steps)
    one = count_macs(plain[0], IMAGE, device=s.device)
    base = t[base_name]
    b.add(sec, base_name, base, batch, base=base, base_name=bn, flops=M * one.train_flops(batch))
    b.add(
        sec,
        one_by_one,
        t[one_by_one],
        batch,
        base=base,
        base_name=bn,
        flops=M * one.train_flops(batch),
        note="independent cross-entropy: each member's forward and backward in turn (fit's path)",
    )
    for split, net in nets.items():
        name = b.tree_label(split, "loop")
        count = count_macs(net, IMAGE, device=s.device)
        flop_ratio = M * one.total_macs / count.total_macs
        b.add(
            sec,
            name,
            t[name],
            batch,
            base=base,
            base_name=bn,
            flops=count.train_flops(batch),
            flop_ratio_vs_plain=round(flop_ratio, 4),
            trunk_flop_share=round(count.share("root.layers."), 4),
            note=f"FLOP ratio vs plain loop {flop_ratio:.2f}x (the speed-up its FLOPs predict)",
        )

    sec = f"6b. fx-cut cost: one ResNet-20 forward+backward, batch {batch}"
    model = base_model(s)
    chain = fx_chain(model, ["layer1"])  # shares model's parameters
    own, cut = "ResNet-20, its own forward", "same model cut after layer1 (torch.fx), segments chained"
    t = b.run(
        sec,
        {
            own: plain_train_step(s, [model], batches, sgd=None),
            cut: plain_train_step(s, [chain], batches, sgd=None),
        },
        p.train_rounds,
        p.train_steps,
    )
    flops = {
        name: count_macs(m, IMAGE, device=s.device).train_flops(batch)
        for name, m in ((own, model), (cut, chain))
    }
    b.add(sec, own, t[own], batch, base=t[own], base_name="own forward", flops=flops[own])
    b.add(
        sec,
        cut,
        t[cut],
        batch,
        base=t[own],
        base_name="own forward",
        flops=flops[cut],
        note="no optimizer step; same FLOPs as the own forward"
        + ("" if flops[cut] == flops[own] else " (NOT: the FLOP counts differ)")
        + ", so the ratio should be about 1.0",
    )


SECTIONS = {
    "training": training,
    "inference": inference,
    "scaling": scaling,
    "fit": fit_section,
    "resnet20": resnet20,
}


# --- profiling of missed targets ----------------------------------------------------------------------------
def profile_missed(b: Bench) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    reports = []
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if b.setup.device.type == "cuda" else [])
    key = "self_cuda_time_total" if b.setup.device.type == "cuda" else "self_cpu_time_total"
    for row in b.rows:
        if row.meets != "NO":
            continue
        fn = b.fns.get((row.section, row.name))
        if fn is None:
            continue
        calls = 1 if row.name.startswith("fit") else 3
        with profile(activities=acts) as prof:
            for _ in range(calls):
                fn()
            b.sync()
        table = prof.key_averages().table(sort_by=key, row_limit=12)
        slug = re.sub(r"[^a-z0-9]+", "_", row.name.lower()).strip("_")[:60]
        (b.out / f"profile_{slug}.txt").write_text(f"{row.section} / {row.name}\n{table}\n")
        reports.append(
            f"Missed target: {row.name} ({row.ratio:.2f}x vs {row.ratio_to}, "
            f"target {row.target:.2f}x). Top operators over {calls} call(s):\n{table}"
        )
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder for throughput.csv and profiles")
    ap.add_argument("--quick", action="store_true", help="few rounds and small sweeps (development)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument(
        "--bf16", action="store_true", help="bf16 autocast on both sides (GPU; very slow on most CPUs)"
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile every model on both sides")
    ap.add_argument(
        "--no-channels-last", action="store_true", help="NCHW instead of channels_last on both sides"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    ap.add_argument("--no-profile", action="store_true", help="skip profiling missed targets")
    ap.add_argument(
        "--no-retain-memory",
        action="store_true",
        help="keep glibc's default malloc thresholds (see mheads.train.allocator); by default "
        "freed memory is kept in the process for both sides",
    )
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device: got 'cuda' but torch sees no CUDA device; use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads: got {args.threads}; expected an integer >= 1")
        torch.set_num_threads(args.threads)
    chosen = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in SECTIONS]
    if unknown or not chosen:
        ap.error(
            f"--sections: got {args.sections!r}; expected a comma-separated subset of {', '.join(SECTIONS)}"
        )
    retained = False if args.no_retain_memory else retain_freed_memory()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides: let cuDNN pick its fastest convolution per shape
    torch.manual_seed(0)
    setup = Setup(
        device=torch.device(args.device),
        channels_last=not args.no_channels_last,
        bf16=args.bf16,
        compile=args.compile,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(setup, QUICK if args.quick else FULL, args.out)
    hw = hardware(setup.device)
    hw.update(
        channels_last=str(setup.channels_last),
        bf16=str(setup.bf16),
        compile=str(setup.compile),
        quick=str(args.quick),
        auto_exec=bench.auto,
        malloc_retain=str(retained),
    )
    t0 = time.perf_counter()
    for name in SECTIONS:  # fixed order: section 1 measures the matmul peak the others use
        if name in chosen:
            print(f"[{time.perf_counter() - t0:6.1f}s] running {name} ...", file=sys.stderr, flush=True)
            SECTIONS[name](bench)
    csv_path = args.out / "throughput.csv"
    write_csv(csv_path, bench.rows, hw)
    report = ["hardware: " + ", ".join(f"{k}={v}" for k, v in hw.items())]
    if bench.peak_flops:
        report.append(f"float32 torch.mm peak measured in this run: {bench.peak_flops / 1e9:.1f} GFLOP/s")
    report += [
        "img/s: images per second through the whole ensemble (every image seen by all members); ratio: the",
        "baseline's time over this row's (higher is better); GFLOP/s from exact conv/linear FLOPs",
        format_table(bench.rows),
    ]
    report += [f"  note [{row.name}]: {row.note}" for row in bench.rows if row.note]
    print("\n".join(report))
    (args.out / "throughput.txt").write_text("\n".join(report) + "\n")
    if not args.no_profile:
        for report in profile_missed(bench):
            print("\n" + report)
    for path in bench.scratch:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    print(f"\nwrote {csv_path} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
