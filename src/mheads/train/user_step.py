"""``mheads.train_step``: one update of a TreeNet in a user's own training loop.

Under a loss that is a sum of per-member terms ("independent") on a tree whose members share no layer, the
members are stepped one after another, each its forward, loss and backward (the path ``mheads.fit`` takes,
:func:`mheads.train.step.member_by_member`): one member's activations are alive at a time, as in a plain loop
over M separate modules. Any other loss (or a shared trunk) runs one forward of the whole tree and one
backward of ``compute_loss``. Both give the gradients of the whole-tree step, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mheads.ensemble.losses import LOSS_ALIASES, LOSSES, LossResult, check_loss_params, compute_loss
from mheads.train.step import member_by_member, members_separable
from mheads.tree import TreeNet

__all__ = ["train_step"]

_ALIASES = {v: k for k, v in LOSS_ALIASES.items()}  # "independent" -> "independent_ce"
_SEPARABLE_KWARGS = {
    "weights",
    "label_smoothing",
    "k",
    "mix",
    "beta",
    "epsilon",
    "temperature",
    "score_weight",
    "generator",
}


def _optimizers(opt, where: str = "optimizers") -> list[torch.optim.Optimizer]:
    opts = [opt] if isinstance(opt, torch.optim.Optimizer) else opt
    if (
        not isinstance(opts, Sequence)
        or not opts
        or not all(isinstance(o, torch.optim.Optimizer) for o in opts)
    ):
        raise TypeError(
            f"{where}: got {type(opt).__name__}; expected a torch.optim.Optimizer over the "
            "tree's parameters or a non-empty list of them (one per member, say)"
        )
    return list(opts)


def train_step(
    tree: TreeNet,
    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "independent",
    **loss_kwargs,
) -> LossResult:
    """Zero the gradients, compute ``loss`` on ``tree(x)`` and targets ``y``, backpropagate and step every
    optimizer. Returns the :class:`~mheads.ensemble.loss_spec.LossResult` (``loss`` detached, ``per_member``
    (M,), ``assignment`` for the assigning losses on the whole-tree path).

    Args:
        tree: a :class:`TreeNet` (in train mode, on the device of ``x``).
        optimizers: one optimizer over the tree's parameters, or several (e.g. one per member, as a plain loop
            over M models has); each is zeroed and stepped.
        x: ``(B, ...)`` inputs; ``y``: ``(B,)`` class indices.
        loss: a name of ``mheads.LOSS_NAMES`` or ``"independent"`` (= ``"independent_ce"``).
        **loss_kwargs: ``compute_loss``'s keyword arguments (``k``, ``mix``, ``beta``, ``epsilon``,
            ``temperature``, ``score_weight``, ``weights``, ``generator``, ``label_smoothing``); a scored loss
            ("mcl_scored") gets the scoring heads' logits from ``tree.forward_with_scores``.
    """
    if not isinstance(tree, TreeNet):
        raise TypeError(f"tree: got {type(tree).__name__}; expected a mheads.TreeNet")
    opts = _optimizers(optimizers)
    name = _ALIASES.get(loss, loss)
    if name not in LOSSES:
        raise ValueError(f"loss: got {loss!r}; expected one of {', '.join(('independent', *LOSSES))}")
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    if members_separable(tree, name, x.device) and set(loss_kwargs) <= _SEPARABLE_KWARGS:
        others = {
            k: v for k, v in loss_kwargs.items() if k not in ("weights", "label_smoothing", "generator")
        }
        check_loss_params(tree.num_members, **others)  # refused as compute_loss would
        total, per_member = member_by_member(
            tree, x, y, loss_kwargs.get("weights"), label_smoothing=loss_kwargs.get("label_smoothing", 0.0)
        )
        result = LossResult(total, per_member, None)
    else:
        if LOSSES[name].scores:
            logits, scores = tree.forward_with_scores(x)  # (M, B, C), (M, B)
            loss_kwargs = {**loss_kwargs, "score_logits": scores}
        else:
            logits = tree(x)  # (M, B, C)
        res = compute_loss(name, logits, y, **loss_kwargs)
        res.loss.backward()
        result = LossResult(res.loss.detach(), res.per_member, res.assignment)
    for opt in opts:
        opt.step()
    return result
