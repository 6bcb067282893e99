"""Example a: the multimodal regression's data, and MCL against independent members at smoke size."""

import pytest
import torch

from mheads.experiments.any_task import multimodal, train_multimodal


def test_data_shapes_modes_and_determinism():
    x, y = multimodal.sample(300, 0)
    assert x.shape == (300, 1) and y.shape == (300, 1) and x.dtype == y.dtype == torch.float32
    assert torch.equal(y, multimodal.sample(300, 0)[1]) and not torch.equal(y, multimodal.sample(300, 1)[1])
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    points, weights = multimodal.modes(torch.tensor([-0.5, 0.5]))
    assert torch.allclose(weights, torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    assert points[0].tolist() == pytest.approx([-1.0 + 0.8, -1.0 - 0.8, 1.0])  # sin(-pi/2) = -1
    draws = multimodal.true_samples(torch.tensor([-0.5, 0.5]), 3000, 1)
    assert draws.shape == (2, 3000, 1)
    # x = -0.5: modes -0.2 and -1.8 only; x = 0.5: a third of the draws near 3.0
    assert float((draws[0] > 1.5).float().mean()) == 0.0
    assert float((draws[1] > 2.5).float().mean()) == pytest.approx(1 / 3, abs=0.04)


def test_mcl_hypotheses_reach_the_modes_independent_members_do_not():
    independent = train_multimodal.run("independent", "smoke", 0)
    mcl = train_multimodal.run("mcl_scored", "smoke", 0)
    # measured: oracle_error 0.079 against 0.870, emd 0.24 against 0.90 (smoke, seed 0)
    assert mcl["oracle_error"] < 0.3 * independent["oracle_error"], (mcl, independent)
    assert mcl["emd"] < 0.5 * independent["emd"], (mcl, independent)
