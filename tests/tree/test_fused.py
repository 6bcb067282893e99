"""Fused execution (mheads.tree.fused) against the member loop: same logits, same gradients, same
parameters."""

import copy
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mheads.models import model_factory
from mheads.tree.fused import AUTO_EXEC, ExecModeError, fused_nodes, resolve_exec_mode
from mheads.tree.treenet import TreeNet

TOL = 1e-5


def _rescale(net: nn.Module) -> None:
    # The Caffe fillers give cifar10_quick logits of about 1e-4, where a 1e-5 tolerance would prove nothing:
    # unit-variance activations make the comparison meaningful.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 10
            p.copy_(torch.randn(p.shape, generator=g) * fan_in**-0.5)


def _logits_and_grads(net: TreeNet, mode: str, x: torch.Tensor, y: torch.Tensor):
    net.exec_mode = mode
    logits = net(x)
    loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(net.num_members)) * net.num_members
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return logits.detach(), grads


def _assert_equivalent(net: TreeNet, x: torch.Tensor) -> None:
    y = torch.randint(0, 10, (x.shape[0],))
    ref, ref_g = _logits_and_grads(net, "loop", x, y)
    out, out_g = _logits_and_grads(net, "fused", x, y)
    assert fused_nodes(net.root) >= 1  # the fused path really ran
    assert out.shape == ref.shape == (net.num_members, x.shape[0], 10)
    assert ref.abs().max() > 0.1  # a meaningful scale
    assert (out - ref).abs().max() <= TOL
    names = [n for n, _ in net.named_parameters()]
    for name, a, b in zip(names, ref_g, out_g):
        assert (a - b).abs().max() <= TOL, name


QUICK_SPLITS = [None, "conv1", "conv2", [("conv1", 2), ("conv2", 2)]]


