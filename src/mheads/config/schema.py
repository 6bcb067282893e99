"""The run configuration: validated dataclasses, one per section of a config file (the ``data:`` section's in
:mod:`mheads.config.data_config`; the field checks and :class:`ConfigError` in :mod:`mheads.config.fields`).

Every error is a :class:`ConfigError` whose one-line message names the field (dotted path), the bad value and
what is allowed. A :class:`Config` validates itself when built (``__post_init__``) and again when ``fit``
starts, so a config built or edited in Python gets the same checks as one read from YAML. Names are checked
against the registries that own them: models (``mheads.models``), losses (``mheads.ensemble.losses.LOSSES``)
and schedules (``mheads.optim.schedules``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from mheads.config.data_config import DataConfig
from mheads.config.fields import FLOAT32_MAX, MAX_COUNT, ConfigError
from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.config.fields import number as _num
from mheads.config.task import TaskConfig, TaskConfigError, task_loss_names, task_loss_spec
from mheads.core.checks import check_iterations, is_int
from mheads.models import is_import_path, list_models
from mheads.optim.build import OPTIMIZERS
from mheads.optim.schedules import SCHEDULE_KINDS
from mheads.tasks.heads import POOLS

SCHEMA_VERSION = 1


# model.name of a run whose model was given to mheads.fit as a Python object (rebuilt from Python, not by
# name)
PYTHON_MODEL = "python"
INIT_MODES = ("independent", "same", "pretrained")
HEADS = ("none", "task")  # model.head


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
    levels, e.g. [[conv1, 2], [conv2, 2]])."""
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
    (B, F, H, W) maps for segmentation; mheads.tasks.heads). A base given to mheads.fit as a Python object."""
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

    def _validate_head(self, p: str) -> None:
        _choice(f"{p}.head", self.head, HEADS)
        if self.head_in is not None:
            _int(f"{p}.head_in", self.head_in, 1)
        _choice(f"{p}.pool", self.pool, POOLS)
        if self.head == "none":
            for key, value, default in (("head_in", self.head_in, None), ("pool", self.pool, "none")):
                if value != default:
                    _fail(f"{p}.{key}", value, f"{default if default else 'null'} unless model.head is task")


@dataclass
class LossConfig:
    """The ``loss:`` section: the ensemble loss and its parameters (docs/losses.md; paper sections 3-4).

    Each parameter is read only by the losses it names; the others ignore it."""

    name: str = "independent_ce"
    """The loss. Classification: independent_ce | score_averaged_ce | prob_averaged_ce | mcl | mcl_ce | cmcl |
    rwta | amcl | mcl_scored (mheads.ensemble.losses.LOSSES, with any registered there). Other tasks: the
    ensemble losses (independent, mcl, mcl_ce, rwta, amcl, mcl_scored; cmcl and the averaged cross-entropies
    for segmentation) and the task's loss of the combined prediction (averaged; mixture_nll for a user's
    task); docs/tasks.md."""
    k: int = 1
    """MCL: the members assigned to each example, an integer in 1..model.members (1 with amcl)."""
    mix: float = 0.5
    """mcl_ce: the weight of the MCL term (1 - mix on independent cross-entropy), a number in [0, 1]."""
    beta: float = 0.75
    """cmcl: the weight pulling non-assigned members toward uniform, a number >= 0."""
    epsilon: float = 0.05
    """rwta: the non-winners' share of each example, a number in [0, 1) (0 is mcl)."""
    temperature: float = 1.0
    """amcl: the starting temperature T0 of the soft assignment, a number > 0."""
    anneal_iterations: int = 1000
    """amcl: the iteration (counted from 0, pretraining included) at which the temperature reaches 0, an
    integer >= 0: it decays exponentially to T0 / 1000 there, then is 0, exactly mcl with k 1
    (mheads.ensemble.losses.annealed_temperature)."""
    score_weight: float = 1.0
    """mcl_scored: the weight of the scoring heads' binary cross-entropy, a number >= 0."""
    pretrain_iterations: int = 0
    """Train with independent cross-entropy for this many iterations first, then with loss.name (Table 5);
    an integer >= 0."""
    label_smoothing: float = 0.0
    """Cross-entropy against (1 - eps) one-hot + eps uniform targets: eps, a number in [0, 1]."""

    def validate(
        self, members: int, p: str = "loss", model: ModelConfig | None = None, task: TaskConfig | None = None
    ) -> None:
        """``model``: also check the loss against the model (a scored loss needs ``model.scoring_heads``,
        unless the task's outputs carry the scores). ``task``: the names it takes (default:
        classification's)."""
        task = task if task is not None else TaskConfig()
        _choice(f"{p}.name", self.name, task_loss_names(task))
        spec = task_loss_spec(task, self.name)
        _int(f"{p}.k", self.k, 1)
        if spec.assigns and self.k > members:
            _fail(f"{p}.k", self.k, f"an integer in 1..{members} (model.members)")
        if spec.single_winner and self.k != 1:
            _fail(f"{p}.k", self.k, f"1 with {p}.name {self.name} (it anneals toward a single winner)")
        _num(f"{p}.mix", self.mix, 0.0, high=1.0)
        _num(f"{p}.beta", self.beta, 0.0)
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 1.0:
            _fail(f"{p}.epsilon", eps, "a number >= 0.0 and < 1.0")
        _num(f"{p}.temperature", self.temperature, 0.0, strict=True)
        _int(f"{p}.anneal_iterations", self.anneal_iterations, 0)
        _num(f"{p}.score_weight", self.score_weight, 0.0)
        own_scores = task.name == "multi_hypothesis"  # its outputs carry a score logit per hypothesis
        if model is not None and spec.scores and model.scoring_heads is not True and not own_scores:
            _fail(
                "model.scoring_heads",
                model.scoring_heads,
                f"true with {p}.name {self.name} (the loss trains the members' scoring heads)",
            )
        _int(f"{p}.pretrain_iterations", self.pretrain_iterations, 0)
        _num(f"{p}.label_smoothing", self.label_smoothing, 0.0, high=1.0)


