"""broadcast / gather on 3 gloo processes: forward values and gradients against one-process autograd."""

import pytest
import torch
from dist_worker import OPS_SIZES, ops_input, ops_weight

pytestmark = [pytest.mark.slow, pytest.mark.dist, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def ranks(world3):
    return [r["ops"] for r in world3]


def test_broadcast_values_and_gradient_sum_at_source(ranks):
    x = ops_input(1, 3).requires_grad_()
    loss = sum((x * ops_weight(r, x.shape)).sum() for r in range(3))  # three copies of x, one per rank
    loss.backward()
    for r in range(3):
        torch.testing.assert_close(ranks[r]["bcast_y"], x.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ranks[1]["bcast_grad"], x.grad, rtol=1e-6, atol=1e-6)
    assert ranks[0]["bcast_grad"] is None and ranks[2]["bcast_grad"] is None


@pytest.mark.parametrize("tag", ["given", "exchanged"])
def test_uneven_gather_values_and_gradient_routed_back(ranks, tag):
    xs = [ops_input(r, n).requires_grad_() for r, n in enumerate(OPS_SIZES)]
    z = torch.cat(xs)
    (z * ops_weight(7, z.shape)).sum().backward()
    torch.testing.assert_close(ranks[2][f"gather_{tag}_z"], z.detach(), rtol=0, atol=0)
    for r in (0, 1):
        assert ranks[r][f"gather_{tag}_z"].shape == (0, xs[0].shape[1])
    for r in range(3):
        torch.testing.assert_close(ranks[r][f"gather_{tag}_grad"], xs[r].grad, rtol=0, atol=0)


def test_subset_group_broadcast_then_gather(ranks):
    x = ops_input(2, 2).requires_grad_()
    z = torch.cat([x * 1, x * 3])  # group {0, 2}: rank 0 multiplies its copy by 1, rank 2 by 3
    (z * ops_weight(9, z.shape)).sum().backward()
    torch.testing.assert_close(ranks[0]["sub_z"], z.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ranks[2]["sub_grad"], x.grad, rtol=1e-6, atol=1e-6)
    assert "sub_z" not in ranks[1]  # rank 1 is outside the group and took no part


def test_gather_without_grad(ranks):
    expected = torch.cat([ops_input(r, 1) for r in range(3)])
    torch.testing.assert_close(ranks[0]["nograd_z"], expected, rtol=0, atol=0)


def test_comm_scalars_any_and_root(ranks):
    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["scalars"], torch.tensor([0.5, -1.0]), rtol=0, atol=0)
        assert res["any"] == [True, False]
        assert res["is_root"] == (r == 0)


def test_idle_ranks_are_refused(ranks):
    for res in ranks:
        assert res["idle_error"].startswith("placement: ranks [1, 2] would hold no part of the model")
