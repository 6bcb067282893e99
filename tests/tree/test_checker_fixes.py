"""Behaviour the type checker's fixes in mheads.tree changed (issue 33): a layer's own ``branches``
attribute is not a TreeNet's branches, and a plain fx GraphModule's child named ``graphs`` is not
ModeGraphModule.graphs."""

import warnings

import torch
import torch.fx as fx
from torch import nn

from mheads.tree.treenet import TreeNet, TreeNode
from mheads.tree.vmapped import module_signature


class _TwoPaths(nn.Module):
    """A layer with its own ``branches`` (two of them): not a TreeNet node."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])

    def forward(self, x):
        return self.branches[0](x) + self.branches[1](x)


def test_fused_single_member_with_a_layer_named_branches_does_not_warn():
    # One member: no sibling branches anywhere in the tree, so the fused mode has nothing to fuse and must not
    # say that siblings differ (the old check counted any module with a 'branches' attribute).
    tree = TreeNet(lambda: nn.Sequential(nn.Flatten(), _TwoPaths()), 1, exec_mode="fused")
    x = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tree(x)
    torch.testing.assert_close(got, torch.stack(tree.root(x)))


class _WithGraphsChild(nn.Module):
    def __init__(self):
        super().__init__()
        self.graphs = nn.Linear(4, 4)  # a child that happens to be called 'graphs'

    def forward(self, x):
        return self.graphs(x).relu()


def test_module_signature_of_a_plain_graph_module_with_a_child_named_graphs():
    def node() -> TreeNode:
        return TreeNode(nn.Sequential(), [TreeNode(fx.symbolic_trace(_WithGraphsChild()))])

    sig = module_signature(node())
    assert sig is not None
    assert sig == module_signature(node())  # the same structure, built again
