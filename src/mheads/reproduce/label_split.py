"""Label-space specialists (paper section 6.2, "MCL as label-space clustering").

- Random even splits: the C labels are dealt at random to the M members; each member trains only on examples
  of its labels (per-member example weights), and the ensemble's oracle accuracy is measured, over many
  trials.
- Hinton-style clusters (Hinton, Vinyals, Dean 2015): a generalist's label scores over the training set give a
  C x C covariance matrix; k-means on its rows groups easily confused labels; each member specializes on a
  group.
"""

from __future__ import annotations

import torch

from mheads.data.resident import prepare_data
from mheads.ensemble.strategies import random_label_split
from mheads.train.build import tree_from_meta
from mheads.train.run_model import load_run_weights


def random_split_lists(num_classes: int, num_members: int, seed: int) -> list[list[int]]:
    mask = random_label_split(num_classes, num_members, seed)
    return [torch.nonzero(row).flatten().tolist() for row in mask]


@torch.no_grad()
def label_score_covariance(run, cfg, device=torch.device("cpu"), max_examples: int = 10000) -> torch.Tensor:
    """(C, C) covariance of a trained generalist's softmax scores over (up to ``max_examples``) training
    images."""
    weights, meta = load_run_weights(run)
    net = tree_from_meta(meta)
    net.load_state_dict(weights)
    net.eval()
    data = prepare_data(cfg, device)
    probs = []
    seen = 0
    for x, _ in data.eval_batches("train", 1000):
        probs.append(net(x).softmax(-1).mean(0))  # (B, C): the generalist's (members') mean scores
        seen += len(x)
        if seen >= max_examples:
            break
    p = torch.cat(probs)[:max_examples].double()
    p = p - p.mean(0, keepdim=True)
    return (p.T @ p / (len(p) - 1)).float()


def cluster_labels(cov: torch.Tensor, num_members: int, seed: int = 0, iters: int = 50) -> list[list[int]]:
    """k-means (k = M) on the rows of the covariance matrix; every member gets at least one label."""
    C = cov.shape[0]
    if num_members > C:
        raise ValueError(f"members: {num_members} specialists need at least as many labels, got {C}")
    g = torch.Generator().manual_seed(seed)
    centers = cov[torch.randperm(C, generator=g)[:num_members]].clone()
    assign = torch.zeros(C, dtype=torch.long)
    for _ in range(iters):
        assign = torch.cdist(cov, centers).argmin(1)
        for m in range(num_members):  # an empty cluster takes the label farthest from its center
            if not (assign == m).any():
                far = torch.cdist(cov, centers).min(1).values.argmax()
                assign[far] = m
            centers[m] = cov[assign == m].mean(0)
    return [torch.nonzero(assign == m).flatten().tolist() for m in range(num_members)]
