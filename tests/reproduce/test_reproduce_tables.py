"""Pooling seeds across sweeps (reproduce/tables.py): which --set overrides must agree."""

from __future__ import annotations

import math

import pytest

from mheads.cli.parser import build_parser
from mheads.config import ConfigError
from mheads.reproduce.spec import load_spec
from mheads.reproduce.tables import (
    SEED_FIELDS,
    check_priors,
    read_seed_rows,
    recipe_overrides,
    seed_rows,
    write_seed_rows,
)

IDENT = {"experiment": "table1", "scale": "smoke", "data": "embedded"}


def _rows(overrides: str) -> list[dict]:
    return [
        {**IDENT, "overrides": overrides, "cell": "single", "seed": 1, "metric": "oracle_acc", "value": 1.0}
    ]


def test_recipe_overrides_drops_only_resource_settings():
    assert recipe_overrides("") == ""
    assert recipe_overrides("optim.bias_lr_mult=1; train.threads=1") == "optim.bias_lr_mult=1"
    assert (
        recipe_overrides(" train.device = cuda ;optim.lr=0.002; train.checkpoint_every=50")
        == "optim.lr=0.002"
    )
    assert recipe_overrides("train.iterations=10; train.threads=2") == "train.iterations=10"


def test_seeds_trained_with_other_threads_or_device_pool_but_another_recipe_does_not():
    spec = load_spec("table1", "smoke", None)
    ident = {**IDENT, "overrides": "optim.bias_lr_mult=1; train.threads=1"}
    check_priors(
        [
            ("a.csv", _rows("optim.bias_lr_mult=1")),
            ("b.csv", _rows("train.device=cpu; optim.bias_lr_mult=1")),
        ],
        spec,
        ident,
    )
    with pytest.raises(
        ConfigError, match=r"a\.csv: .*overrides '' \(this sweep: 'optim.bias_lr_mult=1; train.threads=1'\)"
    ):
        check_priors([("a.csv", _rows(""))], spec, ident)
    with pytest.raises(ConfigError, match=r"train.threads"):  # the message says which overrides may differ
        check_priors([("a.csv", _rows("optim.lr=0.002"))], spec, ident)


def test_pool_with_can_be_given_more_than_once():
    args = build_parser().parse_args(
        ["reproduce", "table5", "--out", "o", "--pool-with", "a/seeds.csv", "--pool-with", "b"]
    )
    assert args.pool_with == ["a/seeds.csv", "b"]


def test_a_sweep_pools_several_seeds_csvs_first_holder_wins(tmp_path):
    from mheads.reproduce.sweep import _start_sweep
    from mheads.reproduce.tables import pool, write_seed_rows

    spec = load_spec("table1", "smoke", None)

    def rows(seed: int, value: float, overrides: str) -> list[dict]:
        return [
            {
                **IDENT,
                "overrides": overrides,
                "cell": "single",
                "seed": seed,
                "metric": m,
                "value": value,
                "wall_time_s": 1.0,
                "hardware": "h",
            }
            for m in ("ensemble_mean_acc", "oracle_acc")
        ]

    write_seed_rows(tmp_path / "a.csv", rows(1, 50.0, "train.threads=1"))
    write_seed_rows(tmp_path / "b.csv", rows(1, 99.0, "") + rows(2, 60.0, "train.device=cuda"))
    sweep = _start_sweep(
        spec, "table1", "smoke", tmp_path / "out", [], [tmp_path / "a.csv", tmp_path / "b.csv"]
    )
    pooled = pool([], sweep.priors, spec)
    values = {(r["seed"], r["metric"]): r["value"] for r in pooled}
    assert values == {
        (1, "ensemble_mean_acc"): 50.0,
        (1, "oracle_acc"): 50.0,
        (2, "ensemble_mean_acc"): 60.0,
        (2, "oracle_acc"): 60.0,
    }


ROW = "table1,cpu,x,,bagging,"  # a seeds.csv row up to its seed


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"{ROW}0,oracle_acc,inf,1,hw", r"line 2: value: got 'inf'; expected a number \(nan: a metric"),
        (f"{ROW}-5,oracle_acc,1,1,hw", r"line 2: seed: got '-5'; expected an integer >= 0"),
        (f"{ROW}0,oracle_acc,1,-7,hw", r"line 2: wall_time_s: got '-7'; expected a number >= 0"),
        (f"{ROW}0,oracle_acc,1,1,\udcff", r"not a seeds.csv a sweep wrote \(UnicodeDecodeError"),
        (f"{ROW}0,oracle_acc,1,1," + "a" * 200_000, r"not a seeds.csv a sweep wrote \(Error"),
    ],
    ids=["inf", "negative-seed", "negative-time", "not-utf8", "huge-field"],
)
def test_a_pooled_seeds_csv_of_non_finite_or_foreign_values_is_one_line(tmp_path, row, message):
    """--pool-with reads another sweep's seeds.csv: NaN and inf were pooled into the cell's mean and std
    without a word; bytes that are not UTF-8 and a field over csv's limit were tracebacks."""
    path = tmp_path / "seeds.csv"
    path.write_bytes((",".join(SEED_FIELDS) + "\n" + row + "\n").encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match=message) as info:
        read_seed_rows(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_metric_the_run_recorded_as_null_is_read_back_as_the_sweep_wrote_it(tmp_path):
    """A sweep writes a null metric (NaN or inf in metrics.json) as nan in its own seeds.csv, and reads that
    file again on its next start (more seeds) or through --pool-with: it must not refuse its own file."""

    class Spec:
        metrics = ("ensemble_mean_acc", "ece")

    ident = {**IDENT, "overrides": ""}
    rows = seed_rows(Spec, ident, "bagging", 0, {"ensemble_mean_acc": 0.5, "ece": None}, "hw")
    write_seed_rows(tmp_path / "seeds.csv", rows)
    back = {r["metric"]: r["value"] for r in read_seed_rows(tmp_path / "seeds.csv")}
    assert back["ensemble_mean_acc"] == 50.0 and math.isnan(back["ece"])
