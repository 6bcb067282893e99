"""Example c: ambiguous shapes (masks with an ignore index, non-square), a round trip through
read_mask_folder, and the segmentation TreeNet's shapes."""

import pytest
import torch

from mheads.data.masks import read_mask_folder
from mheads.experiments.any_task import shapes, train_shapes


def test_images_masks_and_ambiguity():
    pairs, ambiguous = shapes.make(200, 0)
    assert pairs.inputs.shape == (200, 1, 32, 48) and pairs.targets.shape == (200, 32, 48)
    assert pairs.targets.dtype == torch.int64 and set(pairs.targets.unique().tolist()) == {0, 1, 2, 255}
    assert torch.equal(pairs.targets, shapes.make(200, 0)[0].targets)
    labels = [int(m[(m != 0) & (m != 255)].unique()) for m in pairs.targets]  # one shape per image
    diamond = {lab for lab, a in zip(labels, ambiguous) if a}
    assert diamond == {1, 2} and 0.2 < float(ambiguous.float().mean()) < 0.4  # both labels for one shape


def test_written_folder_reads_back(tmp_path):
    pairs, _ = shapes.make(5, 1, height=20, width=36)
    back = read_mask_folder(shapes.write_folder(tmp_path, pairs), num_classes=3)
    for i in range(5):
        image, mask = back[i]
        assert image.shape == (1, 20, 36) and torch.equal(mask, pairs.targets[i])
        assert torch.allclose(image.float() / 255, pairs.inputs[i], atol=1 / 255)


def test_the_treenet_segments_any_size_and_trains_through_fit():
    net = train_shapes.model(3, 8, 0)
    assert net(torch.zeros(2, 1, 20, 36)).shape == (3, 2, 3, 20, 36)
    s = {**train_shapes.SCALES["smoke"], "n": 16, "test": 8, "steps": 2, "height": 16, "width": 24}
    metrics = train_shapes.fit("amcl", 2, s, 0)
    assert 0.0 <= metrics["oracle_mean_iou"] <= 1.0 and 0.0 <= metrics["member_pixel_acc"] <= 1.0
    for where in ("test", "train"):  # the shares of images each member won, largest first
        shares = [metrics[f"{where}_win_{r}"] for r in (1, 2)]
        assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0)
    assert not any(k.startswith("train_win") for k in train_shapes.fit("independent", 1, s, 0))


def test_the_guard_anneals_over_half_of_training():
    s = train_shapes.SCALES["full"]
    amcl = train_shapes.settings("amcl", s, 1)
    assert (amcl["loss.temperature"], amcl["loss.anneal_iterations"], amcl["train.eval_every"]) == (
        1.0,
        200,
        100,
    )
    assert "loss.temperature" not in train_shapes.settings("mcl", s, 1)
