"""``mheads.infer.predict``'s reading of a run folder: the class names of ``run.json``."""

from __future__ import annotations

import json

import pytest

from mheads.config import ConfigError
from mheads.infer.predict import _classes

META = {"num_classes": 3}


def _run(tmp_path, data):
    (tmp_path / "run.json").write_text(json.dumps({"meta": META, "data": data}))
    return tmp_path


def test_the_recorded_class_names_name_the_classes(tmp_path):
    assert _classes(_run(tmp_path, {"classes": ["cat", "dog", "owl"]}), META) == ["cat", "dog", "owl"]


@pytest.mark.parametrize("data", [{}, {"classes": None}])
def test_a_run_that_records_no_names_is_named_by_class_numbers(tmp_path, data):
    assert _classes(_run(tmp_path, data), META) == ["0", "1", "2"]


@pytest.mark.parametrize(
    "classes, wrong",
    [
        (["cat", "dog"], "['cat', 'dog'] (2 names)"),
        (["a", "b", "c", "d"], "['a', 'b', 'c', 'd'] (4 names)"),
        ("abc", "'abc' (a str)"),
        ({"0": "cat"}, "{'0': 'cat'} (a dict)"),
        ([0, 1, 2], "[0, 1, 2] (not all strings)"),
        (["cat", None, "owl"], "['cat', None, 'owl'] (not all strings)"),
    ],
)
def test_class_names_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path, classes, wrong):
    run = _run(tmp_path, {"classes": classes})
    with pytest.raises(ConfigError) as err:
        _classes(run, META)
    assert str(err.value) == (
        f"{run / 'run.json'}: data.classes is {wrong}; expected a list of 3 class names (strings), one per "
        "class of the model (meta.num_classes 3)"
    )


def test_a_data_section_that_is_not_an_object_is_refused(tmp_path):
    run = _run(tmp_path, ["cat", "dog", "owl"])
    with pytest.raises(ConfigError, match=r"run\.json: data is a list; expected a JSON object$"):
        _classes(run, META)
