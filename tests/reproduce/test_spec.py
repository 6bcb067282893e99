"""The one recipe format (issue 33): the paper-table specs and the demo are both specs
(``mheads.reproduce.spec``); the demo loads its spec with no scale preset."""

import json

import pytest

from mheads.cli.demo import run_demo
from mheads.config import ConfigError
from mheads.reproduce.spec import EXPERIMENTS, load_spec


def test_the_demo_is_a_spec_loaded_without_a_scale_preset():
    spec = load_spec("demo", None, None)
    assert [c.row for c in spec.cells] == ["single model", "independent x4", "treenet conv1 x4", "mcl k=1 x4"]
    assert [c.config.model.members for c in spec.cells] == [1, 4, 4, 4]
    assert spec.cells[2].config.model.split == "conv1" and spec.cells[3].config.loss.name == "mcl"
    # the demo's own 450 iterations, not a scale's (smoke: 6)
    assert {c.config.train.iterations for c in spec.cells} == {450}
    assert load_spec("demo", "smoke", None).cells[0].config.train.iterations == 450  # its base wins
    assert spec.cells[0].config.name == "demo/single_model"


def test_a_spec_file_by_path_with_overrides(tmp_path):
    path = tmp_path / "my_recipe.yaml"
    path.write_text(
        "base: {model: {name: cifar10_quick, members: 2}}\n"
        "cells:\n  a: {row: first}\n  b: {config: {model: {members: 3}}}\n"
    )
    spec = load_spec(str(path), None, None, ["train.iterations=7"])
    assert spec.name == "my-recipe"
    assert [(c.name, c.row, c.config.model.members) for c in spec.cells] == [("a", "first", 2), ("b", "b", 3)]
    assert {c.config.train.iterations for c in spec.cells} == {7}


@pytest.mark.parametrize(
    "text, match",
    [
        ("base: {}\nruns: {a: {}}\n", "'runs' is the old recipe format; list the runs under 'cells'"),
        ("base: {}\n", "cells: got None; expected a mapping of cell names to cells"),
        ("cells: {a: {}}\nbogus: 1\n", r"unknown key\(s\) \['bogus'\]; allowed: "),
        ("cells: {a: {rows: x}}\n", r"cell 'a': unknown key\(s\) \['rows'\]"),
    ],
)
def test_bad_spec_files_are_refused_in_one_line(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_spec(str(path), None, None)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_missing_spec_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: spec file not found"):
        load_spec(str(tmp_path / "nope.yaml"), None, None)


def test_no_packaged_yaml_uses_the_old_format():
    for path in EXPERIMENTS.glob("*.yaml"):
        assert "\nruns:" not in path.read_text(), path


def test_run_demo_trains_each_cell_of_a_spec_into_its_folder(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "base:\n  model: {name: cifar10_quick, members: 2}\n"
        "  data: {train_limit: 64, test_limit: 32}\n"
        "  train: {iterations: 2, batch_size: 16, eval_every: 0, checkpoint_every: 0}\n"
        "cells:\n  one: {row: one member, config: {model: {members: 1}}}\n"
        "  two: {row: two members}\n"
    )
    rows = run_demo(tmp_path / "out", recipe=str(path))
    assert [r[0] for r in rows] == ["one member", "two members"] and [r[1] for r in rows] == [1, 2]
    assert (tmp_path / "out/one/metrics.json").is_file() and (tmp_path / "out/two/metrics.json").is_file()
    assert json.loads((tmp_path / "out/demo.json").read_text())["rows"] == rows
    assert "== two members: 2 x cifar10_quick" in capsys.readouterr().out
