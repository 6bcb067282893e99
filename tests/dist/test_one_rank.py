"""The multi-process tests' logic at world size 1, inside the test process (the fast tier's check of
``mheads.dist``): the gloo process group, the communicator, broadcast / gather with their backward, the
placement's refusal, and ``DistributedTreeNet`` training equal to the single-process TreeNet.

The multi-process tests (``-m dist``, in the slow tier) check the same code across 2-4 processes; what a
world of one cannot show is the data actually moving between ranks.
"""

import dist_worker
import pytest
import torch
import torch.distributed as dist
from dist_worker import build_tree, train_one, train_reference

from mheads.dist import DistributedTreeNet, Placement, PlacementError, broadcast, gather, init

RUNS = ["quick3_1:mcl:f64:16", "indep4_1:score_averaged_ce:f64:16"]  # a TreeNet; 4 independent members


@pytest.fixture(scope="module")
def comm():
    """The default process group of one gloo rank in this process, destroyed afterwards."""
    assert not dist.is_initialized()
    c = init(dist.HashStore(), 0, 1, timeout_s=30, backend="gloo")
    try:
        yield c
    finally:
        c.destroy()
    assert not dist.is_initialized()


def test_broadcast_and_gather_are_identities_with_their_gradients(comm):
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
    w = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    (broadcast(x, 0) * w).sum().backward()
    torch.testing.assert_close(x.grad, w, rtol=0, atol=0)
    x.grad = None
    for sizes in ([3], None):  # sizes given, and exchanged
        z = gather(x, 0, sizes=sizes)
        torch.testing.assert_close(z, x.detach(), rtol=0, atol=0)
        (z * w).sum().backward()
        torch.testing.assert_close(x.grad, w, rtol=0, atol=0)
        x.grad = None
    with torch.no_grad():
        assert gather(x, 0).shape == (3, 5)


def test_comm_scalars_any_and_root(comm):
    torch.testing.assert_close(comm.broadcast_scalars(torch.tensor([0.5, -1.0])), torch.tensor([0.5, -1.0]))
    assert comm.any(True) and not comm.any(False)
    comm.barrier()
    assert comm.is_root and (comm.rank, comm.world_size) == (0, 1)


def test_a_rank_outside_the_world_is_refused(comm):
    with pytest.raises(PlacementError, match=r"branch_ranks\[1\]: got 1; only ranks 0..0 exist"):
        DistributedTreeNet(build_tree(2, "conv1", size=16), Placement(0, [0, 1]))


@pytest.mark.parametrize("run", RUNS)
def test_training_matches_the_single_process_run_and_state_round_trips(comm, run, monkeypatch):
    monkeypatch.setattr(dist_worker, "STEPS", 3)  # the multi-process runs take 20 steps
    got, ref = train_one(0, run), train_reference(run)  # on the session's one thread, as the workers run
    assert len(got["losses"]) == 3
    torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(ref["losses"]), rtol=0, atol=1e-10)
    assert list(got["state"]) == list(ref["state"])
    for key, value in ref["state"].items():
        torch.testing.assert_close(got["state"][key], value, rtol=0, atol=1e-10, msg=key)
    torch.testing.assert_close(got["eval_logits"], ref["eval_logits"], rtol=0, atol=1e-10)
    for key, value in got["initial"].items():
        torch.testing.assert_close(got["reloaded"][key], value, rtol=0, atol=0, msg=key)
    assert got["local_keys"] == list(ref["state"])  # one rank holds the whole model
