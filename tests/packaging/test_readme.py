"""The README's quick start runs as written (slow tier), and shortened to a few iterations (fast tier)."""

import re

import pytest

from conftest import REPO

ITERATIONS = '"train.iterations": 300'


def quick_start_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run(blocks: list[str], tmp_path, monkeypatch, capsys) -> list[str]:
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md quick start", "exec"), {"__name__": "__main__"})
    assert (tmp_path / "runs" / "quickstart" / "metrics.json").is_file()
    return capsys.readouterr().out.splitlines()


def test_the_quick_start_runs_in_a_few_iterations(tmp_path, monkeypatch, capsys):
    """Every call of both blocks (fit, evaluate of the reopened folder, predict, the building blocks), on 4
    iterations of 16 images and 200 test images: only the accuracy of the full run is left to the slow
    test."""
    blocks = quick_start_blocks()
    assert len(blocks) == 2
    code = [ln for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(code) < 20, "the quick start trains a user-defined model in under 20 lines"
    assert blocks[0].count(ITERATIONS) == 1
    fewer = '"train.iterations": 4, "train.batch_size": 16, "data.test_limit": 200'
    short = blocks[0].replace(ITERATIONS, fewer)
    lines = _run([short, blocks[1]], tmp_path, monkeypatch, capsys)
    fitted, reopened = lines[0].split(), lines[1]
    assert float(reopened) == float(fitted[0])  # the folder reopened gives fit's oracle accuracy
    assert len(lines) == 6


@pytest.mark.slow  # 300 iterations: 80-180 s on 2 cores
def test_the_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    first = _run(quick_start_blocks(), tmp_path, monkeypatch, capsys)[0].split()
    assert float(first[0]) > 0.5  # the oracle, well above chance (0.1)
