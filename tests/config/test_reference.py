"""The config reference (docs/configs.md) is generated from the dataclasses' field docstrings and cannot drift
from them: the committed block equals the generated one, every field is documented, the block is the default
config, and every field validated against a fixed list of choices names each choice in its docstring."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mheads.config import Config, ConfigError, config_from_dict, config_from_settings
from mheads.config.loading import load_yaml_text
from mheads.config.reference import (
    BEGIN,
    END,
    config_reference,
    field_docs,
    section_classes,
    with_reference,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configs.md"
SECTIONS = section_classes()
# Names checked against registries that users extend (register_model, LOSSES): their docstrings name where
# the choices come from rather than promising a fixed list.
REGISTRY_FIELDS = {"model.name", "loss.name"}


def test_committed_reference_is_the_generated_one():
    text = DOC.read_text(encoding="utf-8")
    assert with_reference(text) == text, "docs/configs.md is stale: run python scripts/config_reference.py"


def test_every_section_and_field_is_documented():
    assert list(SECTIONS) == ["model", "data", "loss", "optim", "train", "dist", "task"]
    for cls in [Config, *SECTIONS.values()]:
        assert (cls.__doc__ or "").strip(), cls.__name__
        docs = field_docs(cls)
        assert list(docs) == [f.name for f in dataclasses.fields(cls)]
        assert all(docs.values()), f"{cls.__name__}: {[k for k, v in docs.items() if not v]}"


def test_reference_block_is_the_default_config():
    block = config_reference()
    assert all(len(line) <= 110 for line in block.splitlines())
    assert config_from_dict(load_yaml_text(block)) == Config()
    keys = re.findall(r"^  (\w+):", block, flags=re.M)  # one entry per field, in the dataclasses' order
    assert keys == [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]


def _choices(key: str) -> list[str] | None:
    """The allowed values validation lists for ``key``, or None if it is not a choice among fixed names."""
    try:
        config_from_settings({key: "\x01bogus"})
    except ConfigError as err:
        m = re.match(rf"{re.escape(key)}: got .*; expected one of (.*)$", str(err))
        return m.group(1).split(", ") if m else None
    return None


@pytest.mark.parametrize("section", list(SECTIONS))
def test_choice_fields_name_every_allowed_value(section):
    docs = field_docs(SECTIONS[section])
    checked = 0
    for name, doc in docs.items():
        key = f"{section}.{name}"
        choices = None if key in REGISTRY_FIELDS else _choices(key)
        if choices is None:
            continue
        checked += 1
        missing = [c for c in choices if not re.search(rf"(?<![\w.]){re.escape(c)}(?![\w])", doc)]
        assert not missing, f"{key}: its docstring does not name {missing}"
    least = {"model": 2, "data": 4, "loss": 0, "optim": 2, "train": 3, "dist": 0, "task": 5}
    assert checked >= least[section]


def test_undocumented_fields_and_missing_markers_are_reported():
    @dataclasses.dataclass
    class Partial:
        documented: int = 1
        """Documented."""
        bare: int = 2

    assert field_docs(Partial) == {"documented": "Documented.", "bare": ""}
    with pytest.raises(ValueError, match="expected exactly 1"):
        with_reference(f"# Configs\n{BEGIN}\n")
    fresh = f"a\n{BEGIN}\n```yaml\n{config_reference()}```\n{END}\nb\n"
    assert with_reference(f"a\n{BEGIN}\nold\n{END}\nb\n") == fresh
