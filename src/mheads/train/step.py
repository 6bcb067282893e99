"""One update: forward over ``train.accumulate`` batches, the ensemble loss at the root, backward, the
finiteness guard, the optimizer step.

Every random draw of a step is derived from the run seed and the batch number (``mheads.core.seeding``), so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from mheads.config import Config
from mheads.core.seeding import Stream, derive_seed, derived_generator
from mheads.ensemble.losses import compute_loss
from mheads.train.numerics import NumericalFault, all_finite, bad_members

__all__ = ["train_step"]


def train_step(model, opt, data, cfg: Config, it: int, comm, params, owners) -> tuple[float, torch.Tensor]:
    """One update (``cfg.train.accumulate`` batches). Returns (loss, per-member loss) as seen by the root;
    raises :class:`NumericalFault` (after zeroing the gradients, so no update happens) on a non-finite
    loss/gradient."""
    t, L = cfg.train, cfg.loss
    torch.manual_seed(derive_seed(t.seed, Stream.STEP, it))  # dropout and anything else drawing globally
    opt.zero_grad(set_to_none=True)
    loss_name = L.name if it >= L.pretrain_iterations else "independent_ce"
    total = torch.zeros((), device=data.device)
    per_member = None
    for a in range(t.accumulate):
        b = it * t.accumulate + a
        x, y, w = data.train_batch(b, derived_generator(t.seed, Stream.AUGMENT, b, device=data.device))
        with torch.autocast(data.device.type, dtype=torch.bfloat16) if t.amp else nullcontext():
            logits = model(x)  # (M, B, C) at the root
        if comm.is_root:
            res = compute_loss(loss_name, logits.float(), y, k=L.k, mix=L.mix, beta=L.beta, weights=w,
                               label_smoothing=L.label_smoothing,
                               generator=derived_generator(t.seed, Stream.MCL, b, device=logits.device))
            loss = res.loss / t.accumulate
            per_member = res.per_member if per_member is None else per_member + res.per_member
            total = total + loss.detach()
        else:
            loss = logits.sum()  # zero-element: its backward pulls this rank's gradient from the root
        loss.backward()
    if comm.any(not all_finite(per_member, params)):
        members, where = bad_members(per_member, params, owners, cfg.model.members)
        opt.zero_grad(set_to_none=True)
        raise NumericalFault(it, members, where)
    opt.step()
    return float(comm.broadcast_scalars(total.reshape(1).float().cpu())[0]), per_member
