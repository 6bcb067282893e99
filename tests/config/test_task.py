"""The task: section (issue 32): each field validated with a one-line error naming it; build_task builds
the Task the section names, with the data's dimension or class count where the section leaves them null;
task_config_of records a built-in Task so that build_task rebuilds an equal one (a run folder stays data),
and a user's task as python, which is never rebuilt from a config."""

import pytest

from mheads.config import ConfigError, config_from_settings
from mheads.config.task import PYTHON_TASK, TaskConfig, build_task, task_config_of
from mheads.tasks import classification, custom_task, multi_hypothesis, regression, segmentation


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("task.name", "regresion", r"task.name: got 'regresion' \(did you mean 'regression'\?\); expected"),
        ("task.dim", 0, r"task.dim: got 0; expected an integer"),
        ("task.num_classes", 2.5, r"task.num_classes: got 2.5; expected an integer"),
        ("task.head", "both", r"task.head: got 'both'; expected one of point, gaussian"),
        ("task.point_loss", "huber", r"task.point_loss: got 'huber'; expected one of mse, l1"),
        ("task.variance", "relu", r"task.variance: got 'relu'; expected one of softplus, exp"),
        ("task.min_variance", 0.0, r"task.min_variance: got 0.0; expected a number > 0"),
        ("task.levels", [], r"task.levels: got \[\]; expected a non-empty list of probabilities in \(0, 1\]"),
        ("task.levels", [0.5, 1.5], r"task.levels\[\]: got 1.5; expected a number > 0.0 and <= 1.0"),
        ("task.distance", "l1", r"task.distance: got 'l1' \(did you mean 'l2'\?\); expected one of sq, l2"),
        ("task.p", 0.5, r"task.p: got 0.5; expected a number >= 1"),
        ("task.projections", 0, r"task.projections: got 0; expected an integer in 1..1048576"),
        ("task.seed", -1, r"task.seed: got -1; expected an integer >= 0"),
    ],
)
def test_a_bad_field_is_refused_in_one_line_naming_it(key, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config_from_settings({key: value})
    assert "\n" not in str(caught.value)


def test_build_task_fills_what_the_section_leaves_to_the_data():
    assert build_task(TaskConfig()).__class__ is classification(3).__class__
    reg = build_task(TaskConfig("regression", head="gaussian", variance="exp", levels=[0.9]), dim=3)
    assert reg == regression(3, head="gaussian", variance="exp", levels=(0.9,))
    assert build_task(TaskConfig("regression", dim=2), dim=5).dim == 2  # the section's own value wins
    hyp = build_task(TaskConfig("multi_hypothesis", distance="l2", projections=8), dim=2)
    assert hyp == multi_hypothesis(2, distance="l2", projections=8)
    seg = build_task(TaskConfig("segmentation", ignore_index=0), num_classes=4)
    assert seg == segmentation(4, ignore_index=0)


@pytest.mark.parametrize(
    "task",
    [
        regression(2, head="gaussian", loss="l1", variance="exp", min_variance=0.01, levels=(0.5, 0.9)),
        regression(1),
        multi_hypothesis(3, distance="l2", p=2.0, projections=16, seed=4),
        segmentation(5, ignore_index=7),
    ],
    ids=lambda t: t.name,
)
def test_a_built_in_task_is_recorded_as_data_and_rebuilt_equal(task):
    section = task_config_of(task)
    section.validate()
    assert build_task(section) == task
    assert set(section.options()) <= set(TaskConfig.__dataclass_fields__)


def test_a_users_task_is_recorded_as_python_and_never_rebuilt_from_a_config():
    section = task_config_of(custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=1))
    assert section.name == PYTHON_TASK and section.options() == {}
    with pytest.raises(ValueError, match="task.name: got 'python'; a user's task is not rebuilt"):
        build_task(section)


def test_classification_takes_independent_as_its_independent_ce():
    """Every other task's name of the loss is accepted and recorded as classification's own (the same
    per-example member losses and loss: tests/tasks/test_classification_task.py), so the saved config and
    the training step see one name; the refusal lists it."""
    cfg = config_from_settings({"loss.name": "independent", "loss.pretrain_iterations": 0})
    assert cfg.loss.name == "independent_ce" and cfg == config_from_settings({"loss.name": "independent_ce"})
    with pytest.raises(ConfigError, match=r"^loss.name: got 'indep' .*mcl_scored, independent$"):
        config_from_settings({"loss.name": "indep"})
    regression_cfg = config_from_settings({"task.name": "regression", "loss.name": "independent"})
    assert regression_cfg.loss.name == "independent"  # recorded as given where both names are the ensemble's
