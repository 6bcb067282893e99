"""read_table: CSV and Parquet columns as (input, target) pairs; strict values, splits, bounded reads.
read_features: the input columns alone (a table to predict on)."""

import os

import pytest
import torch

from mheads.data import DataError
from mheads.data.pairs import seeded_split
from mheads.data.tables import read_features, read_table, table_columns


def write(path, text):
    path.write_text(text)
    return path


def test_csv_regression_and_classification_with_a_split_column(tmp_path):
    f = write(
        tmp_path / "t.csv",
        "a,b,y1,y2,label,split\n1,2,0.5,-1,0,train\n3,4.5,1e-3,2,1,test\n5,6,7,8,2.0,train\n\n",
    )
    reg = read_table(f, ["a", "b"], ["y1", "y2"], split_column="split")
    assert set(reg) == {"train", "test"}
    x, y = reg["train"][1]
    assert torch.equal(x, torch.tensor([5.0, 6.0])) and torch.equal(y, torch.tensor([7.0, 8.0]))
    assert reg["train"].inputs.dtype == torch.float32 and reg["test"].targets.shape == (1, 2)
    cls = read_table(f, "a", "label", kind="classification", num_classes=3)
    assert cls["train"].targets.tolist() == [0, 1, 2] and cls["train"].targets.dtype == torch.int64


def test_seeded_split_is_deterministic_and_disjoint(tmp_path):
    f = write(tmp_path / "t.csv", "x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    a = read_table(f, "x", "y", kind="classification", test_fraction=0.25, seed=3)
    b = read_table(f, "x", "y", kind="classification", test_fraction=0.25, seed=3)
    assert len(a["test"]) == 5 and len(a["train"]) == 15
    assert torch.equal(a["test"].inputs, b["test"].inputs)
    seen = sorted(a["train"].inputs[:, 0].tolist() + a["test"].inputs[:, 0].tolist())
    assert seen == [float(i) for i in range(20)]
    train, test = seeded_split(20, 0.25, 4)
    assert not set(train.tolist()) & set(test.tolist())


def test_parquet_matches_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0, 1, 1]}).to_parquet(tmp_path / "t.parquet")
    write(tmp_path / "t.csv", "a,y\n1,0\n2,1\n3,1\n")
    p = read_table(tmp_path / "t.parquet", "a", "y", kind="classification")["train"]
    c = read_table(tmp_path / "t.csv", "a", "y", kind="classification")["train"]
    assert torch.equal(p.inputs, c.inputs) and torch.equal(p.targets, c.targets)


def test_read_features_needs_no_target_column_in_csv_or_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    write(tmp_path / "t.csv", "b,y,a\n1,0,2.5\n3,1,-4\n")
    pd.DataFrame({"a": [2.5, -4.0], "b": [1.0, 3.0]}).to_parquet(tmp_path / "rows.parquet")  # no "y"
    want = read_table(tmp_path / "t.csv", ["a", "b"], "y")["train"].inputs
    assert torch.equal(read_features(tmp_path / "t.csv", ["a", "b"]), want)
    assert torch.equal(read_features(tmp_path / "rows.parquet", ["a", "b"]), want)
    write(tmp_path / "t.tsv", "a\tb\n2.5\t1\n-4\t3\n")
    assert torch.equal(read_features(tmp_path / "t.tsv", ["a", "b"], delimiter="\t"), want)
    with pytest.raises(DataError, match=r"rows.parquet: no column 'c'; expected one of the file's columns"):
        read_features(tmp_path / "rows.parquet", ["a", "c"])
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'a': got 'x'; expected a decimal number"):
        read_features(write(tmp_path / "bad.csv", "a\n1\nx\n"), "a")
    with pytest.raises(ValueError, match="features: 'a' is named more than once"):
        read_features(tmp_path / "t.csv", ["a", "a"])


@pytest.mark.parametrize(
    "text, kind, needle",
    [
        ("a,y\n1,2.7\n", "classification", "row 1 (line 2), column 'y': got '2.7'"),
        ("a,y\n1,2.0000000000000001\n", "classification", "got '2.0000000000000001'"),
        ("a,y\n1,true\n", "classification", "got 'true'"),
        ("a,y\n1,cat\n", "classification", "got 'cat'"),
        ("a,y\n1,-1\n", "classification", "got '-1'"),
        ("a,y\n1,1_0\n", "classification", "got '1_0'"),
        ("a,y\n1,70000\n", "classification", "give num_classes"),
        ("a,y\n1,0\n2,\n", "classification", "row 2 (line 3), column 'y': missing value"),
        ("a,y\n,0\n", "regression", "column 'a': missing value"),
        ("a,y\n1,nan\n", "regression", "column 'y': got 'nan'; expected a finite number"),
        ("a,y\n-inf,1\n", "regression", "got '-inf'"),
        ("a,y\n1e39,1\n", "regression", "within float32's range"),
        ("a,y\n0x10,1\n", "regression", "expected a decimal number"),
        ("a,y\n1,2,3\n", "regression", "row 1 (line 2) has 3 fields; expected 2"),
        ("a,a,y\n1,2,3\n", "regression", "names column 'a' more than once"),
        ("a,z\n1,2\n", "regression", "no column 'y'"),
        ("a,y\n", "regression", "no data rows"),
        ("", "regression", "empty file"),
        ('a,y\n"1,2\n', "regression", "malformed CSV"),
    ],
)
def test_hostile_csv_values_are_refused_naming_row_and_column(tmp_path, text, kind, needle):
    f = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as err:
        read_table(f, "a", "y", kind=kind)
    assert needle in str(err.value) and "bad.csv" in str(err.value) and "\n" not in str(err.value)


