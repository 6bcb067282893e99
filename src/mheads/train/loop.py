"""``fit``: restore a run, loop over its iterations, finish it. One loop serves single-process and distributed
runs (the distributed placement is a model like any other, plus a ``comm`` for the few scalars ranks agree
on).

Exact resume: every random draw is derived from the run seed and the position in training (data order,
bagging, augmentation, MCL tie-breaks, dropout), never from how much randomness was consumed before, so a run
killed at any moment and resumed from its last checkpoint ends bit-identical to an uninterrupted run on the
same machine. What else a run carries from iteration to iteration is :class:`RunState`, saved whole in every
checkpoint.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from mheads.config import Config, ConfigError
from mheads.core.atomic import atomic_write_text
from mheads.core.seeding import Stream, derived_generator
from mheads.data.dataset import Dataset
from mheads.data.dataset_stream import DatasetStream
from mheads.data.loader import TorchData, prepare
from mheads.data.resident import ResidentData
from mheads.data.streaming import StreamData, worker_errors
from mheads.data.tensors import AnyShapeData
from mheads.models import is_import_path, model_factory
from mheads.optim.build import NoParameters, build_optimizer, set_rate
from mheads.optim.schedules import Schedule
from mheads.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from mheads.runs.folder import (
    UNCERTAINTY_FILE,
    append_jsonl,
    prepare_out_dir,
    read_jsonl,
    record_launch,
    save_calibration,
    save_normalizer,
    save_weights,
    strict_json,
    truncate_jsonl,
    write_run_info,
)
from mheads.runs.history import record_changes
from mheads.runs.lock import RunLock
from mheads.tasks import Classification, CustomTask, Task
from mheads.train.analysis import analyse, calibrate, summary
from mheads.train.build import build_tree, input_sizes, model_meta, tree_from_meta, warm_start
from mheads.train.comm import Comm, LocalComm
from mheads.train.compiled import compile_checked
from mheads.train.device import flush_denormal, resolve_device, resolve_sync
from mheads.train.dist_checkpoint import gather_checkpoint, is_distributed, restore_parts, run_state_json
from mheads.train.evaluate import evaluate
from mheads.train.numerics import DeviceTally, NumericalFault, member_param_map, members_from_flags
from mheads.train.preempt import Preempted, sigterm_flag
from mheads.train.process import run_process_state
from mheads.train.resources import check_model_size, check_resources
from mheads.train.state import RunState
from mheads.train.step import deferred_step, train_step
from mheads.train.task_run import check_outputs_fit, run_task
from mheads.tree import TreeNet

__all__ = ["RunState", "fit"]

log = logging.getLogger("mheads")


@dataclass
class Run:
    """Everything one process of a run works with, built once by :func:`_restore`."""

    cfg: Config
    out: Path
    comm: Comm
    data: ResidentData | StreamData | AnyShapeData
    tree: TreeNet  # the whole ensemble (on a distributed rank: the structure, holding this rank's part)
    model: torch.nn.Module  # what the loop calls: the tree, or its distributed wrapper
    opt: torch.optim.Optimizer | NoParameters  # NoParameters: a distributed rank that holds only the loss
    schedule: Schedule
    meta: dict
    params: list[torch.nn.Parameter]
    owners: dict[int, list[int]]
    state: RunState
    wall_start: float
    resumed_from: int  # the iteration this process started at (0 for a fresh run)
    saved_steps: set[int] = field(default_factory=set)
    tally: DeviceTally | None = None  # train.sync: deferred: what the device holds until the next read
    task: Task | None = None  # what the outputs mean; None: classification of images, as before tasks


def fit(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    comm: Comm | None = None,
    wrap=None,
    progress: bool | None = None,
    model=None,
    dataset: Dataset | TorchData | None = None,
    retain_memory: bool = True,
    task: Task | None = None,
) -> dict | None:
    """Train the ensemble ``cfg`` describes and write the run folder ``out``. Returns the final metrics
    (root). ``model`` and ``dataset`` replace what ``cfg.model`` and ``cfg.data.source`` would build and load
    (the Python API, :func:`mheads.fit`, passes them); ``model`` is a TreeNet or a function of the prepared
    data returning one. ``task``: a user's Task object (``cfg.task.name: python``); a built-in task is built
    from ``cfg.task`` and the data.

    The process is left as found (:mod:`mheads.train.process`): the global random state and torch's thread
    count are restored on return; ``retain_memory`` raises glibc's malloc thresholds on a CPU run (faster, but
    for the rest of the process: ``mheads.fit`` passes False).

    SIGTERM (preemption) at any point before the last iteration ends the run after the current iteration with
    a checkpoint and :class:`Preempted`; one arriving during the final evaluation lets the run finish."""
    cfg.validate()  # a Config built or edited in Python gets the same checks as one read from YAML
    comm = comm or LocalComm()
    show = (comm.is_root and sys.stderr.isatty()) if progress is None else (progress and comm.is_root)
    lock = RunLock(out, create=not resume) if comm.is_root else nullcontext()
    # worker_errors: a streaming worker killed (the OOM killer) raises here wherever this process is: one line
    process = run_process_state(resolve_device(cfg.train.device), cfg.train.threads, retain_memory)
    with lock, process, sigterm_flag() as sigterm, flush_denormal(cfg.train.flush_denormal), worker_errors():
        run = _restore(cfg, Path(out), resume, overwrite, comm, wrap, model, dataset, show, task)
        try:
            _loop(run, sigterm, show)
            return _finish(run)
        finally:
            if isinstance(run.data, (StreamData, DatasetStream)):  # their workers
                run.data.close()


def _loop(run: Run, sigterm: dict, show: bool) -> None:
    """Iterations ``state.step .. train.iterations``, each with its evaluation, checkpoint and SIGTERM
    check."""
    t, st = run.cfg.train, run.state
    images = t.batch_size * t.accumulate
    bar = tqdm(
        total=t.iterations, initial=st.step, disable=not show, unit="it", dynamic_ncols=True, leave=False
    )
    waited = getattr(run.data, "wait_s", 0.0)
    try:
        for it in range(st.step, t.iterations):
            lr = run.schedule.lr_at(it)
            set_rate(run.opt, lr)  # times each group's multiplier (optim.bias_lr_mult, trunk_lr_mult)
            done = _update(run, it) if run.tally is None else _update_deferred(run, run.tally, it)
            if done is None:  # a skipped non-finite step (train.nan_policy: skip)
                continue
            loss, seconds = done
            step = st.step = it + 1
            bar.update(1)
            if run.tally is not None and step % t.log_every == 0:  # a logging point: read the device
                loss = _settle(run)
            if loss is not None:
                post = {
                    "loss": f"{loss:.4f}",
                    "lr": f"{lr:.2g}",
                    "img_s": f"{images / max(seconds, 1e-9):.0f}",
                }
                if isinstance(run.data, StreamData):  # the time this step waited for its batches
                    post["wait_ms"] = f"{1000 * (run.data.wait_s - waited):.0f}"
                    waited = run.data.wait_s
                bar.set_postfix(post)
            if t.eval_every and (step % t.eval_every == 0 or step == t.iterations):
                _evaluate(run, step, lr, bar if show else None)
            if (
                t.checkpoint_every and step % t.checkpoint_every == 0 or step in t.keep_steps
            ) and step < t.iterations:
                _checkpoint(run, step)
            # agreeing on SIGTERM is a collective, read on the host: a deferred-sync distributed run asks only
            # at its logging points (every rank decides alike from the step)
            ask = run.tally is None or run.comm.world_size == 1 or step % t.log_every == 0
            if ask and run.comm.any(sigterm["hit"]):
                _checkpoint(run, step)
                raise Preempted(step, run.out)
    finally:
        bar.close()


def _update(run: Run, it: int) -> tuple[float, float] | None:
    """One training step: ``(loss, seconds)``, or None when a non-finite step was skipped."""
    t, st = run.cfg.train, run.state
    t0 = time.perf_counter()
    try:
        loss, _, wins = train_step(
            run.model, run.opt, run.data, run.cfg, it, run.comm, run.params, run.owners, run.task
        )
    except NumericalFault as fault:
        if t.nan_policy == "stop":
            raise
        st.skipped += 1
        st.skipped_total += 1
        log.warning("%s (skipped %d in a row)", fault, st.skipped)
        if st.skipped >= t.max_skipped:
            raise NumericalFault(
                fault.step, fault.members, f"{fault.where} ({st.skipped} steps in a row, train.max_skipped)"
            ) from None
        return None
    seconds = time.perf_counter() - t0
    st.skipped = 0
    st.train_time += seconds
    st.steps_timed += 1
    run.schedule.observe(loss)
    st.run_loss += loss
    st.run_n += 1
    if wins is not None:  # summed on the device: no host synchronisation per step
        st.wins = wins if st.wins is None else st.wins.to(wins.device) + wins
    return loss, seconds


def _update_deferred(run: Run, tally: DeviceTally, it: int) -> tuple[None, float]:
    """One training step under ``train.sync: deferred``: ``(None, seconds)``, the loss and the guard's verdict
    left on the device (``tally``, the run's) until the next logging point."""
    t0 = time.perf_counter()
    out = deferred_step(run.model, run.opt, run.data, run.cfg, it, run.comm, run.params, run.task)
    tally.add(it, out)
    st = run.state
    if out.wins is not None:  # an undone update assigned nothing (as in step mode)
        wins = out.wins * out.ok.to(out.wins.device)
        st.wins = wins if st.wins is None else st.wins.to(wins.device) + wins
    seconds = time.perf_counter() - t0
    st.train_time += seconds
    st.steps_timed += 1
    return None, seconds


def _settle(run: Run) -> float | None:
    """A logging point of a deferred-sync run: read what the device accumulated (one synchronisation) into the
    run state, and apply ``train.nan_policy`` to the updates the guard undid since the last one. Returns the
    mean loss of the applied updates since then (None if there were none, or nothing to read)."""
    if run.tally is None:
        return None
    t, st = run.cfg.train, run.state
    t0 = time.perf_counter()
    got = run.tally.read()
    st.train_time += time.perf_counter() - t0  # the device work the steps queued, waited for here
    st.skipped = got["in_a_row"]
    st.run_loss += got["loss_sum"]
    st.run_n += got["applied"]
    if got["bad"]:
        st.skipped_total += got["bad"]
        members, where = members_from_flags(
            got["flags"],
            run.params,
            run.owners,
            run.cfg.model.members,
            has_member_losses=getattr(run.model, "is_root", run.comm.is_root),
        )
        fault = NumericalFault(got["first_bad"], members, where)
        if t.nan_policy == "stop":
            raise fault
        log.warning(
            "%s (%d updates undone since the last logging point, at most %d in a row)",
            fault,
            got["bad"],
            got["longest"],
        )
        if got["longest"] >= t.max_skipped:
            raise NumericalFault(
                fault.step,
                fault.members,
                f"{fault.where} ({got['longest']} steps in a row, train.max_skipped)",
            )
    return got["loss_sum"] / got["applied"] if got["applied"] else None


def _evaluate(run: Run, step: int, lr: float, bar: tqdm | None) -> None:
    """Evaluate on the test split, log it to ``eval.jsonl`` and keep it (the final evaluation reuses it)."""
    _settle(run)
    st, cfg = run.state, run.cfg
    # every replica evaluates, so that they stay in step (a replica waiting on another's evaluation in its
    # next all-reduce could outlast dist.timeout_s); only the root computes and writes the metrics
    metrics = evaluate(run.model, run.data, cfg, run.comm, task=run.task)
    st.last_eval = (step, metrics)
    if not run.comm.is_root:
        return
    assert metrics is not None  # evaluate returns them on the root
    rec = {
        "step": step,
        "lr": lr,
        "train_loss": st.run_loss / max(st.run_n, 1),
        "skipped_total": st.skipped_total,
        **st.win_fraction(),
        **metrics,
    }
    append_jsonl(run.out / "eval.jsonl", rec)
    msg = (
        f"[{cfg.name}] iteration {step}/{cfg.train.iterations}: train loss {rec['train_loss']:.4f}, "
        + _headline(metrics)
    )
    if bar is not None:
        bar.write(msg)
    else:
        log.info(msg)
    st.run_loss, st.run_n, st.wins = 0.0, 0, None


def _headline(metrics: dict) -> str:
    """The evaluation's log line: ensemble and oracle accuracy, or a task's first two scalar metrics."""
    if "ensemble_mean_acc" in metrics:
        return (
            f"ensemble-mean {100 * metrics['ensemble_mean_acc']:.2f}%, "
            f"oracle {100 * metrics['oracle_acc']:.2f}%"
        )
    scalars = [(k, v) for k, v in metrics.items() if isinstance(v, float)][:2]
    return ", ".join(f"{k} {v:.4f}" for k, v in scalars)


def _checkpoint(run: Run, step: int) -> None:
    """Save ``step`` once: the preemption path and the end of a resumed run may ask again for a step already
    on disk (its state would differ only in the elapsed times, and committed checkpoints are never
    overwritten). Distributed: collective over replica 0's ranks, whose parts the root writes as one
    single-process checkpoint (``mheads.train.dist_checkpoint``)."""
    if step in run.saved_steps:
        return
    _settle(run)  # the run state the checkpoint saves, and no undone update unreported
    run.saved_steps.add(step)
    if is_distributed(run.model):
        lr = run.schedule.lr_at(max(step - 1, 0))  # the rate of the iteration just done
        got = gather_checkpoint(run.cfg, run.tree, run.model, run.opt, lr) if run.comm.replica == 0 else None
        if got is None:
            return
        weights, optimizer_state = got
    else:
        weights = {k: v.detach().cpu() for k, v in run.tree.state_dict().items()}
        optimizer_state = run.opt.state_dict()
    t = run.cfg.train
    state = run.state.to_checkpoint(step, optimizer_state, run.schedule, time.perf_counter() - run.wall_start)
    save_checkpoint(run.out, step, weights, state, run.meta, keep=t.keep_checkpoints, pinned=t.keep_steps)


def _restore(
    cfg: Config,
    out: Path,
    resume: bool,
    overwrite: bool,
    comm: Comm,
    wrap,
    model=None,
    dataset: Dataset | TorchData | None = None,
    show: bool = False,
    task: Task | None = None,
) -> Run:
    """The run folder, data, model, optimizer and state: fresh, or from the newest checkpoint of ``out``.
    Each step in order (the order is part of exact resume: the model is built, and its weights drawn, before
    the checkpoint is read)."""
    wall_start = time.perf_counter()
    if comm.is_root:
        prepare_out_dir(out, resume=resume, overwrite=overwrite)
        record_launch(out)
    device = resolve_device(cfg.train.device)  # fit set train.threads (and the allocator) for the run
    data = _prepare_data(cfg, device, dataset, comm, show)
    tree, task, meta = _build_model(cfg, data, device, comm, model, task)
    ck, shared = _read_checkpoint(out, resume, comm, meta)
    state = RunState() if shared is None else RunState.from_checkpoint(shared)
    _start_weights(tree, cfg, wrap, ck, shared, state.step)
    owners = member_param_map(tree)
    placed = _place(tree, wrap, cfg, data, device)
    params = list(placed.parameters())
    opt, schedule = _optimizer(cfg, tree, placed, params, comm, ck, shared)
    if comm.is_root:
        _record_start(out, cfg, resume, ck, state.step, meta, tree, data)
    # the plateau schedule needs every step's loss before the next step's rate: it reads each step
    deferred = resolve_sync(cfg.train.sync, device) == "deferred" and schedule.kind != "plateau"
    return Run(
        cfg=cfg,
        out=out,
        comm=comm,
        data=data,
        tree=tree,
        model=placed,
        opt=opt,
        schedule=schedule,
        meta=meta,
        params=params,
        owners=owners,
        state=state,
        wall_start=wall_start,
        resumed_from=state.step,
        saved_steps={state.step} if shared is not None else set(),
        tally=DeviceTally(device) if deferred else None,
        task=task,
    )


def _start_weights(
    tree: TreeNet, cfg: Config, wrap, ck: Checkpoint | None, shared: dict | None, step: int
) -> None:
    """The weights the run starts from: the checkpoint's (a wrapped model restores its own part later), or
    the members' initial draw for a fresh run."""
    if shared is None:
        _initial_weights(tree, cfg)
        return
    if wrap is None:
        _load_checkpoint_weights(tree, ck)
    log.info("resuming from %s (iteration %d)", ck.path if ck is not None else "the root's checkpoint", step)


def _optimizer(
    cfg: Config, tree: TreeNet, placed, params: list, comm: Comm, ck: Checkpoint | None, shared: dict | None
):
    """The optimizer over ``params`` and its schedule, each with its checkpointed state when resuming."""
    opt, schedule = build_optimizer(cfg, params, tree)
    if shared is not None:
        _restore_optimizer(cfg, tree, placed, opt, comm, ck)
        schedule.load_state_dict(shared["schedule"])
    return opt, schedule


def _prepare_data(cfg: Config, device: torch.device, dataset, comm: Comm, show: bool):
    """The run's data on ``device``; a data-parallel replica reads its shard of every batch."""
    data = prepare(cfg, device, dataset=dataset, progress=show)
    if comm.replicas > 1:
        data.shard = (comm.replica, comm.replicas)
    return data


def _build_model(
    cfg: Config, data, device: torch.device, comm: Comm, model, task: Task | None
) -> tuple[TreeNet, Task | None, dict]:
    """``(tree, task, meta)``: the TreeNet (built from ``cfg.model``, or the user's ``model``) checked against
    the memory there is, the task of a run on inputs of any shape (None for images: classification, as
    before tasks) and the model description checkpoints record. A user's ``model`` is a TreeNet or a
    function of the prepared data returning one."""
    shape = (data.in_channels, data.image_size, data.image_size)
    # what the check counts beside the model: batches streamed ahead, the largest split evaluated at once
    sizes = {
        "queued": getattr(data, "queued_batches", 0),
        "eval_examples": max(data.split_size(s) for s in ("test", "val", "ood")),
    }
    if not isinstance(data, AnyShapeData):
        if model is None:
            if comm.world_size == 1 and (base := _one_base(cfg, data, device)) is not None:
                # before M members and their optimizer state exist
                check_resources(cfg, base, shape, device, **sizes)
            tree = build_tree(cfg, data.num_classes, data.in_channels, data.image_size)
        else:
            tree = model if isinstance(model, TreeNet) else model(data)
            if comm.world_size == 1:
                check_resources(cfg, tree.member(0), shape, device, include_parameters=False, **sizes)
        return tree, None, model_meta(cfg, data.num_classes, data.in_channels, data.image_size)
    task = run_task(cfg, data, task)
    # the task's head width (classification: its classes; a user's task: its head_width, if it gave one)
    width = (task.width or 1) if isinstance(task, CustomTask) else task.head_width()
    if model is None:
        channels, size = input_sizes(data.input_spec())
        tree = build_tree(cfg, width, channels, size, example=data.example_input())
    else:
        tree = model if isinstance(model, TreeNet) else model(data)
    check_outputs_fit(tree, data, task)
    meta = model_meta(cfg, width, data.in_channels, data.image_size, input_spec=data.input_spec())
    return tree, task, meta


def _read_checkpoint(
    out: Path, resume: bool, comm: Comm, meta: dict
) -> tuple[Checkpoint | None, dict | None]:
    """``(checkpoint, run state)``: the root reads the newest checkpoint (None also when a resumed run never
    committed one: start over; None on the other ranks) and tells every rank its run state (JSON; None: a
    fresh start). A distributed run's parts are sent to their ranks once the model is wrapped."""
    ck = load_latest(out) if resume and comm.is_root else None
    if ck is not None:
        check_compatible(ck.meta, meta, where=ck.path)
    return ck, comm.broadcast_json(None if ck is None else run_state_json(ck.state))


def _place(tree: TreeNet, wrap, cfg: Config, data, device: torch.device) -> torch.nn.Module:
    """What the loop calls: the tree (or its distributed wrapper) on ``device`` in the configured memory
    format, compiled and checked against the eager model where ``train.compile`` asks."""
    t = cfg.train
    model = wrap(tree) if wrap is not None else tree
    # Module.to takes memory_format (its docs); torch's stubs leave it out of every overload
    model.to(
        device=device,  # type: ignore[call-overload]
        memory_format=torch.channels_last if t.channels_last else torch.contiguous_format,
    )
    if t.compile:
        x0, y0, _ = data.train_batch(0, derived_generator(t.seed, Stream.COMPILE_CHECK))
        model = compile_checked(model, x0, y0)
    return model


def _restore_optimizer(cfg: Config, tree: TreeNet, model, opt, comm: Comm, ck) -> None:
    """A resumed run's optimizer state (a distributed run's parts: each rank its own)."""
    if is_distributed(model):
        restore_parts(cfg, tree, model, opt, comm, ck)
    else:
        opt.load_state_dict(ck.state["optimizer"])


def _record_start(
    out: Path, cfg: Config, resume: bool, ck: Checkpoint | None, step: int, meta: dict, tree: TreeNet, data
) -> None:
    """The root's records of this start: a resumed run's logs cut back to its checkpoint and the settings it
    changed; a fresh run's run.json; the normalizer (every start: a resume may have changed the data
    settings)."""
    if resume:
        for name in ("eval.jsonl", "train.jsonl"):
            truncate_jsonl(out / name, step)
        if ck is not None:
            record_changes(out, cfg, step)
    if ck is None:
        write_run_info(
            out, cfg.to_yaml(), {"meta": meta, "param_counts": tree.param_counts(), "data": data.describe()}
        )
    if data.normalizer is not None:
        save_normalizer(out, data.normalizer)


def _finish(run: Run) -> dict | None:
    """The last checkpoint, the final metrics (the last evaluation when it was at the last iteration), the
    weights and ``metrics.json``. Returns the metrics on the root, None elsewhere."""
    t, st = run.cfg.train, run.state
    _settle(run)
    _checkpoint(run, t.iterations)
    if run.comm.replica != 0:  # replica 0 evaluates and saves for every replica
        return None
    if st.last_eval is not None and st.last_eval[0] == t.iterations:
        final = st.last_eval[1]
    else:
        final = evaluate(run.model, run.data, run.cfg, run.comm, task=run.task)
    full_state = run.model.full_state_dict() if is_distributed(run.model) else None
    if not run.comm.is_root:
        return None
    assert final is not None  # evaluate returns them on the root
    if full_state is not None:
        # assign: the distributed root's tree holds meta tensors
        run.tree.load_state_dict(full_state, assign=True)
    save_weights(run.out, run.tree)
    uncertainty = _uncertainty(run) if run.task is None or isinstance(run.task, Classification) else {}
    images = t.batch_size * t.accumulate
    result = {
        **final,
        "param_counts": run.tree.param_counts(),
        "train_time_s": st.before_train + st.train_time,  # summed over the processes of an interrupted run
        # this process
        "images_per_s": images * st.steps_timed / st.train_time if st.train_time > 0 else math.nan,
        "iterations": t.iterations,
        "skipped_total": st.skipped_total,
        "classes": run.data.classes,
        "history_points": len(read_jsonl(run.out / "eval.jsonl")),
        # setup, training, evaluation, saving: this process plus earlier ones up to the checkpoint
        # it resumed from
        "wall_time_s": st.before_wall + time.perf_counter() - run.wall_start,
        "resumed_from_iteration": run.resumed_from,
    }
    result.update(uncertainty)
    if isinstance(run.data, StreamData):  # this process
        result.update(data_wait_s=run.data.wait_s, skipped_images=run.data.skipped_images)
    atomic_write_text(run.out / "metrics.json", strict_json(result, indent=2) + "\n")
    return result


def _one_base(cfg: Config, data, device: torch.device):
    """One member's base network for the resource estimate, or None where building it fails (build_tree then
    reports why, naming the field). Its size is checked on the meta device first (``ConfigError`` when
    ``model.members`` copies would not fit), so a network too large for memory is never allocated."""
    try:
        factory = model_factory(
            cfg.model.name,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            image_size=data.image_size,
            **cfg.model.options,
        )
    except Exception:  # noqa: BLE001 - any failure is build_tree's to report
        return None
    check_model_size(cfg, factory, device)
    try:
        return factory()
    except Exception:  # noqa: BLE001 - any failure is build_tree's to report
        return None


def _uncertainty(run: Run) -> dict:
    """For a run with a held-out split (temperature scaling, ``calibration.json``) or an open-set split (the
    classes it did not train on): the uncertainty report (``uncertainty.json``) and its headline numbers."""
    if run.comm.world_size != 1 or not (run.data.split_size("val") or run.data.split_size("ood")):
        if run.comm.is_root and run.comm.world_size == 1:  # said once, not silently skipped
            log.info(
                "temperature scaling and the uncertainty report skipped: no held-out split (set "
                "data.val_fraction, e.g. 0.1; `mheads eval` still reports the uncalibrated numbers)"
            )
        return {}
    calibration = calibrate(run.model, run.data, run.cfg)
    if calibration is not None:
        save_calibration(run.out, calibration)
    report = analyse(run.model, run.data, run.cfg, calibration)
    atomic_write_text(run.out / UNCERTAINTY_FILE, strict_json(report, indent=2) + "\n")
    return summary(report)


def _initial_weights(tree: TreeNet, cfg: Config) -> None:
    """``train.init_from``: start from another run's weights (fine-tuning), whole or one member copied to
    all."""
    src = cfg.train.init_from
    if src is None:
        return
    try:
        ck = load_checkpoint(src)
    except Exception as err:  # CheckpointError names the path
        raise ConfigError(f"train.init_from: {err}") from None
    # the checkpoint's folder names no code: a model given by import path is the one this config names
    named = cfg.model.name if is_import_path(cfg.model.name) else None
    try:
        saved = tree_from_meta(ck.meta, seed=0, where=str(ck.path), model=named)
    except CheckpointError as err:
        raise ConfigError(f"train.init_from: {err}") from None
    _load_checkpoint_weights(saved, ck)
    warm_start(tree, saved, cfg.train.init_from_member)


def _load_checkpoint_weights(tree: TreeNet, ck) -> None:
    """A checkpoint's weights into the tree its meta describes; weights of another architecture (an edited
    or foreign checkpoint whose hash was recomputed) raise ``CheckpointError`` naming it, not a traceback."""
    try:
        tree.load_state_dict(ck.weights)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise CheckpointError(
            f"{ck.path}: its weights do not fit the model it describes ({'; '.join(lines[1:3])[:300]})"
        ) from None
