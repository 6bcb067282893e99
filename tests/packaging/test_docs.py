"""The documentation a newcomer navigates: README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md.

Every relative link reaches a file (and its #anchor a heading there); every Python block in docs/ runs as
written, or is compiled and says on the line before it why it is not run (``<!-- not run: REASON -->``);
every YAML block parses. The README's own Python blocks are the quick start's, run by test_readme.py. An
example that imports a package the install does not bring names the extra that does; every option that
`mheads <command> --help` lists (docs/cli.md's pointer for the full list) says what it does.
"""

import argparse
import ast
import re
import sys

import pytest
import yaml

from conftest import REPO
from mheads.cli.parser import build_parser

PAGES = sorted(
    [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BLOCK = re.compile(
    r"(?:^<!-- not run: (?P<why>[^\n]+) -->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```", re.M | re.S
)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # '#' lines in code: not headings
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def blocks(path, lang: str) -> list[re.Match]:
    return [m for m in BLOCK.finditer(path.read_text()) if m["lang"] == lang]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    assert page.is_file(), page
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_points_to_every_docs_page():
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in (REPO / "docs").glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_readmes_python_blocks_are_all_in_the_quick_start():
    """test_readme.py runs the quick start's blocks; any other Python block in the README goes untested."""
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(blocks(REPO / "README.md", "python")) == len(re.findall(r"^```python$", quick, flags=re.M))


DOC_PYTHON = [(p, i) for p in sorted((REPO / "docs").glob("*.md")) for i, _ in enumerate(blocks(p, "python"))]


@pytest.mark.parametrize("page,index", DOC_PYTHON, ids=[f"{p.name}-{i}" for p, i in DOC_PYTHON])
def test_docs_python_blocks_run_as_written(page, index, tmp_path, monkeypatch):
    block = blocks(page, "python")[index]
    code = compile(block["code"], f"{page.name} block {index}", "exec")
    if block["why"]:
        return  # compiled above; the page says why it cannot run here (e.g. it needs torchrun)
    monkeypatch.chdir(tmp_path)
    exec(code, {"__name__": "__main__"})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_blocks_parse(page):
    for block in blocks(page, "yaml"):
        assert isinstance(yaml.safe_load(block["code"]), dict), block["code"]


def test_the_readmes_tasks_section_links_a_run_example_for_every_task():
    """README's Tasks table (issue 32): each built-in task and a user's own links a docs/tasks.md section
    holding a Python block that test_docs_python_blocks_run_as_written runs (none marked not run)."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("\n## Tasks\n", 1)[1].split("\n## ", 1)[0]
    linked = re.findall(r"\(docs/tasks\.md#([\w-]+)\)", table)
    page = (REPO / "docs" / "tasks.md").read_text()
    heading = r"^## ([^\n]+)\n(.*?)(?=^## |\Z)"
    sections = {slug(m[1]): m[2] for m in re.finditer(heading, page, flags=re.M | re.S)}
    for task in ("classification", "regression", "multi_hypothesis", "segmentation", "a-task-of-your-own"):
        assert task in linked, f"README's Tasks table links no example for {task}"
        run = [m for m in BLOCK.finditer(sections[task]) if m["lang"] == "python" and not m["why"]]
        assert run, f"docs/tasks.md#{task} holds no Python block that the docs test runs"


# A module's import name where it differs from its distribution's (pyproject.toml names distributions).
IMPORT_NAMES = {"yaml": "pyyaml", "PIL": "pillow"}


def _distributions(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _imports(code: str) -> set[str]:
    """The top-level modules a block imports that are not in Python's standard library."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names)


def test_an_example_needing_an_optional_package_names_the_extra_that_installs_it():
    """`pip install -e .` brings the core dependencies only; a docs page whose Python block imports anything
    else (transformers, pandas, ...) says `.[examples]`, and that extra holds the package."""
    import tomllib  # Python 3.11+ (the tests' interpreter); the package itself supports 3.10

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = _distributions(project["dependencies"]) | {"mheads"}
    extra = _distributions(project["optional-dependencies"]["examples"])
    problems = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in blocks(page, "python"):
            for module in sorted(_imports(block["code"])):
                dist = IMPORT_NAMES.get(module, module).lower()
                if dist in core:
                    continue
                if dist not in extra:
                    problems.append(f"{page.name}: imports {module}, in no extra of pyproject.toml")
                elif ".[examples]" not in page.read_text():
                    problems.append(
                        f"{page.name}: imports {module} but never says pip install -e '.[examples]'"
                    )
    assert not problems, "; ".join(problems)


def _options(parser: argparse.ArgumentParser, command: str = "mheads"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, name)
        else:
            yield command, action


def test_every_command_line_option_has_a_help_string():
    """docs/cli.md sends readers to `mheads <command> --help` for every option: none may be listed bare."""
    bare = [
        f"{cmd} {'/'.join(a.option_strings) or a.dest}" for cmd, a in _options(build_parser()) if not a.help
    ]
    assert not bare, f"options without help text: {bare}"


CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def test_the_setup_line_says_where_it_gets_the_cpu_build_and_how_to_elsewhere():
    """`pip install torch==2.13.0` is the CPU build only through this machine's local wheel folder (CI runs
    it as written, offline); README and CONTRIBUTING say how to get the CPU build elsewhere, and .ci/run
    installs it as the README's line does."""
    ci = (REPO / ".ci" / "run").read_text()
    assert ".venv/bin/pip install -q torch==2.13.0\n" in ci and "--index-url" not in ci.replace(CPU_INDEX, "")
    for page in ("README.md", "CONTRIBUTING.md"):
        text = (REPO / page).read_text()
        assert text.count("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && ") == 2, page
        after = " ".join(text.split("torch>=2.3", 1)[1].split("\n\n", 1)[0].split())  # the next paragraph
        assert f"pip install torch==2.13.0 {CPU_INDEX}" in after, page
        assert "it is the CUDA build, which works too" in after, page
