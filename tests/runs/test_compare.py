"""mheads.runs.compare.run_differences: two run folders built by hand, one difference at a time."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from mheads.runs.compare import TIMING_KEYS, run_differences


def _run(folder, w=(1.0, 2.0), metrics=None):
    (folder / "members").mkdir(parents=True)
    save_file({"w": torch.tensor(w), "b": torch.zeros(2)}, str(folder / "model.safetensors"))
    save_file({"w": torch.tensor(w[:1])}, str(folder / "members/member-0.safetensors"))
    (folder / "config.yaml").write_text("name: x\n")
    (folder / "run.json").write_text(
        json.dumps(
            {"meta": {"members": 1}, "param_counts": {"total": 4}, "data": {"name": "d"}, "git": "abc"}
        )
    )
    (folder / "metrics.json").write_text(json.dumps(metrics or {"oracle_acc": 0.5, "wall_time_s": 1.0}))
    (folder / "eval.jsonl").write_text('{"iteration": 1, "acc": 0.5}\n')
    return folder


def test_identical_runs_have_no_differences_and_timings_do_not_count(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", metrics={"oracle_acc": 0.5, **{k: 99.0 for k in TIMING_KEYS}})
    assert run_differences(a, b) == []
    run = json.loads((b / "run.json").read_text())
    (b / "run.json").write_text(json.dumps({**run, "git": "other"}))  # bookkeeping, not the model
    assert run_differences(a, b) == []


def test_one_bit_in_one_tensor_is_named(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", w=(1.0, float(torch.nextafter(torch.tensor(2.0), torch.tensor(3.0)))))
    assert run_differences(a, b) == ["model.safetensors: w differs"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda b: (b / "members/member-0.safetensors").unlink(), ["members/member-0.safetensors: missing"]),
        (lambda b: (b / "config.yaml").write_text("name: y\n"), ["config.yaml differs"]),
        (lambda b: (b / "metrics.json").write_text('{"oracle_acc": 0.6}'), ["metrics.json differs"]),
        (lambda b: (b / "eval.jsonl").write_text('{"iteration": 1, "acc": 0.6}\n'), ["eval.jsonl differs"]),
        (lambda b: (b / "eval.jsonl").unlink(), ["eval.jsonl: missing"]),
        (
            lambda b: (b / "run.json").write_text(
                '{"meta": {"members": 2}, "param_counts": {"total": 4}, "data": {"name": "d"}}'
            ),
            ["run.json: meta differs"],
        ),
    ],
)
def test_each_difference_is_one_line(tmp_path, change, expected):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b")
    change(b)
    assert run_differences(a, b) == expected


def test_config_is_compared_only_when_asked(tmp_path):
    a = _run(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "config.yaml").write_text("name: forked\n")
    assert run_differences(a, b, same_config=False) == []
