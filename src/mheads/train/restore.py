"""A run started or resumed: :func:`restore` builds everything one process of a run works with (the run
folder, data, model, optimizer, schedule and :class:`~mheads.train.state.RunState`), fresh or from the newest
checkpoint, as a :class:`Run` the loop (:mod:`mheads.train.loop`) drives. Each step is a named function, in
the order exact resume needs: the model is built, and its weights drawn, before the checkpoint is read."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from mheads.config import Config, ConfigError
from mheads.core.seeding import Stream, derived_generator
from mheads.data.dataset import Dataset
from mheads.data.loader import TorchData, prepare, uses_tensors
from mheads.data.resident import ResidentData
from mheads.data.streaming import StreamData
from mheads.data.tensor_data import AnyShapeData, refuse_normalize
from mheads.models import is_import_path, model_factory
from mheads.optim.build import NoParameters, build_optimizer
from mheads.optim.schedules import Schedule
from mheads.runs.checkpoint import Checkpoint, CheckpointError, check_compatible, load_checkpoint, load_latest
from mheads.runs.folder import (
    NORMALIZER_FILE,
    prepare_out_dir,
    record_launch,
    save_normalizer,
    truncate_jsonl,
    write_run_info,
)
from mheads.runs.history import record_changes
from mheads.tasks import CustomTask, Task
from mheads.train.build import build_tree, input_sizes, model_meta, tree_from_meta, warm_start
from mheads.train.comm import Comm
from mheads.train.compiled import compile_checked
from mheads.train.device import resolve_device, resolve_sync
from mheads.train.dist_checkpoint import is_distributed, restore_parts, run_state_json
from mheads.train.numerics import DeviceTally, member_param_map
from mheads.train.resources import check_model_size, check_resources
from mheads.train.resume_checks import check_same_inputs, recorded_normalize, trained_unnormalized
from mheads.train.run_model import check_parameters_finite
from mheads.train.state import RunState, check_run_state
from mheads.train.task_run import check_image_classes, check_outputs_fit, run_task, uint8_ids_named
from mheads.tree import TreeNet

log = logging.getLogger("mheads")


@dataclass
class Run:
    """Everything one process of a run works with, built once by :func:`restore`."""

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


def restore(
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
    data = _prepare_data(cfg, device, dataset, comm, show, out if resume else None)
    tree, task, meta = _build_model(cfg, data, device, comm, model, task)
    ck, shared = _read_checkpoint(out, resume, comm, meta, tree)
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


def _prepare_data(cfg: Config, device: torch.device, dataset, comm: Comm, show: bool, resumed: Path | None):
    """The run's data on ``device``; a data-parallel replica reads its shard of every batch. ``resumed``: the
    run folder of a resumed run (None: a fresh run)."""
    # before the data is read (a Dataset's first item only, and only when normalize asks for statistics)
    if cfg.data.normalize not in (None, "none") and uses_tensors(cfg, dataset):
        cfg = _unnormalized(cfg, resumed)
    data = prepare(cfg, device, dataset=dataset, progress=show)
    if comm.replicas > 1:
        data.shard = (comm.replica, comm.replicas)
    return data


def _unnormalized(cfg: Config, resumed: Path | None) -> Config:
    """The config that inputs read as tensors, with ``data.normalize`` mean_image or per_channel, are read
    with: ``cfg`` with null where the resumed run's folder recorded that mode and no normalizer (a run from
    before null was the default: it trained on them as stored); else refused, as for a new run (``cfg``
    itself is unchanged: its config.yaml keeps what the run recorded)."""
    mode = cfg.data.normalize
    if resumed is None or not trained_unnormalized(
        mode, recorded_normalize(resumed), (resumed / NORMALIZER_FILE).exists()
    ):
        refuse_normalize(cfg.data)
    log.info(
        "data.normalize %r, recorded by this run before null was the default, never applied to inputs read "
        "as tensors: resuming on them as stored (null), as the run trained",
        mode,
    )
    return replace(cfg, data=replace(cfg.data, normalize=None))


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
                check_image_classes(tree, data)
                check_resources(cfg, tree.member(0), shape, device, include_parameters=False, **sizes)
        return tree, None, model_meta(cfg, data.num_classes, data.in_channels, data.image_size)
    task = run_task(cfg, data, task)
    # the task's head width (classification: its classes; a user's task: its head_width, if it gave one)
    width = (task.width or 1) if isinstance(task, CustomTask) else task.head_width()
    with uint8_ids_named(data):  # the TreeNet's construction check is the model's first forward
        if model is None:
            channels, size = input_sizes(data.input_spec())
            tree = build_tree(cfg, width, channels, size, example=data.example_input(), task=task)
        else:
            tree = model if isinstance(model, TreeNet) else model(data)
    check_outputs_fit(tree, data, task)
    meta = model_meta(cfg, width, data.in_channels, data.image_size, input_spec=data.input_spec())
    return tree, task, meta


def _read_checkpoint(
    out: Path, resume: bool, comm: Comm, meta: dict, tree: TreeNet
) -> tuple[Checkpoint | None, dict | None]:
    """``(checkpoint, run state)``: the root reads the newest checkpoint (None also when a resumed run never
    committed one: start over; None on the other ranks) and tells every rank its run state (JSON; None: a
    fresh start). A distributed run's parts are sent to their ranks once the model is wrapped."""
    ck = load_latest(out) if resume and comm.is_root else None
    if ck is not None:
        check_compatible(ck.meta, meta, where=ck.path)
        check_same_inputs(ck.meta, meta, where=ck.path)  # the dtype too: uint8 is scaled, int64 is not
        check_run_state(ck.state, ck.path / "state.pt")
        check_parameters_finite(tree, ck.weights, ck.path / "weights.safetensors")  # distributed runs too
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
            record_changes(out, cfg, step, tensors=isinstance(data, AnyShapeData))
    if ck is None:
        write_run_info(
            out, cfg.to_yaml(), {"meta": meta, "param_counts": tree.param_counts(), "data": data.describe()}
        )
    if data.normalizer is not None:
        save_normalizer(out, data.normalizer)


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
    check_parameters_finite(tree, ck.weights, ck.path / "weights.safetensors")
    try:
        tree.load_state_dict(ck.weights)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise CheckpointError(
            f"{ck.path}: its weights do not fit the model it describes ({'; '.join(lines[1:3])[:300]})"
        ) from None
