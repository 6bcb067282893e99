import csv
import json
import re

import pytest
import torch

from mheads.config import ConfigError
from mheads.reproduce import reproduce
from mheads.reproduce.label_split import cluster_labels
from mheads.reproduce.spec import load_spec


@pytest.mark.parametrize(
    "name",
    [
        "table1",
        "table2",
        "table2-ilsvrc",
        "table3",
        "table4",
        "table5",
        "table6",
        "mcl-ce",
        "label-split",
        "guided-backprop",
        "open-set",
        "bagging-control",
    ],
)
@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_experiment_spec_validates_at_every_scale(name, scale):
    spec = load_spec(name, scale, "/some/cifar10")
    assert spec.cells and all(c.config.data.source == "/some/cifar10" for c in spec.cells)
    if scale == "paper" and spec.cells[0].config.model.name == "cifar10_quick":
        assert all(c.config.train.batch_size == 350 for c in spec.cells if c.config.train.iterations == 5000)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*table1"):
        load_spec("table9", "smoke", None)


@pytest.mark.slow  # a whole smoke sweep; the fast tests above and below check its parts
def test_smoke_sweep_writes_tables_and_resumes_without_rerunning(tmp_path, capsys):
    text = reproduce("table1", "smoke", None, tmp_path, seeds=1)
    assert "80.72" in text and "Random init." in text  # the paper's numbers side by side
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["cell"] for r in rows} == {"single", "random_init", "bagging", "combined"}
    stamp = (tmp_path / "seed-0/bagging/metrics.json").stat().st_mtime_ns
    (tmp_path / "seed-0/combined/metrics.json").unlink()  # as if interrupted before the last cell finished
    (tmp_path / "seed-0/combined/model.safetensors").unlink()
    reproduce("table1", "smoke", None, tmp_path, seeds=1)
    assert (tmp_path / "seed-0/bagging/metrics.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "seed-0/combined/metrics.json").exists()


def test_cluster_labels_groups_covarying_labels():
    cov = torch.zeros(6, 6)
    for group in ([0, 1], [2, 3, 4], [5]):
        for i in group:
            for j in group:
                cov[i, j] = 1.0
    groups = cluster_labels(cov, 3)
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 3, 4], [5]]


def test_guided_backprop_passes_only_positive_gradients_through_relus():
    from torch import nn

    from mheads.reproduce.guided_backprop import guided_saliency

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 0])
    g = guided_saliency(net, x, y)
    # by hand: d score / d hidden = W2[y], masked to positive values at positive pre-activations
    h = net[0](x)
    back = net[2].weight[y] * (h > 0)
    expected = back.clamp(min=0) @ net[0].weight
    assert torch.allclose(g, expected, atol=1e-6)
    assert not any(m._backward_hooks for m in net.modules())  # hooks removed


def test_a_cell_with_the_config_of_a_finished_sibling_run_reuses_it(tmp_path):
    # the cells involved only (3 runs, not 11): k4 has random_init's config, k1 none of table1's
    reproduce("table1", "smoke", None, tmp_path / "table1", seeds=1, cells=["random_init"])
    # a run written before a config field existed (here train.compile) still matches: the field
    # takes its default
    saved = tmp_path / "table1/seed-0/random_init/config.yaml"
    saved.write_text("".join(line for line in saved.read_text().splitlines(True) if "compile:" not in line))
    text = reproduce("table4", "smoke", None, tmp_path / "table4", seeds=1, cells=["k1", "k4"])
    k4 = tmp_path / "table4/seed-0/k4"
    assert k4.is_symlink() and k4.resolve() == (tmp_path / "table1/seed-0/random_init").resolve()
    assert not (tmp_path / "table4/seed-0/k1").is_symlink()  # MCL k=1 is a different run
    assert "Reused runs" in text and "k=4 (seed 0)" in text
    # the table's k=4 row is the random-init ensemble's numbers
    with open(tmp_path / "table1/results.csv") as f:
        t1 = {r["metric"]: r["mean"] for r in csv.DictReader(f) if r["cell"] == "random_init"}
    with open(tmp_path / "table4/results.csv") as f:
        t4 = {r["metric"]: r["mean"] for r in csv.DictReader(f) if r["cell"] == "k4"}
    assert t4["oracle_acc"] == t1["oracle_acc"] and t4["ensemble_mean_acc"] == t1["ensemble_mean_acc"]
    # rerunning keeps the link; --no-reuse in a fresh folder trains the cell itself
    reproduce("table4", "smoke", None, tmp_path / "table4", seeds=1, cells=["k1", "k4"])
    assert k4.is_symlink()
    reproduce("table4", "smoke", None, tmp_path / "fresh", seeds=1, reuse=False, cells=["k4"])
    assert (
        not (tmp_path / "fresh/seed-0/k4").is_symlink()
        and (tmp_path / "fresh/seed-0/k4/metrics.json").exists()
    )


