"""TreeNets (paper section 5): members that share a base network's first layers and branch at split points,
and the fused execution of sibling branches (grouped convolutions, batched matmuls)."""

from mheads.tree.cut import CutError, split_points
from mheads.tree.fused import EXEC_MODES, ExecModeError, fused_nodes, resolve_exec_mode
from mheads.tree.treenet import TreeNet, TreeNode

__all__ = [
    "EXEC_MODES",
    "CutError",
    "ExecModeError",
    "TreeNet",
    "TreeNode",
    "fused_nodes",
    "resolve_exec_mode",
    "split_points",
]
