import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mheads.models import create_model, model_factory, parameterized_layers
from mheads.tree.treenet import TreeNet
from models.test_registry import SMALL


def _split_points(name):
    return [None] + parameterized_layers(create_model(name, **SMALL[name]))


def _cases():
    """Every model at no split, its first and its last split point in the fast tier; the others slow."""
    cases = []
    for name in sorted(SMALL):
        points = _split_points(name)
        for i, split in enumerate(points):
            marks = () if i in (0, 1, len(points) - 1) else (pytest.mark.slow,)
            cases.append(pytest.param(name, split, id=f"{name}-{split}", marks=marks))
    return cases


@pytest.mark.parametrize("name,split", _cases())
def test_every_model_and_split_gives_finite_logits_and_gradients(name, split):
    kw = SMALL[name]
    net = TreeNet(model_factory(name, num_classes=5, **kw), num_members=3, split=split)
    x = torch.randn(2, 3, kw["image_size"], kw["image_size"])
    out = net(x)
    assert out.shape == (3, 2, 5) and torch.isfinite(out).all()
    out.square().sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_independent_tree_equals_separate_networks_with_the_same_weights():
    torch.manual_seed(1)
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split=None)
    x = torch.randn(5, 3, 32, 32)
    separate = []
    for m in range(4):
        ref = create_model("cifar10_quick")
        ref.load_state_dict(net.member(m).state_dict())
        separate.append(ref(x))
    assert (net(x) - torch.stack(separate)).abs().max() <= 1e-6


def test_member_seeds_give_distinct_members_and_same_init_gives_identical_ones():
    x = torch.randn(2, 3, 32, 32)
    distinct = TreeNet(model_factory("cifar10_quick"), 3, None, seed=0)(x)
    assert not torch.allclose(distinct[0], distinct[1])
    same = TreeNet(model_factory("cifar10_quick"), 3, "conv1", same_init=True)(x)
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])


def test_seed_reproduces_weights():
    a = TreeNet(model_factory("cifar10_quick"), 2, "conv2", seed=7).state_dict()
    b = TreeNet(model_factory("cifar10_quick"), 2, "conv2", seed=7).state_dict()
    c = TreeNet(model_factory("cifar10_quick"), 2, "conv2", seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_shared_layer_gradient_is_the_sum_of_branch_gradients():
    torch.manual_seed(2)
    net = TreeNet(model_factory("cifar10_quick"), num_members=3, split="conv2")
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    shared = list(net.root.layers.parameters())
    per_branch = []
    for m in range(3):
        loss = nn.functional.cross_entropy(net(x)[m], y)
        per_branch.append(torch.autograd.grad(loss, shared))
    logits = net(x)
    total = sum(nn.functional.cross_entropy(logits[m], y) for m in range(3))
    joint = torch.autograd.grad(total, shared)
    for j, g in enumerate(joint):
        expected = sum(pb[j] for pb in per_branch)
        assert torch.allclose(g, expected, atol=1e-7, rtol=1e-5)


def test_shared_layers_run_once_per_batch():
    calls = []
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split="conv1")
    net.root.layers.conv1.register_forward_hook(lambda *a: calls.append(1))
    net(torch.randn(2, 3, 32, 32))
    assert len(calls) == 1


def test_parameter_free_layers_follow_the_shared_side_but_dropout_branches():
    net = TreeNet(model_factory("cifar10_quick"), 2, "conv1")
    assert net.shared_layers() == ["conv1", "pool1", "relu1"]
    nin = TreeNet(model_factory("nin_cifar", width=0.1), 2, "cccp2")
    assert nin.shared_layers()[-1] == "pool1"  # drop1 goes to the branches
    assert "drop1" in dict(nin.root.branches[0].layers.named_children())


STOCHASTIC = [  # (layer, convolution before it, input shape)
    (nn.Dropout(0.5), nn.Conv2d, (4, 3, 6, 6)),
    (nn.Dropout1d(0.5), nn.Conv1d, (4, 3, 6)),
    (nn.Dropout2d(0.5), nn.Conv2d, (4, 3, 6, 6)),
    (nn.Dropout3d(0.5), nn.Conv3d, (4, 3, 6, 6, 6)),
    (nn.AlphaDropout(0.5), nn.Conv2d, (4, 3, 6, 6)),
    (nn.FeatureAlphaDropout(0.5), nn.Conv2d, (4, 3, 6, 6)),
    (nn.RReLU(), nn.Conv2d, (4, 3, 6, 6)),
    (nn.Sequential(nn.Identity(), nn.Dropout2d(0.5)), nn.Conv2d, (4, 3, 6, 6)),
]


