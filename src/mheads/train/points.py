"""What the loop does at its points: a logging point of a deferred-sync run reads the device
(:func:`settle`), an evaluation point evaluates on the test split and appends to ``eval.jsonl``
(:func:`evaluate_at`), a checkpoint point saves the run once (:func:`checkpoint_at`)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tqdm import tqdm

from mheads.runs.checkpoint import save_checkpoint
from mheads.runs.folder import append_jsonl
from mheads.train.dist_checkpoint import gather_checkpoint, is_distributed
from mheads.train.evaluate import evaluate
from mheads.train.numerics import NumericalFault, members_from_flags

if TYPE_CHECKING:
    from mheads.train.restore import Run

log = logging.getLogger("mheads")


def settle(run: Run) -> float | None:
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


def evaluate_at(run: Run, step: int, lr: float, bar: tqdm | None) -> None:
    """Evaluate on the test split, log it to ``eval.jsonl`` and keep it (the final evaluation reuses it)."""
    settle(run)
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


def checkpoint_at(run: Run, step: int) -> None:
    """Save ``step`` once: the preemption path and the end of a resumed run may ask again for a step already
    on disk (its state would differ only in the elapsed times, and committed checkpoints are never
    overwritten). Distributed: collective over replica 0's ranks, whose parts the root writes as one
    single-process checkpoint (``mheads.train.dist_checkpoint``)."""
    if step in run.saved_steps:
        return
    settle(run)  # the run state the checkpoint saves, and no undone update unreported
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
