"""The task run's figures (mheads.report.task_figures): the training curves drawn from an evaluation log."""

from matplotlib.image import imread

from mheads.report.task_figures import task_curves


def _history(wins: bool):
    rows = [{"step": s, "train_loss": 1.0 / s, "rmse": 0.5, "member_rmse": [0.6, 0.7]} for s in (10, 20)]
    return [{**r, "win_fraction": [0.4, 0.6]} if wins else r for r in rows]


def test_task_curves_add_a_win_fraction_panel_for_assigning_losses(tmp_path):
    with_wins = imread(task_curves(_history(True), ["rmse"], tmp_path / "w.png"))
    without = imread(task_curves(_history(False), ["rmse"], tmp_path / "n.png"))
    assert with_wins.shape[0] == without.shape[0] and with_wins.shape[1] > without.shape[1]
