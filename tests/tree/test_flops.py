import pytest
from torch import nn

from mheads.models import create_model, model_factory
from mheads.tree.flops import count_macs
from mheads.tree.treenet import TreeNet

# CIFAR10-Quick by hand: conv1 32x32x32 outputs x 3x5x5; conv2 16x16x32 x 32x5x5; conv3 8x8x64 x 32x5x5;
# ip1 64 x (64*4*4); ip2 10 x 64.
CONV1, CONV2, CONV3, IP1, IP2 = 2_457_600, 6_553_600, 3_276_800, 65_536, 640
QUICK = CONV1 + CONV2 + CONV3 + IP1 + IP2


def test_cifar10_quick_known_answer():
    c = count_macs(create_model("cifar10_quick"), (3, 32, 32))
    assert c.macs == {"conv1": CONV1, "conv2": CONV2, "conv3": CONV3, "ip1": IP1, "ip2": IP2}
    assert c.forward_flops(100) == 2 * QUICK * 100
    assert c.train_flops(1) == 6 * QUICK


def test_grouped_convolution_and_strides():
    net = nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)
    )
    c = count_macs(net, (4, 8, 8))
    assert c.macs == {"0": 6 * 4 * 4 * 2 * 9, "2": 5 * 96}


def test_a_shared_trunk_is_counted_once_and_its_share_reported():
    tree = TreeNet(model_factory("cifar10_quick"), 4, "conv1", exec_mode="fused")
    c = count_macs(tree, (3, 32, 32))
    assert c.total_macs == CONV1 + 4 * (QUICK - CONV1)
    assert c.share("root.layers.") == pytest.approx(CONV1 / c.total_macs)
    assert tree.exec_mode == "fused" and tree.training  # restored
    assert count_macs(TreeNet(model_factory("cifar10_quick"), 4, None), (3, 32, 32)).total_macs == 4 * QUICK


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(create_model("cifar10_quick"), (3, 0, 32))
    with pytest.raises(ValueError, match="does not fit"):
        count_macs(create_model("cifar10_quick"), (3, 16, 16))
