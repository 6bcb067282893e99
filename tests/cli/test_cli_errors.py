"""Bad input on the command line: exit code 2, one line naming the culprit, no traceback, nothing changed.

Each case is a real ``mheads`` process (forked from the CLI server, see ``cli_harness``) fed one of the bad
inputs issue 6 lists; the messages must name the field, path or value at fault and what is allowed.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_harness import write_config
from mheads.config import load_config

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------------------------ tiny data sets


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(folder: Path, labels: list[int], classes: list[str] | None = None, size: int = 28) -> Path:
    """An MNIST-style idx folder with len(labels) images in each split."""
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), size, size), dtype=np.uint8)
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(np.array(labels, dtype=np.uint8)))
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder


def png(channels: int, size: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(folder: Path, channels: int = 1, size: int = 28, per_class: int = 2) -> Path:
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for i in range(per_class):
                path = folder / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png(channels, size, seed=i))
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and a hash of its bytes: compared before and after a refused command."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        # the run lock records who last held the folder: not part of the run's record
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".mheads.lock"
    }


def run_copy(finished: Path, tmp: Path) -> Path:
    copy = tmp / "run"
    shutil.copytree(finished, copy)
    return copy


def checkpoint_files(run: Path, name: str) -> list[Path]:
    return sorted((run / "checkpoints").glob(f"step-*/{name}"))


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----------------------------------------------------------------------------------------------- cases
# Each case: (id, setup(tmp, good, finished) -> argv, substrings the error line must hold). The output folder,
# when there is one, is tmp / "out"; for config and data errors it must hold no run afterwards.


def bad_config(text: str):
    def setup(tmp, good, finished):
        (tmp / "c.yaml").write_bytes(text.encode() if isinstance(text, str) else text)
        return ["train", "--config", tmp / "c.yaml", "--out", tmp / "out"]

    return setup


def with_set(*overrides: str):
    def setup(tmp, good, finished):
        return [
            "train",
            "--config",
            good,
            "--out",
            tmp / "out",
            *[a for o in overrides for a in ("--set", o)],
        ]

    return setup


def with_data(make):
    def setup(tmp, good, finished):
        return ["train", "--config", good, "--out", tmp / "out", "--set", f"data.source={make(tmp / 'data')}"]

    return setup


def corrupt_png(folder: Path) -> Path:
    write_image_folder(folder)
    (folder / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def truncated_png(folder: Path) -> Path:
    write_image_folder(folder)
    truncate(folder / "test" / "cat" / "0.png", 0.6)
    return folder


def truncated_idx(folder: Path) -> Path:
    write_idx(folder, [0, 1, 2, 3])
    truncate(folder / "train-images-idx3-ubyte", 0.5)
    return folder


def wrong_layout(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("my images are elsewhere")
    (folder / "pictures").mkdir()
    (folder / "pictures" / "a.dat").write_bytes(b"\0" * 10)
    return folder


def empty(folder: Path) -> Path:
    folder.mkdir()
    return folder


def resume_with(damage):
    def setup(tmp, good, finished):
        run = run_copy(finished, tmp)
        damage(run)
        return ["train", "--resume", run]

    return setup


def eval_with(damage):
    def setup(tmp, good, finished):
        run = run_copy(finished, tmp)
        damage(run)
        return ["eval", "--run", run]

    return setup


def truncate_all(name: str, keep: float):
    def damage(run: Path) -> None:
        for path in checkpoint_files(run, name):
            truncate(path, keep)

    return damage


def no_final_weights(then=None):
    def damage(run: Path) -> None:
        (run / "model.safetensors").unlink()
        if then is not None:
            then(run)

    return damage


def describe_as(**meta):
    """Make run.json describe another model than the one its checkpoints hold."""

    def damage(run: Path) -> None:
        info = json.loads((run / "run.json").read_text())
        info["meta"].update(meta)
        (run / "run.json").write_text(json.dumps(info))

    return damage


def other_config(tmp, good, finished):
    run = run_copy(finished, tmp)
    other = write_config(tmp / "other.yaml", model={"members": 3, "split": "conv2"})
    return ["train", "--resume", run, "--config", other]


CASES = [
    (
        "config-missing",
        lambda tmp, good, fin: ["train", "--config", tmp / "nope.yaml", "--out", tmp / "out"],
        ["nope.yaml: config file not found"],
    ),
    (
        "config-is-a-folder",
        lambda tmp, good, fin: ["train", "--config", tmp, "--out", tmp / "out"],
        [f"{'{tmp}'}", "is a folder; expected a YAML config file"],
    ),
    ("config-not-text", bad_config(b"model:\n  name: \xff\xfe\x00\n"), ["c.yaml: cannot read config"]),
    (
        "yaml-malformed",
        bad_config("model:\n  name: cifar10_quick\n  members: [1, 2\ntrain: {}\n"),
        ["c.yaml: malformed YAML at line 4, column 6: expected ',' or ']'"],
    ),
    (
        "unknown-key",
        bad_config("optim:\n  lrate: 0.1\n"),
        ["optim.lrate: unknown key; did you mean 'lr'?", "valid keys are: name, lr, momentum"],
    ),
    ("lr-zero", with_set("optim.lr=0"), ["optim.lr: got 0; expected a number > 0"]),
    ("lr-negative", with_set("optim.lr=-0.5"), ["optim.lr: got -0.5; expected a number > 0"]),
    (
        "batch-size-zero",
        with_set("train.batch_size=0"),
        ["train.batch_size: got 0; expected an integer >= 1"],
    ),
    ("members-zero", with_set("model.members=0"), ["model.members: got 0; expected an integer >= 1"]),
    ("k-zero", with_set("loss.k=0"), ["loss.k: got 0; expected an integer >= 1"]),
    ("k-above-members", with_set("loss.k=3"), ["loss.k: got 3; expected an integer in 1..2 (model.members)"]),
    (
        "iterations-zero",
        with_set("train.iterations=0"),
        ["train.iterations: got 0; expected an integer >= 1"],
    ),
    (
        "unknown-model",
        with_set("model.name=resnet50"),
        ["model.name: got 'resnet50'", "expected one of", "cifar10_quick", "nin_cifar", "caffenet"],
    ),
    ("unknown-split", with_set("model.split=conv9"), ["model.split", "conv9", "conv1", "conv2", "conv3"]),
    ("data-missing", with_data(lambda p: p), ["{tmp}/data: no such file or folder"]),
    ("data-empty", with_data(empty), ["{tmp}/data: the folder is empty; expected"]),
    (
        "data-wrong-layout",
        with_data(wrong_layout),
        ["{tmp}/data: unrecognised data layout (found notes.txt, pictures)"],
    ),
    ("image-corrupt", with_data(corrupt_png), ["{tmp}/data/train/dog/1.png: corrupt or truncated image"]),
    ("image-truncated", with_data(truncated_png), ["{tmp}/data/test/cat/0.png: corrupt or truncated image"]),
    (
        "idx-truncated",
        with_data(truncated_idx),
        ["{tmp}/data/train-images-idx3-ubyte: idx file truncated", "expected 3152 for shape (4, 28, 28)"],
    ),
    (
        "labels-out-of-range",
        with_data(lambda p: write_idx(p, [0, 1, 2, 7], classes=["a", "b", "c"])),
        ["{tmp}/data/train-labels-idx1-ubyte: label 7 is outside the class range 0..2 (3 classes)"],
    ),
    (
        "images-too-small",
        with_data(lambda p: write_image_folder(p, size=4)),
        ["data.source {tmp}/data: 4x4 images do not fit model.name 'cifar10_quick'", "use larger images"],
    ),
    (
        "eval-data-does-not-fit",
        lambda tmp, good, fin: [
            "eval",
            "--run",
            fin,
            "--data",
            write_image_folder(tmp / "rgb", channels=3, size=32),
        ],
        # colour images for a greyscale model convert (as predict converts them): only the size and classes
        [
            "{tmp}/rgb: images do not fit the run's model: image_size 32 (model takes 28), num_classes 2 "
            "(model takes 10)"
        ],
    ),
    (
        "resume-no-run",
        lambda tmp, good, fin: ["train", "--resume", tmp / "nothing"],
        ["--resume {tmp}/nothing: no config.yaml there"],
    ),
    (
        "resume-truncated-checkpoints",
        resume_with(truncate_all("weights.safetensors", 0.5)),
        [
            "no committed checkpoint in {tmp}/run/checkpoints",
            "step-00000003/weights.safetensors is truncated",
        ],
    ),
    (
        "resume-zero-byte-checkpoints",
        resume_with(truncate_all("state.pt", 0.0)),
        ["no committed checkpoint in {tmp}/run/checkpoints", "step-00000003/state.pt is empty: 0 bytes"],
    ),
    (
        "resume-other-config",
        other_config,
        [
            "checkpoint {tmp}/run/checkpoints/step-00000003 does not match the configuration",
            "members: checkpoint has 2, config has 3",
            "split: checkpoint has 'conv1', config has 'conv2'",
        ],
    ),
    (
        "eval-no-run",
        lambda tmp, good, fin: ["eval", "--run", tmp / "nothing"],
        ["--run {tmp}/nothing: not a folder"],
    ),
    (
        "eval-weights-truncated",
        eval_with(lambda run: truncate(run / "model.safetensors", 0.5)),
        ["{tmp}/run/model.safetensors: unreadable or truncated weights"],
    ),
    (
        "eval-weights-zero-byte",
        eval_with(lambda run: truncate(run / "model.safetensors", 0.0)),
        ["{tmp}/run/model.safetensors: zero-byte weights file"],
    ),
    (
        "eval-weights-missing",
        eval_with(no_final_weights(lambda run: shutil.rmtree(run / "checkpoints"))),
        ["--run {tmp}/run: no final weights (model.safetensors) and no committed checkpoint"],
    ),
    (
        "eval-checkpoints-truncated",
        eval_with(no_final_weights(truncate_all("weights.safetensors", 0.3))),
        ["{tmp}/run", "step-00000003/weights.safetensors is truncated"],
    ),
    (
        "eval-checkpoint-of-another-model",
        eval_with(no_final_weights(describe_as(members=3, split="conv2"))),
        [
            "checkpoint {tmp}/run/checkpoints/step-00000003 does not match",
            "members: checkpoint has 2, config has 3",
            "split: checkpoint has 'conv1', config has 'conv2'",
        ],
    ),
    (
        "out-holds-a-run",
        lambda tmp, good, fin: ["train", "--config", good, "--out", fin],
        [f"--out {'{fin}'}: already holds a run; pass --resume to continue it or --overwrite to replace it"],
    ),
    (
        "out-below-a-file",
        lambda tmp, good, fin: ["train", "--config", good, "--out", _file(tmp) / "run"],
        ["--out {tmp}/file/run: cannot write there"],
    ),
]


def _file(tmp: Path) -> Path:
    (tmp / "file").write_text("a file where a folder is expected")
    return tmp / "file"


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_culprit(
    server, good, finished, tmp_path, setup, expected
):
    argv = setup(tmp_path, good, finished)
    touched = [Path(a) for a in argv if isinstance(a, Path) and Path(a).is_dir() and "run" in Path(a).name]
    before = {p: snapshot(p) for p in touched + [finished]}
    result = server.run(*argv, *(["--no-progress"] if argv[0] == "train" else []))
    assert result.returncode == 2, str(result)
    assert "Traceback" not in result.stderr, str(result)
    line = result.error_line
    assert line.startswith("mheads: error: "), str(result)
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("mheads:")] == [line], str(result)
    for part in expected:
        part = part.replace("{tmp}", str(tmp_path)).replace("{fin}", str(finished))
        assert part in line, f"{part!r} not in the message:\n{line}"
    for folder, files in before.items():  # refused before anything changed
        assert snapshot(folder) == files, f"{folder} changed"
    out = tmp_path / "out"
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


def test_numbers_in_exponent_notation_are_numbers(tmp_path):
    # YAML 1.1 would read 1e-3 as the string '1e-3' and the learning rate would be refused as not a number.
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = load_config(tmp_path / "c.yaml", ["optim.momentum=9e-1"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum) == (0.001, 0.0005, 0.9)


def test_debug_shows_the_traceback(server, tmp_path):
    result = server.run("--debug", "train", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr, str(
        result
    )


def test_the_resume_advice_quotes_the_cache_folder_for_the_shell(tmp_path):
    """A data.cache_dir with a space or a quote in it is named as one shell word the user can paste."""
    import shlex

    from mheads.cli.commands import UsageError, _check_folder_model
    from mheads.config import config_from_settings

    for folder in ("/data/my cache", "/data/it's", "/data/plain"):
        cfg = config_from_settings({"data.cache_dir": folder})
        with pytest.raises(UsageError) as err:
            _check_folder_model(cfg, [], tmp_path)
        advice = str(err.value).split("name it yourself: ", 1)[1].split(" (or ", 1)[0]
        assert shlex.split(advice) == ["--set", f"data.cache_dir={folder}"]
