"""The training engine: ``train_step``, ``evaluate`` and ``fit``. No argument parsing, no printing beyond the
progress bar and the logger; one loop serves single-process and distributed runs (the distributed placement is a
model like any other, plus a ``comm`` object for the few scalars ranks must agree on).

Exact resume: every random draw is derived from the run seed and the position in training (data order, bagging,
augmentation, MCL tie-breaks, dropout), never from how much randomness was consumed before, so a run killed at any
moment and resumed from its last checkpoint ends bit-identical to an uninterrupted run on the same machine.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from mheads.atomic import atomic_write_text
from mheads.build import build_tree, model_meta, tree_from_meta, warm_start
from mheads.compiled import compile_checked
from mheads.checkpoint import check_compatible, latest_checkpoint, load_checkpoint, save_checkpoint
from mheads.config import Config, ConfigError
from mheads.data_prep import Prepared, prepare_data
from mheads.faults import NumericalFault, all_finite, bad_members, member_param_map
from mheads.losses import compute_loss
from mheads.streaming import EnsembleMetrics
from mheads.run_dir import (append_jsonl, prepare_out_dir, read_jsonl, save_weights, truncate_jsonl,
                            write_run_info)
from mheads.schedules import Schedule
from mheads.seeding import derive_seed, derived_generator

log = logging.getLogger("mheads")

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: a checkpoint was written on SIGTERM; rerun with --resume
MCL_STREAM, AUG_STREAM, STEP_STREAM = "mcl", "augment", "step"


class Preempted(Exception):
    """SIGTERM arrived; the run saved a checkpoint at ``step`` and stopped."""

    def __init__(self, step: int, out: Path, saved: bool = True):
        self.step, self.out = step, out
        what = ("checkpoint written; continue with `mheads train --resume " + str(out) + "`" if saved else
                "distributed runs write no periodic checkpoints, so it cannot be resumed")
        super().__init__(f"preempted (SIGTERM) at iteration {step}; {what}")


class LocalComm:
    """The single-process stand-in for :mod:`mheads.dist`'s communicator."""

    is_root, rank, world_size = True, 0, 1

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self) -> None:
        pass


class _NoParameters:
    """The optimizer of a distributed rank that holds only the loss: nothing to update."""

    param_groups: list = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: got 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


def train_step(model, opt, data: Prepared, cfg: Config, it: int, comm, params, owners) -> tuple[float, torch.Tensor]:
    """One update (``cfg.train.accumulate`` batches). Returns (loss, per-member loss) as seen by the root; raises
    :class:`NumericalFault` (after zeroing the gradients, so no update happens) on a non-finite loss/gradient."""
    t, L = cfg.train, cfg.loss
    torch.manual_seed(derive_seed(t.seed, STEP_STREAM, it))  # dropout and anything else drawing globally
    opt.zero_grad(set_to_none=True)
    loss_name = L.name if it >= L.pretrain_iterations else "independent_ce"
    total = torch.zeros((), device=data.device)
    per_member = None
    for a in range(t.accumulate):
        b = it * t.accumulate + a
        x, y, w = data.train_batch(b, derived_generator(t.seed, AUG_STREAM, b, device=data.device))
        with torch.autocast(data.device.type, dtype=torch.bfloat16) if t.amp else nullcontext():
            logits = model(x)
        if comm.is_root:
            res = compute_loss(loss_name, logits.float(), y, k=L.k, mix=L.mix, beta=L.beta, weights=w,
                               generator=derived_generator(t.seed, MCL_STREAM, b, device=logits.device))
            loss = res.loss / t.accumulate
            per_member = res.per_member if per_member is None else per_member + res.per_member
            total = total + loss.detach()
        else:
            loss = logits.sum()  # zero-element: its backward pulls this rank's gradient from the root
        loss.backward()
    if comm.any(not all_finite(per_member, params)):
        members, where = bad_members(per_member, params, owners, cfg.model.members)
        opt.zero_grad(set_to_none=True)
        raise NumericalFault(it, members, where)
    opt.step()
    return float(comm.broadcast_scalars(total.reshape(1).float().cpu())[0]), per_member


@torch.no_grad()
def evaluate(model, data: Prepared, cfg: Config, comm, split: str = "test") -> dict | None:
    """All ensemble metrics on a split; the dict on the root, None elsewhere."""
    was_training = model.training
    model.eval()
    acc = EnsembleMetrics(cfg.model.members, data.num_classes,
                          generator=derived_generator(cfg.train.seed, "oracle-ties"))
    for x, y in data.eval_batches(split, cfg.train.eval_batch_size):
        logits = model(x)
        if comm.is_root:
            acc.update(logits.float().cpu(), y.cpu())
    model.train(was_training)
    return acc.compute() if comm.is_root else None


