"""Which settings a resumed run changed (mheads.runs.history.changed_settings): data.normalize compares by the
normalization it gives, so a folder that recorded mean_image (every image run from before null was the
default) resumed with normalize unset changes nothing; a real change of mode is still one."""

import pytest

from mheads.runs.history import changed_settings


def _cfg(normalize, iterations=4):
    return {"data": {"source": None, "normalize": normalize}, "train": {"iterations": iterations}}


@pytest.mark.parametrize(
    ("recorded", "now", "tensors"),
    [("mean_image", None, False), (None, "mean_image", False), ("none", None, True), (None, "none", True)],
)
def test_null_and_its_effective_mode_are_no_change(recorded, now, tensors):
    assert changed_settings(_cfg(recorded), _cfg(now), tensors) == {}
    assert changed_settings(_cfg(recorded), _cfg(now, iterations=6), tensors) == {"train.iterations": [4, 6]}


@pytest.mark.parametrize(
    ("recorded", "now", "tensors"),
    [
        ("mean_image", "per_channel", False),
        ("mean_image", "none", False),
        (None, "none", False),
        (None, "per_channel", False),
        ("none", None, False),  # null is mean_image for images
        ("mean_image", None, True),  # null is none for tensors
        ("mean_image", "none", True),
    ],
)
def test_a_real_change_of_mode_is_recorded_with_the_values_as_written(recorded, now, tensors):
    assert changed_settings(_cfg(recorded), _cfg(now), tensors) == {"data.normalize": [recorded, now]}


def test_a_field_the_folder_did_not_record_is_no_change():
    assert changed_settings({"train": {"iterations": 4}}, _cfg(None), tensors=False) == {}


@pytest.mark.parametrize(("recorded", "now"), [("mean_image", None), ("per_channel", "none"), ("none", None)])
def test_no_mode_is_a_change_on_inputs_given_as_stored(recorded, now):
    """Inputs read as tensors in a folder without a normalizer: every mode gave them as stored."""
    assert changed_settings(_cfg(recorded), _cfg(now), True, as_stored=True) == {}
    got = changed_settings(_cfg(recorded), _cfg(now, iterations=6), True, as_stored=True)
    assert got == {"train.iterations": [4, 6]}
