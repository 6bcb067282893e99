"""Member logits `(M, B, C)`: input checks and the one place where members are combined.

Every loss and metric reads member logits `(M, B, C)` (members, batch, classes) and integer targets `(B,)`.
Combining members happens only here: the mean of the members' scores (`mean_scores`; `ensemble_scores`
for the score-averaged prediction, which falls back to the mean of the probabilities where members mask
disjoint classes with -inf) and the mean of their probabilities (`ensemble_log_probs`, kept in log space).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_logits_targets",
    "compute_dtype",
    "member_log_probs",
    "pick_targets",
    "member_nll",
    "mean_scores",
    "ensemble_scores",
    "ensemble_log_probs",
    "ensemble_probs",
    "ensemble_nll",
    "ensemble_nll_from_members",
]


def check_logits_targets(logits: torch.Tensor, targets: torch.Tensor, *, check_values: bool = True) -> None:
    """Raise ValueError (TypeError for non-tensors) unless `logits: (M, B, C)` and `targets: (B,)` fit.

    `check_values` also checks that every target lies in `[0, C)`; it reads the targets' values, which
    costs a host synchronisation on an accelerator. Non-finite logits are not an error here: losses
    report them (see `mheads.ensemble.loss_spec.LossResult.per_member`). Returns nothing and converts
    nothing; the uncertainty metrics' check, which also returns float64 logits and int64 targets, is
    `mheads.ensemble.uncertainty.checked_float64_logits_targets`.
    """
    for name, value in (("logits", logits), ("targets", targets)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (M, B, C), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    num_members, batch, num_classes = logits.shape
    if min(num_members, batch, num_classes) < 1:
        raise ValueError(f"logits shape (M, B, C) must have M, B, C >= 1, got {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != batch:
        raise ValueError(f"targets must have shape (B,) = ({batch},), got shape {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor of class indices, got dtype {targets.dtype}")
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but logits are on {logits.device}")
    if check_values:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"targets must lie in [0, {num_classes}), got values in [{low}, {high}]")


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """The dtype losses are computed in: at least float32, because log-softmax in fp16/bf16 loses the
    small probabilities that cross-entropy needs (autocast upcasts log_softmax for the same reason)."""
    return torch.promote_types(logits.dtype, torch.float32)


def member_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """`logits: (M, B, C)` -> each member's log-probabilities `(M, B, C)`."""
    return torch.log_softmax(logits.to(compute_dtype(logits)), dim=-1)


def pick_targets(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`values: (M, B, C)`, `targets: (B,)` -> `values[m, i, targets[i]]` as `(M, B)`."""
    num_members, batch, _ = values.shape
    index = targets.long().view(1, batch, 1).expand(num_members, batch, 1)
    return values.gather(-1, index).squeeze(-1)


def member_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-member, per-example cross-entropy `-log p_m(y_i)`: `(M, B, C), (B,) -> (M, B)`."""
    return -pick_targets(member_log_probs(logits), targets)


def mean_scores(logits: torch.Tensor) -> torch.Tensor:
    """Score averaging (section 6.1): the mean of the members' pre-softmax scores, `(M, B, C) -> (B, C)`. A
    class some member masks with -inf gets -inf; where members mask disjoint classes every class does (the
    energy score is then +inf). The prediction's argmax and softmax read `ensemble_scores`."""
    return logits.to(compute_dtype(logits)).mean(dim=0)


def ensemble_scores(logits: torch.Tensor) -> torch.Tensor:
    """The score-averaged prediction, `(M, B, C) -> (B, C)`, for its argmax and softmax: `mean_scores`, except
    on an example where every class is masked (-inf) by some member (members masking disjoint classes), which
    has no softmax there. Such an example falls back to probability averaging: `ensemble_log_probs`, whose
    softmax is itself (the mean of the members' probabilities), finite wherever each member has a finite
    class and, like score averaging, unchanged when a member's logits are shifted by a constant. A class every
    member masks stays -inf. Equal to `mean_scores`, bit for bit, on every other example."""
    x = logits.to(compute_dtype(logits))
    plain = x.mean(dim=0)
    none = (plain == -torch.inf).all(dim=-1, keepdim=True)  # (B, 1): no class has a finite mean score
    # The other examples' logits read as 0: whatever they hold stays out of the unused branch's gradient.
    return torch.where(none, _log_mean_probs(torch.where(none, x, 0.0)), plain)


def _log_mean_probs(x: torch.Tensor) -> torch.Tensor:
    """`ensemble_log_probs` of `x: (M, ..., C)` in its compute dtype, with a finite gradient where a class is
    -inf for every member: it is left out of the logsumexp, whose backward is NaN on all -inf."""
    log_probs = member_log_probs(x)
    dead = (log_probs == -torch.inf).all(dim=0)
    mixed = torch.logsumexp(torch.where(dead, 0.0, log_probs), dim=0) - math.log(x.shape[0])
    return torch.where(dead, -torch.inf, mixed)


def ensemble_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Probability averaging (section 6.1) in log space: `log mean_m softmax(s_m)`, `(M, B, C) -> (B, C)`.

    Computed as `logsumexp_m log_softmax(s_m) - log M`, never as the log of an averaged softmax, so that a
    class every member gives a probability below the float range still has a finite log-probability. A class
    every member masks with -inf stays -inf with a finite gradient (`_log_mean_probs`).
    """
    return _log_mean_probs(logits)


def ensemble_probs(logits: torch.Tensor) -> torch.Tensor:
    """Probability averaging (section 6.1): `mean_m softmax(s_m)`, `(M, B, C) -> (B, C)`. For metrics; losses
    use `ensemble_log_probs` or `ensemble_nll`, which stay finite where probabilities underflow."""
    return torch.softmax(logits.to(compute_dtype(logits)), dim=-1).mean(dim=0)


def ensemble_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example NLL of the probability-averaged ensemble, `-log mean_m p_m(y_i)`: `(M, B, C) -> (B,)`."""
    return ensemble_nll_from_members(member_nll(logits, targets))


def ensemble_nll_from_members(nll: torch.Tensor) -> torch.Tensor:
    """`nll: (M, B)` member NLLs -> `(B,)` `-log mean_m exp(-nll_m)`.

    Only the target column is needed, so this is a logsumexp over members of `-nll` (appendix B explains
    why the averaged softmax itself must not be formed).
    """
    return -(torch.logsumexp(-nll, dim=0) - math.log(nll.shape[0]))