@contextmanager
def _sigterm_flag():
    state = {"hit": False}

    def handler(signum, frame):
        state["hit"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no preemption handling
        yield state
        return
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def _initial_weights(tree, cfg: Config) -> None:
    src = cfg.train.init_from
    if src is None:
        return
    try:
        ck = load_checkpoint(src)
    except Exception as err:  # CheckpointError names the path
        raise ConfigError(f"train.init_from: {err}") from None
    saved = tree_from_meta(ck.meta, seed=0)
    saved.load_state_dict(ck.weights)
    warm_start(tree, saved, cfg.train.init_from_member)


def _resume_point(out: Path):
    """The newest usable checkpoint of ``out``, or None when the run never committed one (killed before its
    first save: it starts over). A run whose committed checkpoints are all damaged is refused, naming what is
    wrong with each, rather than silently restarted from scratch."""
    path = latest_checkpoint(out)
    if path is not None:
        return load_checkpoint(path)
    if any((p / "COMMITTED").is_file() for p in (out / "checkpoints").glob("step-*")):
        load_checkpoint(out)  # raises CheckpointError: "no committed checkpoint in ... (skipped ...)"
    return None


def fit(cfg: Config, out: str | Path, *, resume: bool = False, overwrite: bool = False, comm=None, wrap=None,
        progress: bool | None = None) -> dict | None:
    """Train the ensemble ``cfg`` describes and write the run folder ``out``. Returns the final metrics (root).

    SIGTERM (preemption) at any point before the last iteration ends the run after the current iteration with a
    checkpoint and :class:`Preempted`; one arriving during the final evaluation lets the run finish."""
    with _sigterm_flag() as sigterm, _flush_denormal(cfg.train.flush_denormal):
        return _fit(cfg, Path(out), resume, overwrite, comm, wrap, progress, sigterm)


@contextmanager
def _flush_denormal(on: bool):
    """``train.flush_denormal`` for the length of a run (a process-wide CPU setting, off again afterwards)."""
    if not on or not torch.set_flush_denormal(True):  # False: this CPU cannot flush denormals
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _fit(cfg: Config, out: Path, resume: bool, overwrite: bool, comm, wrap, progress, sigterm: dict):
    wall_start = time.perf_counter()
    comm = comm or LocalComm()
    out = Path(out)
    if comm.is_root:
        prepare_out_dir(out, resume=resume, overwrite=overwrite)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    data = prepare_data(cfg, device)
    tree = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
    meta = model_meta(cfg, data.num_classes, data.in_channels, data.image_size)
    start, sched_state, opt_state, skipped, skipped_total = 0, None, None, 0, 0
    run_loss, run_n = 0.0, 0
    before_wall, before_train = 0.0, 0.0  # time spent by earlier processes of this run, up to their checkpoint
    ck = _resume_point(out) if resume else None
    if ck is not None:
        check_compatible(ck.meta, meta, where=ck.path)
        tree.load_state_dict(ck.weights)
        start, sched_state, opt_state = int(ck.state["step"]), ck.state["schedule"], ck.state["optimizer"]
        skipped, skipped_total = int(ck.state["skipped"]), int(ck.state["skipped_total"])
        # The running train loss since the last evaluation, so that eval.jsonl matches an uninterrupted run.
        run_loss, run_n = float(ck.state.get("run_loss", 0.0)), int(ck.state.get("run_n", 0))
        before_wall, before_train = float(ck.state.get("wall_time_s", 0.0)), float(ck.state.get("train_time_s", 0.0))
        log.info("resuming from %s (iteration %d)", ck.path, start)
    else:
        _initial_weights(tree, cfg)
    owners = member_param_map(tree)
    model = wrap(tree) if wrap is not None else tree
    memfmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memfmt)
    if t.compile:
        x0, y0, _ = data.train_batch(0, derived_generator(t.seed, "compile-check"))
        model = compile_checked(model, x0, y0)
    params = [p for p in model.parameters()]
    lr_scale = cfg.model.members if cfg.optim.lr_times_members else 1
    o = cfg.optim
    opt = (torch.optim.SGD(params, lr=o.lr * lr_scale, momentum=o.momentum, weight_decay=o.weight_decay)
           if params else _NoParameters())
    schedule = Schedule(kind=o.schedule, base_lr=o.lr * lr_scale, gamma=o.gamma, milestones=list(o.milestones),
                        every=o.every, window=o.window, threshold=o.threshold)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
        schedule.load_state_dict(sched_state)
    if comm.is_root:
        if resume:
            for name in ("eval.jsonl", "train.jsonl"):
                truncate_jsonl(out / name, start)
        if ck is None:  # also a resumed run killed before its first checkpoint: it starts over
            write_run_info(out, cfg.to_yaml(), {"meta": meta, "param_counts": tree.param_counts(),
                                                 "data": data.describe()})

    # A step is saved once: the preemption path and the end of a resumed run may ask again for a step already on disk
    # (its state would differ only in the elapsed times, and committed checkpoints are never overwritten).
    saved_steps = {start} if ck is not None else set()

    def checkpoint(step: int) -> None:
        if comm.is_root and wrap is None and step not in saved_steps:
            saved_steps.add(step)
            state = {"step": step, "optimizer": opt.state_dict(), "schedule": schedule.state_dict(),
                     "skipped": skipped, "skipped_total": skipped_total, "run_loss": run_loss, "run_n": run_n,
                     "wall_time_s": before_wall + time.perf_counter() - wall_start,
                     "train_time_s": before_train + train_time}
            save_checkpoint(out, step, {k: v.detach().cpu() for k, v in tree.state_dict().items()}, state, meta,
                            keep=t.keep_checkpoints, pinned=t.keep_steps)

    model.train()
    images = t.batch_size * t.accumulate
    show = (comm.is_root and sys.stderr.isatty()) if progress is None else (progress and comm.is_root)
    bar = tqdm(total=t.iterations, initial=start, disable=not show,
               unit="it", dynamic_ncols=True, leave=False)
    train_time, steps_timed = 0.0, 0
    metrics, last_eval = None, -1
    for it in range(start, t.iterations):
        lr = schedule.lr_at(it)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        try:
            loss, per_member = train_step(model, opt, data, cfg, it, comm, params, owners)
        except NumericalFault as fault:
            if t.nan_policy == "stop":
                raise
            skipped, skipped_total = skipped + 1, skipped_total + 1
            log.warning("%s (skipped %d in a row)", fault, skipped)
            if skipped >= t.max_skipped:
                raise NumericalFault(fault.step, fault.members,
                                     f"{fault.where} ({skipped} steps in a row, train.max_skipped)") from None
            continue
        skipped = 0
        dt = time.perf_counter() - t0
        train_time += dt
        steps_timed += 1
        schedule.observe(loss)
        run_loss += loss
        run_n += 1
        step = it + 1
        if comm.is_root:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2g}", img_s=f"{images / max(dt, 1e-9):.0f}")
        if t.eval_every and (step % t.eval_every == 0 or step == t.iterations):
            metrics = evaluate(model, data, cfg, comm)
            if comm.is_root:
                rec = {"step": step, "lr": lr, "train_loss": run_loss / max(run_n, 1),
                       "skipped_total": skipped_total, **metrics}
                append_jsonl(out / "eval.jsonl", rec)
                msg = (f"[{cfg.name}] iteration {step}/{t.iterations}: train loss {rec['train_loss']:.4f}, "
                       f"ensemble-mean {100 * metrics['ensemble_mean_acc']:.2f}%, "
                       f"oracle {100 * metrics['oracle_acc']:.2f}%")
                bar.write(msg) if show else log.info(msg)
                run_loss, run_n = 0.0, 0
        if (t.checkpoint_every and step % t.checkpoint_every == 0 or step in t.keep_steps) and step < t.iterations:
            checkpoint(step)
        stop = comm.any(sigterm["hit"])
        if stop:
            checkpoint(step)
            bar.close()
            raise Preempted(step, out)
    bar.close()
    checkpoint(t.iterations)
    # the evaluation at the last iteration, when there was one, is the final one
    final = metrics if last_eval == t.iterations else evaluate(model, data, cfg, comm)
    full_state = model.full_state_dict() if hasattr(model, "full_state_dict") else None
    if not comm.is_root:
        return None
    if full_state is not None:
        tree.load_state_dict(full_state, assign=True)  # assign: the distributed root's tree holds meta tensors
    save_weights(out, tree)
    history = read_jsonl(out / "eval.jsonl")
    result = {
        **final,
        "param_counts": tree.param_counts(),
        "train_time_s": before_train + train_time,  # summed over the processes of an interrupted run
        "images_per_s": images * steps_timed / train_time if train_time > 0 else math.nan,  # this process
        "iterations": t.iterations,
        "skipped_total": skipped_total,
        "classes": data.classes,
        "history_points": len(history),
        # setup, training, evaluation, saving: this process plus earlier ones up to the checkpoint it resumed from
        "wall_time_s": before_wall + time.perf_counter() - wall_start,
        "resumed_from_iteration": start,
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result