def test_hostile_files_and_arguments(tmp_path, monkeypatch):
    f = write(tmp_path / "t.csv", "a,y,s\n1,0,train\n2,1,tset\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 's': got 'tset'; expected one of train"):
        read_table(f, "a", "y", split_column="s")
    with pytest.raises(ValueError, match="'a' is named more than once"):
        read_table(f, "a", "a")
    with pytest.raises(ValueError, match="expected one column of class indices"):
        read_table(f, "a", ["y", "a"], kind="classification")
    with pytest.raises(ValueError, match="expected one of them"):
        read_table(f, "a", "y", split_column="s", test_fraction=0.5)
    with pytest.raises(ValueError, match="kind: got 'segmentation'"):
        read_table(f, "a", "y", kind="segmentation")
    (tmp_path / "latin1.csv").write_bytes("a,y\n1,\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(tmp_path / "latin1.csv", "a", "y")
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(DataError, match="FIFO"):  # refused without opening it for a writer that never comes
        read_table(tmp_path / "fifo.csv", "a", "y")
    monkeypatch.setattr("mheads.data.tables.read_limit", lambda: 10)
    with pytest.raises(DataError, match="refused before reading"):
        read_table(f, "a", "y")


def test_hostile_parquet(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    cases = [
        ({"a": [1.0, 2.0], "y": [1, None]}, "classification", "row 2, column 'y': missing value"),
        ({"a": [1.0, 2.0], "y": [1, 2.7]}, "classification", "row 2, column 'y': got 2.7"),
        ({"a": [1.0, 2.0], "y": [True, False]}, "classification", "got True"),
        ({"a": [1.0, float("inf")], "y": [1.0, 2.0]}, "regression", "row 2, column 'a': got inf"),
        ({"a": ["1", "2"], "y": [1.0, 2.0]}, "regression", "column 'a': got '1' ("),
    ]
    for i, (frame, kind, needle) in enumerate(cases):
        pd.DataFrame(frame).to_parquet(tmp_path / f"{i}.parquet")
        with pytest.raises(DataError) as err:
            read_table(tmp_path / f"{i}.parquet", "a", "y", kind=kind)
        assert needle in str(err.value), (needle, str(err.value))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    with pytest.raises(DataError, match="corrupt or unreadable Parquet"):
        read_table(tmp_path / "junk.parquet", "a", "y")
    # A small file declaring more uncompressed bytes than the limit is refused before decoding.
    pd.DataFrame({"a": [0.0] * 10_000, "y": [0.0] * 10_000}).to_parquet(tmp_path / "zeros.parquet")
    monkeypatch.setattr("mheads.data.tables.read_limit", lambda: (tmp_path / "zeros.parquet").stat().st_size)
    with pytest.raises(DataError, match="declares a decoded size"):
        read_table(tmp_path / "zeros.parquet", "a", "y")


def test_a_category_column_is_told_to_encode_it_a_mistyped_number_is_not(tmp_path):
    table = write(tmp_path / "t.csv", "a,color,y\n1,0.5,2\n2,green,3\n3,0x5,4\n")
    with pytest.raises(
        DataError, match=r"got 'green'; expected a decimal number \(a text column, e\.g\. a cat"
    ):
        read_table(table, ["a", "color"], "y")
    with pytest.raises(DataError, match=r"got '0x5'; expected a decimal number$"):
        read_table(write(tmp_path / "n.csv", "a,y\n0x5,1\n"), ["a"], "y")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"a": [1.0], "color": ["red"], "y": [2.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(
        DataError, match=r"got 'red' .*\(integers or floating point\) \(a text column, e\.g\."
    ):
        read_table(tmp_path / "t.parquet", ["a", "color"], "y")


def test_table_columns_names_a_header_or_schema_and_nothing_for_an_unreadable_file(tmp_path):
    f = write(tmp_path / "t.csv", "\ufeffa, b ,y\n1,2,3\n")
    assert table_columns(f) == ["a", "b", "y"]
    assert table_columns(write(tmp_path / "t.tsv", "a\tb\n1\t2\n"), delimiter="\t") == ["a", "b"]
    assert table_columns(write(tmp_path / "empty.csv", "")) == []
    (tmp_path / "latin.csv").write_bytes(b"\xe9,b\n1,2\n")
    assert table_columns(tmp_path / "latin.csv") == []  # read_features says why
    with pytest.raises(ValueError, match="file_format"):
        table_columns(f, file_format="xlsx")


def test_table_columns_of_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"a": [1.0], "y": [2.0]}).to_parquet(tmp_path / "t.parquet")
    assert table_columns(tmp_path / "t.parquet") == ["a", "y"]
    assert table_columns(write(tmp_path / "bad.parquet", "not parquet")) == []
