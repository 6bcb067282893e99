"""From YAML files and ``--set key=value`` overrides to a validated :class:`~mheads.config.schema.Config`.

Unknown keys are refused with the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from mheads.config.schema import Config, ConfigError
from mheads.core.checks import closest

__all__ = ["apply_overrides", "config_from_dict", "config_from_settings", "load_config", "read_yaml"]


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


MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; recipes a few kilobytes
MAX_EXPANDED_NODES = 100_000  # values a document may expand to through YAML aliases


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string (it wants ``1.0e-3``), yet that is how people write learning
    rates. Duplicate keys are refused (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys fail in PyYAML's own construction with their own message
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key {key!r} at line {line} (first at line {seen[key]}); each "
                    "key may appear once in a mapping"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(node, memo: dict) -> int:
    """How many values ``node`` stands for once every alias is expanded (aliases share nodes: memoized)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle (an alias to an enclosing node) counts once; PyYAML builds it as a cycle
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def load_yaml_text(text: str):
    """Parse one YAML document safely: mheads's loader, and a bound on alias expansion ("billion laughs")."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"the document expands to {size:,} values through YAML aliases (&anchor / "
                f"*alias); at most {MAX_EXPANDED_NODES:,} are allowed"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_error(path: Path, err: yaml.YAMLError) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{path}: malformed YAML{where}: {problem}")


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a regular file of at most ``MAX_CONFIG_BYTES`` (a FIFO, a device such as /dev/zero
    or a huge file is refused before anything is read)."""
    path = Path(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{path}: is a folder; expected a YAML config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(
                f"{path}: not a regular file (a pipe, device or socket); expected a YAML config file"
            )
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {st.st_size:,} bytes; a config file is at most {MAX_CONFIG_BYTES:,}")
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: grew past {MAX_CONFIG_BYTES:,} bytes while being read")
    try:
        data = load_yaml_text(text)
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config must be a YAML mapping (key: value), got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to nested plain data."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: got {item!r}; expected key=value, e.g. optim.lr=0.01")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml_text(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        except ConfigError as err:
            raise ConfigError(f"--set {key}: {err}") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(data, list(overrides)))


def config_from_settings(settings: Mapping[str, Any] | None) -> Config:
    """A validated :class:`Config` from dotted keys with Python values, the keys ``--set`` takes (the Python
    API's ``settings``), e.g. ``{"loss.name": "mcl", "loss.k": 1, "train.iterations": 300}``."""
    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError(
            f"settings: got {type(settings).__name__}; expected a mapping of dotted keys to values"
        )
    data: dict = {}
    for key, value in (settings or {}).items():
        if not isinstance(key, str) or not key or not all(key.split(".")):
            raise ConfigError(f"settings: key {key!r}; expected a dotted config key such as 'loss.name'")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"settings: {key!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return config_from_dict(data)
