"""The config reference: every field of :class:`~mheads.config.schema.Config`, its default and its
description, as the commented YAML block of docs/configs.md.

Each field is documented once, by the string literal under it in its dataclass (an attribute docstring,
which pdoc also shows); this module reads those strings from the source with :mod:`ast`, so the block cannot
drift from the dataclasses: ``python scripts/config_reference.py`` writes it, and a test compares the
committed file.
The block is a valid config: read back, it gives ``Config()``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
from typing import Any

import yaml

from mheads.config.schema import Config

__all__ = ["BEGIN", "END", "config_reference", "field_docs", "section_classes", "with_reference"]

BEGIN = "<!-- written by scripts/config_reference.py from mheads.config's docstrings: edit those -->"
END = "<!-- end of the config reference -->"
WIDTH = 110


def _plain(text: str) -> str:
    """One paragraph of a docstring as plain words on one line (no reStructuredText literal markers)."""
    return " ".join(text.replace("``", "").split())


def field_docs(cls: type) -> dict[str, str]:
    """Each field of dataclass ``cls`` with its attribute docstring (the string literal right under the field
    in the class body), on one line; a field without one maps to ""."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[node.target.id] = _plain(after.value.value)
    return {f.name: found.get(f.name, "") for f in dataclasses.fields(cls)}


def section_classes() -> dict[str, type]:
    """The sections of a config (``model``, ``data``, ...) with their dataclasses, in ``Config``'s order."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(Config):
        factory = f.default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out[f.name] = factory
    return out


def _comment(text: str, indent: str) -> list[str]:
    return [
        f"{indent}# {line}" for line in textwrap.wrap(text, WIDTH - len(indent) - 2, break_on_hyphens=False)
    ]


def _entry(key: str, value: Any, indent: str) -> str:
    """``key: value`` on one line (a list or mapping in flow style, as it would be typed)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("\n...\n")
    return f"{indent}{key}: {text.rstrip()}"


def _documented(cls: type) -> dict[str, str]:
    docs = field_docs(cls)
    missing = [name for name, doc in docs.items() if not doc]
    if missing:
        raise ValueError(
            f"{cls.__name__}: got fields without a docstring ({', '.join(missing)}); expected a "
            "string literal under each field"
        )
    return docs


def config_reference() -> str:
    """The whole default config as YAML, each section headed by its class docstring's first paragraph and
    each key by its field's docstring (``ValueError`` if a field has none)."""
    defaults = Config().to_dict()
    sections = section_classes()
    top = _documented(Config)
    lines: list[str] = []
    for name in top:
        if lines:
            lines.append("")
        cls = sections.get(name)
        if cls is None:
            lines += _comment(top[name], "")
            lines.append(_entry(name, defaults[name], ""))
            continue
        lines += _comment(_plain(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]) or top[name], "")
        lines.append(f"{name}:")
        for key, doc in _documented(cls).items():
            lines += _comment(doc, "  ")
            lines.append(_entry(key, defaults[name][key], "  "))
    return "\n".join(lines) + "\n"


def with_reference(markdown: str) -> str:
    """``markdown`` with the block between :data:`BEGIN` and :data:`END` replaced by today's reference
    (``ValueError`` naming the marker when either is missing)."""
    for marker in (BEGIN, END):
        if markdown.count(marker) != 1:
            raise ValueError(
                f"markdown: got {markdown.count(marker)} copies of the marker {marker!r}; expected exactly 1"
            )
    head, rest = markdown.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n```yaml\n{config_reference()}```\n{END}{tail}"
