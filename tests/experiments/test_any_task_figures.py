"""The any-task figures drawn from small tables made here (no training): the text example's `accuracy.png` and
its checks of the columns and metrics it reads."""

import csv

import pytest

from mheads.experiments.any_task import figures, record

METRICS = ("ensemble_acc", "oracle_acc", "member_acc", "nll", "clear_ensemble_acc", "ambiguous_oracle_acc")


def _seed_rows(losses=("independent", "mcl"), metrics=METRICS, seeds=(0, 1)):
    return [
        {
            "experiment": "any-task-text",
            "scale": "smoke",
            "data": "text.make",
            "overrides": "",
            "cell": loss,
            "seed": seed,
            "metric": metric,
            "value": 50.0 + 10 * i + seed,
            "wall_time_s": 1.0,
            "hardware": "test",
        }
        for i, loss in enumerate(losses)
        for seed in seeds
        for metric in metrics
    ]


def _write(folder, rows, drop=None):
    fields = [f for f in record.SEED_FIELDS if f != drop]
    with open(folder / "seeds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_text_values_keys_losses_and_metrics_by_seed():
    values = figures.text_values([{k: str(v) for k, v in r.items()} for r in _seed_rows()])
    assert values[("independent", "oracle_acc")] == {0: 50.0, 1: 51.0}
    assert values[("mcl", "ambiguous_oracle_acc")] == {0: 60.0, 1: 61.0}


@pytest.mark.parametrize(
    # IHDR at 110 dpi: two panels 10.4 in wide, one 6.2 in, and 0.6 in a panel per cell past the fourth
    "parts, losses, width",
    [(True, 2, 1144), (False, 2, 682), (True, 8, 1672)],
)
def test_text_figure_writes_accuracy_png(tmp_path, parts, losses, width):
    metrics = METRICS if parts else METRICS[:4]  # the part metrics' panel only where they are recorded
    _write(tmp_path, _seed_rows(losses=figures.TEXT_LOSSES[:losses], metrics=metrics))
    path = figures.text_figure(tmp_path)
    assert path == tmp_path / "accuracy.png"
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert int.from_bytes(png[16:20], "big") == width


def test_the_figures_cli_draws_text(tmp_path, capsys):
    _write(tmp_path, _seed_rows(losses=("mcl_ce", "rwta"), seeds=(0,)))
    figures.main(["text", str(tmp_path)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").is_file()


@pytest.mark.parametrize("column", ["cell", "seed", "metric", "value", "scale"])
def test_text_figure_names_a_missing_column(tmp_path, column):
    _write(tmp_path, _seed_rows(), drop=column)
    with pytest.raises(ValueError, match=f"column '{column}' is missing"):
        figures.text_figure(tmp_path)
    assert not (tmp_path / "accuracy.png").exists()


def test_text_figure_names_a_missing_metric_and_unknown_cells(tmp_path):
    _write(tmp_path, [r for r in _seed_rows() if (r["cell"], r["metric"]) != ("mcl", "member_acc")])
    with pytest.raises(ValueError, match="cell 'mcl' has no metric 'member_acc'"):
        figures.text_figure(tmp_path)
    _write(tmp_path, _seed_rows(losses=("gaussian",)))
    with pytest.raises(ValueError, match="column 'cell' has none of"):
        figures.text_figure(tmp_path)
