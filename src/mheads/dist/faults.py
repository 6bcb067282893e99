"""Lost ranks: turn a failed collective into a one-line :class:`DistributedFailure` that names the rank at
fault.

When a process dies, gloo reports "Connection closed by peer [127.0.0.1]:41234" (or a timeout) on the ranks
that talk to it, which names an address, not a rank, and the ranks that only talk to the survivors fail a
moment later with the same kind of message about a survivor. To name the culprit, every rank keeps a heartbeat
in the rendezvous store (which torchrun's agent hosts, so it outlives the workers): a counter bumped by a
daemon thread, and a status written when it leaves (``done``, ``crashed: <its error>``, or
``lost: <rank>: <why>`` when it is itself a casualty). A rank whose collective fails reads the others'
statuses and counters and names the rank that crashed, or whose heartbeat stopped; a casualty's ``lost:``
report lets the others name the same rank at once.

Every collective in :mod:`mheads.dist` runs inside :func:`collective`, which does this translation, so callers
(the training loop, the CLI) only ever see :class:`DistributedFailure`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import torch.distributed as dist

__all__ = ["DistributedFailure", "Heartbeat", "collective", "failure_from", "install", "is_comm_error"]


class DistributedFailure(RuntimeError):
    """A collective failed because another rank died, crashed or stopped answering. ``lost_rank`` is that rank
    (None when it could not be identified); the message is one line."""

    def __init__(self, message: str, lost_rank: int | None = None):
        super().__init__(message)
        self.lost_rank = lost_rank


_BACKEND_MARKERS = (
    "gloo",
    "nccl",
    "connection closed",
    "connection reset",
    "timed out",
    "broken pipe",
    "socket",
    "store",
)


def is_comm_error(err: BaseException) -> bool:
    """Whether ``err`` came from the communication layer (a peer or the store), not from a bad argument."""
    if isinstance(err, DistributedFailure):
        return True
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    if not isinstance(err, RuntimeError):
        return False
    text = str(err).lower()
    return any(m in text for m in _BACKEND_MARKERS)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".strip()


class Heartbeat:
    """This rank's heartbeat and status in ``store``, and a watch on every other rank's.

    Args:
        store: a ``torch.distributed.Store`` all ranks share; the thread uses a clone of it (its own
            connection).
        rank, world_size: this process's rank and the number of ranks.
        timeout_s: the collective timeout; the heartbeat period is a tenth of it (at most 1 s, at least 50
            ms), and a rank counts as lost when its counter has not moved for three periods.
        store_host: the rank whose process hosts the store (rank 0 when not launched by torchrun, which hosts
            it in its agent); None when the store does not live in a worker.
    """

    def __init__(self, store, rank: int, world_size: int, timeout_s: float, store_host: int | None = None):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: got {timeout_s!r}; expected a number of seconds > 0")
        self.rank, self.world_size = rank, world_size
        self.timeout_s, self.store_host = float(timeout_s), store_host
        self.period = min(1.0, max(0.05, timeout_s / 10))
        self.stale_after = 3 * self.period

        # One connection per thread (the beating thread, and the main thread's reads and status): a store
        # client is not meant to be shared by threads, and either may block while the other must go on.
        def own(store):
            return dist.PrefixStore("mheads/heartbeat", store.clone() if hasattr(store, "clone") else store)

        self._store = own(store)  # main thread
        self._beat_store = own(store)  # heartbeat thread
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[int, float]] = {}  # rank -> (counter, local time it last changed)
        self._store_error: str | None = None
        self._stop = threading.Event()
        self._store.add(self._beat_key(rank), 1)
        self._thread = threading.Thread(target=self._run, name="mheads-heartbeat", daemon=True)
        self._thread.start()

    @staticmethod
    def _beat_key(r: int) -> str:
        return f"beat/{r}"

    @staticmethod
    def _status_key(r: int) -> str:
        return f"status/{r}"

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self._beat_store.add(self._beat_key(self.rank), 1)
                self._observe(self._beat_store)
            except Exception as err:  # the store is gone: the ranks can no longer be told apart by heartbeat
                with self._lock:
                    self._store_error = _first_line(err)
                return

    def _observe(self, store) -> None:
        now = time.monotonic()
        for r in range(self.world_size):
            if r == self.rank:
                continue
            count = store.add(self._beat_key(r), 0)  # add 0 reads without blocking on a missing key
            with self._lock:
                prev = self._seen.get(r)
                if prev is None or prev[0] != count:
                    self._seen[r] = (count, now)

    def _status(self, r: int) -> str | None:
        key = self._status_key(r)
        if not self._store.check([key]):
            return None
        return self._store.get(key).decode("utf-8", "replace")

    def set_status(self, status: str) -> None:
        """Record how this rank leaves: ``done``, ``crashed: ...`` or ``lost: <rank>``; best effort."""
        try:
            self._store.set(self._status_key(self.rank), status)
        except Exception:
            pass

    def stop(self) -> None:
        self._stop.set()

    def find_lost(self, deadline_s: float) -> tuple[int | None, str]:
        """Wait (at most ``deadline_s``) until a rank is known to have crashed or gone silent.
        Returns (rank or None, a phrase describing what happened to it)."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                found = self._scan()
            except Exception as err:
                with self._lock:
                    self._store_error = self._store_error or _first_line(err)
                found = None
            if found is not None:
                return found
            with self._lock:
                store_error = self._store_error
            if store_error is not None:
                if self.store_host is not None and self.store_host != self.rank:
                    return self.store_host, (
                        f"its process hosted the rendezvous store, which stopped answering ({store_error})"
                    )
                return None, f"the rendezvous store stopped answering ({store_error})"
            if time.monotonic() >= end:
                return None, f"no rank was seen to crash or go silent within {deadline_s:.0f} s"
            time.sleep(self.period / 2)

    def _scan(self) -> tuple[int, str] | None:
        self._observe(self._store)
        now = time.monotonic()
        others = [r for r in range(self.world_size) if r != self.rank]
        statuses = {r: self._status(r) for r in others}
        # A rank that recorded its own error is the cause; a casualty's report names the cause; silence last.
        for r, status in statuses.items():
            if status is not None and status.startswith("crashed:"):
                return r, f"it failed with {status[len('crashed:') :].strip()}"
        for r, status in statuses.items():
            if status is not None and status.startswith("lost:"):
                _, lost, why = (status.split(":", 2) + ["", ""])[:3]
                if lost.strip().isdigit() and int(lost) != self.rank:
                    return int(lost), f"{why.strip() or 'it was lost'} (reported by rank {r})"
        silent = []
        for r in others:
            if statuses[r] is None:
                with self._lock:
                    _, changed = self._seen[r]
                if now - changed >= self.stale_after:
                    silent.append((now - changed, r))
        if silent:
            age, r = max(silent)
            return r, f"its process died or stopped responding (no heartbeat for {age:.1f} s)"
        return None


