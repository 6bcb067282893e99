"""The small held-out MCL run that the ``mheads eval`` / ``mheads predict`` tests train once a module
(``tests/train/test_analysis.py``, ``tests/infer/test_eval_predict_conventions.py``): 3 members on 5 classes
of the embedded data, 600 training examples of which a tenth (60) is held out for temperature scaling and the
OOD threshold, 100 test examples."""

from __future__ import annotations

from pathlib import Path

from mheads.config import config_from_settings
from mheads.train.loop import fit


def held_out_settings(iterations: int) -> dict:
    """The run's settings: ``iterations`` steps of 32, evaluated once, at the end."""
    return {
        "model.members": 3,
        "loss.name": "mcl",
        "data.classes": [0, 1, 2, 3, 4],
        "data.val_fraction": 0.1,
        "data.train_limit": 600,
        "data.test_limit": 100,
        "train.iterations": iterations,
        "train.batch_size": 32,
        "train.eval_every": iterations,
        "train.device": "cpu",
        "train.threads": 1,
        "optim.lr": 0.01,
    }


def train_held_out_run(out: Path, iterations: int) -> dict:
    """Train the run into ``out``; returns fit's final metrics."""
    return fit(config_from_settings(held_out_settings(iterations)), out, progress=False)