def test_bookkeeping_fields_do_not_change_the_result_key():
    from mheads.reproduce.sweep import result_key

    spec = load_spec("table1", "smoke", None)
    a = spec.cells[1].config.to_dict()
    b = {
        **a,
        "name": "other",
        "train": {**a["train"], "checkpoint_every": 7, "eval_batch_size": 13, "flush_denormal": False},
    }
    assert result_key(a) == result_key(b)
    c = {**a, "train": {**a["train"], "batch_size": a["train"]["batch_size"] + 1}}
    assert result_key(a) != result_key(c)


def test_guided_backprop_rows_show_different_classes():
    from mheads.reproduce.figures import first_of_each_class

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])  # stored class by class, like an image-folder test set
    assert first_of_each_class(labels, 3).tolist() == [0, 3, 5]
    assert first_of_each_class(labels, 9).tolist() == [0, 3, 5, 7]


def test_cells_selects_a_subset_with_what_it_starts_from(tmp_path):
    from mheads.reproduce.sweep import select_cells

    assert [
        c.name for c in select_cells(load_spec("label-split", "smoke", None), ["hinton_clusters"]).cells
    ] == ["generalist", "hinton_clusters"]
    with pytest.raises(
        ConfigError,
        match=r"--cells: table1 has no cell 'randominit'; its cells: single, "
        r"random_init",
    ):
        select_cells(load_spec("table1", "smoke", None), ["randominit"])
    text = reproduce("table1", "smoke", None, tmp_path, cells=["single"])
    assert sorted(p.name for p in (tmp_path / "seed-0").iterdir()) == ["single"]

    def seeds(text):  # row label -> (seeds column, paper's ensemble-mean column)
        rows = [[x.strip() for x in line.split("|")] for line in text.splitlines() if line.startswith("| ")]
        return {r[1]: (r[-3], r[3]) for r in rows}

    assert seeds(text)["Random init."] == ("0", "80.72")  # not run: no numbers, the paper's kept
    assert seeds(text)["Single model"][0] == "1"
    text = reproduce(
        "table1", "smoke", None, tmp_path, cells=["bagging"]
    )  # a later selection keeps the earlier rows
    assert [seeds(text)[r][0] for r in ("Single model", "Random init.", "Bagging")] == ["1", "0", "1"]
    text = reproduce(
        "table1", "smoke", None, tmp_path, cells=["single"]
    )  # also rows of cells ordered after it
    assert [seeds(text)[r][0] for r in ("Single model", "Random init.", "Bagging")] == ["1", "0", "1"]
    assert seeds((tmp_path / "results.md").read_text())["Bagging"][0] == "1"


def test_metric_values_are_percentages_for_every_accuracy():
    from mheads.reproduce.tables import metric_value

    run = {
        "ensemble_mean_acc": 0.5,
        "ensemble_mean_acc_scores": 0.25,
        "member_acc": [0.1, 0.3],
        "wall_time_s": 7.0,
    }
    assert [
        metric_value(run, m)
        for m in (
            "ensemble_mean_acc",
            "ensemble_mean_acc_scores",
            "member_acc_1",
            "member_acc_mean",
            "wall_time_s",
        )
    ] == pytest.approx([50, 25, 30, 20, 7])


