"""The layout docs/architecture.md describes: one folder per concept, dependencies one way."""

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src" / "mheads"
# Bottom to top, as in docs/architecture.md: a package may import only itself and the packages before it.
LAYERS = [
    "core",
    "models",
    "tree",
    "ensemble",
    "tasks",
    "optim",
    "config",
    "data",
    "runs",
    "train",
    "infer",
    "report",
    "dist",
    "reproduce",
    "cli",
]
TOP_LEVEL = {"__init__.py", "__main__.py"}


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, *, module_level_only: bool) -> set[str]:
    """mheads modules ``path`` imports (TYPE_CHECKING blocks excluded: annotations only)."""
    found = set()

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if module_level_only and nested:
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("mheads"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("mheads"):
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names)  # submodules imported by name
            visit(child, top and not nested)

    visit(ast.parse(path.read_text()), True)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_module_at_the_top_level_but_the_entry_points():
    assert {p.name for p in SRC.glob("*.py")} == TOP_LEVEL
    assert {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


def test_every_package_imports_only_itself_and_the_packages_below_it():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        own = layer(name)
        for target in imports(path, module_level_only=False):
            other = layer(target)
            if own is not None and other is not None and other > own:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target in imports(path, module_level_only=True):
            while target and target not in mods:  # "from pkg import name": the module is pkg
                target = target.rpartition(".")[0]
            parts = target.split(".")
            deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing runs each __init__
        graph[name] = {d for d in deps if d in mods and d != name}
    state, stack = {}, []

    def dfs(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open" and not name_is_parent(nxt, node):
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node)


def name_is_parent(package: str, module: str) -> bool:
    """A package's __init__ importing its own submodule, which imports the package back, is how packages
    work."""
    return module.startswith(package + ".")


def test_the_architecture_page_lists_every_package():
    page = (REPO / "docs" / "architecture.md").read_text()
    listing = page.split("```\nsrc/mheads/\n", 1)[1].split("```", 1)[0]
    for package in LAYERS:
        assert f"  {package}/" in listing, package


def test_the_wheel_lists_every_package():
    """pyproject.toml lists the packages explicitly (experiments/ is mapped in as mheads.experiments): a
    package missing there is missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.relative_to(SRC.parent).parts) for p in SRC.rglob("*") if (p / "__init__.py").is_file()
    }
    experiments = REPO / "experiments"
    found |= {
        ".".join(("mheads", *p.relative_to(REPO).parts))
        for p in experiments.rglob("*")
        if (p / "__init__.py").is_file() and "results" not in p.relative_to(experiments).parts
    }
    assert listed == found | {"mheads", "mheads.experiments"}
