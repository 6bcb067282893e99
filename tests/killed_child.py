"""A forked child that trains and SIGKILLs itself after a counted optimizer step: the kill-and-resume tests'
crash (``tests/train/test_fit_tasks_kill.py``, ``tests/train/test_task_head_shared.py``). torch is imported
in the parent already, so the child starts at once; the kill is counted in steps, not timed, so a fast or a
loaded machine kills at the same place."""

from __future__ import annotations

import itertools
import os
import signal
import traceback
from collections.abc import Callable

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


def killed_in_child(out, kill_at: int, train: Callable[[], object]) -> int:
    """Fork a child that runs ``train()`` and SIGKILLs itself right after optimizer step ``kill_at`` (its
    output to ``<out>.log``, a traceback to ``<out>.err``); the child's wait status."""
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        try:
            torch.set_num_threads(1)  # a forked child runs no parallel region (the parent's pool is gone)
            log = os.open(f"{out}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            steps = itertools.count(1)

            def kill(optimizer, args, kwargs):
                if next(steps) == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            register_optimizer_step_post_hook(kill)
            train()
        except BaseException:
            with open(f"{out}.err", "w") as f:
                f.write(traceback.format_exc())
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1]
