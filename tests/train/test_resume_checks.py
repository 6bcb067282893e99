"""What a resumed run checks of its data against its folder (mheads.train.resume_checks): a data.normalize
that a run from before null was the default recorded on inputs read as tensors (it trained on them as
stored; tests/train/test_restore.py resumes real runs)."""

from __future__ import annotations

import pytest

from mheads.train.resume_checks import recorded_normalize, trained_unnormalized


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
