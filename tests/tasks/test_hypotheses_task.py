"""mheads.tasks.multi_hypothesis (resilient MCL) and mheads.tasks.transport (earth mover's distances)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.tasks import multi_hypothesis, sliced_wasserstein, wasserstein_1d, with_scores
from properties import property_settings

PROPERTY = property_settings(60)
F64 = torch.float64


# ---------------------------------------------------------------- transport


def test_wasserstein_1d_known_answers():
    t = lambda *v: torch.tensor(v, dtype=F64)  # noqa: E731
    assert wasserstein_1d(t(0.0), t(1.0)).item() == pytest.approx(1.0)
    assert wasserstein_1d(t(0.0), t(3.0), p=2).item() == pytest.approx(3.0)
    # Mass 1/4 at 0 and 3/4 at 1 against 1/2 at each: move 1/4 of the mass by 1.
    assert wasserstein_1d(t(0.0, 1.0), t(1.0, 0.0), t(0.25, 0.75)).item() == pytest.approx(0.25)
    assert wasserstein_1d(t(0.0, 1.0), t(1.0, 0.0), t(0.25, 0.75), p=2).item() == pytest.approx(0.5)
    # Weights need not be normalised; two points against three samples.
    got = wasserstein_1d(t(0.0, 2.0), t(0.0, 1.0, 2.0), t(2.0, 2.0))
    assert got.item() == pytest.approx(1 / 3)  # 1/6 of the mass from each end moves to 1


def cdf_reference(x, wx, y, wy):
    """W1 = int |F(t) - G(t)| dt, F and G step functions, summed between consecutive support points."""
    wx, wy = [w / sum(wx) for w in wx], [w / sum(wy) for w in wy]
    points = sorted(set(x) | set(y))
    total = 0.0
    for a, b in zip(points, points[1:]):
        f = sum(w for v, w in zip(x, wx) if v <= a)
        g = sum(w for v, w in zip(y, wy) if v <= a)
        total += abs(f - g) * (b - a)
    return total


@PROPERTY
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 10**6))
def test_wasserstein_1d_is_the_area_between_the_cdfs(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(3, n, generator=g, dtype=F64), torch.randn(3, k, generator=g, dtype=F64)
    wx, wy = torch.rand(3, n, generator=g, dtype=F64) + 0.01, torch.rand(3, k, generator=g, dtype=F64) + 0.01
    got = wasserstein_1d(x, y, wx, wy)
    for row in range(3):
        want = cdf_reference(x[row].tolist(), wx[row].tolist(), y[row].tolist(), wy[row].tolist())
        assert got[row].item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert torch.allclose(wasserstein_1d(y, x, wy, wx), got, rtol=1e-12, atol=1e-14)  # symmetric
    # Equal counts and weights: W_p is the sorted matching.
    same = torch.randn(3, n, generator=g, dtype=F64)
    match = (x.sort().values - same.sort().values).abs().pow(3).mean(dim=-1).pow(1 / 3)
    assert torch.allclose(wasserstein_1d(x, same, p=3), match, rtol=1e-10)


def test_sliced_wasserstein_is_exact_in_1d_and_known_for_a_translation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 5, 1, generator=g, dtype=F64), torch.randn(4, 7, 1, generator=g, dtype=F64)
    w = torch.rand(4, 5, generator=g, dtype=F64)
    exact = wasserstein_1d(x[..., 0], y[..., 0], w)
    assert torch.allclose(sliced_wasserstein(x, y, w, projections=3), exact, rtol=1e-12)
    # A translation by v: every direction's W1 is |<theta, v>|, the slice average is their mean.
    points = torch.randn(6, 3, generator=g, dtype=F64)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    got = sliced_wasserstein(points, points + v, projections=50, generator=torch.Generator().manual_seed(9))
    theta = torch.randn(50, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    theta = theta / theta.norm(dim=-1, keepdim=True)
    assert got.item() == pytest.approx((theta @ v).abs().mean().item(), rel=1e-10)
    assert sliced_wasserstein(points, points).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- the task


def hand_case():
    hyps = torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]], [[1.0, 1.0]]], dtype=F64)  # (3, 1, 2)
    scores = torch.tensor([[0.0], [math.log(3.0)], [-math.log(3.0)]], dtype=F64)  # sigmoids 1/2, 3/4, 1/4
    return with_scores(hyps, scores), torch.tensor([[1.0, 2.0]], dtype=F64)


def test_member_losses_combine_and_metrics_on_a_hand_case():
    out, y = hand_case()
    task = multi_hypothesis(2)
    assert task.head_width() == 3
    assert task.member_losses(out, y)[:, 0].tolist() == pytest.approx([5.0, 8.0, 1.0])
    assert multi_hypothesis(2, distance="l2").member_losses(out, y)[:, 0].tolist() == pytest.approx(
        [math.sqrt(5), math.sqrt(8), 1.0]
    )
    combined = task.combine(out)
    assert combined.weights[:, 0].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 6])
    assert combined.mean()[0].tolist() == pytest.approx([3 / 2 + 1 / 6, 2 + 1 / 6])
    metrics = task.metrics(out, y)
    assert metrics["oracle_error"] == pytest.approx(1.0)  # minADE: hypothesis 2 at distance 1
    assert metrics["distortion"] == pytest.approx(5 / 3 + 8 / 2 + 1 / 6)
    assert metrics["weighted_mean_error"] == pytest.approx(math.hypot(5 / 3 - 1, 13 / 6 - 2))
    assert task.oracle(out, y).member.tolist() == [2]


def _switched_off(member: int, off: float):
    """`hand_case` with `member`'s score logit `off` (target (1, 2): member 2 wins, member 1 is farthest)."""
    out, y = hand_case()
    out = out.clone()
    out[member, 0, 2] = off
    return out, y


