"""Edited calibration.json and normalizer.safetensors are refused with one line naming the file and the field
(a temperature of -1 would flip every prediction silently), before anything uses them."""

import json

import pytest
import torch
from safetensors.torch import save_file

from mheads.data.preprocess import Normalizer
from mheads.runs.checkpoint_format import CheckpointError
from mheads.runs.folder import save_calibration, save_normalizer
from mheads.runs.run_files import MAX_CALIBRATION_BYTES, load_calibration, load_normalizer

GOOD = {
    "temperature": 1.5,
    "member_temperatures": [1.2, 0.8, 2.0],
    "val_examples": 10,
    "ood_threshold": {"criterion": "max_prob", "threshold": -0.6, "tpr": 0.95, "fitted_on": "val"},
}


def test_a_valid_calibration_round_trips(tmp_path):
    save_calibration(tmp_path, GOOD)
    assert load_calibration(tmp_path, 3) == GOOD
    assert load_calibration(tmp_path / "elsewhere", 3) is None  # a run without a held-out split


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"temperature": -1.0}, r"temperature: got -1.0; expected a finite number > 0"),
        ({"temperature": 0}, r"temperature: got 0; expected a finite number > 0"),
        ({"temperature": float("nan")}, r"temperature: got nan; expected a finite number > 0"),
        ({"temperature": float("inf")}, r"temperature: got inf"),
        ({"temperature": "2"}, r"temperature: got '2'"),
        ({"temperature": True}, r"temperature: got True"),
        ({"member_temperatures": [1.0, 1.0]}, r"member_temperatures: got 2 values; expected a list of 3"),
        ({"member_temperatures": 1.0}, r"member_temperatures: got float; expected a list of 3"),
        ({"member_temperatures": [1.0, -2.0, 1.0]}, r"member_temperatures\[1\]: got -2.0"),
        (
            {"ood_threshold": {"criterion": "os:system", "threshold": 0.0, "tpr": 0.95}},
            r"ood_threshold.criterion: got 'os:system'; expected one of max_prob, ",
        ),
        (
            {"ood_threshold": {"criterion": "energy", "threshold": None, "tpr": 0.95}},
            r"ood_threshold.threshold: got None; expected a finite number",
        ),
        (
            {"ood_threshold": {"criterion": "energy", "threshold": 1.0, "tpr": 1.5}},
            r"ood_threshold.tpr: got 1.5",
        ),
        ({"ood_threshold": [1]}, r"ood_threshold: got list; expected an object"),
    ],
)
def test_edited_calibration_fields_are_refused_naming_the_field(tmp_path, edit, message):
    # json.dumps writes NaN and Infinity, as a hand edit might; strict readers would refuse the file anyway
    (tmp_path / "calibration.json").write_text(json.dumps({**GOOD, **edit}))
    with pytest.raises(CheckpointError, match=message) as err:
        load_calibration(tmp_path, 3)
    assert str(err.value).startswith(str(tmp_path / "calibration.json")) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[1.5]", "got a JSON list; expected an object"),
        (b'"x"', "got a JSON str; expected an object"),
        (b'{"temperature": 1.0}', "member_temperatures: missing"),
        (b'{"temperature": 1.0, \xff}', "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b" " * (MAX_CALIBRATION_BYTES + 1), f"larger than {MAX_CALIBRATION_BYTES} bytes"),
    ],
)
def test_malformed_calibration_files_are_refused(tmp_path, content, message):
    (tmp_path / "calibration.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_calibration(tmp_path, 3)


def test_a_calibration_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "calibration.json").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_calibration(tmp_path, 3)


# ---------------------------------------------------------------- the normalizer


