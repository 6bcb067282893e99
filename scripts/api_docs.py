"""Build the API reference from the docstrings with pdoc, offline, and fail on what would be broken in it.

Every module under ``src/mheads/`` gets a page (pdoc alone follows a package's ``__all__`` and would skip the
submodules it does not list). The build fails (exit status 1, each problem on one line) on any warning pdoc
raises (a module that does not import, an ``__all__`` naming nothing) and on any Sphinx-style cross-reference
in a docstring (``:func:`name```, ``:class:`~pkg.mod.Name```, ...) that names no object from where it is
written: the module's own names, the enclosing class's attributes, or a full dotted path.
Run from the repository root: ``python scripts/api_docs.py [OUT]`` (default ``docs/api``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType

SRC = Path(__file__).resolve().parents[1] / "src"
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?\.?([\w.]+)`")


def module_names() -> list[str]:
    """Every module and package of mheads by dotted name (not ``__main__``: importing it runs the CLI)."""
    names = set()
    for path in (SRC / "mheads").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def resolve(dotted: str, module: ModuleType, owner: object | None) -> bool:
    """Whether ``dotted`` names an object from ``module`` (inside class ``owner``, where given)."""
    head, *rest = dotted.split(".")
    for start in (owner, module):
        obj = getattr(start, head, None) if start is not None else None
        for part in rest:
            obj = getattr(obj, part, None)
        if obj is not None:
            return True
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
        return obj is not None
    return False


def broken_references(name: str) -> list[str]:
    """``module:line: target`` for each cross-reference in ``name``'s docstrings that names nothing."""
    module = importlib.import_module(name)
    path = Path(module.__file__)
    tree = ast.parse(path.read_text())
    where = path.relative_to(SRC.parent) if path.is_relative_to(SRC.parent) else path
    found = []

    def visit(node, owner):
        doc = (
            ast.get_docstring(node, clean=False)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            else None
        )
        for target in ROLE.findall(doc or ""):
            if not resolve(target, module, owner):
                line = getattr(node, "lineno", 1)
                found.append(f"{where}:{line}: {target}")
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, getattr(owner if owner is not None else module, child.name, None))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, owner)

    visit(tree, None)
    return found


def build(out: Path) -> list[str]:
    """Write the reference into ``out``; returns the problems found (empty: a clean build)."""
    import pdoc
    import pdoc.extract

    names = module_names()
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        specs, covered = [], set()
        for name in names:  # pass a module only where no package passed before reaches it (no duplicates)
            if name not in covered:
                specs.append(name)
                covered.update(pdoc.extract.walk_specs([name]))
        pdoc.pdoc(*specs, output_directory=out)
        for name in names:
            problems += broken_references(name)
    problems += [
        f"pdoc: {' '.join(str(w.message).split())}"
        for w in caught
        if not issubclass(w.category, DeprecationWarning) or "mheads" in str(w.filename)
    ]
    missing = [n for n in names if not (out / (n.replace(".", "/") + ".html")).is_file()]
    problems += [f"no page for {n}" for n in missing]
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/api", help="folder to write the pages to (docs/api)")
    out = Path(parser.parse_args(argv).out)
    problems = build(out)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{out}: {len(module_names())} modules, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
