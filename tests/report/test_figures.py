from memcap import run_capped
from mheads.report.figures import assignment_heatmap, heatmap_grid, label_offsets, training_curves


def test_figures_are_written_as_png(tmp_path):
    a = [[0.75, 0.1], [0.25, 0.9]]
    history = [
        {
            "step": s,
            "train_loss": 1.0 / s,
            "ensemble_mean_acc": 0.5,
            "oracle_acc": 0.7,
            "member_acc": [0.4, 0.45],
        }
        for s in (1, 2)
    ]
    for path in (
        assignment_heatmap(a, ["x", "y"], tmp_path / "h.png"),
        heatmap_grid([("a", a), ("b", a)], ["x", "y"], tmp_path / "g.png"),
        training_curves(history, tmp_path / "sub" / "c.png", title="t"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drawing_leaves_the_process_matplotlib_backend_alone(tmp_path):
    """A user's process (a notebook, a GUI) keeps its backend: importing and drawing select none."""
    code = f"""
import sys
assert "matplotlib" not in sys.modules and "mheads.report.figures" not in sys.modules, "imported already"
import matplotlib
matplotlib.use("svg")
import mheads.report.figures as f, mheads.cli.commands
f.assignment_heatmap([[1.0]], ["x"], {str(tmp_path / "h.png")!r})
import matplotlib.pyplot as plt
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [], plt.get_fignums()
"""
    done = run_capped(["-c", code], env={"MPLBACKEND": ""}, timeout=60)  # a child of a process without them
    assert done.returncode == 0, done.stderr


def test_labels_of_crowded_points_take_different_slots():
    # NiN's split sweep: four points in the first 10% of the axis, three near 60%, two near 100%
    xs = [0.0, 5.7, 8.8, 10.3, 55.6, 59.3, 63.0, 95.5, 99.2]
    offsets = label_offsets(xs)
    for group in (offsets[0:4], offsets[4:7], offsets[7:9]):
        assert len(set(group)) == len(group)  # no two neighbours print at the same place
    assert offsets[0] == offsets[4] == offsets[7]  # a point far from the previous one starts over
    assert label_offsets([0.0, 50.0, 100.0]) == [label_offsets([1.0])[0]] * 3