@pytest.mark.parametrize("split", QUICK_SPLITS, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cifar10_quick_fused_matches_loop_in_logits_and_every_gradient(split, layout):
    torch.manual_seed(0)
    net = TreeNet(model_factory("cifar10_quick"), num_members=4, split=split)
    _rescale(net)
    x = torch.randn(4, 3, 32, 32)
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    _assert_equivalent(net, x)


@pytest.mark.parametrize("split", [None, "cccp2", [("cccp2", 2), ("conv3", 2)]], ids=str)
def test_nin_cifar_fused_matches_loop_in_eval_mode(split):
    net = TreeNet(model_factory("nin_cifar", width=0.25), num_members=4, split=split).eval()
    _rescale(net)
    _assert_equivalent(net, torch.randn(3, 3, 32, 32))


def test_caffenet_grouped_convolutions_and_lrn_fuse():
    net = TreeNet(
        model_factory("caffenet", num_classes=10, image_size=67, width=0.1), num_members=3, split="conv1"
    ).eval()
    _rescale(net)
    _assert_equivalent(net, torch.randn(2, 3, 67, 67))


def test_one_sgd_step_gives_the_same_parameters_in_both_modes():
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    after = {}
    for mode in ("loop", "fused"):
        net = TreeNet(model_factory("cifar10_quick"), 4, "conv1", seed=5, exec_mode=mode)
        _rescale(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(net(x).flatten(0, 1), y.repeat(4)).backward()
            opt.step()
        after[mode] = net.state_dict()
    assert after["loop"].keys() == after["fused"].keys()
    for k in after["loop"]:
        assert (after["loop"][k] - after["fused"][k]).abs().max() <= TOL, k


def test_dropout_in_training_gives_each_member_its_own_mask():
    net = TreeNet(model_factory("nin_cifar", width=0.25), 3, "cccp2", same_init=True, exec_mode="fused")
    x = torch.randn(2, 3, 32, 32)
    out = net.train()(x)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    out = net.eval()(x)
    assert torch.equal(out[0], out[1])  # same weights, no dropout: the same member


def test_branches_without_a_fused_op_run_under_vmap_and_differing_ones_loop():
    base = nn.Sequential()
    base.add_module("fc1", nn.Linear(6, 8))
    base.add_module("act", nn.Tanh())  # no fused op for Tanh: the branches run under torch.func.vmap
    base.add_module("fc2", nn.Linear(8, 3))
    net = TreeNet(base, 2, None, exec_mode="fused")
    assert fused_nodes(net.root) == 1
    x = torch.randn(4, 6)
    torch.testing.assert_close(net(x), torch.stack(net.root(x)), rtol=TOL, atol=TOL)
    net.root.branches[1].layers.act = nn.Sigmoid()  # the branches now differ: the loop, said once
    assert fused_nodes(net.root) == 0
    with pytest.warns(UserWarning, match="no sibling branches of this TreeNet can be fused"):
        out = net(x)
    assert torch.equal(out, torch.stack(net.root(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net(x)  # ... and only once


def test_a_hooked_branch_layer_runs_in_the_loop_and_its_hook_fires():
    net = TreeNet(model_factory("cifar10_quick"), 2, "conv1", exec_mode="fused")
    x = torch.randn(2, 3, 32, 32)
    assert fused_nodes(net.root) == 1
    calls = []
    handle = net.root.branches[1].layers.conv2.register_forward_hook(lambda *a: calls.append(1))
    with pytest.warns(UserWarning, match="no sibling branches of this TreeNet can be fused"):
        net(x)
    assert calls == [1] and fused_nodes(net.root) == 0
    handle.remove()
    assert fused_nodes(net.root) == 1


def test_a_hooked_node_is_called_so_its_hook_fires():
    net = TreeNet(model_factory("cifar10_quick"), 2, [("conv1", 2), ("conv2", 1)], exec_mode="fused")
    calls = []
    net.root.register_forward_hook(lambda *a: calls.append("root"))
    net.root.branches[0].register_forward_hook(lambda *a: calls.append("branch"))
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(UserWarning, match="no sibling branches of this TreeNet can be fused"):
        out = net(x)
    assert calls == ["branch", "root"]
    assert torch.equal(out, torch.stack(net.root(x)))


def test_the_plan_follows_a_replaced_layer():
    net = TreeNet(model_factory("cifar10_quick"), 2, "conv2", exec_mode="fused")
    x = torch.randn(2, 3, 32, 32)
    net(x)
    assert fused_nodes(net.root) == 1
    net.root.branches[0].layers.relu3 = nn.Tanh()
    assert fused_nodes(net.root) == 0
    with pytest.warns(UserWarning, match="no sibling branches of this TreeNet can be fused"):
        assert torch.equal(net(x), torch.stack(net.root(x)))


def test_exec_mode_is_validated_settable_and_outside_the_state_dict():
    with pytest.raises(ExecModeError, match="exec_mode: got 'fast'; expected one of loop, fused, auto"):
        TreeNet(model_factory("cifar10_quick"), 2, exec_mode="fast")
    net = TreeNet(model_factory("cifar10_quick"), 2)
    assert net.exec_mode == "loop"
    keys = list(net.state_dict())
    net.exec_mode = "fused"
    assert net.exec_mode == "fused" and list(net.state_dict()) == keys
    with pytest.raises(ExecModeError, match="'vmap'"):
        net.exec_mode = "vmap"
    assert net.exec_mode == "fused"


def test_auto_resolves_by_device_type():
    # the values benchmarks/results/{cpu,h200}/throughput.csv measured, written out (not read from AUTO_EXEC)
    assert resolve_exec_mode("auto", "cpu") == "loop"
    assert resolve_exec_mode("auto", torch.device("cuda", 0)) == "fused"
    assert resolve_exec_mode("auto", "meta") == "loop"  # not measured: the plain path
    assert resolve_exec_mode("fused", "cpu") == "fused"
    assert resolve_exec_mode("loop", "cuda") == "loop"


def _step_medians(csv_path) -> dict[str, float]:
    """The committed benchmark's training-step medians (ms) of the independent ensemble, per exec mode."""
    import csv

    with open(csv_path) as f:
        rows = [r for r in csv.DictReader(f) if r["section"].startswith("1+3. training step")]
    out = {}
    for r in rows:
        for mode in ("loop", "fused"):
            if r["name"].startswith(f"mheads independent [{mode}"):
                out[mode] = float(r["median_ms"])
    return out


@pytest.mark.parametrize("folder, device", [("cpu", "cpu"), ("h200", "cuda")])
def test_auto_never_picks_the_mode_the_committed_benchmark_measured_slower(folder, device):
    from conftest import REPO

    medians = _step_medians(REPO / "benchmarks/results" / folder / "throughput.csv")
    assert set(medians) == {"loop", "fused"}
    chosen = resolve_exec_mode("auto", device)
    assert AUTO_EXEC[device] == chosen
    assert medians[chosen] <= 1.05 * min(medians.values()), (chosen, medians)  # within noise of the best


def _bn_net():
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 6, 3, padding=1),
            bn1=nn.BatchNorm2d(6),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(6, 6, 3, padding=1),
            bn2=nn.BatchNorm2d(6),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(6, 10),
        )
    )


@pytest.mark.parametrize("split", [None, "conv1", "bn1"])
def test_batchnorm_fuses_and_matches_the_loop_in_outputs_gradients_and_statistics(split):
    net = TreeNet(_bn_net, 3, split, seed=2)
    x = torch.randn(8, 3, 6, 6)
    y = torch.randint(0, 10, (8,))
    twin = copy.deepcopy(net)
    ref, ref_g = _logits_and_grads(net, "loop", x, y)  # training mode: batch statistics, running stats move
    out, out_g = _logits_and_grads(twin, "fused", x, y)
    assert fused_nodes(twin.root) >= 1
    torch.testing.assert_close(out, ref, rtol=TOL, atol=TOL)
    for a, b in zip(out_g, ref_g):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    for (k, a), b in zip(twin.state_dict().items(), net.state_dict().values()):  # running stats, counters
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL, msg=k)
    net.eval()
    twin.eval()
    torch.testing.assert_close(twin(x), net(x), rtol=TOL, atol=TOL)  # eval: running statistics