@pytest.mark.parametrize(
    "stochastic,conv,shape",
    STOCHASTIC,
    ids=[type(s).__name__ if not isinstance(s, nn.Sequential) else "nested" for s, _, _ in STOCHASTIC],
)
def test_every_stochastic_layer_after_the_split_goes_to_the_branches(stochastic, conv, shape):
    """Each member must draw its own mask: a dropout variant left in the trunk would give all members one."""
    x = torch.randn(*shape)

    def base():
        features = nn.Sequential(conv(3, 4, 3), copy.deepcopy(stochastic), nn.Flatten())
        width = features(x).shape[1]
        return nn.Sequential(
            OrderedDict(conv=features[0], drop=features[1], flat=features[2], fc=nn.Linear(width, 5))
        )

    net = TreeNet(base, 3, "conv", same_init=True)  # identical weights: only the randomness can differ
    assert net.shared_layers() == ["conv"]
    net.train()
    out = net(x)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])


def test_parameter_counts_for_cifar10_quick_by_hand():
    conv1 = 3 * 32 * 25 + 32
    conv2 = 32 * 32 * 25 + 32
    total = 145578
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split="conv2")
    c = net.param_counts()
    assert c["shared"] == conv1 + conv2
    assert c["total"] == conv1 + conv2 + 4 * (total - conv1 - conv2)
    assert c["per_member"] == [total] * 4
    assert c["independent"] == 4 * total
    assert c["ratio"] == pytest.approx(c["total"] / (4 * total))
    assert sum(p.numel() for p in net.member(3).parameters()) == total


def test_single_model_end_of_the_spectrum():
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split="ip2")
    out = net(torch.randn(2, 3, 32, 32))
    assert torch.equal(out[0], out[3])
    assert net.param_counts()["total"] == 145578


def test_balanced_binary_tree():
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split=[("conv1", 2), ("conv2", 2)])
    conv1, conv2, total = 2432, 25632, 145578
    c = net.param_counts()
    assert c["total"] == conv1 + 2 * conv2 + 4 * (total - conv1 - conv2)
    assert c["shared"] == conv1 + 2 * conv2
    assert net(torch.randn(3, 3, 32, 32)).shape == (4, 3, 10)
    # members 0 and 1 share conv2, members 1 and 2 do not
    assert net.member(0).conv2 is net.member(1).conv2 and net.member(1).conv2 is not net.member(2).conv2


def test_member_is_a_standalone_module_sharing_weights():
    net = TreeNet(model_factory("cifar10_quick"), 3, "conv1")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(net.member(2)(x), net(x)[2])
    assert net.member(0).conv1 is net.member(2).conv1


def test_user_sequential_base():
    base = nn.Sequential()
    base.add_module("fc1", nn.Linear(6, 8))
    base.add_module("act", nn.Tanh())
    base.add_module("fc2", nn.Linear(8, 3))
    net = TreeNet(base, num_members=2, split="fc1")
    assert net.shared_layers() == ["fc1", "act"]
    # from an instance every member is redrawn, member 0 included: one distribution for all
    assert not torch.equal(net.member(0).fc2.weight, base.fc2.weight)
    assert not torch.equal(net.member(1).fc2.weight, net.member(0).fc2.weight)
    same = TreeNet(base, num_members=2, split="fc1", init="pretrained")
    assert torch.equal(same.member(1).fc2.weight, base.fc2.weight)  # init="pretrained" keeps the weights
    assert net(torch.randn(4, 6)).shape == (2, 4, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_members=0), "members: got 0"),
        (dict(num_members=2, split="conv9"), "valid layer names are: conv1, pool1"),
        (dict(num_members=4, split=[("conv1", 0), ("conv2", 4)]), "branches"),
        (dict(num_members=3, split=[("conv1", 2), ("conv2", 2)]), "4 leaves but members is 3"),
        (dict(num_members=4, split=[("conv2", 2), ("conv1", 2)]), "network order"),
        (dict(num_members=2, seeds=[1]), "seeds"),
    ],
)
def test_bad_tree_specs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TreeNet(model_factory("cifar10_quick"), **kwargs)
