"""The end of a run (:func:`finish`): the last checkpoint, the final metrics (the last evaluation when it
was at the last iteration), the weights, the uncertainty report and ``metrics.json``."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from mheads.core.atomic import atomic_write_text
from mheads.core.notes import ONCE
from mheads.data.streaming import StreamData
from mheads.runs.folder import UNCERTAINTY_FILE, read_jsonl, save_calibration, save_weights, strict_json
from mheads.tasks import Classification
from mheads.train.analysis import analyse, calibrate, summary
from mheads.train.dist_checkpoint import is_distributed
from mheads.train.evaluate import evaluate
from mheads.train.points import checkpoint_at, settle

if TYPE_CHECKING:
    from mheads.train.restore import Run

log = logging.getLogger("mheads")


def finish(run: Run) -> dict | None:
    """The last checkpoint, the final metrics (the last evaluation when it was at the last iteration), the
    weights and ``metrics.json``. Returns the metrics on the root, None elsewhere."""
    t, st = run.cfg.train, run.state
    settle(run)
    checkpoint_at(run, t.iterations)
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


def _uncertainty(run: Run) -> dict:
    """For a run with a held-out split (temperature scaling, ``calibration.json``) or an open-set split (the
    classes it did not train on): the uncertainty report (``uncertainty.json``) and its headline numbers."""
    if run.comm.world_size != 1 or not (run.data.split_size("val") or run.data.split_size("ood")):
        if run.comm.is_root and run.comm.world_size == 1:  # said once, not silently skipped
            log.info(
                "temperature scaling and the uncertainty report skipped: no held-out split (set "
                "data.val_fraction, e.g. 0.1; `mheads eval` still reports the uncalibrated numbers)",
                extra=ONCE,  # the same on every run a command trains (demo cells, sweeps): said once there
            )
        return {}
    calibration = calibrate(run.model, run.data, run.cfg)
    if calibration is not None:
        save_calibration(run.out, calibration)
    report = analyse(run.model, run.data, run.cfg, calibration)
    atomic_write_text(run.out / UNCERTAINTY_FILE, strict_json(report, indent=2) + "\n")
    return summary(report)