def test_table_header_names_the_hardware_that_trained_the_runs(monkeypatch, tmp_path):
    import json

    from mheads.reproduce import sweep

    monkeypatch.setattr(sweep, "hardware", lambda: {"cpu": "This CPU", "cores": 2, "torch": "2.y"})
    shared = {"reused": {}, "forked": {}}
    assert "trained on This CPU, 2 cores, torch 2.y." in sweep._header(
        "cpu", "/d/cifar10-jpeg.tar.gz", [0], shared
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps({"hardware": {"cpu": "Xeon", "cores": 16, "torch": "2.x", "gpu": "NVIDIA H200"}})
    )
    shared["hardware"] = {sweep.trained_on(run), sweep.trained_on(tmp_path / "missing")}
    text = sweep._header("cpu", "/d/cifar10-jpeg.tar.gz", [0], shared)
    assert "This CPU, 2 cores, torch 2.y; Xeon, 16 cores, GPU NVIDIA H200, torch 2.x." in text
    assert "data /d/cifar10-jpeg.tar.gz," in text  # the data as given: no data set is special-cased


def test_table2_reports_what_sharing_saves_and_draws_accuracy_against_it(tmp_path):
    reproduce("table2", "smoke", None, tmp_path / "t2", cells=["independent", "conv2", "single"], reuse=False)
    with open(tmp_path / "t2" / "results.csv") as f:
        rows = {(r["cell"], r["metric"]): float(r["mean"]) for r in csv.DictReader(f) if r["seeds"] != "0"}
    # CIFAR10-Quick on 28x28 grey images: conv1 has 1*32*25 + 32 = 832 parameters, conv2 32*32*25 + 32 =
    # 25,632
    ind, conv2, single = (rows[(c, "params_k")] for c in ("independent", "conv2", "single"))
    assert ind == pytest.approx(4 * single) and conv2 == pytest.approx(ind - 3 * (832 + 25632) / 1000)
    assert rows[("independent", "shared_params_pct")] == 0
    assert rows[("conv2", "shared_params_pct")] == pytest.approx(100 * (832 + 25632) / (1000 * single))
    flops = {c: rows[(c, "train_mflops_per_image")] for c in ("independent", "conv2", "single")}
    assert flops["independent"] == pytest.approx(4 * flops["single"]) and flops["single"] < flops["conv2"]
    assert (tmp_path / "t2" / "accuracy_vs_sharing.png").is_file()


def test_a_later_seed_draws_its_figures_beside_seed_0s_not_over_them(tmp_path):
    out = tmp_path / "t2"
    reproduce("table2", "smoke", None, out, cells=["single"], reuse=False)
    first = (out / "accuracy_vs_sharing.png").read_bytes()
    reproduce("table2", "smoke", None, out, cells=["single"], reuse=False, first_seed=2)
    assert (out / "accuracy_vs_sharing.png").read_bytes() == first
    later = (out / "accuracy_vs_sharing_seed2.png").read_bytes()
    assert later[:4] == b"\x89PNG"  # before: seed 2 drew over seed 0's file and no _seed2 file existed


@pytest.mark.parametrize(
    "cells", [["conv1"], pytest.param(None, marks=pytest.mark.slow)], ids=["conv1", "every-cell"]
)
def test_table2_ilsvrc_smoke_streams_an_imagenet_layout_folder_of_varied_sizes(tmp_path, cells):
    from mheads.data.shards import write_varied_folder

    folder = write_varied_folder(tmp_path / "ilsvrc", 48, 16, 4, sizes=(60, 110), seed=2)
    reproduce("table2-ilsvrc", "smoke", str(folder), tmp_path / "out", seeds=1, cells=cells)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"ensemble", "conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "single"}
    trained = {r["cell"] for r in rows.values() if r["seeds"] != "0"}
    assert trained == set(cells or rows)
    import json

    info = json.loads((tmp_path / "out/seed-0/conv1/run.json").read_text())
    assert info["data"]["loader"] == "stream" and info["data"]["image_shape"] == [3, 64, 64]
    assert info["meta"]["architecture"] == "nin_imagenet"


