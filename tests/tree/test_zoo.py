"""Model-zoo code as a TreeNet base (issue 31): every offered split point of each model in tests/tree/zoo.py
builds, reproduces the base in eval mode with init="pretrained", and trains a step; DropPath and functional
dropout stay random per member in training and off in evaluation; in-place ops after a cut, a module called on
both sides of a cut and tied weights are handled; dict outputs, TransformerEncoder paths, untraceable models
and instances are handled with one-line errors."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
import zoo
from safetensors.torch import load as load_safetensors
from torch import nn

from mheads.runs.checkpoint import _weights_bytes
from mheads.tree import TreeNet, fused_nodes, split_points
from mheads.tree.cut import CutError

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
IDS = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
ZOO = {  # name -> (factory, input, output key)
    "convnext": (lambda: zoo.ConvNeXt(drop_path=0.3, head_drop=0.2), X, None),
    "efficientnet": (lambda: zoo.EfficientNet(drop_path=0.2), X, None),
    "resnet": (zoo.ResNet, X, None),
    "vit": (lambda: zoo.ViT(drop_path=0.2), X, None),
    "tied_lm": (zoo.TiedLM, IDS, None),
    "dict_out": (zoo.DictOut, X[:, :, :6, :6], "logits"),
}


def trained_like(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so eval mode differs from train mode."""
    g = torch.Generator().manual_seed(2)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def check_every_point(base: nn.Module, x: torch.Tensor, output=None, points=None, members: int = 2) -> int:
    """Every point of ``points`` (default: all offered) builds, matches ``base`` in eval mode with
    init="pretrained" (each member, and ``member(m)``), and trains one SGD step with finite gradients."""
    base.eval()
    with torch.no_grad():
        want = base(x)
    want = want[output] if output is not None else want
    points = split_points(base) if points is None else points
    assert points
    for p in points:
        tree = TreeNet(base, members, p, init="pretrained", example_input=x, output=output).eval()
        assert tree.cut_check.startswith(f"member 0 of the cut at {p!r}")
        with torch.no_grad():
            out = tree(x)
        tol = 64 * torch.finfo(want.dtype).eps * float(want.abs().max())
        for m in range(members):
            assert (out[m] - want).abs().max() <= tol, p
            assert torch.equal(tree.member(m)(x), out[m]), p
        tree.train()
        opt = torch.optim.SGD(tree.parameters(), lr=0.01)
        logits = tree(x)
        y = torch.arange(x.shape[0]) % logits.shape[-1]
        F.cross_entropy(logits.flatten(0, 1), y.repeat(members)).backward()
        assert all(p_.grad is not None and torch.isfinite(p_.grad).all() for p_ in tree.parameters()), p
        opt.step()
    return len(points)


@pytest.mark.parametrize("every", [3, pytest.param(1, marks=pytest.mark.slow)], ids=["every-third", "all"])
@pytest.mark.parametrize("name", list(ZOO))
def test_every_offered_point_builds_matches_the_base_and_trains(name, every):
    # the fast tier checks every third offered point and the last (0.05-0.15 s a point), the slow tier all
    make, x, output = ZOO[name]
    torch.manual_seed(0)
    base = trained_like(make())
    offered = split_points(base)
    assert len(offered) >= 3
    points = offered[::every] + ([] if (len(offered) - 1) % every == 0 else offered[-1:])
    assert check_every_point(base, x, output, points) == len(points)


def test_split_points_of_the_zoo():
    assert split_points(zoo.ResNet()) == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer1.0",
        "layer1.1",
        "layer2",
        "layer2.0",
        "layer2.1",
        "avgpool",
        "fc",
    ]
    vit = split_points(zoo.ViT())
    assert {"patch_embed", "pos_drop", "blocks.0", "blocks.1", "head"} <= set(vit)
    assert "blocks.0.attn" not in vit  # inside a residual block
    assert "stages.0.1.drop_path" not in split_points(zoo.ConvNeXt())


def test_droppath_and_functional_dropout_are_random_per_member_in_training_and_off_in_eval():
    base = zoo.ConvNeXt(drop_path=0.5, head_drop=0.5)  # DropPath (a leaf) and F.dropout in the root's forward
    x = torch.randn(4, 3, 8, 8)
    tree = TreeNet(base, 3, "stem", init="same", example_input=x)
    tree.train()
    a, b = tree(x), tree(x)
    assert not torch.equal(a, b)  # two training forwards differ
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])  # drawn per member
    tree.eval()
    base.eval()
    a, b = tree(x), tree(x)
    assert torch.equal(a, b) and torch.equal(a[0], a[1])
    torch.testing.assert_close(a[2], base(x))
    # the split after the head's functional dropout (only in the root's forward): random in training too
    head = TreeNet(zoo.ConvNeXt(head_drop=0.5), 2, "norm", init="same").train()
    out = head(x)
    assert not torch.equal(out[0], out[1])


class AddInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)
        self.p = nn.Parameter(torch.randn(4))

    def forward(self, x):
        h = self.a(x)
        h.add_(self.p)  # writes into the tensor at the cut
        h += self.p
        return self.b(h)


def test_in_place_ops_after_the_cut_never_change_what_siblings_read():
    base = AddInPlace()
    x = torch.randn(5, 4)
    tree = TreeNet(base, 3, "a", init="same", example_input=x)
    want = base(x)
    out = tree(x)
    for m in range(3):  # without the copy at the cut, member m would see the input m + 1 times shifted
        torch.testing.assert_close(out[m], want)
    out.sum().backward()  # and the trunk's backward still has its saved tensor
    relu = TreeNet(zoo.ResNet(), 3, "bn1", init="same", example_input=(2, 3, 8, 8))  # ReLU(inplace) next
    code = relu.root.branches[0].layers.code
    assert "clone" in code and "clone" not in relu.root.layers.code


class SharedConv(nn.Module):
    """A module called on both sides of the cut."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.mid = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = self.mid(torch.relu(self.conv(x)))
        x = torch.relu(self.conv(x))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize(
    "make,split,x",
    [(SharedConv, "mid", torch.randn(2, 3, 5, 5)), (zoo.TiedLM, "block1", IDS)],
    ids=["shared_module", "tied_weights"],
)
def test_objects_used_on_both_sides_of_the_cut_stay_shared(make, split, x, tmp_path):
    base = make()
    tree = TreeNet(base, 3, split, seed=4, example_input=x).eval()
    before = tree(x)
    for m in range(3):
        torch.testing.assert_close(tree.member(m)(x), before[m])
    assert torch.equal(tree(x), before)  # building members never rewires the trunk
    counts = tree.param_counts()
    n_base = sum(p.numel() for p in base.parameters())
    assert counts["per_member"] == [n_base] * 3
    assert counts["total"] == sum(p.numel() for p in tree.parameters())
    assert counts["shared"] == sum(p.numel() for p in tree.root.layers.parameters())
    if make is zoo.TiedLM:  # every member's head is the trunk's embedding
        for m in range(3):
            assert tree.member(m).lm_head.weight is tree.root.layers.embed.weight
    else:
        assert all(tree.member(m).conv is tree.root.layers.conv for m in range(3))
    blob = _weights_bytes(tree.state_dict())  # saves (tied tensors copied) and loads back
    fresh = TreeNet(make, 3, split, seed=9)
    fresh.load_state_dict(load_safetensors(blob))
    assert torch.equal(fresh.eval()(x), before)
    base.load_state_dict(tree.member(1).state_dict())  # a member file loads into the base
    torch.testing.assert_close(base.eval()(x), before[1])


def test_dict_and_tuple_outputs_are_chosen_with_output_and_refused_without():
    x = torch.randn(2, 3, 6, 6)
    base = zoo.DictOut()
    for split in (None, "body"):
        tree = TreeNet(base, 2, split, init="same", output="logits", example_input=x).eval()
        torch.testing.assert_close(tree(x)[1], base(x)["logits"])
        torch.testing.assert_close(tree.member(1)(x), base(x)["logits"])
        assert sorted(tree.member(1).state_dict()) == sorted(base.state_dict())
    with pytest.raises(
        ValueError,
        match=r"output: DictOut returns a dict with keys 'logits', 'features'; "
        r"pass output=<a key> to TreeNet",
    ):
        TreeNet(base, 2, "body")
    with pytest.raises(ValueError, match=r"output: DictOut returns a dict with keys 'logits', 'features'"):
        TreeNet(base, 2, None, example_input=x)
    with pytest.raises(ValueError, match=r"output: got 'logit'; DictOut returns a dict with keys 'logits'"):
        TreeNet(base, 2, "body", output="logit")

    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)

        def forward(self, x):
            h = self.a(x)
            return self.b(h), h

    t = TupleOut()
    tree = TreeNet(t, 2, "a", init="same", output=0, example_input=(3, 4))
    x4 = torch.randn(3, 4)
    torch.testing.assert_close(tree(x4)[0], t(x4)[0])
    with pytest.raises(ValueError, match=r"output: got 2; TupleOut returns a tuple of 2, so an index 0..1"):
        TreeNet(t, 2, "a", output=2)
    with pytest.raises(ValueError, match=r"output: got 1.5; expected a key \(str\) or an index \(int\)"):
        TreeNet(t, 2, "a", output=1.5)


def test_a_path_inside_a_torch_leaf_or_never_called_names_why():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 8)
            layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.unused = nn.Linear(8, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.enc(self.proj(x)).mean(1))

    with pytest.raises(
        CutError,
        match=r"cutting after 'enc.layers.0' is not possible: it is inside 'enc', "
        r"which the trace keeps whole \(a torch.nn module, traced as one "
        r"call\); split at 'enc' itself or outside it; .* e.g. one of: proj, "
        r"enc, head",
    ):
        TreeNet(Encoder(), 2, "enc.layers.0")
    with pytest.raises(CutError, match=r"'unused' is not possible: forward never calls it"):
        TreeNet(Encoder(), 2, "unused")
    tree = TreeNet(Encoder(), 2, "enc", init="same", example_input=(2, 5, 4))
    assert tree(torch.randn(2, 5, 4)).shape == (2, 2, 3)


def test_an_untraceable_model_names_the_line():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # the line the error names
                h = -h
            return self.b(h)

    with pytest.raises(
        CutError,
        match=r"DataDependent cannot be traced by torch.fx at .*test_zoo.py:\d+ "
        r"`if h.sum\(\) > 0:  # the line the error names`",
    ):
        TreeNet(DataDependent(), 2, "a")


def test_split_points_traces_a_200_module_network_twice_then_caches(monkeypatch):
    # what keeps split_points cheap is structural (two traces, then the cache), so that is what is checked;
    # the wall-clock bound only catches a pathological blow-up (it took 0.8 s quiet, 3 s on a loaded machine)
    from mheads.tree import cut_points

    traces = []
    real = cut_points._trace
    monkeypatch.setattr(
        cut_points, "_trace", lambda model, training: traces.append(training) or real(model, training)
    )
    net = nn.Sequential(*[zoo.ConvNeXtBlock(4, 0.1) for _ in range(34)])  # 34 x 6 + 1 = 205 modules
    assert len(list(net.modules())) >= 200
    start = time.perf_counter()
    points = split_points(net)
    assert time.perf_counter() - start < 30.0
    assert len(points) == 34 and sorted(traces) == [False, True]
    assert split_points(net) == points and len(traces) == 2  # cached: no third trace
    net[0].conv_dw.weight.data.zero_()  # weights are not the cache's key: still no trace
    assert split_points(net) == points and len(traces) == 2


class OwnInit(nn.Module):
    """A model with its own scheme (timm's init_weights): every Linear weight N(0, 0.02)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, x):
        return self.b(self.a(x))


def test_every_member_from_an_instance_draws_from_the_models_own_scheme():
    base = OwnInit()
    with torch.no_grad():
        base.b.weight.mul_(50)  # a "trained" instance: far from the scheme
    tree = TreeNet(base, 3, "a", seed=1)
    stds = [float(tree.member(m).b.weight.detach().std()) for m in range(3)]
    assert all(0.018 < s < 0.022 for s in stds), stds  # member 0 included
    assert "OwnInit.init_weights()" in tree.init_scheme
    assert not torch.equal(tree.member(1).b.weight, tree.member(2).b.weight)
    plain = TreeNet(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), 2, "0", seed=1)
    assert "PyTorch defaults" in plain.init_scheme


