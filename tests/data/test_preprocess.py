import numpy as np
import pytest
import torch

from mheads.core.seeding import derived_generator
from mheads.data import Normalizer, augment
from mheads.data.preprocess import NormalizerStats


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
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\), got uint8 ndarray of shape \(0, 3"):
        Normalizer.fit(_images()[:0], "mean_image")
    with pytest.raises(ValueError, match=r"of shape \(N, C, H, W\), got uint8 Tensor of shape \(7, 60\)"):
        Normalizer.fit(torch.from_numpy(_images()).reshape(7, 60), "per_channel")
    with pytest.raises(ValueError, match="chunk: got 0; expected an integer >= 1"):
        Normalizer.fit(_images(), "per_channel", chunk=0)
    norm = Normalizer.fit(_images(), "mean_image")
    with pytest.raises(ValueError, match="images are 3x4x4 but the mean image is 3x4x5"):
        norm(torch.zeros(2, 3, 4, 4))


def _reference_fit(array, mode):
    """Normalizer.fit as it was before the chunked statistics: whole-array numpy, the bit-exact reference."""
    if mode == "mean_image":
        mean = array.mean(axis=0, dtype=np.float64)
        return torch.from_numpy(mean.astype(np.float32)), torch.tensor(1.0)
    if mode == "per_channel":
        values = np.arange(256, dtype=np.float64)
        means, stds = [], []
        for c in range(array.shape[1]):
            counts = np.bincount(array[:, c].ravel(), minlength=256).astype(np.float64)
            mean = (values * counts).sum() / counts.sum()
            std = np.sqrt(((values - mean) ** 2 * counts).sum() / counts.sum())
            means.append(mean)
            stds.append(std if std > 0 else 1.0)
        shift = torch.tensor(means, dtype=torch.float32).view(-1, 1, 1)
        return shift, (1.0 / torch.tensor(stds, dtype=torch.float64)).float().view(-1, 1, 1)
    return torch.tensor(0.0), torch.tensor(1.0 / 255.0)


def _same(norm, shift, scale):
    # Bit for bit: equal values, dtypes and shapes (torch.equal alone would accept float64 vs float32).
    for got, want in ((norm.shift, shift), (norm.scale, scale)):
        assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape
        assert np.array_equal(got.numpy().view(np.uint32), want.numpy().view(np.uint32))


def _skewed(n, c=3, h=5, w=6, seed=0):
    # Skewed, narrow-range channels make the float sums' low bits matter.
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    images[:, 0] = rng.binomial(255, 0.93, (n, h, w))
    if c > 2:
        images[:, 2] = 200 + rng.integers(0, 3, (n, h, w))
    return images


@pytest.mark.parametrize("mode", ["mean_image", "per_channel", "none"])
@pytest.mark.parametrize("n,chunk", [(1, 4096), (7, 3), (1000, 64), (2999, 4096), (2999, 1000)])
def test_fit_equals_whole_array_formulas_bit_for_bit(mode, n, chunk):
    images = _skewed(n, seed=n)
    shift, scale = _reference_fit(images, mode)
    _same(Normalizer.fit(images, mode, chunk=chunk), shift, scale)
    _same(Normalizer.fit(torch.from_numpy(images), mode, chunk=chunk), shift, scale)


def test_mean_image_division_equals_numpy_mean_at_large_counts():
    # Sums near 2**31 and a count that is not a power of two: int64 sum / N must still equal numpy's mean.
    n = 5_000_007
    rng = np.random.default_rng(3)
    row = rng.integers(0, 256, (n, 1, 1, 2), dtype=np.uint8)
    stats = NormalizerStats(1, 1, 2).update(row)
    assert stats.count == n
    _same(stats.finish("mean_image"), *_reference_fit(row, "mean_image"))


def test_stats_do_not_depend_on_batch_sizes_or_order():
    images = _skewed(500, c=2, h=3, w=4, seed=1)
    rng = np.random.default_rng(2)
    cuts = np.sort(rng.choice(np.arange(1, 500), 11, replace=False))
    batches = np.split(images[rng.permutation(500)], cuts)
    batches.append(images[:0])  # an empty batch adds nothing
    for mode in ("mean_image", "per_channel", "none"):
        want = _reference_fit(images, mode)
        for order in (batches, batches[::-1]):
            stats = NormalizerStats(2, 3, 4)
            for i, batch in enumerate(order):
                stats.update(torch.from_numpy(batch) if i % 2 else batch)  # tensors and arrays mixed
            assert stats.count == 500
            _same(stats.finish(mode), *want)


def test_stats_read_strided_and_memory_mapped_batches(tmp_path):
    images = _skewed(40, seed=4)
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="c")
    assert isinstance(mapped, np.memmap)
    for mode in ("mean_image", "per_channel"):
        _same(Normalizer.fit(mapped, mode, chunk=16), *_reference_fit(images, mode))
        stats = NormalizerStats(3, 5, 6).update(images[::2]).update(images[1::2])  # strided views
        _same(stats.finish(mode), *_reference_fit(images, mode))
    hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels last
    _same(Normalizer.fit(hwc, "per_channel", chunk=7), *_reference_fit(images, "per_channel"))


