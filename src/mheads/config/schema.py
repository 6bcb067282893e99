"""The run configuration: validated dataclasses, one per section of a config file.

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

from mheads.config.task import TaskConfig, TaskConfigError, task_loss_names, task_loss_spec
from mheads.core.checks import check_choice, check_int, check_iterations, check_number, is_int
from mheads.models import is_import_path, list_models
from mheads.optim.build import OPTIMIZERS
from mheads.optim.schedules import SCHEDULE_KINDS

SCHEMA_VERSION = 1


class ConfigError(ValueError):
    """A bad configuration value; the message names the field, the value and what is allowed."""


def _fail(path: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{path}: got {value!r}; expected {allowed}")


# Every count in a config is at most this (2**53: still exact in float64, far inside int64), so no arithmetic
# the run does with it (iterations x accumulate x batch size, seeds, indices) can overflow.
MAX_COUNT = 2**53
# The optimizers compute in float32: a learning rate (times members, times weight decay) stays finite there.
FLOAT32_MAX = 3.4028234663852886e38


def _int(path: str, v: Any, low: int | None = None, high: int | None = None) -> None:
    check_int(path, v, low, high, error=ConfigError)
    if high is None and v > MAX_COUNT:
        _fail(path, v, f"an integer at most {MAX_COUNT} (2**53)")


def _num(path: str, v: Any, low: float, *, strict: bool = False, high: float | None = None) -> None:
    check_number(path, v, low, high, strict_low=strict, error=ConfigError)


def _choice(path: str, v: Any, allowed) -> None:
    check_choice(path, v, allowed, error=ConfigError)


# model.name of a run whose model was given to mheads.fit as a Python object (rebuilt from Python, not by
# name)
PYTHON_MODEL = "python"
INIT_MODES = ("independent", "same", "pretrained")


@dataclass
class ModelConfig:
    # a registered family, an import path "package.module:function" (called with model.options, and with
    # num_classes / in_channels / image_size where it takes them), or "python" (a model given to mheads.fit)
    name: str = "cifar10_quick"
    members: int = 4
    split: Any = None  # None | layer name or module path | [[layer, branches], ...]
    # independent: a seed per member; same: identical members (Table 6); pretrained: every member from the
    # base's weights, the module paths in reinit redrawn per member
    init: str = "independent"
    reinit: list = field(default_factory=list)
    # a .safetensors file of the base network's weights (pretrained, or a member file of another run), loaded
    # into the base before the members are made from it per model.init
    weights: str | None = None
    options: dict = field(default_factory=dict)  # family options, e.g. {width: 0.5}
    exec: str = "loop"  # loop | fused | auto
    # each member also predicts whether it wins the input (loss.name mcl_scored trains it): one linear head
    # per member on the trunk's output (global-average-pooled; with split null, on the member's own logits)
    scoring_heads: bool = False
    # the prediction of a base whose forward returns a dict (a key, e.g. "logits") or a tuple or list (an
    # index, e.g. 0); null for a base returning the logits tensor itself
    output: str | int | None = None

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
            _fail(f"{p}.output", out, "null, a key of the base's dict output (e.g. logits) or an index of "
                  "its tuple output (e.g. 0)")
        if not isinstance(self.reinit, list) or not all(isinstance(r, str) and r for r in self.reinit):
            _fail(f"{p}.reinit", self.reinit, "a list of module paths, e.g. [fc]")
        if self.reinit and self.init != "pretrained":
            _fail(f"{p}.reinit", self.reinit, "[] unless model.init is pretrained")
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights):
            _fail(f"{p}.weights", self.weights, "null or the path of a .safetensors file of the base's "
                  "weights")
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


@dataclass
class DataConfig:
    source: str | None = None  # None: the embedded Fashion-MNIST subset
    normalize: str = "mean_image"  # mean_image (Caffe) | per_channel | none
    crop_padding: int = 0
    flip: bool = False
    bagging: bool = False  # each member trains on its own bootstrap sample
    # train on only the distinct images of bagging member m's bootstrap sample (seeded by train.seed), each
    # once: about 63.2% of the set (section 4's control for bagging's loss of unique data)
    bootstrap_unique: int | None = None
    # use N training (test) images: a class-stratified subset, seeded by train.seed (mheads.data.subsets)
    train_limit: int | None = None
    test_limit: int | None = None
    label_split: list | None = None  # specialists: per member, the list of labels it trains on
    # keep only these classes of the source (indices or names), relabelled 0.. in this order; the final
    # evaluation then scores the test images of the other classes as out-of-distribution (open set)
    classes: list | None = None
    val_fraction: float = 0.0  # held out of the training set, seeded: fits temperature scaling at the end
    # resident: the decoded set on the training device; stream: DataLoader workers decode image files per
    # batch; auto: stream when the source can be streamed and (image_size or train_crop asks for resizing, or
    # the decoded set would exceed memory_budget_mb), else resident
    loader: str = "auto"
    image_size: int | None = None  # stream: the side of the square images the model sees (null: the images')
    # stream: pad (the eval view, then crop_padding on the device) | random (shorter side to eval_resize, a
    # random image_size square: Caffe's ImageNet crop) | random_resized (Inception's)
    train_crop: str = "pad"
    crop_scale: list = field(default_factory=lambda: [0.08, 1.0])  # random_resized: the crop's area range
    eval_resize: int | None = None  # stream: shorter side before the centre crop (null: image_size)
    workers: int | None = None  # stream: decoding processes (null: the cores the training threads leave, 1+)
    memory_budget_mb: int | None = None  # auto: the decoded size above which it streams (null: half the RAM)
    on_bad_image: str = "stop"  # stream: stop (exit 2, naming the file) | skip (counted in the metrics)
    stats_images: int = 50000  # stream: normalization statistics from all images, or a seeded sample this big
    cache_dir: str | None = None  # decoded-data cache folder (null: $MHEADS_CACHE or ~/.cache/mheads)
    # a CSV / Parquet table source (data.source a .csv, .tsv, .parquet or .pq file): the input columns
    # (a list of names); its targets are data.targets
    features: list | None = None
    # a table source: the target columns (a name or a list); an .npz source: the targets' array name
    # (null: "y"); a mask-folder source (images/ beside masks/): unused
    targets: Any = None
    inputs: str | None = None  # an .npz source: the inputs' array name (null: "x")
    split_column: str | None = None  # a table source: a column of train / val / test per row
    # a table, .npz or mask-folder source without split_column: the seeded share of examples held out as the
    # test split (null: none; the run then evaluates on its training examples)
    test_fraction: float | None = None

    def validate(self, p: str = "data") -> None:
        _choice(f"{p}.normalize", self.normalize, ("mean_image", "per_channel", "none"))
        _int(f"{p}.crop_padding", self.crop_padding, 0)
        _choice(f"{p}.loader", self.loader, ("auto", "resident", "stream"))
        _choice(f"{p}.train_crop", self.train_crop, ("pad", "random", "random_resized"))
        _choice(f"{p}.on_bad_image", self.on_bad_image, ("stop", "skip"))
        for name in ("image_size", "eval_resize", "workers", "memory_budget_mb"):
            if getattr(self, name) is not None:
                _int(f"{p}.{name}", getattr(self, name), 0 if name == "workers" else 1)
        _int(f"{p}.stats_images", self.stats_images, 1)
        if self.cache_dir is not None and (not isinstance(self.cache_dir, str) or not self.cache_dir):
            _fail(f"{p}.cache_dir", self.cache_dir, "null or a folder path")
        _num(f"{p}.val_fraction", self.val_fraction, 0.0, high=0.5)
        if self.classes is not None and (not isinstance(self.classes, list) or len(self.classes) < 2 or any(
                isinstance(c, bool) or not isinstance(c, (int, str)) for c in self.classes)
                or len(set(self.classes)) != len(self.classes)):
            _fail(f"{p}.classes", self.classes, "null or a list of >= 2 distinct class indices or names")
        cs = self.crop_scale
        if (not isinstance(cs, (list, tuple)) or len(cs) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cs)
                or not 0 < cs[0] <= cs[1] <= 1):
            _fail(f"{p}.crop_scale", cs, "[low, high] with 0 < low <= high <= 1")
        if None not in (self.eval_resize, self.image_size) and self.eval_resize < self.image_size:
            _fail(f"{p}.eval_resize", self.eval_resize, f"at least data.image_size ({self.image_size})")
        if self.loader == "resident" and (self.image_size is not None or self.train_crop != "pad"):
            what = "data.image_size" if self.image_size is not None else f"data.train_crop: {self.train_crop}"
            _fail(f"{p}.loader", "resident", f"stream or auto when {what} is set (resident data is used as "
                  "stored)")
        for name in ("flip", "bagging"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{p}.{name}", getattr(self, name), "true or false")
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                _int(f"{p}.{name}", getattr(self, name), 1)
        if self.bootstrap_unique is not None:
            _int(f"{p}.bootstrap_unique", self.bootstrap_unique, 0)
            if self.bagging:
                _fail(f"{p}.bootstrap_unique", self.bootstrap_unique, "null with data.bagging: true")
        if self.features is not None and (not isinstance(self.features, list) or not self.features
                                          or not all(isinstance(c, str) and c for c in self.features)):
            _fail(f"{p}.features", self.features, "null or a non-empty list of column names")
        t = self.targets
        if t is not None and not (isinstance(t, str) and t) and not (
                isinstance(t, list) and t and all(isinstance(c, str) and c for c in t)):
            _fail(f"{p}.targets", t, "null, a column or array name, or a non-empty list of column names")
        for name in ("inputs", "split_column"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, str) and v):
                _fail(f"{p}.{name}", v, "null or a name")
        if self.test_fraction is not None:
            _num(f"{p}.test_fraction", self.test_fraction, 0.0, strict=True, high=0.9)
            if self.split_column is not None:
                _fail(f"{p}.test_fraction", self.test_fraction, "null with data.split_column (the table "
                      "names each row's split)")
        if self.source is not None and not isinstance(self.source, str):
            _fail(f"{p}.source", self.source, "a path or null for the embedded data")


@dataclass
class LossConfig:
    name: str = "independent_ce"
    k: int = 1  # MCL: members assigned per example
    mix: float = 0.5  # mcl_ce: weight of the MCL term (1 - mix on independent cross-entropy)
    beta: float = 0.75  # cmcl: weight pulling non-assigned members toward uniform
    epsilon: float = 0.05  # rwta: the non-winners' share of each example, in [0, 1) (0 is mcl)
    temperature: float = 1.0  # amcl: the starting temperature T0 > 0 of the soft assignment
    # amcl: the iteration (counted from 0, pretraining included) at which the temperature reaches 0: it decays
    # exponentially to T0 / 1000 there, then is 0, exactly mcl with k 1 (ensemble.losses.annealed_temperature)
    anneal_iterations: int = 1000
    score_weight: float = 1.0  # mcl_scored: weight of the scoring heads' binary cross-entropy
    pretrain_iterations: int = 0  # independent cross-entropy first, then this loss (Table 5)
    label_smoothing: float = 0.0  # cross-entropy against (1 - eps) one-hot + eps uniform targets

    def validate(self, members: int, p: str = "loss", model: ModelConfig | None = None,
                 task: TaskConfig | None = None) -> None:
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
            _fail("model.scoring_heads", model.scoring_heads,
                  f"true with {p}.name {self.name} (the loss trains the members' scoring heads)")
        _int(f"{p}.pretrain_iterations", self.pretrain_iterations, 0)
        _num(f"{p}.label_smoothing", self.label_smoothing, 0.0, high=1.0)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.001
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd: Nesterov momentum
    weight_decay: float = 0.004
    # false: no weight decay on BatchNorm and bias parameters (every parameter with fewer than 2 dimensions)
    decay_norm_and_bias: bool = True
    lr_times_members: bool = False  # averaged losses scale member gradients by 1/M; the paper raises lr by M
    # per-group multipliers, Caffe's lr_mult / decay_mult: a bias (a parameter named ...bias) trains at
    # lr * bias_lr_mult with weight decay weight_decay * bias_decay_mult (CIFAR10-Quick's prototxt: lr_mult 2
    # on every bias, no decay_mult, i.e. 2 and 1); the schedule's rate is scaled by each group's multiplier at
    # every step. 1 and 1: one rate and one decay for every parameter (the results committed before issue 34)
    bias_lr_mult: float = 1.0
    bias_decay_mult: float = 1.0
    # rate multiplier of parameters that several members share (a TreeNet's trunk receives the sum of their
    # gradients): a number >= 0, or inverse_members (1 / the number of members sharing it: 1/M for the trunk)
    trunk_lr_mult: Any = 1.0
    schedule: str = "steps"  # fixed | steps | every | cosine | plateau
    warmup: int = 0  # linear learning-rate warm-up over the first iterations (any schedule)
    milestones: list = field(default_factory=lambda: [4000])
    gamma: float = 0.1
    every: int = 0
    window: int = 1000
    threshold: float = 0.01

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
    seed: int = 0
    iterations: int = 5000
    batch_size: int = 100
    accumulate: int = 1  # gradient accumulation over n batches per update (Table 6)
    eval_every: int = 1000
    eval_batch_size: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # iterations whose checkpoints are saved and never pruned: sweeps keep the end of a shared cross-entropy
    # pretraining here, for the cells that continue from it (mheads.reproduce.fork)
    keep_steps: list = field(default_factory=list)
    init_from: str | None = None  # a run folder or checkpoint to start from (fine-tuning)
    init_from_member: int | None = None  # copy this member of init_from into every member (identical members)
    nan_policy: str = "stop"  # stop | skip
    max_skipped: int = 10  # skip policy: stop after this many bad steps in a row
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = True
    amp: bool = False  # bf16 autocast (GPU only; on a CPU without bf16 units it is much slower)
    compile: bool = False  # torch.compile, used only if its gradients match eager mode on a first batch
    threads: int | None = None
    # CPU: treat denormal floats as zero. MCL's specialised members drive some values into the denormal range,
    # where x86 arithmetic is many times slower: without this, late MCL k=1 steps ran ~25% slower here.
    flush_denormal: bool = True
    # step: decide the finiteness guard and read the loss on the host every step (free on a CPU); deferred:
    # keep them on the device and read them every log_every iterations and at evaluations and checkpoints
    # (no host synchronisation in between: what a GPU needs); auto: deferred on CUDA, step elsewhere
    sync: str = "auto"
    log_every: int = 100

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
    placement: dict | None = None  # {trunk: 0, branches: [0, 1, 2]}; default round-robin
    timeout_s: float = 120.0
    replicas: int = 1  # data-parallel copies of the placement; world size = replicas x its ranks

    def validate(self, p: str = "dist") -> None:
        _num(f"{p}.timeout_s", self.timeout_s, 0.0, strict=True)
        _int(f"{p}.replicas", self.replicas, 1)
        if self.placement is not None and not isinstance(self.placement, dict):
            _fail(f"{p}.placement", self.placement, "a mapping like {trunk: 0, branches: [0, 1, 2]}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    name: str = "run"

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
            _fail("dist.replicas", self.dist.replicas, f"a divisor of train.batch_size ({t.batch_size}): "
                  "each replica reads an equal shard of every batch")
        if t.iterations * t.accumulate * t.batch_size > MAX_COUNT:
            _fail("train.iterations", t.iterations, f"train.iterations x train.accumulate ({t.accumulate}) x "
                  f"train.batch_size ({t.batch_size}) at most {MAX_COUNT} images")
        lr = o.lr * (self.model.members if o.lr_times_members else 1)
        if lr > FLOAT32_MAX or lr * max(o.weight_decay, 1.0) > FLOAT32_MAX:
            _fail("optim.lr", o.lr, f"a learning rate whose product with the members (when "
                  f"optim.lr_times_members) and optim.weight_decay stays below {FLOAT32_MAX:.3g} (the "
                  "optimizer computes in float32)")
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
