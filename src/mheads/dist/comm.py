"""The distributed implementation of the training loop's communicator (``mheads.train.comm.Comm``).

:class:`DistComm` answers the loop's few agreements between ranks (the root's loss, "did any rank see a NaN",
"stop now", a barrier) over the default process group; ``mheads.train.comm.LocalComm`` is the single-process
one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from mheads.core.checks import check_number
from mheads.dist import faults
from mheads.dist.faults import DistributedFailure, Heartbeat, collective
from mheads.dist.layout import Layout
from mheads.dist.transfer import recv_named, send_named
from mheads.train.comm import Comm  # noqa: F401 (re-exported: the protocol DistComm implements)

__all__ = ["Comm", "DistComm", "default_backend", "init", "init_from_env"]


def default_backend(device: str | torch.device | None = None) -> str:
    """``nccl`` when training on CUDA, ``gloo`` otherwise (``device`` None: CUDA if available)."""
    if device is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


class DistComm:
    """The engine's communicator over the default process group (create it with :func:`init_from_env`).

    Attributes:
        rank, world_size: this process's rank and the number of ranks.
        root_rank: the rank that computes the loss and writes the outputs; ``is_root`` is
            ``rank == root_rank``.
        device: where collectives' tensors live (CUDA for NCCL, CPU for gloo).
        timeout_s: the collective timeout.
        layout: the (replicas x model ranks) grid (:mod:`mheads.dist.layout`); ``replica`` and ``replicas``
            repeat its coordinates. Only replica 0 evaluates and gathers checkpoints.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        root_rank: int,
        device: torch.device,
        timeout_s: float,
        heartbeat: Heartbeat | None = None,
    ):
        if not 0 <= root_rank < world_size:
            raise ValueError(f"root_rank: got {root_rank!r}; expected a rank in 0..{world_size - 1}")
        self.rank, self.world_size, self.root_rank = rank, world_size, root_rank
        self.is_root = rank == root_rank
        self.device, self.timeout_s = device, timeout_s
        self._heartbeat = heartbeat
        self._closed = False
        self.layout = Layout(1, world_size, 0, rank)
        self.replica, self.replicas = 0, 1

    def set_layout(self, layout: Layout) -> None:
        """Adopt the (replicas x model ranks) grid of :func:`mheads.dist.layout.make_layout`."""
        self.layout, self.replica, self.replicas = layout, layout.replica, layout.replicas

    def broadcast_json(self, obj):
        """The root's ``obj`` (anything JSON can carry) on every rank; the other ranks' ``obj`` is ignored.
        JSON, not pickle: nothing a rank receives can run code."""
        data = json.dumps(obj).encode() if self.is_root else b""
        n = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        with collective("broadcast_json"):
            dist.broadcast(n, src=self.root_rank)
            buf = (
                torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
                if self.is_root
                else torch.empty(int(n.item()), dtype=torch.uint8, device=self.device)
            )
            dist.broadcast(buf, src=self.root_rank)
        return json.loads(buf.cpu().numpy().tobytes().decode()) if not self.is_root else obj

    def average_gradients(self, params) -> None:
        """Average the gradients of ``params`` over this rank's copies in the other replicas (one all-reduce
        of the flattened gradients, torch's own; a no-op with one replica). Parameters without a gradient
        are left alone: which ones have none follows from the model's structure, the same in every
        replica."""
        if self.replicas == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with collective("averaging gradients over replicas"):
            dist.all_reduce(flat, group=self.layout.replica_group)
        flat.div_(self.replicas)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum_over_replicas(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over this rank's copies in every replica (the replica roots' losses and MCL win
        counts); ``t`` itself with one replica."""
        if self.replicas == 1:
            return t
        buf = t.detach().to(self.device, copy=True).contiguous()
        with collective("summing over replicas"):
            dist.all_reduce(buf, group=self.layout.replica_group)
        return buf.to(t.device)

    def copy_from_first_replica(self, named: Mapping[str, torch.Tensor], keys: list[str]) -> dict:
        """Replica 0's ``named`` tensors (named by ``keys``) on this rank's copy in every other replica
        (point to point over the replica group); replica 0 gets its own ``named`` back."""
        if self.replicas == 1:
            return dict(named)
        lay = self.layout
        if self.replica == 0:
            for r in range(1, self.replicas):
                send_named(named, keys, lay.global_rank(r, lay.model_rank), self.device)
            return dict(named)
        got = recv_named(keys, lay.global_rank(0, lay.model_rank), self.device)
        return got

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor:
        """The root's values of ``t`` (any shape, same on every rank), on every rank, on ``t``'s device."""
        buf = t.detach().to(self.device, copy=True).contiguous()
        with collective("broadcast_scalars"):
            dist.broadcast(buf, src=self.root_rank)
        return buf.to(t.device)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        buf = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        with collective("any"):
            dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        return bool(buf.item())

    def all_true(self, flag: torch.Tensor) -> torch.Tensor:
        """A 0-d bool tensor, True where ``flag`` is True on every rank, on ``flag``'s device; no host
        synchronisation (the all-reduce runs on the device with NCCL)."""
        buf = flag.detach().to(self.device, torch.int32).reshape(1)
        with collective("all_true"):
            dist.all_reduce(buf, op=dist.ReduceOp.MIN)
        return buf.to(flag.device).reshape(()).bool()

    def barrier(self) -> None:
        # An all-reduce rather than dist.barrier(): the same code for gloo and NCCL, under the same timeout.
        buf = torch.zeros(1, device=self.device)
        with collective("barrier"):
            dist.all_reduce(buf)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def destroy(self, error: BaseException | None = None) -> None:
        """Leave the job: records ``done`` for the other ranks, or, when ``error`` is given or an exception is
        propagating (``destroy()`` in a ``finally``), ``crashed: <error>`` so that they name this rank; the
        process group is torn down only on success (a broken one may block). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if error is None:
            error = sys.exc_info()[1]
        failed = error is not None and not (isinstance(error, SystemExit) and error.code in (0, None))
        hb = self._heartbeat
        if hb is not None:
            if not failed:
                hb.set_status("done")
            elif not isinstance(error, DistributedFailure):  # a casualty already recorded "lost: <rank>"
                first = (str(error).strip().splitlines() or [""])[0]
                hb.set_status(f"crashed: {type(error).__name__}: {first}"[:500])
            hb.stop()
        faults.install(None)
        if not failed and dist.is_initialized():
            dist.destroy_process_group()


