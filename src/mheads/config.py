"""Run configuration: validated dataclasses, read from YAML, with ``--set key=value`` overrides.

Every error is a :class:`ConfigError` whose one-line message names the field (dotted path), the bad value and what
is allowed; unknown keys suggest the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 1
LOSSES = ("independent_ce", "score_averaged_ce", "prob_averaged_ce", "mcl", "mcl_ce", "cmcl")
MCL_LOSSES = ("mcl", "mcl_ce", "cmcl")


class ConfigError(ValueError):
    """A bad configuration value; the message names the field, the value and what is allowed."""


def _fail(path: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{path}: got {value!r}; expected {allowed}")


def _int(path: str, v: Any, low: int | None = None) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
        _fail(path, v, f"an integer >= {low}" if low is not None else "an integer")


def _iterations(path: str, v: Any) -> None:
    if not isinstance(v, list):
        _fail(path, v, "a list of iterations")
    for i, it in enumerate(v):
        _int(f"{path}[{i}]", it, 1)


def _num(path: str, v: Any, low: float, *, strict: bool = False, high: float | None = None) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > low if strict else v >= low) and (high is None or v <= high)
    if not ok:
        rng = f"{'>' if strict else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        _fail(path, v, f"a number {rng}")


def closest(word: str, options) -> str | None:
    """The option nearest to a mistyped word, or None."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.5)
    if close:
        return close[0]
    prefixed = [o for o in options if str(word).startswith(o) or o.startswith(str(word))]
    return max(prefixed, key=len) if prefixed else None


def _choice(path: str, v: Any, allowed: tuple) -> None:
    if v not in allowed:
        close = closest(v, allowed)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise ConfigError(f"{path}: got {v!r}{hint}; expected one of {', '.join(map(str, allowed))}")