@pytest.mark.parametrize(
    "make,split",
    [
        (zoo.ResNet, "layer1"),
        (lambda: zoo.ViT(drop_path=0.2), "blocks.0"),
        (zoo.ResNet, [("conv1", 2), ("layer1", 2)]),
    ],
    ids=["resnet", "vit", "two"],
)
def test_fused_traced_branches_equal_the_loop(make, split):
    torch.manual_seed(0)
    tree = TreeNet(make, 4, split, seed=3)
    x = torch.randn(4, 3, 8, 8)
    y = torch.randint(0, 5, (4,))
    twin = {mode: TreeNet(make, 4, split, seed=3, exec_mode=mode) for mode in ("loop", "fused")}
    for t in twin.values():
        t.load_state_dict(tree.state_dict())
    assert fused_nodes(twin["fused"].root) >= 1
    grads = {}
    for mode, t in twin.items():
        t.eval()  # eval: no dropout draws, so the two modes must agree
        out = t(x)
        grads[mode] = (
            out.detach(),
            torch.autograd.grad(F.cross_entropy(out.flatten(0, 1), y.repeat(4)), list(t.parameters())),
        )
    torch.testing.assert_close(grads["fused"][0], grads["loop"][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads["fused"][1], grads["loop"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for t in twin.values():  # training: BatchNorm statistics move the same way in both modes
        t.train()
        t(x)
    for (k, a), b in zip(twin["fused"].state_dict().items(), twin["loop"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