@pytest.mark.parametrize("member", [1, 2])
def test_a_minus_inf_score_switches_a_hypothesis_off_on_metrics_the_oracle_and_the_loss(member):
    """A -inf score logit is a weight of 0, scored as -1e300 (sigmoid 0 in float64) is: metrics, TaskMetrics
    and the oracle (which may still pick the hypothesis) were refused as non-finite, mcl_scored was NaN."""
    from mheads.tasks import TaskMetrics

    task = multi_hypothesis(2)
    out, y = _switched_off(member, -math.inf)
    finite = _switched_off(member, -1e300)[0]
    assert task.combine(out).weights[member, 0] == 0.0
    assert task.metrics(out, y) == task.metrics(finite, y)
    acc = TaskMetrics(task)
    acc.update(out, y)
    assert acc.compute() == task.metrics(finite, y)
    assert task.oracle(out, y).member.tolist() == task.oracle(finite, y).member.tolist() == [2]
    out.requires_grad_(True)
    result = task.loss("mcl_scored", out, y)
    # Never assigned, as with a bagging weight of 0 (member 2, the closest, was: the loss was inf); costs 0.
    left_out = torch.ones(3, 1, dtype=F64)
    left_out[member] = 0.0
    assert result.assignment[:, 0].tolist() == ([False, False, True] if member == 1 else [True, False, False])
    assert result.loss.item() == task.loss("mcl_scored", finite, y, weights=left_out).loss.item()
    result.loss.backward()
    assert torch.isfinite(out.grad).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_plus_inf_scores_and_every_score_minus_inf_are_refused(bad):
    from mheads.ensemble.metrics import NonFiniteOutputs

    task = multi_hypothesis(2)
    out, y = _switched_off(1, bad)
    with pytest.raises(NonFiniteOutputs, match=r"^non-finite outputs in member 1 \(1 of 1 examples\): NaN"):
        task.metrics(out, y)
    out[:, 0, 2] = -math.inf  # every hypothesis off: the weights have no normalisation
    with pytest.raises(NonFiniteOutputs, match=r"member 0 .*, member 1 .*, member 2 .*is allowed where some"):
        task.metrics(out, y)
    assert task.oracle(out, y).member.tolist() == [-1]
    assert task.loss("mcl_scored", out, y).loss.item() == math.inf  # the closest is assigned: training stops


def _switched_off_members(members=4, off=(0, 2)):
    """The reviewer's setup: a linear hypothesis and score per member on 3 features, `off` members' scores
    -inf (a model's switch), and 32 targets (D = 1)."""
    torch.manual_seed(0)
    heads = torch.nn.ModuleList(torch.nn.Linear(3, 2) for _ in range(members))
    x, y = torch.randn(32, 3), torch.randn(32, 1)

    def forward():
        out = torch.stack([head(x) for head in heads])  # (M, B, D + 1)
        keep = torch.ones(members, 1, 1, dtype=torch.bool)
        keep[list(off)] = False
        return torch.where(keep | (torch.arange(2) == 0), out, -math.inf)

    return heads, forward, y


