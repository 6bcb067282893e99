"""``mheads`` under torchrun with one fault injected: ``python fit_worker.py KILL_RANK KILL_AT ARGS...`` runs
``mheads ARGS`` and, in the first attempt only (``TORCHELASTIC_RESTART_COUNT`` 0), SIGKILLs rank KILL_RANK
as it starts iteration KILL_AT: the death of a process mid-run, for torchrun ``--max-restarts`` to recover."""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> int:
    kill_rank, kill_at, args = int(argv[0]), int(argv[1]), argv[2:]
    if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and int(os.environ["RANK"]) == kill_rank:
        from mheads.train import loop

        update = loop._update

        def dying_update(run, it):
            if it == kill_at:
                print(f"fit_worker: killing rank {kill_rank} at iteration {it}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return update(run, it)

        loop._update = dying_update
    from mheads.cli import main as mheads_main

    return mheads_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
