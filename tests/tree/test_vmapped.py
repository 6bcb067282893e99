"""tree/vmapped.py: branches run under torch.func.vmap; a failure of vmap switches them to the loop, any other
error ends the call."""

import pytest
import torch
from torch import nn

import mheads.tree.vmapped as vmapped
from mheads.tree.treenet import TreeNet


def _net() -> TreeNet:
    base = nn.Sequential()
    base.add_module("fc1", nn.Linear(6, 8))
    base.add_module("act", nn.Tanh())  # no fused op for Tanh: the branches run under torch.func.vmap
    base.add_module("fc2", nn.Linear(8, 3))
    return TreeNet(base, 2, None, exec_mode="fused")


def _raising(err: Exception):
    def vmap(*args, **kwargs):
        def run(*a):
            raise err

        return run

    return vmap


def test_a_dead_dataloader_workers_error_raised_inside_vmap_ends_the_call(monkeypatch):
    net, x = _net(), torch.randn(4, 6)
    dead = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    monkeypatch.setattr(vmapped, "vmap", _raising(dead))
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        net(x)
    assert net.root.branches[0].layers not in vmapped._FAILED  # not switched to the loop for good


def test_an_error_of_vmap_itself_switches_the_branches_to_the_loop_once(monkeypatch):
    net, x = _net(), torch.randn(4, 6)
    monkeypatch.setattr(vmapped, "vmap", _raising(RuntimeError("vmap: no batching rule for aten::weird")))
    with pytest.warns(UserWarning, match="cannot run under torch.func.vmap"):
        out = net(x)
    assert net.root.branches[0].layers in vmapped._FAILED
    assert torch.equal(out, torch.stack(net.root(x)))