def init(
    store,
    rank: int,
    world_size: int,
    *,
    timeout_s: float,
    backend: str | None = None,
    root_rank: int = 0,
    store_host: int | None = None,
    device: torch.device | None = None,
) -> DistComm:
    """Start the default process group on ``store`` and this rank's heartbeat; returns the communicator.

    Args:
        store: a ``torch.distributed`` Store every rank reaches (TCPStore, FileStore).
        timeout_s: collective timeout in seconds; a rank that dies makes the others fail within about this
            long.
        backend: ``gloo`` or ``nccl``; None picks by ``device`` (NCCL for CUDA).
        store_host: the rank whose process serves ``store``, if any (named when the store stops answering).
        device: the device collectives use; None: ``cuda`` (current device) for NCCL, else CPU.
    """
    check_number("timeout_s (seconds)", timeout_s, 0, strict_low=True)
    backend = backend or default_backend(device)
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend: got {backend!r}; expected 'gloo' or 'nccl'")
    if device is None:
        device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )
    store.set_timeout(timedelta(seconds=timeout_s))
    dist.init_process_group(
        backend,
        store=dist.PrefixStore("default_pg", store),
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    heartbeat = Heartbeat(store, rank, world_size, timeout_s, store_host=store_host)
    faults.install(heartbeat)
    return DistComm(rank, world_size, root_rank, torch.device(device), float(timeout_s), heartbeat)


def init_from_env(timeout_s: float, backend: str | None = None, *, root_rank: int = 0) -> DistComm:
    """Join the job torchrun started (env ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``). With NCCL each process uses GPU ``LOCAL_RANK``."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"distributed launch: environment variables {', '.join(missing)} are not set; "
            "start the processes with torchrun (see docs/distributed.md)"
        )
    backend = backend or default_backend()
    device = None
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout_s)))
    # A torchrun restart (--max-restarts) may meet the earlier attempt's keys in the agent's store (the
    # process group's addresses, the heartbeats and statuses of processes now dead): each attempt has its own.
    store = dist.PrefixStore(f"mheads/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    # Under torchrun the agent serves the store (it outlives the workers); otherwise rank 0's process does.
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    return init(
        store,
        rank,
        world_size,
        timeout_s=timeout_s,
        backend=backend,
        root_rank=root_rank,
        store_host=None if agent_store else 0,
        device=device,
    )