def test_mcl_scored_trains_with_hypotheses_switched_off():
    """4 members, 0 and 2 switched off: a switched-off hypothesis that was the closest won the example and
    the loss was inf (training stopped at iteration 0). Now the others share the examples."""
    heads, forward, y = _switched_off_members()
    task = multi_hypothesis(1)
    for _ in range(5):  # plain gradient steps (torch.optim's first optimizer costs ~1.5 s of imports)
        heads.zero_grad()
        result = task.loss("mcl_scored", forward(), y)
        assert math.isfinite(result.loss.item())
        assert not result.assignment[[0, 2]].any() and result.assignment[[1, 3]].sum(dim=0).eq(1).all()
        result.loss.backward()
        with torch.no_grad():
            for p in heads.parameters():
                assert torch.isfinite(p.grad).all()
                p -= 0.05 * p.grad


@pytest.mark.slow
def test_fit_trains_with_hypotheses_switched_off(tmp_path):
    """The reviewer's run through mheads.fit: NumericalFault 'non-finite loss at iteration 0 in member 0,
    member 2' before."""
    import itertools

    import mheads
    from mheads.data.pairs import TensorPairs

    class Member(torch.nn.Module):
        def __init__(self, off: bool) -> None:
            super().__init__()
            self.linear, self.off = torch.nn.Linear(3, 2), off

        def forward(self, x):
            out = self.linear(x)
            return torch.cat([out[:, :1], out[:, 1:] - math.inf], dim=1) if self.off else out

    count = itertools.count()
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    result = mheads.fit(
        lambda: Member(next(count) in (0, 2)),
        TensorPairs(x, x.sum(1, keepdim=True) + torch.where(torch.rand(64, 1) < 0.5, -1.0, 1.0)),
        out=tmp_path / "run",
        task=multi_hypothesis(1),
        settings={
            "loss.name": "mcl_scored",
            "model.members": 4,
            "train.iterations": 4,
            "train.batch_size": 16,
            "train.eval_every": 4,
        },
    )
    assert result.metrics["iterations"] == 4 and math.isfinite(result.metrics["oracle_error"])


def test_scored_mcl_is_wta_plus_the_score_bce_and_trains_the_score_column():
    g = torch.Generator().manual_seed(1)
    out = torch.randn(3, 6, 3, generator=g, dtype=F64, requires_grad=True)
    y = torch.randn(6, 2, generator=g, dtype=F64)
    task = multi_hypothesis(2)
    result = task.loss("mcl_scored", out, y, score_weight=0.5)
    d = ((out[..., :2] - y) ** 2).sum(-1).detach()
    won = d == d.min(dim=0).values
    s = out[..., 2].detach()
    bce = -(won * torch.log(torch.sigmoid(s)) + (~won) * torch.log(1 - torch.sigmoid(s)))
    assert result.loss.item() == pytest.approx(d.min(dim=0).values.mean().item() + 0.5 * bce.mean().item())
    assert torch.equal(result.assignment, won)
    result.loss.backward()
    assert (out.grad[..., 2] != 0).all()
    plain = out.detach().clone().requires_grad_(True)
    task.loss("mcl", plain, y).loss.backward()
    assert (plain.grad[..., 2] == 0).all()  # without scores the score column learns nothing


def test_emd_exact_in_1d_and_sliced_beyond():
    out = with_scores(torch.tensor([[[0.0]], [[2.0]]], dtype=F64), torch.zeros(2, 1, dtype=F64))
    samples = torch.tensor([[[0.0], [0.0], [2.0], [2.0]]], dtype=F64)
    task = multi_hypothesis(1)
    assert task.metrics(out, torch.zeros(1, 1, dtype=F64), samples=samples)["emd"] == pytest.approx(0.0)
    shifted = task.metrics(out, torch.zeros(1, 1, dtype=F64), samples=samples + 1)["emd"]
    assert shifted == pytest.approx(1.0)
    task2 = multi_hypothesis(2, projections=16)
    out2 = with_scores(torch.tensor([[[0.0, 0.0]], [[2.0, 2.0]]], dtype=F64), torch.zeros(2, 1, dtype=F64))
    samples2 = samples.expand(1, 4, 2)
    metrics = task2.metrics(out2, torch.zeros(1, 2, dtype=F64), samples=samples2)
    assert "emd" not in metrics and metrics["sliced_emd"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="samples: got shape"):
        task2.emd(out2, samples)


def test_checks_name_the_field():
    with pytest.raises(ValueError, match="expected \\(M, B, D \\+ 1\\) = \\(M, B, 3\\)"):
        multi_hypothesis(2).member_losses(torch.zeros(2, 3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="distance: got 'l1'"):
        multi_hypothesis(distance="l1")
    with pytest.raises(ValueError, match="confident MCL"):
        multi_hypothesis(1).loss("cmcl", torch.zeros(2, 3, 2), torch.zeros(3))
