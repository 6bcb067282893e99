"""mheads.infer.predict_files: a file to predict on carries the run's targets when it holds them (a table's
data.targets columns, an .npz file's targets array), read as training read them; else the inputs alone."""

import re

import numpy as np
import pytest
import torch

from mheads.config import config_from_settings
from mheads.data.errors import DataError
from mheads.infer.predict_files import _npz_rows, _table_rows


def cfg(task, **data):
    return config_from_settings({"task.name": task, **{f"data.{k}": v for k, v in data.items()}})


def test_a_table_with_the_target_columns_gives_them_and_one_without_gives_none(tmp_path):
    (tmp_path / "t.csv").write_text("b,y,a,z\n1,0.5,2,7\n3,1.5,4,8\n")
    (tmp_path / "x.tsv").write_text("a\tb\n2\t1\n4\t3\n")
    x, y = _table_rows(
        str(tmp_path / "t.csv"), cfg("regression", features=["a", "b"], targets=["y", "z"]), None
    )
    assert x.tolist() == [[2.0, 1.0], [4.0, 3.0]] and y.tolist() == [[0.5, 7.0], [1.5, 8.0]]
    x, y = _table_rows(str(tmp_path / "x.tsv"), cfg("regression", features=["a", "b"], targets="y"), None)
    assert x.tolist() == [[2.0, 1.0], [4.0, 3.0]] and y is None
    _, y = _table_rows(str(tmp_path / "t.csv"), cfg("regression", features=["a"], targets=["y", "q"]), None)
    assert y is None  # one target column missing: the inputs alone
    (tmp_path / "c.csv").write_text("a,label\n1,2\n3,0\n")
    _, y = _table_rows(str(tmp_path / "c.csv"), cfg("classification", features=["a"], targets="label"), 3)
    assert y.dtype == torch.int64 and y.tolist() == [2, 0]


def test_a_tables_targets_that_do_not_fit_the_run_leave_the_oracle_out_with_one_warning(tmp_path):
    """A label the run never trained on (classes 0..1 asked of a table with 2s), text labels, a text
    regression target: the rows are predicted all the same (they were refused)."""
    (tmp_path / "c.csv").write_text("a,label,y\n1,2,0.5\n3,0,cat\n")
    with pytest.warns(UserWarning) as caught:
        x, y = _table_rows(str(tmp_path / "c.csv"), cfg("classification", features=["a"], targets="label"), 2)
    assert x.tolist() == [[1.0], [3.0]] and y is None
    (line,) = [str(w.message) for w in caught]
    assert re.match(
        r"no oracle in the records: .*c\.csv: row 1 .*column 'label': got '2'; expected an integer "
        r"class index 0\.\.1.*; the inputs are predicted alone$",
        line,
    )
    (tmp_path / "t.csv").write_text("a,label\n1,cat\n3,dog\n")
    with pytest.warns(UserWarning, match="column 'label': got 'cat'"):
        _, y = _table_rows(str(tmp_path / "t.csv"), cfg("classification", features=["a"], targets="label"), 2)
    assert y is None
    with pytest.warns(UserWarning, match="column 'y': got 'cat'"):
        _, y = _table_rows(str(tmp_path / "c.csv"), cfg("regression", features=["a"], targets="y"), None)
    assert y is None
    (tmp_path / "f.csv").write_text("a,label\nred,0\n")  # a bad feature is still the features' error
    with pytest.raises(DataError, match=r"column 'a': got 'red'"):
        _table_rows(str(tmp_path / "f.csv"), cfg("classification", features=["a"], targets="label"), 2)


def test_an_npz_file_with_the_targets_array_gives_it(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "d.npz", x=x, y=x[:, :1] * 2, t=x[:, 1])
    np.savez(tmp_path / "x.npz", x=x)
    inputs, y = _npz_rows(str(tmp_path / "d.npz"), cfg("multi_hypothesis"), None, "x")
    assert inputs.tolist() == x.tolist() and y.tolist() == (x[:, :1] * 2).tolist()
    _, y = _npz_rows(str(tmp_path / "d.npz"), cfg("regression", targets="t"), None, "x")
    assert y.tolist() == x[:, 1].tolist()
    inputs, y = _npz_rows(str(tmp_path / "x.npz"), cfg("regression"), None, "x")
    assert inputs.tolist() == x.tolist() and y is None


def test_an_npz_targets_array_that_does_not_fit_the_run_leaves_the_oracle_out(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 7, 1]), s=np.array(["a", "b", "c"]))
    with pytest.warns(UserWarning) as caught:
        inputs, y = _npz_rows(str(tmp_path / "d.npz"), cfg("classification"), 2, "x")
    assert inputs.tolist() == x.tolist() and y is None
    (line,) = [str(w.message) for w in caught]
    assert "d.npz" in line and "7" in line and line.startswith("no oracle in the records: ")
    with pytest.warns(UserWarning, match="^no oracle in the records: "):
        inputs, y = _npz_rows(str(tmp_path / "d.npz"), cfg("regression", targets="s"), None, "x")
    assert inputs.tolist() == x.tolist() and y is None
