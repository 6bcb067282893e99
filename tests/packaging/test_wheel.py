"""The wheel works on its own: built from the checkout, installed into a fresh virtual environment beside only
torch, and run from a folder outside the checkout (recipes come from the package, not from experiments/)."""

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # a few minutes: .ci/run runs it after the default test run


def run(argv, cwd, timeout=900, env=None):
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, argv))} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def test_a_wheel_installed_in_a_fresh_venv_runs_the_demo_and_a_sweep(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO], cwd=tmp_path)
    (wheel,) = wheels.glob("mheads-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mheads/experiments/table1.yaml" in names and "mheads/experiments/scales.yaml" in names
    assert not [n for n in names if "results/" in n], "experiment results must stay out of the wheel"
    assert "mheads/py.typed" in names and any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], cwd=tmp_path)
    run([py, "-m", "pip", "install", "-q", wheel], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([py, "-c", "import mheads; print(mheads.__file__)"], cwd=outside, env=env)
    assert str(REPO) not in where and "site-packages" in where
    mheads = venv / "bin" / "mheads"
    demo = run(
        [mheads, "demo", "--set", "train.iterations=20", "--out", outside / "demo"], cwd=outside, env=env
    )
    assert "mcl k=1 x4" in demo and (outside / "demo" / "oracle_assignment.png").is_file()
    table = run(
        [mheads, "reproduce", "table1", "--scale", "smoke", "--out", outside / "t1"], cwd=outside, env=env
    )
    assert "Random init." in table and (outside / "t1" / "results.csv").is_file()
