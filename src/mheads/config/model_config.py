"""The ``model:`` section of a run's configuration, :class:`ModelConfig`: the base network, how many members
it becomes, where they branch, how they start and run, and the optional task head; with the names its fields
take (``PYTHON_MODEL``, ``INIT_MODES``, ``HEADS``). Part of :mod:`mheads.config.schema`, which gathers the
sections into a :class:`~mheads.config.schema.Config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.models import is_import_path, list_models
from mheads.tasks.heads import POOLS

__all__ = ["HEADS", "INIT_MODES", "PYTHON_MODEL", "WHOLE_BASE", "ModelConfig"]


# model.name of a run whose model was given to mheads.fit as a Python object (rebuilt from Python, not by
# name)
PYTHON_MODEL = "python"
INIT_MODES = ("independent", "same", "pretrained")
HEADS = ("none", "task")  # model.head
# model.split with model.head task: after the base's output, the whole base the shared trunk (run as a black
# box, never traced: mheads.tree.parts), a head per member
WHOLE_BASE = "output"


@dataclass
class ModelConfig:
    """The ``model:`` section: the base network, how many members it becomes and where they branch.

    The members share the base's layers up to ``split`` (the trunk) and each has its own copy of the layers
    after it (a branch): a TreeNet (paper section 5). ``split: null`` gives independent members.
    """

    name: str = "cifar10_quick"
    """The base network: a registered family (mheads list-models names them: cifar10_quick, nin_cifar,
    resnet20, ...; register_model adds one), an import path "package.module:function" (called with
    model.options, and with num_classes / in_channels / image_size where it takes them), or python (a model
    given to mheads.fit as an object: rebuilt from Python, not by name)."""
    members: int = 4
    """M, the number of members: an integer >= 1."""
    split: Any = None
    """Where the members branch off the shared trunk: null (independent members, no trunk), a layer name or
    module path (every member branches there), or a list of [layer, branches] pairs (a tree of several
    levels, e.g. [[conv1, 2], [conv2, 2]]); with model.head task also output (after the base's output: the
    whole base shared, run as it is, never traced, so any model, a Hugging Face one included; the members'
    heads branch)."""
    init: str = "independent"
    """How the members start: independent (a seed per member, derived from train.seed) | same (identical
    members, Table 6) | pretrained (every member from the base's weights, the module paths in model.reinit
    redrawn per member)."""
    reinit: list[str] = field(default_factory=list)
    """model.init pretrained: the module paths each member redraws from its own seed, e.g. [fc]; [] with any
    other model.init."""
    weights: str | None = None
    """null, or the path of a .safetensors file of the base network's weights (pretrained, or a member file
    of another run), loaded into the base before the members are made from it per model.init."""
    options: dict[str, Any] = field(default_factory=dict)
    """The family's options, a mapping, e.g. {width: 0.5}."""
    exec: str = "loop"
    """How sibling branches run: loop (one after another) | fused (structurally identical branches as one
    grouped op per layer; the same results up to float rounding) | auto (fused on CUDA, loop elsewhere:
    what the throughput benchmark measured faster)."""
    scoring_heads: bool = False
    """true or false: each member also predicts whether it wins the input (loss.name mcl_scored trains it):
    one linear head per member on the trunk's output (global-average-pooled; with split null, on the
    member's own logits)."""
    output: str | int | None = None
    """The prediction of a base whose forward returns a dict (a key, e.g. logits) or a tuple or list (an
    index, e.g. 0); null for a base returning the logits tensor itself."""
    head: str = "none"
    """none (the base's output is the prediction) | task (the task's head on top of every member, each member
    its own: a linear layer from the base's features (B, F) to the task's head width, a 1x1 convolution on
    (B, F, H, W) maps for segmentation; mheads.tasks.heads). A base named by import path or given to
    mheads.fit as a Python object; a registered model is refused (it ends in its own classifier)."""
    head_in: int | None = None
    """model.head task: F, the base's feature width; null: found by one eval-mode forward of an example (the
    same forward checks a value given); the run records the F it found."""
    pool: str = "none"
    """model.head task: the features the head reads from the base's output (after model.output): none (as
    they are: (B, F), or (B, F, H, W) for segmentation) | mean, first or last (a sequence (B, T, F): the
    mean over positions, padding included, or position 0 or T-1) | global_avg ((B, F, ...) maps averaged over
    every axis after F)."""

    def validate(self, p: str = "model") -> None:
        # An import path is only checked for form here: importing runs its module's code, which happens when
        # the model is built for training, never when a run folder's config.yaml is read (eval, predict,
        # resume: the user names such a model on the command line; see mheads.train.build.tree_from_meta).
        if not is_import_path(self.name) and self.name != PYTHON_MODEL:
            _choice(f"{p}.name", self.name, tuple(list_models()))
        _int(f"{p}.members", self.members, 1)
        _choice(f"{p}.init", self.init, INIT_MODES)
        _choice(f"{p}.exec", self.exec, ("loop", "fused", "auto"))
        if not isinstance(self.scoring_heads, bool):
            _fail(f"{p}.scoring_heads", self.scoring_heads, "true or false")
        out = self.output
        if out is not None and (isinstance(out, bool) or not isinstance(out, (str, int)) or out == ""):
            _fail(
                f"{p}.output",
                out,
                "null, a key of the base's dict output (e.g. logits) or an index of "
                "its tuple output (e.g. 0)",
            )
        self._validate_head(p)
        if not isinstance(self.reinit, list) or not all(isinstance(r, str) and r for r in self.reinit):
            _fail(f"{p}.reinit", self.reinit, "a list of module paths, e.g. [fc]")
        if self.reinit and self.init != "pretrained":
            _fail(f"{p}.reinit", self.reinit, "[] unless model.init is pretrained")
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights):
            _fail(
                f"{p}.weights", self.weights, "null or the path of a .safetensors file of the base's weights"
            )
        if not isinstance(self.options, dict):
            _fail(f"{p}.options", self.options, "a mapping of model options, e.g. {width: 0.5}")
        s = self.split
        if isinstance(s, list):
            for i, level in enumerate(s):
                if not (isinstance(level, (list, tuple)) and len(level) == 2 and isinstance(level[0], str)):
                    _fail(f"{p}.split[{i}]", level, "a [layer name, number of branches] pair")
            self.split = [tuple(level) for level in s]
        elif s is not None and not isinstance(s, str):
            _fail(f"{p}.split", s, "null (independent members), a layer name, or a list of [layer, branches]")
        self._validate_whole_base(p)

    def _validate_whole_base(self, p: str) -> None:
        """With ``model.head: task``, ``split: output`` (:data:`WHOLE_BASE`) names the cut after the base's
        output and is a whole split, never one level of several. Without a head ``output`` is a layer name,
        as it always was (a base's ``self.output`` layer: runs split there before it meant more reopen)."""
        if self.head == "task" and isinstance(self.split, list) and WHOLE_BASE in [n for n, _ in self.split]:
            allowed = (
                "null, a layer name or a list of [layer, branches]; output (the whole base shared) only "
                "as the whole split, with model.head task"
            )
            _fail(f"{p}.split", self.split, allowed)

    def _validate_head(self, p: str) -> None:
        _choice(f"{p}.head", self.head, HEADS)
        if self.head_in is not None:
            _int(f"{p}.head_in", self.head_in, 1)
        _choice(f"{p}.pool", self.pool, POOLS)
        if self.head == "none":
            for key, value, default in (("head_in", self.head_in, None), ("pool", self.pool, "none")):
                if value != default:
                    _fail(f"{p}.{key}", value, f"{default if default else 'null'} unless model.head is task")
