"""The README's quick start runs as written."""

import re

from conftest import REPO


def quick_start_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = quick_start_blocks()
    assert len(blocks) == 2
    code = [ln for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(code) < 20, "the quick start trains a user-defined model in under 20 lines"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md quick start", "exec"), {"__name__": "__main__"})
    assert (tmp_path / "runs" / "quickstart" / "metrics.json").is_file()
    first = capsys.readouterr().out.splitlines()[0].split()
    assert float(first[0]) > 0.5  # the oracle, well above chance (0.1)
