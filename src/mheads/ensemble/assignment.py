"""Top-k assignment of examples to the members with the lowest cost, ties broken uniformly at random.

Shared by the MCL losses (section 6.2: each example trains the k members with the lowest loss) and by the
oracle-assignment metric (Figure 2: which member has the lowest loss on each example).
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int

__all__ = ["topk_assignment"]


def topk_assignment(
    costs: torch.Tensor,
    k: int,
    *,
    generator: torch.Generator | None = None,
    eligible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Assign each example to the `k` members with the lowest cost.

    Args:
        costs: `(M, B)` per-member, per-example cost (for MCL the cross-entropy); read, never differentiated.
        k: members per example, `1 <= k <= M`.
        generator: seeds the tie-breaking; `None` uses torch's global generator on `costs.device`.
            A CPU generator is consumed in example-major order (`B * M` uniforms per call), so splitting a
            data set into batches draws the same numbers as one call on the whole set.
        eligible: optional `(M, B)` bool; a member is never assigned an example it is not eligible for
            (bagging: the example is not in its bootstrap sample). An example with fewer than `k` eligible
            members is assigned to just those.

    Returns:
        `(M, B)` bool, `True` where member m is assigned example i. Among members with exactly equal costs
        every subset is equally likely. NaN costs sort after every number.
    """
    if costs.ndim != 2:
        raise ValueError(f"costs must have shape (M, B), got shape {tuple(costs.shape)}")
    num_members, batch = costs.shape
    check_int("k", k, 1, num_members)
    if eligible is not None and (eligible.shape != costs.shape or eligible.dtype != torch.bool):
        raise ValueError(
            f"eligible must be a bool tensor of shape {tuple(costs.shape)}, "
            f"got {eligible.dtype} of shape {tuple(eligible.shape)}"
        )
    costs = costs.detach()
    if k == num_members:
        everyone = torch.ones_like(costs, dtype=torch.bool)
        return everyone if eligible is None else everyone & eligible

    # A random permutation of the members per example, followed by a stable sort on the cost, orders tied
    # members uniformly at random. Drawing (B, M) and transposing keeps the stream example-major.
    draw_device = generator.device if generator is not None else costs.device
    keys = torch.rand((batch, num_members), generator=generator, device=draw_device, dtype=torch.float64)
    perm = keys.to(costs.device).t().argsort(dim=0)  # (M, B)
    order = torch.sort(costs.gather(0, perm), dim=0, stable=True).indices
    if eligible is not None:
        # A second stable sort moves ineligible members last while keeping the cost order within each group.
        ineligible = (~eligible.gather(0, perm)).gather(0, order).to(torch.uint8)
        order = order.gather(0, torch.sort(ineligible, dim=0, stable=True).indices)
    chosen = perm.gather(0, order[:k])  # (k, B) member indices
    assignment = torch.zeros_like(costs, dtype=torch.bool).scatter_(0, chosen, True)
    return assignment if eligible is None else assignment & eligible
