"""Issue 32 moved the ensemble losses onto per-example member losses `(M, B)` (`ensemble_loss`), with
`compute_loss` a layer over it: classification must not change by one bit. These tests run today's code and
the frozen pre-change copy (`frozen_losses.py`) on the same fixed inputs and the same random draws, and
compare values, per-member contributions, assignments and gradients with `torch.equal`."""

import itertools

import frozen_losses as old
import pytest
import torch

from mheads.ensemble import losses as new

M, B, C = 4, 9, 5


def inputs(dtype: torch.dtype, seed: int, ties: bool):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(M, B, C, generator=g, dtype=torch.float64) * 2
    if ties:  # coarse values: equal member losses, so the random tie-breaking is exercised too
        logits = logits.round()
    targets = torch.randint(0, C, (B,), generator=g)
    weights = torch.randint(0, 3, (M, B), generator=g).to(dtype)
    scores = torch.randn(M, B, generator=g, dtype=torch.float64)
    return logits.to(dtype), targets, weights, scores.to(dtype)


def run(module, name, logits, targets, scores, **kw):
    logits = logits.clone().requires_grad_(True)
    scores = scores.clone().requires_grad_(True)
    extra = {"score_logits": scores} if module.LOSSES[name].scores else {}
    result = module.compute_loss(
        name, logits, targets, generator=torch.Generator().manual_seed(7), **extra, **kw
    )
    result.loss.backward()
    return result, logits.grad, scores.grad


def same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


CASES = list(itertools.product(new.LOSS_NAMES, (torch.float32, torch.float64), (0, 1), (False, True)))


@pytest.mark.parametrize("name, dtype, seed, ties", CASES)
def test_compute_loss_is_bit_identical_to_the_pre_change_code(name, dtype, seed, ties):
    logits, targets, weights, scores = inputs(dtype, seed, ties)
    spec = new.LOSSES[name]
    settings = [{}]
    if spec.average is None:
        k_values = (1,) if spec.single_winner else (1, 2, M)
        settings = [
            {
                "k": k,
                "weights": w,
                "label_smoothing": s,
                "mix": 0.3,
                "beta": 0.5,
                "epsilon": 0.1,
                "temperature": t,
                "score_weight": 0.7,
            }
            for k in k_values
            for w in (None, weights)
            for s in (0.0, 0.1)
            for t in (0.0, 0.8)
        ]
    else:  # label smoothing on prob_averaged_ce raised before (a (B, C) tensor where (M, B, C) was read)
        settings = [{"label_smoothing": s} for s in ((0.0,) if name == "prob_averaged_ce" else (0.0, 0.1))]
    for kw in settings:
        got, got_grad, got_score_grad = run(new, name, logits, targets, scores, **kw)
        want, want_grad, want_score_grad = run(old, name, logits, targets, scores, **kw)
        assert same(got.loss, want.loss), (name, kw)
        assert same(got.per_member, want.per_member), (name, kw)
        assert same(got.assignment, want.assignment), (name, kw)
        assert same(got_grad, want_grad), (name, kw)
        assert same(got_score_grad, want_score_grad), (name, kw)


@pytest.mark.parametrize(
    "name",
    [
        "mcl_loss",
        "mcl_ce_loss",
        "confident_mcl_loss",
        "independent_ce",
        "score_averaged_ce",
        "prob_averaged_ce",
    ],
)
def test_the_named_loss_functions_are_bit_identical(name):
    logits, targets, weights, _ = inputs(torch.float32, 3, True)
    kw = {} if "averaged" in name else {"weights": weights}
    if name in ("mcl_loss", "mcl_ce_loss", "confident_mcl_loss"):
        kw["k"] = 2
        kw["generator"] = torch.Generator().manual_seed(1)
    values = []
    for module in (new, old):
        x = logits.clone().requires_grad_(True)
        if "generator" in kw:
            kw["generator"] = torch.Generator().manual_seed(1)
        loss = getattr(module, name)(x, targets, **kw)
        loss.backward()
        values.append((loss, x.grad))
    assert same(values[0][0], values[1][0]) and same(values[0][1], values[1][1])


def test_ensemble_loss_on_member_cross_entropies_is_compute_loss():
    """The generic entry point on `member_nll` gives compute_loss's numbers (cmcl: KL(U || p) as penalty)."""
    from mheads.ensemble.combine import member_log_probs, member_nll
    from mheads.ensemble.loss_terms import uniform_kl

    logits, targets, weights, scores = inputs(torch.float64, 5, True)
    for name in new.ENSEMBLE_LOSS_NAMES:
        k = 1 if new.ENSEMBLE_LOSSES[name].single_winner else 2
        kw = {"k": k, "weights": weights, "temperature": 0.5}
        if new.ENSEMBLE_LOSSES[name].scores:
            kw["score_logits"] = scores
        penalty = uniform_kl(member_log_probs(logits)) if name == "cmcl" else None
        got = new.ensemble_loss(
            name,
            member_nll(logits, targets),
            penalty=penalty,
            generator=torch.Generator().manual_seed(2),
            **kw,
        )
        want = new.compute_loss(
            "independent_ce" if name == "independent" else name,
            logits,
            targets,
            generator=torch.Generator().manual_seed(2),
            **kw,
        )
        assert same(got.loss, want.loss) and same(got.per_member, want.per_member), name
        assert same(got.assignment, want.assignment), name


def test_prob_averaged_ce_with_label_smoothing_now_works():
    """It raised before issue 32; now `(1 - eps) * -log pbar(y) - eps * mean_c log pbar(c)` (pbar: the
    members' mean probabilities), checked against a float64 loop."""
    logits, targets, _, _ = inputs(torch.float64, 0, False)
    got = new.prob_averaged_ce(logits, targets, label_smoothing=0.1).item()
    total = 0.0
    for i in range(B):
        pbar = [sum(torch.softmax(logits[m, i], -1)[c].item() for m in range(M)) / M for c in range(C)]
        logs = [torch.log(torch.tensor(p, dtype=torch.float64)).item() for p in pbar]
        total += 0.9 * -logs[int(targets[i])] - 0.1 * sum(logs) / C
    assert got == pytest.approx(total / B, rel=1e-12)
