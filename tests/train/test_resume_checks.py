"""What a resumed run checks of its data against its folder (mheads.train.resume_checks): a data.normalize
that a run from before null was the default recorded on inputs read as tensors (it trained on them as
stored), and the input description its checkpoint recorded (tests/train/test_restore.py resumes real runs)."""

from __future__ import annotations

import pytest

from mheads.runs.checkpoint import CheckpointMismatch
from mheads.train.resume_checks import (
    check_same_inputs,
    describe_input,
    recorded_normalize,
    trained_unnormalized,
)

INT64 = {"shape": [12], "dtype": "int64"}
UINT8 = {"shape": [12], "dtype": "uint8"}


@pytest.mark.parametrize(
    "given, recorded, normalizer_saved, expected",
    [
        ("mean_image", "mean_image", False, True),  # a run from before null was the default
        ("per_channel", "per_channel", False, True),
        ("mean_image", "mean_image", True, False),  # a normalizer there: the mode applied to something
        ("per_channel", "mean_image", False, False),  # not what the folder recorded: asked anew
        ("mean_image", None, False, False),  # the folder recorded null (or no config.yaml): asked anew
        ("none", "none", False, False),  # nothing to excuse: none and null are never refused
        (None, "mean_image", False, False),
    ],
)
def test_only_the_mode_the_folder_recorded_without_a_normalizer_is_taken_as_trained_unnormalized(
    given, recorded, normalizer_saved, expected
):
    assert trained_unnormalized(given, recorded, normalizer_saved) is expected


def test_the_recorded_mode_is_read_from_config_yaml_and_none_where_there_is_none(tmp_path):
    assert recorded_normalize(tmp_path) is None  # no config.yaml
    (tmp_path / "config.yaml").write_text("data: {normalize: per_channel}\n")
    assert recorded_normalize(tmp_path) == "per_channel"
    for text in ("data: {normalize: null}\n", "data: [1]\n", "- a list\n", "data: {normalize: 3}\n"):
        (tmp_path / "config.yaml").write_text(text)
        assert recorded_normalize(tmp_path) is None, text


def test_input_descriptions_in_words():
    assert describe_input(INT64) == "int64 (12,)"
    assert describe_input({"shape": [1, 6, 6], "dtype": "uint8"}) == "uint8 pixels (1, 6, 6)"
    assert describe_input({"dict": {"ids": INT64, "mask": INT64}}) == "a dict of 'ids', 'mask'"
    assert describe_input(None) == "images read by the image loaders"
    assert describe_input([3]) == "an unreadable description '[3]'"


def test_a_changed_input_description_is_one_line_naming_the_input_both_descriptions_and_what_to_do():
    with pytest.raises(CheckpointMismatch) as caught:
        check_same_inputs({"input": INT64}, {"input": UINT8}, "run/checkpoints/step-00000002")
    assert str(caught.value) == (
        "checkpoint run/checkpoints/step-00000002: input: the run trained on int64 (12,), the data now gives "
        "uint8 pixels (12,); uint8 reaches the model as [0, 1] floats, other dtypes as stored; resume on "
        "inputs as recorded (int64 (12,); convert them where only the dtype changed), or train a new run in "
        "another folder"
    )
    assert caught.value.differences == {"input": (INT64, UINT8)}
    with pytest.raises(
        CheckpointMismatch, match=r"^checkpoint c: input: the run trained on float32 \(3,\), the "
    ):
        check_same_inputs(
            {"input": {"shape": [3], "dtype": "float32"}}, {"input": INT64}, "c"
        )  # and no uint8
    with pytest.raises(CheckpointMismatch, match=r"the data now gives images read by the image loaders; "):
        check_same_inputs({"input": INT64}, {}, "c")


def test_a_dict_names_its_changed_entry_and_a_changed_set_of_keys_names_both():
    recorded = {"input": {"dict": {"ids": INT64, "mask": INT64}}}
    with pytest.raises(
        CheckpointMismatch,
        match=r"^checkpoint c: input 'mask': the run trained on int64 \(12,\), the data now gives uint8 ",
    ):
        check_same_inputs(recorded, {"input": {"dict": {"mask": UINT8, "ids": INT64}}}, "c")
    with pytest.raises(
        CheckpointMismatch,
        match=r"input: the run trained on a dict of 'ids', 'mask', the data now gives a dict of 'ids';",
    ):
        check_same_inputs(recorded, {"input": {"dict": {"ids": INT64}}}, "c")
    check_same_inputs(recorded, {"input": {"dict": {"mask": INT64, "ids": INT64}}}, "c")  # the order of keys


def test_a_checkpoint_that_recorded_no_description_resumes_as_before():
    check_same_inputs({}, {"input": UINT8}, "c")  # images by the image loaders, or a run from before
    check_same_inputs({}, {}, "c")
    check_same_inputs({"input": UINT8}, {"input": {"shape": [12], "dtype": "uint8"}}, "c")
