import subprocess
import sys

from mheads.report.figures import assignment_heatmap, heatmap_grid, training_curves


def test_figures_are_written_as_png(tmp_path):
    a = [[0.75, 0.1], [0.25, 0.9]]
    history = [{"step": s, "train_loss": 1.0 / s, "ensemble_mean_acc": 0.5, "oracle_acc": 0.7,
                "member_acc": [0.4, 0.45]} for s in (1, 2)]
    for path in (assignment_heatmap(a, ["x", "y"], tmp_path / "h.png"),
                 heatmap_grid([("a", a), ("b", a)], ["x", "y"], tmp_path / "g.png"),
                 training_curves(history, tmp_path / "sub" / "c.png", title="t")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drawing_leaves_the_process_matplotlib_backend_alone(tmp_path):
    """A user's process (a notebook, a GUI) keeps its backend: importing and drawing select none."""
    code = f"""
import matplotlib
matplotlib.use("svg")
import mheads.report.figures as f, mheads.cli.commands
f.assignment_heatmap([[1.0]], ["x"], {str(tmp_path / 'h.png')!r})
import matplotlib.pyplot as plt
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [], plt.get_fignums()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"MPLBACKEND": ""})
    assert done.returncode == 0, done.stderr
