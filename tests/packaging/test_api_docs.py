"""scripts/api_docs.py: the API reference builds from the docstrings with pdoc, offline, with a page per
module and no warning; a cross-reference that names nothing is reported."""

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("api_docs", REPO / "scripts" / "api_docs.py")
api_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_docs)  # a script, not a package: loaded by its path


def test_a_reference_that_names_nothing_is_reported_and_the_others_are_not(tmp_path, monkeypatch):
    (tmp_path / "refs_example.py").write_text(
        '"""See :class:`Thing`, :func:`~mheads.models.registry.create_model` and :mod:`mheads.tree`."""\n\n\n'
        "class Thing:\n"
        '    """:meth:`go` (its own method), :func:`no_such_function`."""\n\n'
        "    def go(self):\n"
        '        """:class:`mheads.tree.treenet.NoSuchClass`"""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = api_docs.broken_references("refs_example")
    assert [f.rsplit(": ", 1)[1] for f in found] == ["no_such_function", "mheads.tree.treenet.NoSuchClass"]
    sys.modules.pop("refs_example")


def test_every_module_is_found_and_none_is_the_entry_point():
    names = api_docs.module_names()
    assert "mheads" in names and "mheads.ensemble.losses" in names and "mheads.__main__" not in names
    assert len(names) == len([p for p in (REPO / "src" / "mheads").rglob("*.py") if p.name != "__main__.py"])


@pytest.mark.slow  # about 25-40 s on 2 cores: pdoc imports and renders every module
def test_the_api_reference_builds_without_a_warning_or_a_broken_reference(tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/api_docs.py", str(tmp_path / "api")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "0 problems" in done.stdout
    assert (tmp_path / "api" / "mheads" / "ensemble" / "losses.html").is_file()
    assert (tmp_path / "api" / "index.html").is_file()
