"""scripts/resume_trials.py calls the library only (no import from tests/), classifies where a kill landed,
and (slow) runs a kill-and-resume trial end to end."""

import ast
import importlib
import subprocess
import sys

import pytest
import yaml

from conftest import REPO


@pytest.fixture
def rt(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the script sets it when unset: this env stays as it was
    return importlib.import_module("resume_trials")


def test_the_script_imports_only_the_library_and_the_standard_library():
    tree = ast.parse((REPO / "scripts/resume_trials.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    third_party = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names)
    assert third_party == {"mheads", "torch", "yaml"}, third_party
    assert "sys.path" not in (REPO / "scripts/resume_trials.py").read_text()


def test_where_a_kill_landed(rt, tmp_path):
    assert rt.phase(None, [], False) == "before the first checkpoint"
    assert rt.phase(3, [], False) == "after a step"
    assert rt.phase(3, [".tmp-step-00000006-ab"], False) == "inside a checkpoint save"
    assert rt.phase(24, [], True) == "after the final weights"
    (tmp_path / "checkpoints/step-00000003").mkdir(parents=True)
    (tmp_path / "checkpoints/.tmp-step-00000006-ab").mkdir()
    assert rt.save_leftovers(tmp_path) == [".tmp-step-00000006-ab", "step-00000003"]  # no commit marker
    assert rt.committed_step(tmp_path) is None


def test_the_configs_validate(rt, tmp_path):
    from mheads.config import load_config

    for folder in (None, tmp_path / "jpegs"):
        cfg = load_config(rt.write_config(tmp_path / "run.yaml", folder))
        assert cfg.model.members == 2 and cfg.train.checkpoint_every == 3
    assert yaml.safe_load((tmp_path / "run.yaml").read_text())["data"]["loader"] == "stream"


@pytest.mark.slow
def test_one_trial_is_bit_identical(tmp_path):
    argv = ["--trials", "1", "--max-kills", "1", "--workdir", tmp_path]
    proc = subprocess.run(
        [sys.executable, REPO / "scripts/resume_trials.py", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1/1 trials bit-identical" in proc.stdout
