"""One rank of a multi-process test: ``python dist_worker.py SCENARIO RANK WORLD STORE OUT [ARG]``.

Started by ``conftest.launch``; joins through a FileStore (no ports), runs the scenario, writes
``OUT/rank<R>.pt``. The tests import this module too, for the inputs and the single-process references.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch

WIDTH = 5  # feature width of the op tests
OPS_SIZES = [2, 0, 3]  # rows each rank contributes to the uneven gather


# --- inputs shared by the workers and the references --------------------------------------------------------
def ops_input(rank: int, rows: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(rows, WIDTH, generator=g)


def ops_weight(rank: int, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(200 + rank)
    return torch.randn(*shape, generator=g)


# name -> (world, members, split, branch ranks or None, trunk rank, root rank)
TRAIN_CASES = {
    "quick3": (3, 3, "conv1", [0, 1, 2], 0, 0),
    "quick4_12": (3, 4, "conv1", [1, 2, 1, 2], 0, 0),
    "quick_trunk1": (3, 3, "conv1", [0, 2, 0], 1, 0),
    "indep4": (2, 4, None, None, 0, 0),
    # one copy of the placement per data-parallel replica (the world is replicas x these ranks)
    "indep4_1": (1, 4, None, None, 0, 0),
    "quick4_2": (2, 4, "conv1", [0, 1, 0, 1], 0, 0),
    # a world of one, inside the test process (test_one_rank.py)
    "quick3_1": (1, 3, "conv1", [0, 0, 0], 0, 0),
}
# The runs the tests make (``case:loss:dtype:image_size``); see test_train.py for why most are float64.
WORLD3_RUNS = [
    "quick3:mcl:f32:16",
    "quick3:score_averaged_ce:f64:16",
    "quick4_12:mcl:f64:16",
    "quick4_12:score_averaged_ce:f64:16",
    "quick_trunk1:mcl:f64:16",
]
WORLD2_RUNS = ["indep4:mcl:f64:16", "indep4:score_averaged_ce:f64:16"]
# 2 replicas x 1 rank and 2 replicas x 2 ranks, each replica training on half of every batch
REPLICA_RUNS = {2: ["indep4_1:mcl:f64:16"], 4: ["quick4_2:mcl:f64:16"]}
REPLICAS = 2
DTYPES = {"f32": torch.float32, "f64": torch.float64}
STEPS, BATCH = 20, 16


def parse_run(run: str):
    """``case:loss:dtype:image_size``, e.g. ``quick3:mcl:f64:16``."""
    case, loss_name, dtype, size = run.split(":")
    return TRAIN_CASES[case], loss_name, DTYPES[dtype], int(size)


def build_tree(members: int, split, dtype=torch.float32, size: int = 32):
    from mheads.models import model_factory
    from mheads.tree.treenet import TreeNet

    return TreeNet(
        model_factory("cifar10_quick", num_classes=10, image_size=size), members, split, seed=0
    ).to(dtype)


def batch(step: int, dtype=torch.float32, size: int = 32):
    g = torch.Generator().manual_seed(1000 + step)
    return (
        torch.randn(BATCH, 3, size, size, generator=g).to(dtype),
        torch.randint(0, 10, (BATCH,), generator=g),
    )


def loss_of(name: str, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
    from mheads.ensemble.losses import compute_loss

    return compute_loss(name, logits, y, k=1, generator=torch.Generator().manual_seed(5000 + step)).loss


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=0.004)


def train_reference(run: str) -> dict:
    """The single-process run the distributed one must match."""
    (_, members, split, _, _, _), loss_name, dtype, size = parse_run(run)
    tree = build_tree(members, split, dtype, size)
    opt = sgd(tree.parameters())
    losses = []
    for step in range(STEPS):
        x, y = batch(step, dtype, size)
        opt.zero_grad()
        loss = loss_of(loss_name, tree(x), y, step)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        eval_logits = tree.eval()(batch(STEPS, dtype, size)[0][:5])
    return {
        "losses": losses,
        "state": {k: v.clone() for k, v in tree.state_dict().items()},
        "eval_logits": eval_logits,
    }


# --- scenarios ----------------------------------------------------------------------------------------------
def scenario_ops(rank: int, world: int, arg: str = "") -> dict:
    import torch.distributed as dist

    from mheads.dist import broadcast, gather

    out = {}
    # broadcast over the world from rank 1: y_r = x_1; loss_r = <y_r, w_r>, so x_1.grad = sum_r w_r.
    x = ops_input(1, 3) if rank == 1 else torch.empty(3, WIDTH)
    x.requires_grad_(rank == 1)
    y = broadcast(x, 1)
    (y * ops_weight(rank, y.shape)).sum().backward()
    out["bcast_y"], out["bcast_grad"] = y.detach(), x.grad
    # uneven gather at rank 2 with known sizes, and with sizes exchanged
    for tag, sizes in (("given", OPS_SIZES), ("exchanged", None)):
        x = ops_input(rank, OPS_SIZES[rank]).requires_grad_()
        z = gather(x, 2, sizes=sizes)
        loss = (z * ops_weight(7, z.shape)).sum() if rank == 2 else z.sum()
        loss.backward()
        out[f"gather_{tag}_z"], out[f"gather_{tag}_grad"] = z.detach(), x.grad
    # a subset group {0, 2}: broadcast from 2, then gather at 0 of (y * (rank + 1)); rank 1 takes no part
    sub = dist.new_group([0, 2])
    if rank != 1:
        x = ops_input(2, 2).requires_grad_() if rank == 2 else torch.empty(2, WIDTH)
        y = broadcast(x, 2, sub)
        z = gather(y * (rank + 1), 0, sub)
        loss = (z * ops_weight(9, z.shape)).sum() if rank == 0 else z.sum()
        loss.backward()
        out["sub_z"], out["sub_grad"] = z.detach(), x.grad
    # no_grad: the forward still works and needs no backward
    with torch.no_grad():
        out["nograd_z"] = gather(ops_input(rank, 1), 0)
    # a placement leaving ranks idle is refused on every rank, before any communication
    from mheads.dist import DistributedTreeNet, Placement, PlacementError

    try:
        DistributedTreeNet(build_tree(2, "conv1", size=16), Placement(0, [0, 0]))
    except PlacementError as err:
        out["idle_error"] = str(err)
    # the engine's communicator (root = rank 0)
    out["scalars"] = COMM.broadcast_scalars(torch.tensor([rank + 0.5, -1.0]))
    out["any"] = [COMM.any(rank == 2), COMM.any(False)]
    COMM.barrier()
    out["is_root"] = COMM.is_root
    return out


def scenario_suite(rank: int, world: int, arg: str) -> dict:
    """``arg``: comma-separated items run one after the other in the same processes: ``ops`` or a training run
    (see :func:`parse_run`)."""
    out = {}
    for item in arg.split(","):
        t0, c0 = time.perf_counter(), time.process_time()
        if item == "ops":
            out[item] = scenario_ops(rank, world)
        elif item in REPLICA_RUNS.get(world, []):
            out[item] = train_replicated(item)
        else:
            out[item] = train_one(rank, item)
        print(
            f"{item}: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s cpu", flush=True
        )
    return out


def train_one(rank: int, run: str) -> dict:
    from mheads.dist import DistributedTreeNet, Placement

    (_, members, split, branches, trunk, root), loss_name, dtype, size = parse_run(run)
    model = DistributedTreeNet(build_tree(members, split, dtype, size), Placement(trunk, branches, root))
    initial = model.full_state_dict()
    opt = sgd(model.parameters()) if any(True for _ in model.parameters()) else None
    losses = []
    for step in range(STEPS):
        x, y = batch(step, dtype, size)
        if opt is not None:
            opt.zero_grad()
        logits = model(x)
        if model.is_root:
            loss = loss_of(loss_name, logits, y, step)
            losses.append(loss.item())
        else:
            assert logits.numel() == 0
            loss = logits.sum()
        loss.backward()
        if opt is not None:
            opt.step()
    model.eval()
    with torch.no_grad():
        eval_logits = model(batch(STEPS, dtype, size)[0][:5])
    final = model.full_state_dict()
    model.load_full_state_dict(initial if model.is_root else None)
    reloaded = model.full_state_dict()
    return {
        "losses": losses,
        "state": final,
        "eval_logits": eval_logits,
        "initial": initial,
        "reloaded": reloaded,
        "local_keys": list(model.state_dict().keys()),
    }


def train_replicated(run: str) -> dict:
    """``run`` with ``REPLICAS`` data-parallel replicas of its placement: each replica trains on its shard of
    every batch (the rows ``mheads.data.batching.shard_rows`` gives it), gradients averaged over replicas by
    the communicator, the loss summed over the replica roots; what fit does with ``dist.replicas``."""
    from mheads.data.batching import shard_rows
    from mheads.dist import DistributedTreeNet, Placement
    from mheads.dist.layout import make_layout

    (_, members, split, branches, trunk, root), loss_name, dtype, size = parse_run(run)
    layout = make_layout(REPLICAS)
    COMM.set_layout(layout)
    model = DistributedTreeNet(
        build_tree(members, split, dtype, size), Placement(trunk, branches, root), group=layout.model_group
    )
    params = list(model.parameters())
    opt = sgd(params) if params else None
    rows = shard_rows((layout.replica, REPLICAS), BATCH)
    losses = []
    for step in range(STEPS):
        x, y = batch(step, dtype, size)
        if opt is not None:
            opt.zero_grad()
        logits = model(x[rows])
        loss = loss_of(loss_name, logits, y[rows], step) if model.is_root else logits.sum()
        loss.backward()
        COMM.average_gradients(params)
        if model.is_root:
            losses.append(float(COMM.sum_over_replicas(loss.detach().reshape(1))[0]) / REPLICAS)
        if opt is not None:
            opt.step()
    final = model.full_state_dict() if layout.replica == 0 else {}
    return {
        "losses": losses,
        "state": final,
        "replica": layout.replica,
        "model_rank": layout.model_rank,
        "is_root": model.is_root,
    }


def scenario_fault(rank: int, world: int, arg: str) -> dict:
    """Train until rank 2 dies at step 1 (``arg``: "kill" = SIGKILL, "raise" = a Python error)."""
    from mheads.dist import DistributedTreeNet

    model = DistributedTreeNet(build_tree(3, "conv1", size=16), {"trunk": 0, "branches": [0, 1, 2]})
    opt = sgd(model.parameters())
    for step in range(1000):
        if rank == 2 and step == 1:
            print(f"DEATH {time.time():.3f}", flush=True)
            if arg == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("rank 2 tripped over a bad batch")
        x, y = batch(step % 4, size=16)
        opt.zero_grad()
        logits = model(x)
        loss = loss_of("mcl", logits, y, step) if model.is_root else logits.sum()
        loss.backward()
        COMM.any(False)
        opt.step()
    return {}


COMM = None


def main(argv: list[str]) -> int:
    scenario, rank, world, store_path, out_dir = argv[:5]
    arg = argv[5] if len(argv) > 5 else ""
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    import torch.distributed as dist

    from mheads.dist import DistributedFailure, init

    global COMM
    print(f"started: {time.process_time():.2f} s cpu", flush=True)
    timeout = float(os.environ.get("MHEADS_TEST_TIMEOUT", "30"))
    if store_path == "env":  # started by torchrun
        from mheads.dist import init_from_env

        COMM = init_from_env(timeout, "gloo")
        rank, world = COMM.rank, COMM.world_size
    else:
        COMM = init(dist.FileStore(store_path, world), rank, world, timeout_s=timeout, backend="gloo")
    try:
        result = globals()[f"scenario_{scenario}"](rank, world, arg)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    except DistributedFailure as err:
        print(f"mheads: error: {err}", file=sys.stderr, flush=True)
        print(f"EXIT {time.time():.3f}", flush=True)
        COMM.destroy(err)
        # as the CLI does (mheads.cli.commands._exit_now): the broken process group's destructor would abort
        # the process at interpreter exit ("terminate called without an active exception", exit -6)
        sys.stderr.flush()
        os._exit(4)
    except BaseException as err:
        COMM.destroy(err)
        raise
    COMM.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
