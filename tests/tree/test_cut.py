"""Any nn.Module as a TreeNet base: a torchvision-style ResNet (functional ops and residual additions inside
forward) cut with torch.fx at module paths, or run whole with split=None."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mheads.tree import TreeNet
from mheads.tree.cut import CutError, cut_module, split_points


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """torchvision-style: F.relu, residual adds and torch.flatten in forward, so the children in order are not
    the model."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 8))
        self.layer2 = nn.Sequential(Block(8, 16, 2), Block(16, 16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def trained_like(net):
    """Non-trivial BatchNorm statistics, so eval mode differs from train mode."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


SPLITS = [
    None,
    "conv1",
    "bn1",
    "layer1",
    "layer1.0",
    "layer2.0",
    "layer2",
    "fc",
    [("layer1", 2), ("layer2", 2)],
]


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_members_with_the_base_weights_reproduce_its_forward_exactly(split):
    torch.manual_seed(0)
    base = trained_like(ResNet()).eval()
    members = 4 if isinstance(split, list) else 3
    x = torch.randn(5, 3, 12, 12)
    tree = TreeNet(base, members, split, init="same", example_input=x).eval()
    want = base(x)
    out = tree(x)
    assert out.shape == (members, 5, 10)
    for m in range(members):
        assert torch.equal(out[m], want)
        assert torch.equal(tree.member(m)(x), want)
        assert sorted(tree.member(m).state_dict()) == sorted(base.state_dict())  # loads into the base


def test_python_on_self_training_is_traced_in_both_modes():
    class ModeDependent(nn.Module):  # fx freezes the branch taken while tracing: traced once per mode
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            if self.training:
                h = h * 2
            return self.b(h)

    base = ModeDependent()
    tree = TreeNet(base, 2, "a", init="same", example_input=(3, 4))
    x = torch.randn(3, 4)
    for mode in (True, False):
        tree.train(mode)
        base.train(mode)
        assert torch.equal(tree(x)[1], base(x)) and torch.equal(tree.member(1)(x), base(x))


def test_a_cut_that_does_not_reproduce_the_forward_is_refused():
    class Counting(nn.Module):  # Python state fx freezes at tracing
        def __init__(self):
            super().__init__()
            self.a, self.b, self.calls = nn.Linear(4, 4), nn.Linear(4, 2), 0

        def forward(self, x):
            self.calls += 1
            return self.b(self.a(x)) * self.calls

    with pytest.raises(
        ValueError,
        match=r"member 0 of the cut at 'a' against Counting.forward in eval mode "
        r"on a \(3, 4\) probe batch: max \|difference\| .* above the "
        "tolerance",
    ):
        TreeNet(Counting(), 2, "a", example_input=(3, 4))


def test_a_sequential_subclass_with_its_own_forward_is_traced():
    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    net = Doubled(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    tree = TreeNet(net, 2, "0", init="same", example_input=(3, 4))
    x = torch.randn(3, 4)
    assert torch.equal(tree(x)[1], net(x))


def test_construction_leaves_batchnorm_statistics_alone():
    torch.manual_seed(0)
    base = trained_like(ResNet())
    before = copy.deepcopy(base.state_dict())
    tree = TreeNet(base, 2, "layer1", init="pretrained", example_input=(4, 3, 12, 12))
    for m in range(2):
        state = tree.member(m).state_dict()
        for k, v in before.items():
            assert torch.equal(state[k], v), k  # running stats and num_batches_tracked untouched
    assert all(m.training for m in tree.modules())  # modes restored after the eval-mode check


def test_split_points_are_the_module_outputs_that_carry_the_computation():
    points = split_points(ResNet())
    assert {"conv1", "bn1", "layer1", "layer1.0", "layer1.1", "layer2", "layer2.1", "fc"} <= set(points)
    assert "layer1.0.conv2" not in points and "layer1.0.bn1" not in points  # inside a residual block
    with pytest.raises(CutError, match="layer1.0.conv2.*skip connection.*layer1"):
        cut_module(ResNet(), ["layer1.0.conv2"])
    with pytest.raises(CutError, match="'nope' is not a layer of the base network.*layer1"):
        TreeNet(ResNet(), 2, "nope")


def test_an_untraceable_model_names_the_call_and_the_way_out():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # control flow on a tensor value: fx cannot trace it
                h = -h
            return self.b(h)

    with pytest.raises(CutError, match=r"cannot be traced by torch.fx.*TreeNet.from_parts"):
        TreeNet(DataDependent(), 2, "a")
    tree = TreeNet(DataDependent(), 3, None)  # split=None: each member's own forward, no tracing
    assert tree(torch.randn(5, 4)).shape == (3, 5, 2)
    parts = TreeNet.from_parts(nn.Linear(4, 4), lambda: nn.Linear(4, 2), 3)
    x = torch.randn(5, 4)
    out = parts(x)
    assert out.shape == (3, 5, 2) and not torch.equal(out[0], out[1])
    trunk, branch = parts.root.layers, parts.root.branches[1].layers
    assert torch.equal(out[1], branch(trunk(x)))


def test_a_bare_parameter_is_redrawn_per_member():
    class Scale(nn.Module):  # no reset_parameters(): only a bare nn.Parameter
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.randn(8))

        def forward(self, x):
            return x * self.gamma

    base = nn.Sequential(nn.Linear(4, 8), Scale(), nn.Linear(8, 2))
    tree = TreeNet(base, 3, None, seed=1)
    gammas = [tree.member(m).state_dict()["1.gamma"] for m in range(3)]
    assert not torch.equal(gammas[0], base[1].gamma)  # member 0 is redrawn too: one distribution for all
    assert not torch.equal(gammas[1], gammas[0]) and not torch.equal(gammas[2], gammas[1])
    base[1].gamma = nn.Parameter(torch.arange(8), requires_grad=False)  # integers cannot be redrawn: named
    with pytest.raises(ValueError, match=r"cannot redraw base.1.gamma: Scale has no reset_parameters"):
        TreeNet(base, 2, None)


def test_pretrained_members_keep_the_weights_and_redraw_only_reinit():
    torch.manual_seed(0)
    base = ResNet()
    tree = TreeNet(base, 3, "layer1", init="pretrained", reinit=["fc"], seed=4)
    fcs = [tree.member(m).state_dict()["fc.weight"] for m in range(3)]
    assert not torch.equal(fcs[0], fcs[1]) and not torch.equal(fcs[0], base.fc.weight)
    for m in range(3):
        s = tree.member(m).state_dict()
        assert torch.equal(s["layer2.0.conv1.weight"], base.layer2[0].conv1.weight)  # branch: pretrained


def test_one_sgd_step_equals_the_step_by_hand_on_the_parts():
    torch.manual_seed(0)
    base = ResNet()
    tree = TreeNet(base, 2, "layer1", seed=3)
    ref = copy.deepcopy(tree)
    x, y = torch.randn(6, 3, 12, 12), torch.randint(0, 10, (6,))
    opt = torch.optim.SGD(tree.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(tree(x).flatten(0, 1), y.repeat(2)).backward()
    opt.step()
    # by hand: the trunk runs once, each branch on its output; the loss sums over members
    trunk, branches = ref.root.layers, [b.layers for b in ref.root.branches]
    h = trunk(x)
    loss = sum(F.cross_entropy(b(h), y, reduction="sum") for b in branches) / (2 * 6)
    params = list(ref.parameters())
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= 0.1 * g  # first SGD step with momentum: the gradient itself
    for (k, a), b in zip(tree.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)


class _MaskedHead(nn.Module):
    """Logits with a -inf class mask (a buffer), as a model that rules a class out has."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)
        self.register_buffer("mask", torch.tensor([0.0, -float("inf"), 0.0]))

    def forward(self, x):
        return self.b(self.a(x).relu()) + self.mask


@pytest.mark.parametrize("split", [None, "a"])
def test_the_cut_check_takes_a_minus_inf_class_mask_and_still_refuses_nan(split):
    tree = TreeNet(_MaskedHead(), 2, split, init="same", example_input=(3, 4))  # was: |difference| nan
    assert "max |difference| 0 <=" in tree.cut_check and tree(torch.randn(3, 4))[:, :, 1].eq(-torch.inf).all()
    base = _MaskedHead()
    base.mask[0] = float("nan")
    with pytest.raises(ValueError, match=r"max \|difference\| nan above the tolerance"):
        TreeNet(base, 2, split, init="same", example_input=(3, 4))