@dataclass
class ModelConfig:
    name: str = "cifar10_quick"
    members: int = 4
    split: Any = None  # None | layer name | [[layer, branches], ...]
    init: str = "independent"  # independent: a seed per member; same: identical members (Table 6)
    options: dict = field(default_factory=dict)  # family options, e.g. {width: 0.5}
    exec: str = "loop"  # loop | fused | auto

    def validate(self, p: str = "model") -> None:
        from mheads.models import list_models

        _choice(f"{p}.name", self.name, tuple(list_models()))
        _int(f"{p}.members", self.members, 1)
        _choice(f"{p}.init", self.init, ("independent", "same"))
        _choice(f"{p}.exec", self.exec, ("loop", "fused", "auto"))
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
    train_limit: int | None = None  # use the first N training images (class-balanced subsets are up to the user)
    test_limit: int | None = None
    label_split: list | None = None  # specialists: per member, the list of labels it trains on

    def validate(self, p: str = "data") -> None:
        _choice(f"{p}.normalize", self.normalize, ("mean_image", "per_channel", "none"))
        _int(f"{p}.crop_padding", self.crop_padding, 0)
        for name in ("flip", "bagging"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{p}.{name}", getattr(self, name), "true or false")
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                _int(f"{p}.{name}", getattr(self, name), 1)
        if self.source is not None and not isinstance(self.source, str):
            _fail(f"{p}.source", self.source, "a path or null for the embedded data")


@dataclass
class LossConfig:
    name: str = "independent_ce"
    k: int = 1  # MCL: members assigned per example
    mix: float = 0.5  # mcl_ce: weight of the MCL term (1 - mix on independent cross-entropy)
    beta: float = 0.75  # cmcl: weight pulling non-assigned members toward uniform
    pretrain_iterations: int = 0  # independent cross-entropy first, then this loss (Table 5)

    def validate(self, members: int, p: str = "loss") -> None:
        _choice(f"{p}.name", self.name, LOSSES)
        _int(f"{p}.k", self.k, 1)
        if self.name in MCL_LOSSES and self.k > members:
            _fail(f"{p}.k", self.k, f"an integer in 1..{members} (model.members)")
        _num(f"{p}.mix", self.mix, 0.0, high=1.0)
        _num(f"{p}.beta", self.beta, 0.0)
        _int(f"{p}.pretrain_iterations", self.pretrain_iterations, 0)


@dataclass
class OptimConfig:
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.004
    lr_times_members: bool = False  # averaged losses scale member gradients by 1/M; the paper raises lr by M
    schedule: str = "steps"  # fixed | steps | every | plateau
    milestones: list = field(default_factory=lambda: [4000])
    gamma: float = 0.1
    every: int = 0
    window: int = 1000
    threshold: float = 0.01

    def validate(self, p: str = "optim") -> None:
        from mheads.schedules import SCHEDULE_KINDS

        _num(f"{p}.lr", self.lr, 0.0, strict=True)
        _num(f"{p}.momentum", self.momentum, 0.0, high=1.0)
        _num(f"{p}.weight_decay", self.weight_decay, 0.0)
        _choice(f"{p}.schedule", self.schedule, SCHEDULE_KINDS)
        _num(f"{p}.gamma", self.gamma, 0.0, strict=True, high=1.0)
        _iterations(f"{p}.milestones", self.milestones)
        if self.schedule == "every":
            _int(f"{p}.every", self.every, 1)
        if self.schedule == "plateau":
            _int(f"{p}.window", self.window, 1)
        _num(f"{p}.threshold", self.threshold, 0.0, high=1.0)


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

    def validate(self, p: str = "train") -> None:
        _int(f"{p}.seed", self.seed, 0)
        _int(f"{p}.iterations", self.iterations, 1)
        _int(f"{p}.batch_size", self.batch_size, 1)
        _int(f"{p}.accumulate", self.accumulate, 1)
        _int(f"{p}.eval_every", self.eval_every, 0)
        _int(f"{p}.eval_batch_size", self.eval_batch_size, 1)
        _int(f"{p}.checkpoint_every", self.checkpoint_every, 0)
        _int(f"{p}.keep_checkpoints", self.keep_checkpoints, 2)
        _iterations(f"{p}.keep_steps", self.keep_steps)
        _choice(f"{p}.nan_policy", self.nan_policy, ("stop", "skip"))
        _int(f"{p}.max_skipped", self.max_skipped, 1)
        _choice(f"{p}.device", self.device, ("auto", "cpu", "cuda"))
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

    def validate(self, p: str = "dist") -> None:
        _num(f"{p}.timeout_s", self.timeout_s, 0.0, strict=True)
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
    name: str = "run"

    def validate(self) -> "Config":
        self.model.validate()
        self.data.validate()
        self.loss.validate(self.model.members)
        self.optim.validate()
        self.train.validate()
        self.dist.validate()
        if self.data.bagging and self.loss.name in ("score_averaged_ce", "prob_averaged_ce"):
            _fail("data.bagging", True, "false with an averaged loss (bagging weights members separately)")
        if self.data.label_split is not None:
            ls = self.data.label_split
            if not isinstance(ls, list) or len(ls) != self.model.members:
                _fail("data.label_split", ls, f"a list of {self.model.members} label lists (one per member)")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(d["model"]["split"], (list, tuple)):
            d["model"]["split"] = [list(level) for level in d["model"]["split"]]
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _build(cls, data: Any, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: got {data!r}; expected a mapping of keys to values")
    names = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            close = closest(key, names)
            hint = f"did you mean {close!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key; {hint}valid keys are: {', '.join(names)}")
        f = names[key]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            value = _build(sub, value if value is not None else {}, f"{path}.{key}" if path else key)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build and validate a :class:`Config` from nested plain data (as read from YAML)."""
    return _build(Config, data or {}, "").validate()


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string (it wants ``1.0e-3``), yet that is how people write learning rates."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _yaml_error(path: Path, err: yaml.YAMLError) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{path}: malformed YAML{where}: {problem}")


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a YAML config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping (key: value), got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to nested plain data."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: got {item!r}; expected key=value, e.g. optim.lr=0.01")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_Loader) if raw else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(data, list(overrides)))