def test_table6_smoke_draws_the_oracle_over_fine_tuning(tmp_path, monkeypatch):
    import mheads.reproduce.figures as figures

    drawn = {}
    real = figures.finetune_curves

    def spy(series, path, title=""):
        drawn.update(series)
        return real(series, path, title)

    monkeypatch.setattr(figures, "finetune_curves", spy)
    # two of the five fine-tuning cells (and the two runs they start from): one of each kind of start
    reproduce("table6", "smoke", None, tmp_path, seeds=1, cells=["k1", "identical_k1"])
    # each curve starts at iteration 0 from the run it fine-tunes (identical members: the single model)
    single = json.loads((tmp_path / "seed-0/single/metrics.json").read_text())
    base = json.loads((tmp_path / "seed-0/base_ensemble/metrics.json").read_text())
    assert [r["step"] for r in drawn["k=1"]] == [0, 2, 4]
    assert drawn["k=1"][0]["oracle_acc"] == base["oracle_acc"]
    assert drawn["identical members, k=1"][0]["oracle_acc"] == single["ensemble_mean_acc"]
    png = tmp_path / "finetune_curves.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    history = [json.loads(line) for line in (tmp_path / "seed-0/k1/eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [2, 4] and all("oracle_acc" in r for r in history)


def test_a_sweep_pools_its_seeds_with_an_earlier_sweeps_seeds_csv(tmp_path):
    import statistics

    from mheads.reproduce.tables import read_seed_rows

    reproduce("table1", "smoke", None, tmp_path / "a", cells=["single"])  # seed 0, elsewhere
    text = reproduce(
        "table1", "smoke", None, tmp_path / "b", first_seed=1, cells=["single"], pool_with=tmp_path / "a"
    )
    assert "seeds 0..1" in text
    rows = read_seed_rows(tmp_path / "b/seeds.csv")
    values = {
        r["seed"]: r["value"] for r in rows if r["cell"] == "single" and r["metric"] == "ensemble_mean_acc"
    }
    first = json.loads((tmp_path / "a/seed-0/single/metrics.json").read_text())
    assert values[0] == first["ensemble_mean_acc"] * 100 and set(values) == {0, 1}
    assert {(r["experiment"], r["scale"], r["data"]) for r in rows} == {("table1", "smoke", "embedded")}
    with open(tmp_path / "b/results.csv") as f:
        row = next(
            r for r in csv.DictReader(f) if r["cell"] == "single" and r["metric"] == "ensemble_mean_acc"
        )
    assert int(row["seeds"]) == 2
    assert float(row["mean"]) == pytest.approx(statistics.fmean(values.values()))
    assert float(row["std"]) == pytest.approx(statistics.stdev(values.values()))
    second = json.loads((tmp_path / "b/seed-1/single/metrics.json").read_text())
    assert float(row["wall_time_s"]) == pytest.approx(first["wall_time_s"] + second["wall_time_s"])
    # a rerun of the folder keeps the pooled seed without --pool-with, and pooling the same rows again, or the
    # folder's own file, counts nothing twice
    for again in (None, tmp_path / "a", tmp_path / "b/seeds.csv"):
        reproduce("table1", "smoke", None, tmp_path / "b", first_seed=1, cells=["single"], pool_with=again)
        assert len(read_seed_rows(tmp_path / "b/seeds.csv")) == 2 * 2  # two seeds x two metrics, one cell
    # a seed this sweep runs for one cell leaves the pooled seed of the other cells in place
    reproduce("table1", "smoke", None, tmp_path / "c", cells=["random_init"])
    reproduce(
        "table1", "smoke", None, tmp_path / "b", first_seed=0, cells=["random_init"], pool_with=tmp_path / "c"
    )
    cells = {(r["cell"], r["seed"]) for r in read_seed_rows(tmp_path / "b/seeds.csv")}
    assert cells == {("single", 0), ("single", 1), ("random_init", 0)}
    # a wrong scale, or other --set overrides, is refused, naming it
    with pytest.raises(ConfigError, match=r"another sweep: scale 'smoke' \(this sweep: 'cpu'\)"):
        reproduce("table1", "cpu", None, tmp_path / "d", cells=["single"], pool_with=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"overrides '' \(this sweep: 'optim.lr=0.002'\)"):
        reproduce(
            "table1",
            "smoke",
            None,
            tmp_path / "d",
            cells=["single"],
            pool_with=tmp_path / "a",
            overrides=["optim.lr=0.002"],
        )
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("metrics.json"))  # nothing trained
    # a sweep with overrides says so in its table, and its rows carry them
    text = reproduce("table1", "smoke", None, tmp_path / "e", cells=["single"], overrides=["optim.lr=0.002"])
    assert "Every cell with `optim.lr=0.002` (`--set`)." in text
    assert {r["overrides"] for r in read_seed_rows(tmp_path / "e")} == {"optim.lr=0.002"}


