"""mheads.tasks.regression: point and Gaussian heads against float64 loops; the variance decomposition against
its definition; the oracle and coverage on hand-computed cases."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.ensemble.losses import ENSEMBLE_LOSS_NAMES, ENSEMBLE_LOSSES
from mheads.tasks import TaskMetrics, regression
from properties import property_settings

PROPERTY = property_settings(60)


def outputs(m=3, b=5, width=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, b, width, generator=g, dtype=torch.float64), torch.randn(
        b, width // 2 or 1, generator=g, dtype=torch.float64
    )


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize("variance", ["softplus", "exp"])
def test_gaussian_member_losses_match_a_loop(variance):
    out, y = outputs()
    task = regression(2, head="gaussian", variance=variance, min_variance=1e-3)
    got = task.member_losses(out, y)
    for m in range(3):
        for i in range(5):
            want = 0.0
            for d in range(2):
                raw = float(out[m, i, 2 + d])
                var = (softplus(raw) if variance == "softplus" else math.exp(raw)) + 1e-3
                error = float(y[i, d]) - float(out[m, i, d])
                want += 0.5 * (math.log(2 * math.pi) + math.log(var) + error**2 / var)
            assert got[m, i].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_point_member_losses_and_averaged_match_a_loop(kind):
    out, y = outputs(width=2)
    y = torch.randn(5, 2, dtype=torch.float64)
    task = regression(2, loss=kind)
    err = (lambda e: e * e) if kind == "mse" else abs
    got = task.member_losses(out, y)
    averaged = task.combined_loss("averaged", out, y)
    for i in range(5):
        for m in range(3):
            want = sum(err(float(y[i, d]) - float(out[m, i, d])) for d in range(2)) / 2
            assert got[m, i].item() == pytest.approx(want, rel=1e-12)
        mean = [sum(float(out[m, i, d]) for m in range(3)) / 3 for d in range(2)]
        assert averaged[i].item() == pytest.approx(sum(err(float(y[i, d]) - mean[d]) for d in range(2)) / 2)


def test_variance_decomposition_is_the_law_of_total_variance():
    """aleatoric + epistemic = the mixture's variance, computed from its definition E[y^2] - E[y]^2 with the
    mixture density integrated numerically on a grid."""
    out, _ = outputs(m=4, b=3, width=2, seed=1)
    task = regression(1, head="gaussian")
    combined = task.combine(out)
    mean, var = task.moments(out)
    grid = torch.linspace(-30, 30, 200001, dtype=torch.float64)
    for i in range(3):
        density = (
            sum(
                torch.exp(-((grid - mean[m, i, 0]) ** 2) / (2 * var[m, i, 0]))
                / torch.sqrt(2 * math.pi * var[m, i, 0])
                for m in range(4)
            )
            / 4
        )
        first = torch.trapezoid(grid * density, grid)
        second = torch.trapezoid(grid * grid * density, grid)
        assert combined.mean[i, 0].item() == pytest.approx(first.item(), abs=1e-8)
        assert combined.variance[i, 0].item() == pytest.approx((second - first**2).item(), abs=1e-7)
        assert combined.aleatoric[i, 0].item() == pytest.approx(var[:, i, 0].mean().item())
        mu = [mean[m, i, 0].item() for m in range(4)]
        assert combined.epistemic[i, 0].item() == pytest.approx(sum((v - sum(mu) / 4) ** 2 for v in mu) / 4)


def test_mixture_nll_matches_a_loop_and_coverage_of_a_hand_case():
    out = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]], dtype=torch.float64)  # two members, one example
    task = regression(1, head="gaussian", variance="exp", min_variance=1e-12, levels=(0.5, 0.8, 0.95))
    y = torch.tensor([[1.0]], dtype=torch.float64)
    pdf = sum(math.exp(-0.5 * (1.0 - mu) ** 2) / math.sqrt(2 * math.pi) for mu in (0.0, 2.0)) / 2
    assert task.combined_loss("mixture_nll", out, y).item() == pytest.approx(-math.log(pdf), rel=1e-10)
    metrics = task.metrics(out, y)
    assert metrics["mixture_nll"] == pytest.approx(-math.log(pdf), rel=1e-10)
    assert metrics["coverage"] == {"0.5": 1.0, "0.8": 1.0, "0.95": 1.0}  # y at the mixture's median
    # y = 3.5: F = (Phi(3.5) + Phi(1.5)) / 2 = 0.9330: outside the 50% and 80% intervals, inside 95%.
    metrics = task.metrics(out, torch.tensor([[3.5]], dtype=torch.float64))
    assert metrics["coverage"] == {"0.5": 0.0, "0.8": 0.0, "0.95": 1.0}
    assert metrics["aleatoric"] == pytest.approx(1.0) and metrics["epistemic"] == pytest.approx(1.0)


def test_coverage_is_calibrated_on_samples_from_the_mixture():
    g = torch.Generator().manual_seed(0)
    n = 4000
    out = torch.randn(3, n, 2, generator=g, dtype=torch.float64)
    task = regression(1, head="gaussian")
    mean, var = task.moments(out)
    pick = torch.randint(0, 3, (n,), generator=g)
    y = mean[pick, torch.arange(n), 0] + var[pick, torch.arange(n), 0].sqrt() * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    coverage = task.metrics(out, y.unsqueeze(-1))["coverage"]
    for level, got in coverage.items():
        assert abs(got - float(level)) < 4 * math.sqrt(0.25 / n), (level, got)


def test_oracle_and_rmse_on_a_hand_case():
    out = torch.tensor([[[0.0], [0.0]], [[1.0], [1.0]], [[3.0], [3.0]]], dtype=torch.float64)  # (3, 2, 1)
    y = torch.tensor([2.5, 0.5], dtype=torch.float64)
    task = regression(1)
    oracle = task.oracle(out, y)
    assert oracle.member.tolist() == [2, 0]  # example 1: members 0 and 1 tie, the lower index wins
    assert oracle.error.tolist() == [0.25, 0.25]
    metrics = task.metrics(out, y)
    assert metrics["oracle_rmse"] == pytest.approx(0.5)
    mean = 4 / 3
    assert metrics["rmse"] == pytest.approx(math.sqrt(((2.5 - mean) ** 2 + (0.5 - mean) ** 2) / 2))
    assert metrics["mae"] == pytest.approx((abs(2.5 - mean) + abs(0.5 - mean)) / 2)
    want = [math.sqrt((2.5**2 + 0.25) / 2), math.sqrt((2.25 + 0.25) / 2), math.sqrt((0.25 + 2.5**2) / 2)]
    assert metrics["member_rmse"] == pytest.approx(want)


def test_every_ensemble_loss_runs_and_cmcl_is_refused():
    out, y = outputs()
    task = regression(2, head="gaussian")
    for name in ENSEMBLE_LOSS_NAMES:
        params = {"k": 1 if ENSEMBLE_LOSSES[name].single_winner else 2, "temperature": 0.3}
        if ENSEMBLE_LOSSES[name].scores:
            params["score_logits"] = torch.zeros(3, 5, dtype=torch.float64)
        if name == "cmcl":
            with pytest.raises(ValueError, match="confident MCL needs a categorical output"):
                task.loss(name, out, y, **params)
            continue
        x = out.clone().requires_grad_(True)
        task.loss(name, x, y, **params).loss.backward()
        assert torch.isfinite(x.grad).all()
    for name in ("averaged", "mixture_nll"):
        assert torch.isfinite(task.loss(name, out, y).loss)
    with pytest.raises(ValueError, match="no per-member weights"):
        task.loss("averaged", out, y, weights=torch.ones(3, 5))
    with pytest.raises(ValueError, match="k: got 4; expected an integer in 1..3"):
        task.loss("averaged", out, y, k=4)  # refused like every other loss, though unused


def test_variance_floor_and_argument_checks():
    task = regression(1, head="gaussian", variance="exp", min_variance=0.01)
    out = torch.tensor([[[0.0, -1e4]]], dtype=torch.float64)
    assert task.moments(out)[1].item() == pytest.approx(0.01)
    assert math.isfinite(task.member_losses(out, torch.tensor([1.0], dtype=torch.float64)).item())
    assert regression(3).head_width() == 3 and regression(3, head="gaussian").head_width() == 6
    with pytest.raises(ValueError, match="head: got 'mixture'"):
        regression(head="mixture")
    with pytest.raises(ValueError, match="min_variance: got 0"):
        regression(min_variance=0)
    with pytest.raises(ValueError, match="expected \\(M, B, 2\\)"):
        regression(1, head="gaussian").member_losses(torch.zeros(2, 3, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="target: got torch.int64"):
        regression(1).member_losses(torch.zeros(2, 3, 1), torch.zeros(3, dtype=torch.int64))


def test_streamed_metrics_equal_the_whole_set():
    out, y = outputs(b=11, seed=4)
    task = regression(2, head="gaussian")
    acc = TaskMetrics(task)
    for lo in range(0, 11, 4):
        acc.update(out[:, lo : lo + 4], y[lo : lo + 4])
    assert acc.compute() == task.metrics(out, y)


@st.composite
def gaussians(draw):
    m, b = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    values = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=m * b * 2, max_size=m * b * 2))
    target = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=b, max_size=b))
    return (
        torch.tensor(values, dtype=torch.float64).view(m, b, 2),
        torch.tensor(target, dtype=torch.float64),
    )


@PROPERTY
@given(gaussians(), st.randoms(use_true_random=False))
def test_laws_min_le_mixture_le_mean_convexity_and_permutation(case, rnd):
    out, y = case
    task = regression(1, head="gaussian")
    nll = task.member_losses(out, y)
    mixture = task.combined_loss("mixture_nll", out, y)
    assert (nll.min(dim=0).values <= mixture + 1e-9).all() and (mixture <= nll.mean(dim=0) + 1e-9).all()
    point = regression(1)
    mse = point.member_losses(out[..., :1], y)
    assert (point.combined_loss("averaged", out[..., :1], y) <= mse.mean(dim=0) + 1e-9).all()
    perm = list(range(out.shape[0]))
    rnd.shuffle(perm)
    assert torch.allclose(task.combined_loss("mixture_nll", out[perm], y), mixture, rtol=1e-12, atol=1e-12)
    a, b = task.metrics(out, y), task.metrics(out[perm], y)
    assert a["mixture_nll"] == pytest.approx(b["mixture_nll"], rel=1e-12)
    assert a["oracle_rmse"] == b["oracle_rmse"] and a["coverage"] == pytest.approx(b["coverage"])
