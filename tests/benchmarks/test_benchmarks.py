"""The benchmark's own machinery: its contenders compute the same thing, its timing and its output files."""

import csv
import math
import sys
from dataclasses import replace

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from bench_util import Row, format_table, interleaved, write_csv  # noqa: E402
from workloads import (  # noqa: E402
    Setup,
    base_model,
    fx_chain,
    make_batches,
    make_tree,
    plain_models,
    vmap_forward,
)

CPU = Setup(device=torch.device("cpu"))


@pytest.mark.parametrize("split", [None, "conv2"])
def test_the_contenders_compute_the_same_member_logits(split):
    net = make_tree(CPU, 3, split).eval()
    x = make_batches(CPU, 2, n=1)[0][0]
    ref = net(x)
    plain = torch.stack([m.eval()(x) for m in plain_models(CPU, net)])
    assert (plain - ref).abs().max() <= 1e-6
    assert (vmap_forward(net)(x) - ref).abs().max() <= 1e-6


def test_vmap_forward_refuses_multi_level_trees():
    with pytest.raises(ValueError, match="one-level"):
        vmap_forward(make_tree(CPU, 4, [("conv1", 2), ("conv2", 2)]))


def test_interleaved_rounds_rotate_and_time_every_contender():
    calls = []
    out = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        rounds=3,
        steps=2,
        warmup=1,
        sync=lambda: None,
    )
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert {k: len(v) for k, v in out.items()} == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="rounds/steps/warmup"):
        interleaved({}, rounds=0, steps=1, warmup=0, sync=lambda: None)


def test_table_and_csv_carry_ratios_targets_and_hardware(tmp_path):
    rows = [
        Row("s1", "base", 200.0, 5.0, 190.0, 500.0, ratio=1.0, ratio_to="base"),
        Row(
            "s1",
            "fast",
            100.0,
            2.0,
            95.0,
            1000.0,
            ratio=2.0,
            ratio_to="base",
            target=1.25,
            extra={"samples": 7, "trunk_flop_share": 0.2},
        ),
        Row("s2", "slow", 400.0, 9.0, 380.0, None, ratio=0.5, ratio_to="base", target=0.9),
    ]
    table = format_table(rows)
    assert "## s1" in table and "## s2" in table
    assert rows[1].meets == "yes" and rows[2].meets == "NO" and rows[0].meets == ""
    path = tmp_path / "t.csv"
    write_csv(path, rows, {"cpu": "Test CPU", "torch": "2.x"})
    with path.open() as f:
        got = list(csv.DictReader(f))
    assert [r["name"] for r in got] == ["base", "fast", "slow"]
    assert got[1]["samples"] == "7" and got[1]["trunk_flop_share"] == "0.2" and got[1]["meets"] == "yes"
    assert all(r["cpu"] == "Test CPU" for r in got) and got[2]["images_per_s"] == ""


def test_resnet20_contenders_compute_the_same_member_logits():
    setup = replace(CPU, model="resnet20")
    x = make_batches(setup, 2, n=1)[0][0]
    for split in (None, "bn1", "layer1"):
        net = make_tree(setup, 2, split).eval()
        plain = torch.stack([m.eval()(x) for m in plain_models(setup, net)])
        assert (plain - net(x)).abs().max() <= 1e-5
    model = base_model(setup).eval()
    assert torch.equal(fx_chain(model, ["layer1"])(x), model(x))


def test_resnet20_section_measures_every_contender_with_flop_ratios(tmp_path):
    """The section itself (tiny: batch 2, one round, no warm-up), so a break in it fails here."""
    import throughput

    plan = replace(throughput.QUICK, train_rounds=1, train_steps=1, warmup=0)
    bench = throughput.Bench(CPU, plan, tmp_path)
    throughput.resnet20(bench, batch=2)
    rows = {r.name: r for r in bench.rows}
    assert "resnet20" in throughput.SECTIONS and len(rows) == len(bench.rows) == 7
    assert any("one by one" in name for name in rows)  # the member-by-member step fit takes
    assert all(r.median_ms > 0 and r.ratio > 0 and r.gflop_per_s > 0 for r in rows.values())
    flop_ratio = {
        split: rows[bench.tree_label(split, "loop")].extra["flop_ratio_vs_plain"]
        for split in (None, "bn1", "layer1")
    }
    assert flop_ratio[None] == 1.0 < flop_ratio["bn1"] < flop_ratio["layer1"]
    own, cut = [r for r in bench.rows if r.section.startswith("6b.")]
    assert own.ratio == 1.0 and "fx" in cut.name and "NOT" not in cut.note  # the cut has the model's FLOPs


@pytest.mark.parametrize("size", ["small", pytest.param("full", marks=pytest.mark.slow)])
def test_peer_trainers_benchmark_writes_one_row_per_trainer(tmp_path, monkeypatch, size):
    import peers

    if size == "small":  # the same code path on batches of 8 and 64 test images (the full size: 100, 1000)
        write = peers.write_synthetic_cifar10
        monkeypatch.setattr(peers, "BATCH", 8)
        monkeypatch.setattr(
            peers, "write_synthetic_cifar10", lambda folder, n_train, n_test: write(folder, n_train, 64)
        )
    assert peers.main(["--out", str(tmp_path), "--rounds", "1", "--iters", "1,2"]) == 0
    text = (tmp_path / "peers.txt").read_text()
    assert "bare plain loop" in text and "mheads fit" in text and "hardware:" in text
    with open(tmp_path / "peers.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["name"] for r in rows} >= {"bare plain loop (4 modules, 4 SGD)", "mheads fit"}
    # one round of 1 vs 2 iterations times noise as much as work (a loaded machine gave -54.6 ms): the numbers
    # must be there, not positive
    assert all(math.isfinite(float(r["median_ms"])) for r in rows)
    assert not (tmp_path / "synthetic-cifar10").exists()  # the data it wrote is gone
    with pytest.raises(SystemExit):
        peers.main(["--out", str(tmp_path), "--iters", "3,2"])


def test_split_cost_times_every_split_and_predicts_the_speed_up_from_flops(tmp_path, capsys):
    import split_cost

    out = tmp_path / "split_cost.csv"
    split_cost.main(
        [
            "--model",
            "nin_cifar",
            "--option",
            "width=0.125",
            "--option",
            "init=he",
            "--members",
            "2",
            "--batch",
            "2",
            "--splits",
            "none,cccp2,conv3",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--out",
            str(out),
        ]
    )
    with out.open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["split None", "split cccp2", "split conv3"]
    assert float(rows["split None"]["ratio"]) == 1.0
    flop_ratios = [float(rows[n]["flop_ratio_vs_independent"]) for n in rows]
    assert flop_ratios[0] == 1.0 and 1.0 < flop_ratios[1] < flop_ratios[2]  # deeper sharing, fewer FLOPs
    assert "FLOP ratio vs None" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--splits", "conv9"], "--splits: 'conv9' is not a split point of cifar10_quick"),
        (
            ["--splits", "ip2"],
            "--splits: 'ip2' is not a split point",
        ),  # the last layer: nothing left to split
    ],
)
def test_split_cost_refuses_a_layer_that_is_not_a_split_point(argv, message):
    import split_cost

    with pytest.raises(SystemExit, match=message):
        split_cost.main(argv + ["--rounds", "1"])


def test_split_cost_refuses_a_malformed_option(capsys):
    import split_cost

    with pytest.raises(SystemExit):
        split_cost.main(["--option", "width"])
    assert "--option: got 'width'; expected KEY=VALUE" in capsys.readouterr().err
