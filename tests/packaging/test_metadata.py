"""pyproject.toml's metadata: one version source, the license file it names, py.typed shipped."""

import ast

from conftest import REPO


def pyproject() -> dict:
    import tomllib  # Python 3.11+ (the tests' interpreter); the package itself supports 3.10

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_version_lives_only_in_mheads_init_as_a_literal():
    meta = pyproject()
    project = meta["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mheads.__version__"}
    # A literal assignment: setuptools reads it without importing mheads (and so without torch).
    tree = ast.parse((REPO / "src" / "mheads" / "__init__.py").read_text())
    (version,) = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["__version__"]
    ]
    assert isinstance(version, str) and version.count(".") == 2


def test_the_license_is_declared_and_its_file_exists():
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert not [
        c for c in project["classifiers"] if c.startswith("License ::")
    ]  # PEP 639: the expression only


def test_py_typed_is_package_data():
    assert (REPO / "src" / "mheads" / "py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["mheads"]