@pytest.mark.parametrize(
    "normalizer",
    [
        Normalizer("mean_image", torch.rand(3, 8, 8) * 255, torch.tensor(1.0)),
        Normalizer("per_channel", torch.rand(3, 1, 1) * 255, torch.rand(3, 1, 1) + 0.1),
        Normalizer("none", torch.tensor(0.0), torch.tensor(1 / 255)),
    ],
)
def test_a_valid_normalizer_round_trips(tmp_path, normalizer):
    save_normalizer(tmp_path, normalizer)
    loaded = load_normalizer(tmp_path, 3, 8)
    assert loaded.mode == normalizer.mode
    assert torch.equal(loaded.shift, normalizer.shift) and torch.equal(loaded.scale, normalizer.scale)
    assert load_normalizer(tmp_path / "elsewhere", 3, 8) is None  # a run from before it was saved


def write(tmp_path, mode, **tensors):
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(tmp_path / "normalizer.safetensors"),
        metadata=None if mode is None else {"mode": mode},
    )


@pytest.mark.parametrize(
    "mode, tensors, message",
    [
        (
            "mean_image",
            {"shift": torch.zeros(3, 4, 4), "scale": torch.tensor(1.0)},
            r"shift: got shape \(3, 4, 4\); expected \(3, 8, 8\) for mean_image on the run's 3x8x8 images",
        ),
        (
            "mean_image",
            {"shift": torch.zeros(1, 8, 8), "scale": torch.tensor(1.0)},
            r"shift: got shape \(1, 8, 8\)",
        ),
        (
            "per_channel",
            {"shift": torch.zeros(3, 1, 1), "scale": torch.ones(1, 1, 1)},
            r"scale: got shape \(1, 1, 1\); expected \(3, 1, 1\)",
        ),
        ("per_channel", {"shift": torch.zeros(3, 1, 1)}, r"scale: missing"),
        (
            "per_channel",
            {"shift": torch.zeros(3, 1, 1), "scale": -torch.ones(3, 1, 1)},
            r"scale: got values <= 0",
        ),
        (
            "per_channel",
            {"shift": torch.full((3, 1, 1), float("nan")), "scale": torch.ones(3, 1, 1)},
            r"shift: got non-finite values",
        ),
        ("none", {"shift": torch.tensor(0.0), "scale": torch.tensor(float("inf"))}, r"scale: got non-finite"),
        ("none", {"shift": torch.tensor(0), "scale": torch.tensor(1)}, r"shift: got dtype torch.int64"),
        (
            "whiten",
            {"shift": torch.tensor(0.0), "scale": torch.tensor(1.0)},
            r"mode: got 'whiten'; expected one of",
        ),
        (None, {"shift": torch.tensor(0.0), "scale": torch.tensor(1.0)}, r"mode: got None"),
    ],
)
def test_edited_normalizers_are_refused_naming_the_field(tmp_path, mode, tensors, message):
    write(tmp_path, mode, **tensors)
    with pytest.raises(CheckpointError, match=message) as err:
        load_normalizer(tmp_path, 3, 8)
    assert str(err.value).startswith(str(tmp_path / "normalizer.safetensors")) and "\n" not in str(err.value)


def test_a_normalizer_declaring_a_huge_tensor_is_refused_from_its_header(tmp_path):
    # The header declares a (3, 8, 8) shift... of 2**40 float32s would be 4 TiB; the shape check comes first.
    header = json.dumps(
        {
            "__metadata__": {"mode": "mean_image"},
            "shift": {"dtype": "F32", "shape": [2**20, 2**10, 2**10], "data_offsets": [0, 4]},
            "scale": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]},
        }
    ).encode()
    (tmp_path / "normalizer.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"normalizer.safetensors"):
        load_normalizer(tmp_path, 3, 8)


@pytest.mark.parametrize("content", [b"", b"garbage that is not safetensors", b"\xff" * 64])
def test_unreadable_normalizers_are_refused(tmp_path, content):
    (tmp_path / "normalizer.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match="normalizer.safetensors: unreadable"):
        load_normalizer(tmp_path, 3, 8)