def test_fit_copies_at_most_a_chunk(monkeypatch):
    images = _skewed(100, seed=5)
    seen = []
    real = NormalizerStats.update

    def spy(self, batch):
        seen.append(len(batch))
        assert np.shares_memory(batch, images)  # a view of the images, not a copy
        return real(self, batch)

    monkeypatch.setattr(NormalizerStats, "update", spy)
    Normalizer.fit(images, "per_channel", chunk=32)
    assert seen == [32, 32, 32, 4]


def test_stats_validation():
    stats = NormalizerStats(3, 4, 5)
    with pytest.raises(
        ValueError,
        match=r"batch must be a uint8 array of shape \(B, C, H, W\) with CxHxW = "
        r"3x4x5, got float32 ndarray of shape \(2, 3, 4, 5\)",
    ):
        stats.update(np.zeros((2, 3, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"CxHxW = 3x4x5, got uint8 ndarray of shape \(2, 3, 5, 4\)"):
        stats.update(np.zeros((2, 3, 5, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"CxHxW = 3x4x5, got int64 Tensor of shape \(2, 3, 4, 5\)"):
        stats.update(torch.zeros(2, 3, 4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"CxHxW = 3x4x5, got uint8 ndarray of shape \(3, 4, 5\)"):
        stats.update(np.zeros((3, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"CxHxW = 3x4x5, got list"):
        stats.update([[1, 2]])
    with pytest.raises(ValueError, match=r"no images were added; expected at least one image"):
        stats.update(np.zeros((0, 3, 4, 5), dtype=np.uint8)).finish("mean_image")
    assert stats.count == 0
    with pytest.raises(ValueError, match="normalize mode must be one of mean_image, per_channel, none"):
        stats.update(np.zeros((1, 3, 4, 5), dtype=np.uint8)).finish("zca")
    with pytest.raises(ValueError, match="channels: got 0; expected an integer >= 1"):
        NormalizerStats(0, 4, 5)
    with pytest.raises(ValueError, match="normalize mode must be one of .*, got 'zca'"):
        NormalizerStats(3, 4, 5, modes=("mean_image", "zca"))


def test_stats_track_only_the_modes_asked_for():
    images = _skewed(30, seed=6)
    for mode in ("mean_image", "per_channel", "none"):
        stats = NormalizerStats(3, 5, 6, modes=mode).update(images)
        _same(stats.finish(mode), *_reference_fit(images, mode))
        other = "per_channel" if mode != "per_channel" else "mean_image"
        with pytest.raises(ValueError, match=f"mode '{other}' was not tracked; expected one of {mode} "):
            stats.finish(other)
    only_mean = NormalizerStats(3, 5, 6, modes=("mean_image",))
    assert only_mean._hist is None  # no histogram work when per_channel is not wanted


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
