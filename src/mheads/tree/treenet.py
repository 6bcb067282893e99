"""TreeNets (paper section 5): M members that share their first layers and branch at named split points.

A TreeNet is a tree of :class:`TreeNode` s. Each node holds a part of the base network and its child branches;
the leaves, in depth-first order, are members ``0..M-1``. The spectrum of the paper:

- ``split=None``: an empty root with M branches, each a whole base network (the independent ensemble); each
  member runs the base's own ``forward``, so any ``nn.Module`` works;
- ``split="conv1"``: conv1 is shared, M branches hold the rest (split names are the *last shared layer*);
- ``split=<last layer>``: everything shared, M empty leaves (the single-model end; all members are equal);
- ``split=[("conv1", 2), ("conv2", 2)]``: a multi-level, "balanced binary" tree with 2 x 2 = 4 leaves.

Two ways to cut. An ``nn.Sequential`` base split at its own children's names is cut between children (how the
registry's paper networks are built): parameter-free layers (ReLU, pooling, flatten, LRN) directly after a
split layer stay on the *shared* side, since they are deterministic and computing them once per batch gives
the same result; stochastic layers (every dropout variant, RReLU, or a container holding one) go to the
branches, so that each member draws its own mask. Any other base, or a module path such as ``"layer2"`` or
``"layer3.1"``, is traced with ``torch.fx`` and cut exactly at that module's output (:mod:`mheads.tree.cut`),
keeping residual additions and functional ops inside ``forward``. A base that offers its own cut
(:mod:`mheads.tree.parts`: ``untraced_cut``, ``cut_parts()``; the task head on any base offers ``"base"``,
the whole base shared) is cut there without tracing. A model fx cannot trace is otherwise built from explicit
parts with :meth:`TreeNet.from_parts`.

Scoring heads (``scoring_heads=True``, :mod:`mheads.tree.scoring`): each member also predicts, from shared
features, the probability that it wins an input; :meth:`TreeNet.forward_with_scores` returns them with the
logits. The features are the trunk's output (global-average-pooled when 4-D, flattened); a tree without a
trunk (``split=None``) has no shared features, so each member's head reads that member's own logits.

BatchNorm: a BatchNorm in the trunk normalizes the shared batch once; each branch owns its own statistics;
``eval()`` reaches every member. With bagging, a member's BatchNorm statistics are those of the whole shared
batch, including examples its bootstrap sample left out (bagging weights only the loss).

The member-by-member methods (``paths``, ``check_cut``, ``member``, ``shared_layers``, ``param_counts``) are
inherited from :class:`~mheads.tree.member_views.MemberViews`, TreeNet's base class.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx as fx
from torch import nn

from mheads.core.checks import check_int
from mheads.core.seeding import member_init_seeds
from mheads.tree.build import (
    STOCHASTIC_LAYERS,
    SplitSpec,
    check_levels,
    normalize_split,
    sequential_tree,
    traced_tree,
)
from mheads.tree.fused import check_exec_mode, fused_forward, resolve_exec_mode
from mheads.tree.member_views import MemberViews
from mheads.tree.members import INIT_MODES, BaseSpec, build_members
from mheads.tree.node import TreeNode
from mheads.tree.parts import is_untraced_cut, parts_tree
from mheads.tree.scoring import ScoringHeads, score_features

# isort: split
# Importable from this module before it was split by concept: kept so that no caller's import breaks.
from mheads.tree.cut import pick, stitch  # noqa: F401
from mheads.tree.member_views import Chosen, _segments  # noqa: F401
from mheads.tree.traced import ModeGraphModule  # noqa: F401

__all__ = ["STOCHASTIC_LAYERS", "BaseSpec", "SplitSpec", "TreeNet", "TreeNode"]


def _check_output(output) -> None:
    """``output`` names the prediction in a base's dict (a key) or tuple (an index), or is None."""
    if output is not None and not isinstance(output, (str, int)) or isinstance(output, bool):
        raise ValueError(
            f"output: got {output!r}; expected a key (str) or an index (int) of the base's "
            "output, or None for a base returning a tensor"
        )


def _member_seeds(
    num_members: int, seed: int, seeds: Sequence[int] | None, same_init: bool, init: str | None
) -> tuple[str, list[int]]:
    """The init mode and one initialization seed per member: ``seeds``, or derived from ``seed``; with
    ``init="same"`` member 0's for every member."""
    check_int("members", num_members, 1)
    init = init if init is not None else ("same" if same_init else "independent")
    if init not in INIT_MODES:
        raise ValueError(f"init: got {init!r}; expected one of {', '.join(INIT_MODES)}")
    if seeds is None:
        seeds = member_init_seeds(seed, num_members)
    out = [int(s) for s in seeds]
    if len(out) != num_members:
        raise ValueError(f"seeds: got {len(out)} seeds for {num_members} members; give one per member")
    if init == "same":
        out = [out[0]] * num_members
    return init, out


