"""mheads.train_step in a user's own loop equals the plain whole-tree step (one forward, one backward of
compute_loss), member by member or not, with one optimizer or one per member."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mheads
from mheads.ensemble.losses import compute_loss


def net():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, 10, 10, generator=g), torch.randint(0, 5, (8,), generator=g)) for _ in range(n)
    ]


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)


def whole_tree_step(tree, opt, x, y, loss, **kw):
    opt.zero_grad(set_to_none=True)
    res = compute_loss(loss, tree(x), y, **kw)
    res.loss.backward()
    opt.step()
    return res


def assert_same_weights(a, b, exact=False):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if exact:
            assert torch.equal(p, q), name
        else:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("per_member_optimizers", [False, True])
@pytest.mark.parametrize("extra", [{}, {"label_smoothing": 0.1, "weights": "bagging"}])
def test_member_by_member_equals_the_whole_tree_step(per_member_optimizers, extra):
    """Independent members under the independent loss: stepped one after another (one member's activations
    alive at a time), the same update as one joint backward."""
    a = mheads.TreeNet(net, 3, None, seed=1)
    b = copy.deepcopy(a)
    if per_member_optimizers:
        opt_a = [sgd(a.member(m).parameters()) for m in range(3)]
    else:
        opt_a = sgd(a.parameters())
    opt_b = sgd(b.parameters())
    for i, (x, y) in enumerate(batches()):
        kw = dict(extra)
        if kw.get("weights") == "bagging":
            kw["weights"] = torch.randint(0, 3, (3, 8), generator=torch.Generator().manual_seed(i)).float()
        got = mheads.train_step(a, opt_a, x, y, "independent", **kw)
        want = whole_tree_step(b, opt_b, x, y, "independent_ce", **kw)
        torch.testing.assert_close(got.loss, want.loss.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.per_member, want.per_member, rtol=1e-6, atol=1e-6)
        assert not got.loss.requires_grad
    assert_same_weights(a, b)


def test_a_shared_trunk_and_an_assigning_loss_take_the_whole_tree_step():
    a = mheads.TreeNet(net, 3, "1", seed=2)
    b = copy.deepcopy(a)
    opt_a, opt_b = sgd(a.parameters()), sgd(b.parameters())
    for i, (x, y) in enumerate(batches()):
        got = mheads.train_step(a, opt_a, x, y, "mcl", k=1, generator=torch.Generator().manual_seed(i))
        want = whole_tree_step(b, opt_b, x, y, "mcl", k=1, generator=torch.Generator().manual_seed(i))
        assert torch.equal(got.assignment, want.assignment)
    assert_same_weights(a, b, exact=True)


def test_train_step_equals_a_plain_loop_over_separate_models():
    """The reference users start from: M separate modules, each with its own optimizer and cross-entropy."""
    tree = mheads.TreeNet(net, 2, None, seed=3)
    plain = [copy.deepcopy(tree.member(m)) for m in range(2)]
    opts = [sgd(p.parameters()) for p in plain]
    opt = sgd(tree.parameters())
    for x, y in batches():
        mheads.train_step(tree, opt, x, y)
        for model, o in zip(plain, opts):
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()
    for m in range(2):
        assert_same_weights(tree.member(m), plain[m])


def test_train_step_names_bad_arguments():
    tree = mheads.TreeNet(net, 2, None, seed=0)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="loss: got 'nope'; expected one of independent, independent_ce"):
        mheads.train_step(tree, sgd(tree.parameters()), x, y, "nope")
    with pytest.raises(TypeError, match="optimizers: got list; expected a torch.optim.Optimizer"):
        mheads.train_step(tree, [], x, y)
    with pytest.raises(ValueError, match="k: got 3"):
        mheads.train_step(tree, sgd(tree.parameters()), x, y, k=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        mheads.train_step(tree, sgd(tree.parameters()), x, y, label_smoothing=2.0)