# The heartbeat of this process, set by `mheads.dist.comm.init`; None when torch.distributed was set up
# elsewhere.
_heartbeat: Heartbeat | None = None


def install(heartbeat: Heartbeat | None) -> None:
    global _heartbeat
    _heartbeat = heartbeat


def failure_from(err: BaseException, what: str) -> DistributedFailure:
    """The :class:`DistributedFailure` explaining that ``err`` interrupted ``what`` (e.g. "broadcast")."""
    if isinstance(err, DistributedFailure):
        return err
    hb = _heartbeat
    if hb is None:
        return DistributedFailure(f"{what} failed: {_first_line(err)}")
    lost, why = hb.find_lost(hb.timeout_s)
    if lost is None:
        hb.set_status(f"failed: {why}")
        return DistributedFailure(f"{what} on rank {hb.rank} failed ({_first_line(err)}); {why}")
    hb.set_status(f"lost: {lost}: {why}")
    return DistributedFailure(
        f"lost rank {lost} of {hb.world_size}: {why}; rank {hb.rank} stopped during {what}", lost
    )


@contextmanager
def collective(what: str):
    """Run a collective; a communication error becomes a :class:`DistributedFailure` naming the lost rank."""
    try:
        yield
    except Exception as err:
        if not is_comm_error(err):
            raise
        raise failure_from(err, what) from err