class TreeNet(MemberViews):
    """An ensemble of M members sharing a trunk, from any base network.

    Args:
        base: any ``nn.Module``, or a zero-argument factory returning one (see :mod:`mheads.tree.members` for
            how each member is initialized from either).
        num_members: M >= 1.
        split: see the module docstring.
        seed: the run seed; member seeds derive from it (ignored when ``seeds`` is given).
        seeds: an explicit initialization seed per member.
        same_init: start every member from the same weights (the paper's Table 6); the same as
        ``init="same"``.
        init: ``"independent"`` (each member from its own seed), ``"same"`` or ``"pretrained"`` (every member
            starts from the base's weights; the module paths in ``reinit`` are redrawn per member).
        reinit: module paths each member redraws from its own seed with ``init="pretrained"`` (e.g.
        ``["fc"]``).
        exec_mode: ``"loop"`` runs the branches one after another; ``"fused"`` runs structurally identical
            sibling branches as one grouped op per layer (:mod:`mheads.tree.fused`, same results up to float
            rounding); ``"auto"`` picks per device type what the benchmark measured faster. Also a settable
            attribute.
        example_input: a batch (or its shape) to check the cut on (:meth:`check_cut`): member 0 must
            reproduce the base's own ``forward`` in eval mode (BatchNorm statistics untouched) within a
            tolerance scaled to the dtype and the output's magnitude. Also sizes the scoring heads.
        output: the prediction, for a base whose ``forward`` returns a dict (a key) or a tuple or list (an
            index); ``None`` (the default) for a base returning a tensor.
        scoring_heads: give each member a scoring head (``self.scoring``, see the module docstring and
            :meth:`add_scoring_heads`); needs ``example_input``. ``None`` otherwise.
    """

    def __init__(
        self,
        base: BaseSpec,
        num_members: int,
        split: SplitSpec = None,
        *,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        same_init: bool = False,
        init: str | None = None,
        reinit: Sequence[str] = (),
        exec_mode: str = "loop",
        example_input: torch.Tensor | Sequence[int] | None = None,
        scoring_heads: bool = False,
        output=None,
    ):
        super().__init__()
        _check_output(output)
        self.output = output
        self.cut_check: str | None = None
        self.exec_mode = exec_mode
        self.scoring: ScoringHeads | None = None
        init, member_seeds = _member_seeds(num_members, seed, seeds, same_init, init)
        self.num_members = num_members
        self.seeds = member_seeds
        self.split = split
        self.init = init
        copies, self.init_scheme = build_members(base, member_seeds, init, reinit, describe=True)
        self.model_name = type(copies[0]).__name__
        self.levels = normalize_split(split, num_members)
        check_levels(self.levels, num_members)
        self._build(copies, output)
        if example_input is not None:
            self.check_cut(copies[0], example_input)
        if scoring_heads:
            if example_input is None:
                raise ValueError(
                    "scoring_heads: got True without example_input; expected an example batch "
                    "(or its shape) to size the heads"
                )
            self.add_scoring_heads(example_input)

    def _build(self, copies: list[nn.Module], output) -> None:
        """The members' tree from their ``copies``: the cut a base offers without tracing
        (:mod:`mheads.tree.parts`), a plain ``nn.Sequential`` cut between its children, independent members
        each running its own ``forward``, or any other base traced with torch.fx and cut at its nodes."""
        names = [name for name, _ in copies[0].named_children()]
        sequential = isinstance(copies[0], nn.Sequential) and type(copies[0]).forward is nn.Sequential.forward
        self._graph: dict[bool, fx.Graph] | None = None
        if is_untraced_cut(copies[0], self.levels):  # the cut the base offers: no tracing (tree.parts)
            self.layer_names = [n for n, _ in copies[0].named_modules() if n]
            self.root = parts_tree(copies)
        elif sequential and all(name is None or name in names for name, _ in self.levels):
            self.layer_names = names
            if not names:
                raise ValueError("base: the network has no named layers (children) to split")
            self.root = sequential_tree(copies, self.levels, names)
        elif self.levels[0][0] is None and len(self.levels) == 1:  # independent members: their own forward
            self.layer_names = names
            self.root = TreeNode(
                nn.Sequential(), [TreeNode(net, (), output, self.model_name) for net in copies]
            )
        else:
            self.layer_names = [n for n, _ in copies[0].named_modules() if n]
            if self.levels[0][0] is None:
                raise ValueError("split: a traced model branches at the input only with split=None")
            self.root, self._graph = traced_tree(copies, self.levels, output, self.model_name)

    @classmethod
    def from_parts(
        cls,
        trunk: nn.Module,
        branch: BaseSpec,
        num_members: int,
        *,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        exec_mode: str = "loop",
    ) -> TreeNet:
        """A TreeNet from explicit parts, for models ``torch.fx`` cannot trace: one ``trunk`` module shared by
        all members, and a branch per member built by ``branch`` (a factory, called under each member's seed,
        or a module, copied and redrawn per member). Member m computes ``branch_m(trunk(x))``."""
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net.exec_mode = exec_mode
        net.scoring = None
        net.output, net.model_name = None, type(trunk).__name__  # as __init__ sets them (fit reads both)
        _, member_seeds = _member_seeds(num_members, seed, seeds, False, "independent")
        if not isinstance(trunk, nn.Module):
            raise ValueError(f"trunk: got {type(trunk).__name__}; expected an nn.Module")
        net.num_members, net.seeds, net.split, net.init = num_members, member_seeds, "parts", "independent"
        net.levels = [("trunk", num_members)]
        net.layer_names = ["trunk", "branch"]
        net._graph = None
        branches = build_members(branch, member_seeds, "independent")
        net.root = TreeNode(
            nn.Sequential(trunk) if not isinstance(trunk, nn.Sequential) else trunk,
            [TreeNode(b) for b in branches],
        )
        return net

    @torch.no_grad()
    def add_scoring_heads(self, example: torch.Tensor | Sequence[int]) -> ScoringHeads:
        """Give each member a zero-initialized scoring head (``self.scoring``), sized by running ``example``
        (a batch or its shape) through the trunk (or, without a trunk, the members) in eval mode."""
        device = next(self.parameters()).device
        x = (
            example.to(device)
            if isinstance(example, torch.Tensor)
            else torch.randn(*example, generator=torch.Generator().manual_seed(0)).to(device)
        )
        modes = {m: m.training for m in self.modules()}
        try:
            self.eval()
            shared = not self.root.is_identity
            feats = score_features(self.root.layers(x)) if shared else torch.stack(self.root(x))
        finally:
            for m, training in modes.items():
                m.training = training
        self.scoring = ScoringHeads(self.num_members, feats.shape[-1], shared).to(
            device=feats.device, dtype=feats.dtype
        )
        return self.scoring

    # --- use ------------------------------------------------------------------------------------------------
    @property
    def exec_mode(self) -> str:
        """``"loop"``, ``"fused"`` or ``"auto"`` (see the class docstring); not part of the state_dict."""
        return self._exec_mode

    @exec_mode.setter
    def exec_mode(self, mode: str) -> None:
        self._exec_mode = check_exec_mode(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) -> member logits (M, B, C); each shared layer runs once per batch."""
        if resolve_exec_mode(self._exec_mode, self._input_device(x)) == "fused":
            return fused_forward(self.root, x)
        return torch.stack(self.root(x), dim=0)

    def _input_device(self, x) -> torch.device:
        """The device of the input: a tensor's, else the first tensor in a dict, tuple or list (a Hugging Face
        batch), else the parameters'."""
        todo = [x]
        while todo:
            item = todo.pop(0)
            if isinstance(item, torch.Tensor):
                return item.device
            todo.extend(
                item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else ()
            )
        return next(self.parameters(), torch.empty(0)).device

    def forward_with_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, ...) -> (member logits (M, B, C), score logits (M, B)); the logits are :meth:`forward`'s
        and the trunk runs once. Score logits come from the scoring heads on the pooled trunk output, or,
        without a trunk, on each member's own logits (gradients flow into the features either way)."""
        if self.scoring is None:
            raise ValueError(
                "forward_with_scores: this TreeNet has no scoring heads; build it with "
                "scoring_heads=True (model.scoring_heads: true)"
            )
        if self.root.is_identity:
            logits = self(x)
            return logits, self.scoring(logits)
        h = self.root.layers(x)
        below = self._below_trunk()
        if resolve_exec_mode(self._exec_mode, self._input_device(x)) == "fused":
            logits = fused_forward(below, h)
        else:
            logits = torch.stack(below(h), dim=0)
        return logits, self.scoring(score_features(h))

    def _below_trunk(self) -> TreeNode:
        """The root's branches under an empty node: the tree after its trunk, for running them on a trunk
        output already computed. Kept outside the module registry (not a second owner in the state_dict), and
        rebuilt when the root's branches change."""
        view = self.__dict__.get("_below")
        branches = list(self.root.branches)
        if (
            view is None
            or len(view.branches) != len(branches)
            or any(a is not b for a, b in zip(view.branches, branches))
        ):
            view = TreeNode(nn.Sequential(), branches)
            self.__dict__["_below"] = view
        return view
