"""The package's lazy namespace (src/mheads/__init__.py): names and subpackages load on first use."""

import importlib
import sys

import pytest

import mheads
from conftest import REPO


def test_a_subpackage_is_an_attribute_before_anything_imported_it(monkeypatch):
    """docs/tasks.md writes ``mheads.tasks.custom_task(...)`` as a script's first use of mheads: in a fresh
    process no import has set ``mheads.tasks`` yet, which the deleted attribute stands for here."""
    importlib.import_module("mheads.tasks")
    monkeypatch.delattr(mheads, "tasks")
    assert mheads.tasks is sys.modules["mheads.tasks"]
    assert callable(mheads.tasks.custom_task)


def test_every_subpackage_is_listed():
    found = {p.name for p in (REPO / "src" / "mheads").iterdir() if (p / "__init__.py").is_file()}
    assert found == mheads._SUBPACKAGES


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mheads.nope  # noqa: B018
