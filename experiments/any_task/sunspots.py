"""Yearly sunspot numbers 1700-2008 (statsmodels' `sunspots` data set, shipped with statsmodels) as a
forecasting task (issue 32, example b): from `t_in` years predict the next `t_out`.

`load(t_in, t_out, test_years)` -> `{"train": TensorPairs, "test": TensorPairs}` of inputs `(1, t_in)` and
targets `(t_out,)`, float32. Split by time: the last `test_years` years are the test period; a training window
lies wholly before it, a test window's targets wholly inside it (its inputs may reach back into the training
years, as a forecast made at that time would). Values are normalised with the training years' mean and
standard deviation (`stats`), so no test value informs the scaling.
"""

from __future__ import annotations

import numpy as np
import torch

from mheads.core.checks import check_int
from mheads.data.pairs import TensorPairs


def series() -> np.ndarray:
    """The 309 yearly values (float64), 1700 first."""
    import statsmodels.api as sm  # optional: only this example needs it

    return np.array(sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"], dtype=np.float64)  # writable


def windows(values: np.ndarray, t_in: int, t_out: int, first_target: int, last_target: int) -> TensorPairs:
    """Every window whose targets are `values[t : t + t_out]` with `first_target <= t` and
    `t + t_out <= last_target`, inputs `values[t - t_in : t]` (`t >= t_in`)."""
    starts = range(max(first_target, t_in), last_target - t_out + 1)
    x = np.stack([values[t - t_in : t] for t in starts])[:, None, :]
    y = np.stack([values[t : t + t_out] for t in starts])
    return TensorPairs(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)))


def load(t_in: int = 24, t_out: int = 4, test_years: int = 60) -> tuple[dict[str, TensorPairs], dict]:
    """The windowed, normalised splits and `stats` {"mean", "std", "split_year"}."""
    check_int("t_in", t_in, 1)
    check_int("t_out", t_out, 1)
    raw = series()
    check_int("test_years", test_years, t_out, len(raw) - t_in - t_out)
    split = len(raw) - test_years
    mean, std = float(raw[:split].mean()), float(raw[:split].std())
    values = (raw - mean) / std
    splits = {
        "train": windows(values, t_in, t_out, 0, split),
        "test": windows(values, t_in, t_out, split, len(raw)),
    }
    return splits, {"mean": mean, "std": std, "split_year": 1700 + split}
