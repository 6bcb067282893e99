import numpy as np
import pytest
import torch

from mheads.core.seeding import derived_generator
from mheads.data import Normalizer, augment


def _images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)


def test_mean_image_is_caffe_style_on_0_255():
    images = _images()
    norm = Normalizer.fit(images, "mean_image")
    assert norm.shift.shape == (3, 4, 5)
    x = torch.from_numpy(images)
    expected = x.double() - x.double().mean(0)
    torch.testing.assert_close(norm(x), expected.float())  # no rescaling: values stay on the 0..255 scale
    assert norm(x).dtype == torch.float32


def test_per_channel_gives_zero_mean_unit_variance():
    images = _images()
    norm = Normalizer.fit(torch.from_numpy(images), "per_channel")
    out = norm(torch.from_numpy(images)).double()
    torch.testing.assert_close(
        out.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    constant = np.full((2, 1, 2, 2), 9, dtype=np.uint8)
    assert torch.equal(
        Normalizer.fit(constant, "per_channel")(torch.from_numpy(constant)), torch.zeros(2, 1, 2, 2)
    )


def test_none_scales_to_unit_interval_and_round_trips():
    images = _images()
    norm = Normalizer.fit(images, "none")
    torch.testing.assert_close(norm(torch.from_numpy(images)), torch.from_numpy(images).float() / 255)
    for mode in ("mean_image", "per_channel", "none"):
        fitted = Normalizer.fit(images, mode)
        restored = Normalizer.from_dict(fitted.to_dict())
        assert restored.mode == mode and torch.equal(restored.shift, fitted.shift)


def test_normalizer_validation():
    with pytest.raises(
        ValueError, match="normalize mode must be one of mean_image, per_channel, none, got 'zca'"
    ):
        Normalizer.fit(_images(), "zca")
    with pytest.raises(ValueError, match=r"images must be a non-empty uint8 array"):
        Normalizer.fit(_images().astype(np.float32), "none")
    norm = Normalizer.fit(_images(), "mean_image")
    with pytest.raises(ValueError, match="images are 3x4x4 but the mean image is 3x4x5"):
        norm(torch.zeros(2, 3, 4, 4))


def _reference_augment(x, generator, p, flip):
    """Per-example loop: the plain definition the batched version must match."""
    batch = x.shape[0]
    offsets = torch.randint(0, 2 * p + 1, (batch, 2), generator=generator) if p else None
    mirror = torch.rand(batch, generator=generator) < 0.5 if flip else None
    out = []
    for b in range(batch):
        image = x[b]
        if p:
            padded = torch.nn.functional.pad(image, (p, p, p, p))
            dy, dx = offsets[b].tolist()
            image = padded[:, dy : dy + x.shape[2], dx : dx + x.shape[3]]
        if flip and mirror[b]:
            image = image.flip(2)
        out.append(image)
    return torch.stack(out)


@pytest.mark.parametrize("p,flip", [(0, True), (2, False), (3, True), (4, True)])
def test_augment_matches_per_example_reference(p, flip):
    x = torch.randn(16, 3, 6, 7)
    got = augment(x, derived_generator(1, "test", 5, 0), crop_padding=p, flip=flip)
    want = _reference_augment(x, derived_generator(1, "test", 5, 0), p, flip)
    assert torch.equal(got, want)
    assert got.shape == x.shape


def test_augment_pads_with_zeros_and_varies_per_example():
    x = torch.ones(64, 1, 5, 5)
    out = augment(x, derived_generator(0, "test", 0, 0), crop_padding=2, flip=True)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    zeros_per_example = (out == 0).sum(dim=(1, 2, 3))
    assert len(zeros_per_example.unique()) > 3  # different offsets for different examples


def test_augment_identity_and_validation():
    x = torch.randn(4, 3, 5, 5)
    out = augment(x, derived_generator(0, "test", 0, 0), crop_padding=0, flip=False)
    assert torch.equal(out, x) and out is not x
    with pytest.raises(ValueError, match="crop_padding: got -1; expected an integer >= 0"):
        augment(x, derived_generator(0, "test", 0, 0), crop_padding=-1)
    with pytest.raises(ValueError, match="x must be a float tensor"):
        augment(x.to(torch.uint8), derived_generator(0, "test", 0, 0), crop_padding=1)
