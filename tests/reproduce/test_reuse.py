"""Which finished runs a sweep cell may reuse: the fields that decide a run's results."""

import os

from mheads.reproduce.reuse import result_key


def test_a_data_source_is_compared_by_its_resolved_path(tmp_path, monkeypatch):
    data = tmp_path / "shared" / "data.tar.gz"
    data.parent.mkdir()
    data.write_bytes(b"x")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    relative = {"data": {"source": os.path.join("..", "shared", "data.tar.gz")}, "name": "a"}
    absolute = {"data": {"source": str(data)}, "name": "b"}
    assert result_key(relative) == result_key(absolute)
    other = {"data": {"source": str(tmp_path / "elsewhere.tar.gz")}, "name": "c"}  # not on disk: as written
    assert result_key(other)["data"]["source"] == str(tmp_path / "elsewhere.tar.gz")
    assert result_key(other) != result_key(absolute)
