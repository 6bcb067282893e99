"""The data: section's array names (mheads.config.data_config): data.inputs is null, an .npz array's name, or
a non-empty list of distinct names (dict inputs); anything else is one line naming the field and the value."""

import pytest

from mheads.config import ConfigError, config_from_settings
from mheads.config.data_config import effective_normalize


@pytest.mark.parametrize("inputs", [None, "x", ["input_ids"], ["input_ids", "attention_mask"]])
def test_inputs_take_a_name_or_a_list_of_names(inputs):
    assert config_from_settings({"data.inputs": inputs}).data.inputs == inputs


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([], "data.inputs: got []; expected null, an array name or a non-empty list of array names"),
        ("", "data.inputs: got ''; expected null, an array name"),
        (["ids", ""], "data.inputs: got ['ids', '']; expected null, an array name"),
        (3, "data.inputs: got 3; expected null, an array name"),
        (
            ["ids", "mask", "ids"],
            "data.inputs: got ['ids', 'mask', 'ids']; expected a list of distinct array names ('ids' twice)",
        ),
    ],
)
def test_bad_inputs_are_one_line_naming_field_and_value(inputs, message):
    with pytest.raises(ConfigError) as err:
        config_from_settings({"data.inputs": inputs})
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_normalize_defaults_to_null_which_is_mean_image_for_the_image_loaders():
    """null: the image loaders' mean_image, and inputs read as tensors given as stored (training refuses
    mean_image and per_channel there: tests/train/test_restore.py)."""
    d = config_from_settings({}).data
    assert d.normalize is None and d.image_normalize == "mean_image"
    for mode in ("mean_image", "per_channel", "none"):
        assert config_from_settings({"data.normalize": mode}).data.image_normalize == mode
    with pytest.raises(ConfigError, match=r"^data.normalize: got 'zca'; expected one of"):
        config_from_settings({"data.normalize": "zca"})


def test_the_effective_normalization_of_null_is_mean_image_for_images_and_none_for_tensors():
    assert effective_normalize(None, tensors=False) == "mean_image"
    assert effective_normalize(None, tensors=True) == "none"
    for mode in ("mean_image", "per_channel", "none"):  # a mode named is itself, whatever the data
        assert effective_normalize(mode, tensors=False) == effective_normalize(mode, tensors=True) == mode
