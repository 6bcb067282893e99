"""Scoring heads, after resilient MCL (Letzelter et al., "Resilient Multiple Choice Learning: A learned
scoring scheme with application to audio scene analysis", NeurIPS 2023): besides its logits, each member
predicts from shared features the probability that it is the member MCL assigns the input (its "winner"
score).

A :class:`~mheads.tree.treenet.TreeNet` built with ``scoring_heads=True`` owns one :class:`ScoringHeads`
(``tree.scoring``), so the heads are saved, loaded and moved with the rest of its weights; the loss
``mcl_scored`` trains them against the MCL assignment.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ScoringHeads", "score_features", "scored_predictions"]


def score_features(h: torch.Tensor) -> torch.Tensor:
    """The heads' input from a trunk output ``h: (B, ...)``: global-average-pooled when 4-D ``(B, C, H, W)``,
    then flattened -> ``(B, F)``."""
    if h.ndim == 4:
        h = h.mean(dim=(2, 3))
    return h.flatten(1)


class ScoringHeads(nn.Module):
    """One linear layer ``F -> 1`` per member: features -> score logits ``(M, B)`` (``sigmoid`` is the
    probability that member m wins the input).

    Args:
        num_members: M.
        in_features: F.
        shared: True when every member reads the same features ``(B, F)`` (the trunk's output); False when
            each reads its own ``(M, B, F)`` (a tree without a trunk: each member's own logits).

    The heads start at zero (every score 1/2, gradients still differ per member since the targets do), which
    draws no random numbers: a tree with heads initializes its members exactly as one without.
    """

    def __init__(self, num_members: int, in_features: int, shared: bool):
        super().__init__()
        self.shared = shared
        heads = [nn.utils.skip_init(nn.Linear, in_features, 1) for _ in range(num_members)]
        with torch.no_grad():
            for head in heads:
                head.weight.zero_()
                head.bias.zero_()
        self.heads = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``(B, F)`` (shared) or ``(M, B, F)`` (per member) -> score logits ``(M, B)``."""
        want = 2 if self.shared else 3
        if features.ndim != want or (not self.shared and features.shape[0] != len(self.heads)):
            layout = "(B, F)" if self.shared else f"(M, B, F) with M = {len(self.heads)}"
            raise ValueError(f"features: got shape {tuple(features.shape)}; expected {layout}")
        if self.shared:
            return torch.stack([head(features)[:, 0] for head in self.heads])
        return torch.stack([head(f)[:, 0] for head, f in zip(self.heads, features)])


def scored_predictions(logits: torch.Tensor, score_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two predictions from member logits ``(M, B, C)`` and score logits ``(M, B)``, each ``(B,)`` class
    indices: that of the member with the highest score (the first on ties), and the argmax of the members'
    probabilities weighted by their scores, ``sum_m sigmoid(s_m) softmax(l_m) / sum_m sigmoid(s_m)``."""
    best = score_logits.argmax(dim=0)  # (B,)
    chosen = logits.gather(0, best.view(1, -1, 1).expand(1, -1, logits.shape[-1]))[0]  # (B, C)
    weights = torch.sigmoid(score_logits).unsqueeze(-1)  # (M, B, 1)
    weighted = (weights * torch.softmax(logits, dim=-1)).sum(dim=0) / weights.sum(dim=0)  # (B, C)
    return chosen.argmax(dim=-1), weighted.argmax(dim=-1)
