"""Every loss function and compute_loss take the same keyword arguments for the same hyperparameters (same
names, same defaults), and a loss called directly equals compute_loss with those arguments."""

import inspect

import pytest
import torch

from mheads.ensemble import losses as L

# name in compute_loss -> the function; the inputs every call gets (not hyperparameters)
FUNCTIONS = {
    "independent_ce": L.independent_ce,
    "score_averaged_ce": L.score_averaged_ce,
    "prob_averaged_ce": L.prob_averaged_ce,
    "mcl": L.mcl_loss,
    "mcl_ce": L.mcl_ce_loss,
    "cmcl": L.confident_mcl_loss,
    "rwta": L.relaxed_mcl_loss,
    "amcl": L.annealed_mcl_loss,
    "mcl_scored": L.scored_mcl_loss,
}
INPUTS = {"logits", "targets", "score_logits", "assignment"}  # tensors of this call, not hyperparameters
HYPER = {
    "k": 2,
    "mix": 0.3,
    "beta": 0.5,
    "epsilon": 0.1,
    "temperature": 0.7,
    "score_weight": 0.4,
    "label_smoothing": 0.1,
}


def keywords(fn) -> dict:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if n not in INPUTS}


def test_every_loss_name_has_a_function():
    assert set(FUNCTIONS) == set(L.LOSS_NAMES)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_a_loss_takes_compute_loss_names_and_defaults(name):
    """Each hyperparameter a loss takes, compute_loss takes under the same name with the same default;
    label_smoothing and weights are taken by every loss (the averaged ones refuse weights, as compute_loss
    does)."""
    own, shared = keywords(FUNCTIONS[name]), keywords(L.compute_loss)
    del shared["name"]
    assert {"label_smoothing", "weights"} <= set(own), name
    for key, default in own.items():
        assert key in shared, f"{name}: {key} is not a compute_loss argument"
        assert default == shared[key] or default is inspect.Parameter.empty, (name, key)


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_loss_called_directly_equals_compute_loss(name, smoothing):
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(3, 5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    scores = torch.randn(3, 5, generator=g)
    takes = keywords(FUNCTIONS[name])
    kwargs = {k: v for k, v in dict(HYPER, label_smoothing=smoothing).items() if k in takes}
    if name == "amcl":
        kwargs.pop("k", None)
    extra = {"score_logits": scores} if name == "mcl_scored" else {}
    weights = None if name.endswith("averaged_ce") else torch.rand(3, 5, generator=g)
    if weights is not None:
        kwargs["weights"] = weights
    tie = {"generator": torch.Generator().manual_seed(1)} if "generator" in takes else {}
    direct = FUNCTIONS[name](logits, targets=y, **extra, **kwargs, **tie)
    via = L.compute_loss(name, logits, y, **extra, **kwargs, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(direct, via.loss, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["score_averaged_ce", "prob_averaged_ce"])
def test_the_averaged_losses_refuse_weights_directly_as_through_compute_loss(name):
    logits, y = torch.randn(2, 3, 4), torch.tensor([0, 1, 2])
    for call in (
        lambda: FUNCTIONS[name](logits, y, weights=torch.ones(2, 3)),
        lambda: L.compute_loss(name, logits, y, weights=torch.ones(2, 3)),
    ):
        with pytest.raises(ValueError, match="weights: loss .* takes no per-member weights"):
            call()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_a_bad_label_smoothing_is_refused_by_name(name):
    logits, y = torch.randn(2, 3, 4), torch.tensor([0, 1, 2])
    extra = {"score_logits": torch.zeros(2, 3)} if name == "mcl_scored" else {}
    with pytest.raises(ValueError, match="label_smoothing"):
        FUNCTIONS[name](logits, targets=y, label_smoothing=1.5, **extra)
