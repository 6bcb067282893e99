"""Scoring heads (mheads.tree.scoring): one linear head per member on the trunk's pooled output (or, without a
trunk, on the member's logits), owned by the TreeNet, trained by the loss mcl_scored."""

import pytest
import torch
from torch import nn

from mheads.ensemble.losses import compute_loss
from mheads.models import model_factory
from mheads.tree.scoring import ScoringHeads, score_features, scored_predictions
from mheads.tree.treenet import TreeNet

SHAPE = (1, 3, 32, 32)
SPLITS = ["conv1", None, [("conv1", 2), ("conv2", 2)]]


def tree(split, members=4, **kw) -> TreeNet:
    return TreeNet(
        model_factory("cifar10_quick"), members, split, scoring_heads=True, example_input=SHAPE, **kw
    )


@pytest.mark.parametrize("split", SPLITS, ids=str)
@pytest.mark.parametrize("mode", ["loop", "fused"])
def test_forward_with_scores_gives_forwards_logits_and_one_score_per_member(split, mode):
    net = tree(split, exec_mode=mode)
    x = torch.randn(5, 3, 32, 32)
    logits, scores = net.forward_with_scores(x)
    assert torch.equal(logits, net(x))
    assert scores.shape == (4, 5) and torch.equal(scores, torch.zeros(4, 5))  # zero-initialized heads


def test_heads_read_the_pooled_trunk_output_or_the_members_logits():
    net = tree("conv1")
    assert net.scoring.shared and net.scoring.heads[0].in_features == 32  # conv1's 32 channels, pooled
    with torch.no_grad():
        for m, head in enumerate(net.scoring.heads):
            head.weight.normal_()
            head.bias.fill_(m)
    x = torch.randn(3, 3, 32, 32)
    h = score_features(net.root.layers(x))
    want = torch.stack([h @ head.weight[0] + head.bias for head in net.scoring.heads])
    torch.testing.assert_close(net.forward_with_scores(x)[1], want)
    independent = tree(None)
    assert not independent.scoring.shared and independent.scoring.heads[0].in_features == 10
    with torch.no_grad():
        for head in independent.scoring.heads:
            head.weight.normal_()
    logits, scores = independent.forward_with_scores(x)
    want = torch.stack([logits[m] @ head.weight[0] for m, head in enumerate(independent.scoring.heads)])
    torch.testing.assert_close(scores, want)


def test_score_features_pool_4d_and_flatten():
    h = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(score_features(h), h.mean(dim=(2, 3)))
    assert score_features(torch.ones(2, 3, 4)).shape == (2, 12)
    assert score_features(torch.ones(2, 7)).shape == (2, 7)


def test_heads_change_nothing_else_and_live_in_the_state_dict():
    torch.manual_seed(3)
    plain = TreeNet(model_factory("cifar10_quick"), 2, "conv1", seed=5)
    after_plain = torch.rand(1)
    torch.manual_seed(3)
    scored = tree("conv1", members=2, seed=5)
    assert torch.equal(torch.rand(1), after_plain)  # building the heads drew no random numbers
    a, b = plain.state_dict(), scored.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(set(b) - set(a)) == [
        "scoring.heads.0.bias",
        "scoring.heads.0.weight",
        "scoring.heads.1.bias",
        "scoring.heads.1.weight",
    ]
    reloaded = tree("conv1", members=2, seed=9)
    with torch.no_grad():
        scored.scoring.heads[1].bias.fill_(2.5)
    reloaded.load_state_dict(scored.state_dict())
    assert reloaded.scoring.heads[1].bias.item() == 2.5
    assert plain.scoring is None


def test_gradients_of_mcl_scored_reach_the_heads_and_the_trunk():
    net = tree("conv1", members=3)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    logits, scores = net.forward_with_scores(x)
    loss = compute_loss(
        "mcl_scored", logits, y, score_logits=scores, generator=torch.Generator().manual_seed(0)
    )
    loss.loss.backward()
    for head in net.scoring.heads:
        # bias: (M B)^-1 sum_i (sigmoid(0) - alpha_mi), zero for a member that won exactly half the batch
        want = (0.5 - loss.assignment.double().mean(dim=1)) / 3
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    torch.testing.assert_close(
        torch.cat([h.bias.grad for h in net.scoring.heads]).double(), want, rtol=1e-6, atol=1e-7
    )
    # The scoring term alone trains the trunk too (once the heads are not zero), but no branch.
    net.zero_grad()
    with torch.no_grad():
        for head in net.scoring.heads:
            head.weight.normal_()
    logits, scores = net.forward_with_scores(x)
    compute_loss("mcl_scored", logits.detach(), y, score_logits=scores).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.root.layers.parameters())
    assert all(p.grad is None for p in net.root.branches.parameters())


def test_scored_predictions_known_answer():
    # Two members, two examples, three classes.
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 3.0, 0.0], [0.0, 2.0, 0.0]]])
    scores = torch.tensor([[0.1, -1.0], [0.0, 1.0]])
    best, weighted = scored_predictions(logits, scores)
    # Example 0: member 0 scores highest and says class 0; weighted by sigmoid(0.1) = 0.525 and
    # sigmoid(0) = 0.5, class 0 gets 0.525 * 0.787 + 0.5 * 0.045 = 0.436 and class 1 gets
    # 0.525 * 0.107 + 0.5 * 0.909 = 0.510.
    # Example 1: member 1 scores highest and says class 1; class 1 also wins the weighted mixture (0.632).
    assert best.tolist() == [0, 1]
    assert weighted.tolist() == [1, 1]


def test_errors_name_what_is_missing():
    with pytest.raises(ValueError, match="forward_with_scores: this TreeNet has no scoring heads"):
        TreeNet(model_factory("cifar10_quick"), 2, "conv1").forward_with_scores(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="scoring_heads: got True without example_input"):
        TreeNet(model_factory("cifar10_quick"), 2, "conv1", scoring_heads=True)
    heads = ScoringHeads(2, 4, shared=False)
    with pytest.raises(ValueError, match=r"features: got shape \(3, 5, 4\); expected \(M, B, F\) with M = 2"):
        heads(torch.zeros(3, 5, 4))


def test_from_parts_tree_takes_heads():
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    net = TreeNet.from_parts(trunk, lambda: nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), 2)
    net(torch.randn(1, 3, 8, 8))  # materializes the lazy layers
    net.add_scoring_heads((1, 3, 8, 8))
    logits, scores = net.forward_with_scores(torch.randn(5, 3, 8, 8))
    assert logits.shape == (2, 5, 4) and scores.shape == (2, 5) and net.scoring.heads[0].in_features == 8
