import pytest
import torch

from mheads.models import UnknownModelError, create_model, list_models, model_info, parameterized_layers


def small(name: str) -> dict:
    """A cheap instance of a registered model, from the registry alone: its small options at its smallest
    input (at least 32 pixels). A newly registered model is covered by every test parametrized over SMALL."""
    info = model_info(name)
    return dict(image_size=max(info.min_image_size, 32), **info.small_options)


SMALL = {name: small(name) for name in list_models()}


def test_registry_lists_the_paper_models():
    assert {"cifar10_quick", "nin_cifar", "nin_imagenet", "caffenet"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_declared_image_sizes_hold(name):
    info = model_info(name)
    opts = info.small_options
    assert create_model(name, **opts)(
        torch.zeros(1, 3, info.default_image_size, info.default_image_size)
    ).shape == (1, 10)
    create_model(name, image_size=info.min_image_size, **opts)
    with pytest.raises(ValueError, match="image_size"):
        create_model(name, image_size=info.min_image_size - 1, **opts)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_maps_images_to_class_scores(name):
    kw = SMALL[name]
    net = create_model(name, num_classes=7, in_channels=3, **kw)
    out = net(torch.randn(2, 3, kw["image_size"], kw["image_size"]))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_unknown_model_lists_registered_names():
    with pytest.raises(UnknownModelError, match="cifar10_quick.*nin_cifar|did you mean 'cifar10_quick'"):
        create_model("cifar10_quik")


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="image_size"):
        create_model("caffenet", image_size=16, width=0.1)


def test_cifar10_quick_layout_and_parameter_count_by_hand():
    net = create_model("cifar10_quick", num_classes=10)
    assert [n for n, _ in net.named_children()] == [
        "conv1",
        "pool1",
        "relu1",
        "conv2",
        "relu2",
        "pool2",
        "conv3",
        "relu3",
        "pool3",
        "flatten",
        "ip1",
        "ip2",
    ]
    assert parameterized_layers(net) == ["conv1", "conv2", "conv3", "ip1", "ip2"]
    by_hand = {
        "conv1": 3 * 32 * 5 * 5 + 32,
        "conv2": 32 * 32 * 5 * 5 + 32,
        "conv3": 32 * 64 * 5 * 5 + 64,
        "ip1": 64 * 4 * 4 * 64 + 64,  # 32 -> 16 -> 8 -> 4 with ceil-mode 3/2 pooling
        "ip2": 64 * 10 + 10,
    }
    for name, n in by_hand.items():
        assert sum(p.numel() for p in getattr(net, name).parameters()) == n, name
    assert sum(p.numel() for p in net.parameters()) == sum(by_hand.values()) == 145578


def test_cifar10_quick_uses_caffe_ceil_mode_pooling_and_gaussian_init():
    net = create_model("cifar10_quick")
    assert net.pool1.ceil_mode and isinstance(net.pool1, torch.nn.MaxPool2d)
    assert isinstance(net.pool2, torch.nn.AvgPool2d) and net.pool2.ceil_mode
    assert abs(net.conv1.weight.std().item() - 1e-4) < 2e-5
    assert abs(net.conv2.weight.std().item() - 1e-2) < 1e-3
    assert abs(net.ip1.weight.std().item() - 0.1) < 5e-3
    assert torch.count_nonzero(net.conv1.bias) == 0


def test_fashion_mnist_shape():
    net = create_model("cifar10_quick", in_channels=1, image_size=28)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_the_module_docstring_holds_sequential_families_and_resnets_cut_by_module_path():
    from torch import nn

    from mheads.tree import split_points

    for name in ("cifar10_quick", "nin_cifar", "caffenet"):  # named layers, as in the paper's tables
        net = create_model(name, **SMALL[name])
        assert type(net) is nn.Sequential and "conv1" in dict(net.named_children())
    resnet = create_model("resnet20")
    assert not isinstance(resnet, nn.Sequential)  # forward code: cut at module paths by tracing
    assert {"conv1", "layer1", "layer2.0"} <= set(split_points(resnet))


def test_an_import_path_outside_the_import_path_says_how_to_reach_it():
    with pytest.raises(UnknownModelError, match=r"No module named 'no_such_user_nets'.*PYTHONPATH=\."):
        create_model("no_such_user_nets:mlp")


def test_an_error_inside_the_users_module_gets_no_path_hint(tmp_path, monkeypatch):
    (tmp_path / "broken_user_nets.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(UnknownModelError, match="no_such_dependency_xyz") as err:
        create_model("broken_user_nets:mlp")
    assert "PYTHONPATH" not in str(err.value)