@dataclass
class OptimConfig:
    """The ``optim:`` section: the optimizer, its per-group multipliers and the learning-rate schedule
    (mheads.optim; the defaults are Caffe's CIFAR10-Quick solver)."""

    name: str = "sgd"
    """The optimizer: sgd | adamw."""
    lr: float = 0.001
    """The base learning rate, a number > 0."""
    momentum: float = 0.9
    """sgd: the momentum, a number in [0, 1]."""
    nesterov: bool = False
    """true or false: Nesterov momentum (true only with optim.name sgd and optim.momentum > 0)."""
    weight_decay: float = 0.004
    """The weight decay (L2 for sgd, decoupled for adamw), a number >= 0."""
    decay_norm_and_bias: bool = True
    """true or false; false: no weight decay on BatchNorm and bias parameters (every parameter with fewer
    than 2 dimensions)."""
    lr_times_members: bool = False
    """true or false: multiply optim.lr by model.members (averaged losses scale member gradients by 1/M; the
    paper raises the rate by M)."""
    bias_lr_mult: float = 1.0
    """A bias (a parameter named ...bias) trains at lr * bias_lr_mult, a number >= 0: Caffe's lr_mult
    (CIFAR10-Quick's prototxt: lr_mult 2 on every bias). The schedule's rate is scaled by each group's
    multiplier at every step. 1 (with bias_decay_mult 1): one rate and one decay for every parameter, as in
    the results committed before issue 34."""
    bias_decay_mult: float = 1.0
    """A bias's weight decay is weight_decay * bias_decay_mult, a number >= 0: Caffe's decay_mult
    (CIFAR10-Quick sets none, i.e. 1)."""
    trunk_lr_mult: float | str = 1.0
    """The rate multiplier of parameters that several members share (a TreeNet's trunk receives the sum of
    their gradients): a number >= 0, or inverse_members (1 / the number of members sharing it: 1/M for the
    trunk)."""
    schedule: str = "steps"
    """The learning-rate schedule (mheads.optim.schedules): fixed | steps (multiply by optim.gamma at each of
    optim.milestones) | every (multiply by optim.gamma every optim.every iterations) | cosine (to 0 over the
    run) | plateau (multiply by optim.gamma when the mean training loss over optim.window iterations fails
    to drop by optim.threshold: the paper's CIFAR100-NiN rule)."""
    warmup: int = 0
    """Linear learning-rate warm-up over the first this many iterations (any schedule), an integer >= 0."""
    milestones: list[int] = field(default_factory=lambda: [4000])
    """steps: the iterations at which the rate is multiplied by optim.gamma, a list of integers >= 1."""
    gamma: float = 0.1
    """steps, every, plateau: the factor the rate is multiplied by, a number in (0, 1]."""
    every: int = 0
    """every: the period in iterations, an integer >= 1 (unused by the other schedules)."""
    window: int = 1000
    """plateau: the iterations whose mean training loss is compared with the previous window's, an integer
    >= 1."""
    threshold: float = 0.01
    """plateau: the relative drop of the mean loss below which the rate is cut, a number in [0, 1] (0.01:
    1%)."""

    def validate(self, p: str = "optim") -> None:
        _choice(f"{p}.name", self.name, OPTIMIZERS)
        _num(f"{p}.lr", self.lr, 0.0, strict=True)
        _num(f"{p}.momentum", self.momentum, 0.0, high=1.0)
        for name in ("nesterov", "decay_norm_and_bias"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{p}.{name}", getattr(self, name), "true or false")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            _fail(f"{p}.nesterov", True, "false unless optim.name is sgd with optim.momentum > 0")
        _int(f"{p}.warmup", self.warmup, 0)
        _num(f"{p}.weight_decay", self.weight_decay, 0.0)
        _choice(f"{p}.schedule", self.schedule, SCHEDULE_KINDS)
        _num(f"{p}.gamma", self.gamma, 0.0, strict=True, high=1.0)
        check_iterations(f"{p}.milestones", self.milestones, error=ConfigError)
        if self.schedule == "every":
            _int(f"{p}.every", self.every, 1)
        if self.schedule == "plateau":
            _int(f"{p}.window", self.window, 1)
        _num(f"{p}.threshold", self.threshold, 0.0, high=1.0)
        from mheads.optim.build import INVERSE_MEMBERS  # kept inside OptimConfig (shared file)

        _num(f"{p}.bias_lr_mult", self.bias_lr_mult, 0.0)
        _num(f"{p}.bias_decay_mult", self.bias_decay_mult, 0.0)
        if self.trunk_lr_mult != INVERSE_MEMBERS:
            if isinstance(self.trunk_lr_mult, str):
                _fail(f"{p}.trunk_lr_mult", self.trunk_lr_mult, f"a number >= 0 or {INVERSE_MEMBERS}")
            _num(f"{p}.trunk_lr_mult", self.trunk_lr_mult, 0.0)


@dataclass
class TrainConfig:
    """The ``train:`` section: the length and batch of the run, evaluation and checkpoints, where it starts
    from, failures, and the device and its performance switches."""

    seed: int = 0
    """The run's seed (member initializations, data order, subsets, bagging derive from it), an integer >=
    0."""
    iterations: int = 5000
    """The number of optimizer updates, an integer >= 1."""
    batch_size: int = 100
    """Examples per batch, an integer >= 1 (divisible by dist.replicas)."""
    accumulate: int = 1
    """Gradient accumulation over this many batches per update (Table 6), an integer >= 1."""
    eval_every: int = 1000
    """Evaluate on the test split every this many iterations, an integer >= 0 (0: only the final evaluation,
    which every run makes)."""
    eval_batch_size: int = 1000
    """Examples per evaluation batch, an integer >= 1."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many iterations, an integer >= 0 (0: none in between)."""
    keep_checkpoints: int = 3
    """The newest checkpoints kept, an integer >= 2 (older ones are pruned)."""
    keep_steps: list[int] = field(default_factory=list)
    """The iterations whose checkpoints are saved and never pruned, a list of integers >= 1: sweeps keep the
    end of a shared cross-entropy pretraining here, for the cells that continue from it
    (mheads.reproduce.fork)."""
    init_from: str | None = None
    """null, or a run folder or checkpoint to start from (fine-tuning)."""
    init_from_member: int | None = None
    """null, or a member index m >= 0 of train.init_from copied into every member (identical members); null
    unless train.init_from is set."""
    nan_policy: str = "stop"
    """A step whose loss or gradients are not finite: stop (the run fails) | skip (the update is dropped)."""
    max_skipped: int = 10
    """nan_policy skip: stop after this many bad steps in a row, an integer >= 1."""
    device: str = "auto"
    """auto (cuda when available, else cpu) | cpu | cuda."""
    channels_last: bool = True
    """true or false: keep the model and images in channels-last memory format."""
    amp: bool = False
    """true or false: bf16 autocast (GPU; on a CPU without bf16 units it is much slower)."""
    compile: bool = False
    """true or false: torch.compile, used only if its gradients match eager mode on a first batch."""
    threads: int | None = None
    """CPU threads for the run, an integer >= 1 (null: torch's default); restored on exit."""
    flush_denormal: bool = True
    """true or false; CPU: treat denormal floats as zero. MCL's specialised members drive some values into the
    denormal range, where x86 arithmetic is many times slower: without this, late MCL k=1 steps ran ~25%
    slower here."""
    sync: str = "auto"
    """step (decide the finiteness guard and read the loss on the host every step: free on a CPU) | deferred
    (keep them on the device and read them every train.log_every iterations and at evaluations and
    checkpoints: no host synchronisation in between, what a GPU needs) | auto (deferred on CUDA, step
    elsewhere)."""
    log_every: int = 100
    """Log the training loss every this many iterations, an integer >= 1."""

    def validate(self, p: str = "train") -> None:
        _int(f"{p}.seed", self.seed, 0)
        _int(f"{p}.iterations", self.iterations, 1)
        _int(f"{p}.batch_size", self.batch_size, 1)
        _int(f"{p}.accumulate", self.accumulate, 1)
        _int(f"{p}.eval_every", self.eval_every, 0)
        _int(f"{p}.eval_batch_size", self.eval_batch_size, 1)
        _int(f"{p}.checkpoint_every", self.checkpoint_every, 0)
        _int(f"{p}.keep_checkpoints", self.keep_checkpoints, 2)
        check_iterations(f"{p}.keep_steps", self.keep_steps, error=ConfigError)
        _choice(f"{p}.nan_policy", self.nan_policy, ("stop", "skip"))
        _int(f"{p}.max_skipped", self.max_skipped, 1)
        _choice(f"{p}.device", self.device, ("auto", "cpu", "cuda"))
        _choice(f"{p}.sync", self.sync, ("auto", "step", "deferred"))
        _int(f"{p}.log_every", self.log_every, 1)
        if self.threads is not None:
            _int(f"{p}.threads", self.threads, 1)
        if self.init_from_member is not None:
            _int(f"{p}.init_from_member", self.init_from_member, 0)
            if self.init_from is None:
                _fail(f"{p}.init_from_member", self.init_from_member, "null unless train.init_from is set")


@dataclass
class DistConfig:
    """The ``dist:`` section: a run over several processes (mheads.dist; docs/distributed.md)."""

    placement: dict[str, Any] | None = None
    """Which rank holds the trunk and each branch, a mapping like {trunk: 0, branches: [0, 1, 2]} (null:
    round-robin)."""
    timeout_s: float = 120.0
    """The collective timeout in seconds, a number > 0: a rank that dies makes the others fail within about
    this long."""
    replicas: int = 1
    """Data-parallel copies of the placement, an integer >= 1 dividing train.batch_size; world size =
    replicas x the placement's ranks."""

    def validate(self, p: str = "dist") -> None:
        _num(f"{p}.timeout_s", self.timeout_s, 0.0, strict=True)
        _int(f"{p}.replicas", self.replicas, 1)
        if self.placement is not None and not isinstance(self.placement, dict):
            _fail(f"{p}.placement", self.placement, "a mapping like {trunk: 0, branches: [0, 1, 2]}")


@dataclass
class Config:
    """A run's whole configuration: one section per field, validated when built (``__post_init__``) and
    again when ``fit`` starts. docs/configs.md lists every field with its default
    (mheads.config.reference.config_reference writes that list from these docstrings)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The base network and its members (ModelConfig)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The examples and how they are read (DataConfig)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The ensemble loss (LossConfig)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimizer and schedule (OptimConfig)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run's length, checkpoints and device (TrainConfig)."""
    dist: DistConfig = field(default_factory=DistConfig)
    """Several processes (DistConfig)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """What a member's output means (TaskConfig)."""
    name: str = "run"
    """The run's name, a non-empty string."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> Config:
        self.model.validate()
        self.data.validate()
        if not isinstance(self.task, TaskConfig):
            _fail("task", self.task, "a mapping of task settings, e.g. {name: regression}")
        try:
            self.task.validate()
        except TaskConfigError as err:
            raise ConfigError(str(err)) from None
        self.loss.validate(self.model.members, model=self.model, task=self.task)
        self.optim.validate()
        self.train.validate()
        self.dist.validate()
        if not isinstance(self.name, str) or not self.name:
            _fail("name", self.name, "a non-empty string naming the run")
        t, o = self.train, self.optim
        if t.batch_size % self.dist.replicas:
            _fail(
                "dist.replicas",
                self.dist.replicas,
                f"a divisor of train.batch_size ({t.batch_size}): "
                "each replica reads an equal shard of every batch",
            )
        if t.iterations * t.accumulate * t.batch_size > MAX_COUNT:
            _fail(
                "train.iterations",
                t.iterations,
                f"train.iterations x train.accumulate ({t.accumulate}) x "
                f"train.batch_size ({t.batch_size}) at most {MAX_COUNT} images",
            )
        lr = o.lr * (self.model.members if o.lr_times_members else 1)
        if lr > FLOAT32_MAX or lr * max(o.weight_decay, 1.0) > FLOAT32_MAX:
            _fail(
                "optim.lr",
                o.lr,
                f"a learning rate whose product with the members (when "
                f"optim.lr_times_members) and optim.weight_decay stays below {FLOAT32_MAX:.3g} (the "
                "optimizer computes in float32)",
            )
        if self.data.bagging and task_loss_spec(self.task, self.loss.name).average is not None:
            _fail("data.bagging", True, "false with an averaged loss (bagging weights members separately)")
        if self.data.label_split is not None:
            ls = self.data.label_split
            if not isinstance(ls, list) or len(ls) != self.model.members:
                _fail("data.label_split", ls, f"a list of {self.model.members} label lists (one per member)")
            for m, labels in enumerate(ls):
                ok = isinstance(labels, list) and bool(labels)
                if not ok or not all(is_int(c) and c >= 0 for c in labels):
                    _fail(f"data.label_split[{m}]", labels, "a non-empty list of class indices >= 0")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(d["model"]["split"], (list, tuple)):
            d["model"]["split"] = [list(level) for level in d["model"]["split"]]
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