def test_pool_with_names_the_file_and_what_is_wrong_in_it(tmp_path):
    from mheads.reproduce.tables import SEED_FIELDS, read_seed_rows

    with pytest.raises(ConfigError, match="no such file"):
        read_seed_rows(tmp_path / "nothing.csv")
    (tmp_path / "results.csv").write_text("cell\n")
    with pytest.raises(ConfigError, match="predates seeds.csv"):
        read_seed_rows(tmp_path)
    (tmp_path / "seeds.csv").write_text("cell,seed,metric\nsingle,0,oracle_acc\n")
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['data', 'experiment', 'hardware', "):
        read_seed_rows(tmp_path)
    head = ",".join(SEED_FIELDS) + "\n"
    good = "table1,cpu,x.tar,,single,0,oracle_acc,1,2,h\n"
    for body, error in (
        ("table1,cpu,x.tar,,single,x,oracle_acc,1,2,h\n", "line 2"),
        ("table1,cpu,x.tar,,single,0\n", "line 2"),  # a short line
        (good + good, "lines 2 and 3 both hold cell 'single', seed 0, oracle_acc"),
    ):
        (tmp_path / "seeds.csv").write_text(head + body)
        with pytest.raises(ConfigError, match=error):
            read_seed_rows(tmp_path)
    # a seeds.csv from before the overrides column reads as a sweep without overrides
    (tmp_path / "seeds.csv").write_text(head.replace("overrides,", "") + good.replace(",,", ","))
    assert read_seed_rows(tmp_path)[0]["overrides"] == ""


def test_the_seeds_column_names_a_metric_that_averages_fewer_seeds(tmp_path):
    from mheads.reproduce.tables import collect, write_tables

    spec = load_spec("table1", "smoke", None)
    rows = [
        {"cell": "single", "seed": seed, "metric": metric, "value": 70.0 + seed, "wall_time_s": 1.0}
        for seed in (0, 1)
        for metric in spec.metrics
        if seed == 0 or metric != "oracle_acc"
    ]
    text = write_tables(spec, collect(spec, rows), tmp_path, "header")
    line = next(x for x in text.splitlines() if x.startswith("| Single"))
    assert re.search(r"\|\s+2 \(oracle_acc: 1\) \|", line) and "70.50 ± 0.71" in line
    whole = rows + [{**rows[0], "seed": 1, "metric": "oracle_acc"}]
    line = next(
        x
        for x in write_tables(spec, collect(spec, whole), tmp_path, "h").splitlines()
        if x.startswith("| Single")
    )
    assert re.search(r"\|\s+2 \|", line) and "oracle_acc:" not in line


def test_cifar10_quick_scales_follow_caffes_bias_rate_and_the_old_recipe_stays_reachable():
    for scale in ("cpu", "paper"):
        assert {c.config.optim.bias_lr_mult for c in load_spec("table1", scale, None).cells} == {2}
        old = load_spec("table1", scale, None, ["optim.bias_lr_mult=1"])
        assert {c.config.optim.bias_lr_mult for c in old.cells} == {1}
        assert {c.config.optim.bias_lr_mult for c in load_spec("table2-nin", scale, None).cells} == {1}


def test_a_finished_run_of_other_optimizer_settings_is_refused(tmp_path):
    reproduce("table1", "smoke", None, tmp_path, cells=["single"])
    (tmp_path / "seeds.csv").unlink()  # which refuses to pool rows of other overrides on its own
    with pytest.raises(ConfigError, match=r"optim.bias_lr_mult: 1.0 there, 2 here"):
        reproduce("table1", "smoke", None, tmp_path, cells=["single"], overrides=["optim.bias_lr_mult=2"])
