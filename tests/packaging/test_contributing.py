"""CONTRIBUTING.md's steps for adding a model and a loss, followed literally.

Each step's code block starts with a comment naming the file it goes in (``# src/mheads/models/...``). The
new source files are loaded from a temporary folder under the module names their paths give
(``mheads.models.tiny_convnet``), the registration block's entries are added to the real registries, and its
test file is run; the blocks that train run as written in the slow tier. The registries and ``sys.modules``
are put back afterwards, so no other test sees the example model or loss.
"""

import importlib.util
import re
import sys

import pytest
import torch

from conftest import REPO
from mheads.ensemble import losses
from mheads.models import registry

GUIDE = REPO / "CONTRIBUTING.md"
MODEL_FILE = "src/mheads/models/tiny_convnet.py"
LOSS_FILE = "src/mheads/ensemble/worst_k.py"
LOSS_REGISTRATION = "src/mheads/ensemble/losses.py"
LOSS_TEST = "tests/ensemble/test_worst_k.py"


def section(title: str) -> str:
    return GUIDE.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def by_file(text: str) -> dict[str, str]:
    """The blocks that say which file they go in, by that path."""
    out = {}
    for block in python_blocks(text):
        first = block.split("\n", 1)[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:]] = block
    return out


LOADED: list[str] = []  # the modules load_as made, removed again by the sandbox


def load_as(name: str, path) -> object:
    """Import the file at ``path`` as module ``name`` (where the guide says to put it)."""
    LOADED.append(name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in a temporary folder; undo every registration and import the steps make."""
    monkeypatch.chdir(tmp_path)
    models, ens, cls = dict(registry._REGISTRY), dict(losses.ENSEMBLE_LOSSES), dict(losses.LOSSES)
    yield tmp_path
    for live, saved in ((registry._REGISTRY, models), (losses.ENSEMBLE_LOSSES, ens), (losses.LOSSES, cls)):
        live.clear()
        live.update(saved)
    while LOADED:
        sys.modules.pop(LOADED.pop(), None)


def write(tmp_path, relative: str, code: str):
    path = tmp_path / "checkout" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    return path


def test_the_guide_names_each_file_once():
    assert set(by_file(section("Adding a model"))) == {MODEL_FILE}
    assert set(by_file(section("Adding a loss"))) == {LOSS_FILE, LOSS_REGISTRATION, LOSS_TEST}


def test_step_two_of_adding_a_model_names_the_line_that_registers_the_families():
    quoted = re.search(r"`(from mheads\.models import [^`]+)`", section("Adding a model"))[1]
    head, _, comment = quoted.partition("  # ")
    init = (REPO / "src" / "mheads" / "models" / "__init__.py").read_text()
    assert any(line.startswith(head) and line.endswith(comment) for line in init.splitlines()), quoted


def test_adding_a_model_as_the_guide_says(sandbox):
    blocks = by_file(section("Adding a model"))
    load_as("mheads.models.tiny_convnet", write(sandbox, MODEL_FILE, blocks[MODEL_FILE]))
    assert "tiny_convnet" in registry.list_models()

    from mheads import TreeNet, compute_loss, model_factory, split_points

    base = model_factory("tiny_convnet", num_classes=5, in_channels=1, image_size=8, width=4)
    assert {"stem", "stage1"} <= set(split_points(base()))
    net = TreeNet(base, num_members=3, split="stem", seed=0, example_input=(2, 1, 8, 8))
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 5, (6,))
    logits = net(x)
    assert logits.shape == (3, 6, 5)  # (M, B, C)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    compute_loss("mcl", logits, y, k=1).loss.backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters())), "one step moved nothing"


def add_the_loss(sandbox) -> dict[str, str]:
    blocks = by_file(section("Adding a loss"))
    load_as("mheads.ensemble.worst_k", write(sandbox, LOSS_FILE, blocks[LOSS_FILE]))
    # The registration block holds the import and the entries to add to the two dict literals of losses.py.
    entries = {"LossSpec": losses.LossSpec}
    exec(compile(blocks[LOSS_REGISTRATION], "CONTRIBUTING.md, registering a loss", "exec"), entries)
    assert set(entries["ENSEMBLE_LOSSES"]) == set(entries["LOSSES"]) == {"worst_k"}
    losses.ENSEMBLE_LOSSES.update(entries["ENSEMBLE_LOSSES"])
    losses.LOSSES.update(entries["LOSSES"])
    return blocks


def test_adding_a_loss_as_the_guide_says(sandbox):
    blocks = add_the_loss(sandbox)
    tests = load_as("test_worst_k", write(sandbox, LOSS_TEST, blocks[LOSS_TEST]))
    names = [n for n in dir(tests) if n.startswith("test_")]
    assert names
    for name in names:
        getattr(tests, name)()

    from mheads.config import Config
    from mheads.tasks import regression

    cfg = Config()
    cfg.loss.name = "worst_k"
    cfg.validate()  # a config accepts the name
    outputs, target = torch.randn(3, 4, 2), torch.randn(4, 2)
    assert regression(2).loss("worst_k", outputs, target, k=2).assignment.sum(dim=0).tolist() == [2] * 4


@pytest.mark.slow  # two short fit runs, 5-15 s; the steps above cover the same registrations in the fast tier
def test_the_guides_training_blocks_run_as_written(sandbox):
    model = by_file(section("Adding a model"))[MODEL_FILE]
    load_as("mheads.models.tiny_convnet", write(sandbox, MODEL_FILE, model))
    add_the_loss(sandbox)
    for title, run in (("Adding a model", "tiny"), ("Adding a loss", "tiny-worst-k")):
        (train,) = [b for b in python_blocks(section(title)) if not b.startswith("# ")]
        exec(compile(train, f"CONTRIBUTING.md, {title.lower()}", "exec"), {"__name__": "__main__"})
        assert (sandbox / "runs" / run / "metrics.json").is_file()
    assert "name: worst_k" in (sandbox / "runs" / "tiny-worst-k" / "config.yaml").read_text()


def test_the_layering_rule_lists_the_packages_in_the_order_the_layout_test_enforces():
    from test_layout import LAYERS

    text = section("The layering rule")
    listed = text.split("from the bottom up:", 1)[1].split(". A package", 1)[0]
    assert re.findall(r"`(\w+)`", listed) == LAYERS
