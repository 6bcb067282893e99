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
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from mheads.data.dataset_stream import DatasetStream
from mheads.data.streaming import StreamData, worker_errors
from mheads.optim.build import set_rate
from mheads.runs.lock import RunLock
from mheads.train.comm import Comm, LocalComm
from mheads.train.device import flush_denormal, resolve_device
from mheads.train.finish import finish
from mheads.train.numerics import NumericalFault
from mheads.train.points import checkpoint_at, evaluate_at, settle
from mheads.train.preempt import Preempted, sigterm_flag
from mheads.train.process import run_process_state
from mheads.train.restore import restore
from mheads.train.state import RunState
from mheads.train.step import deferred_step, train_step

if TYPE_CHECKING:
    from mheads.config import Config
    from mheads.data.dataset import Dataset
    from mheads.data.loader import TorchData
    from mheads.tasks import Task
    from mheads.train.numerics import DeviceTally
    from mheads.train.restore import Run

__all__ = ["RunState", "fit"]

log = logging.getLogger("mheads")


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
        run = restore(cfg, Path(out), resume, overwrite, comm, wrap, model, dataset, show, task)
        try:
            _loop(run, sigterm, show)
            return finish(run)
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
                loss = settle(run)
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
                evaluate_at(run, step, lr, bar if show else None)
            if (
                t.checkpoint_every and step % t.checkpoint_every == 0 or step in t.keep_steps
            ) and step < t.iterations:
                checkpoint_at(run, step)
            # agreeing on SIGTERM is a collective, read on the host: a deferred-sync distributed run asks only
            # at its logging points (every rank decides alike from the step)
            ask = run.tally is None or run.comm.world_size == 1 or step % t.log_every == 0
            if ask and run.comm.any(sigterm["hit"]):
                checkpoint_at(run, step)
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
