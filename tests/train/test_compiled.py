import pytest
import torch
from torch import nn

from mheads.config import ConfigError
from mheads.train.compiled import compile_checked, gradient_error
from mheads.tree.treenet import TreeNet

# torch.compile itself warns about torch.jit deprecations inside torch; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _tiny(ceil_avg: bool):
    def make():
        torch.manual_seed(0)
        layers = [
            ("conv1", nn.Conv2d(1, 4, 3)),
            ("pool1", nn.AvgPool2d(3, 2, ceil_mode=ceil_avg)),
            ("flatten", nn.Flatten()),
        ]
        net = nn.Sequential()
        for name, layer in layers:
            net.add_module(name, layer)
        net.add_module("fc", nn.Linear(4 * (3 if ceil_avg else 2) ** 2, 3))
        return net

    return make


# compiling on a CPU takes tens of seconds: the real compiles are slow; a stand-in for torch.compile whose
# gradients are wrong checks the refusal in the fast tier
@pytest.mark.slow
def test_compile_is_used_when_its_gradients_match_eager():
    tree = TreeNet(_tiny(False), 2, "conv1")
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    compiled = compile_checked(tree, x, y)
    assert torch.allclose(compiled(x), tree(x), atol=1e-6)
    assert gradient_error(tree, compiled, x, y) < 1e-4


class _Scaled(nn.Module):
    """What a miscompiled model looks like: the same outputs, but gradients scaled by ``factor``."""

    def __init__(self, model: nn.Module, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        out = self.model(x)
        return out * self.factor - (out * (self.factor - 1)).detach()


def test_compile_is_refused_when_the_compiled_gradients_differ(monkeypatch):
    tree = TreeNet(_tiny(False), 2, "conv1")
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    monkeypatch.setattr(torch, "compile", lambda model: _Scaled(model, 1.5))
    with pytest.raises(
        ConfigError,
        match=r"train.compile: torch.compile's gradients differ from eager mode "
        r"by 33\.3%",
    ):
        compile_checked(tree, x, y)
    monkeypatch.setattr(torch, "compile", lambda model: _Scaled(model, 1.0))
    assert isinstance(compile_checked(tree, x, y), _Scaled)


@pytest.mark.slow
def test_compile_is_refused_when_its_gradients_are_wrong():
    """torch 2.13's compiled avg_pool2d(ceil_mode=True) backward mis-scales clipped windows (PERF-NOTES)."""
    tree = TreeNet(_tiny(True), 2, "conv1")
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    err = gradient_error(tree, torch.compile(tree), x, y)
    if err <= 1e-3:
        pytest.skip(f"this torch ({torch.__version__}) compiles avg_pool2d(ceil_mode=True) correctly")
    with pytest.raises(ConfigError, match=r"train.compile: torch.compile's gradients differ from eager mode"):
        compile_checked(tree, x, y)


def test_the_gradient_check_leaves_batchnorm_statistics_alone():
    from mheads.train.compiled import gradient_error

    net = TreeNet(
        lambda: torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.BatchNorm2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 4 * 4, 10),
        ),
        2,
        None,
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(5, 3, 6, 6), torch.randint(0, 10, (5,))
    assert gradient_error(net, net, x, y) == 0.0  # the eager model against itself: no compile needed here
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # running stats, counters
