"""NiN's two starting points: the published fixed-std Gaussians, and He-normal for narrow analogues."""

import pytest
import torch

from mheads.models.nin import nin_cifar, nin_imagenet


def _output_std(net, size: int) -> float:
    torch.manual_seed(0)
    with torch.no_grad():
        return float(net.eval()(torch.randn(16, 3, size, size)).std())


def test_caffe_init_starts_a_narrow_cifar_nin_dead_and_he_does_not():
    torch.manual_seed(0)
    assert _output_std(nin_cifar(width=0.25), 32) < 1e-3
    torch.manual_seed(0)
    assert 0.1 < _output_std(nin_cifar(width=0.25, init="he"), 32) < 10


def test_init_changes_only_the_weights():
    torch.manual_seed(0)
    a = nin_cifar(width=0.25)
    torch.manual_seed(0)
    b = nin_cifar(width=0.25, init="he")
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]
    conv1_a, conv1_b = a.conv1.weight.detach(), b.conv1.weight.detach()
    assert torch.allclose(conv1_a.std(), torch.tensor(0.05), rtol=0.1)
    fan_in = conv1_b[0].numel()
    assert torch.allclose(conv1_b.std(), torch.tensor((2 / fan_in) ** 0.5), rtol=0.1)
    assert all(not p.detach().any() for n, p in b.named_parameters() if n.endswith("bias"))


@pytest.mark.parametrize("factory", [nin_cifar, nin_imagenet])
def test_unknown_init_is_refused_by_name(factory):
    with pytest.raises(ValueError, match=r"init: got 'xavier'; expected one of 'caffe', 'he'"):
        factory(width=0.1, init="xavier")
