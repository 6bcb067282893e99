"""mheads.tasks.segmentation: per-image mean pixel cross-entropy (sMCL), IoU and the oracle's IoU."""

import math

import pytest
import torch

from mheads.tasks import TaskMetrics, mean_iou, segmentation

F64 = torch.float64
IGNORE = 255


def batch(seed=0, m=3, b=4, c=3, h=3, w=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, b, c, h, w, generator=g, dtype=F64)
    target = torch.randint(0, c, (b, h, w), generator=g)
    target[0, 0, :2] = IGNORE
    target[1] = IGNORE  # an image without labels
    return logits, target


def pixel_ce(logits_pixel: torch.Tensor, label: int) -> float:
    values = logits_pixel.tolist()
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values)) - values[label]


def test_member_losses_and_averaged_losses_match_a_loop():
    logits, target = batch()
    task = segmentation(3, ignore_index=IGNORE)
    got = task.member_losses(logits, target)
    prob = task.combined_loss("prob_averaged_ce", logits, target)
    score = task.combined_loss("score_averaged_ce", logits, target)
    penalty = task.penalty(logits, target)
    m_count, b_count, c_count, h_count, w_count = logits.shape
    for i in range(b_count):
        pixels = [(y, x) for y in range(h_count) for x in range(w_count) if target[i, y, x] != IGNORE]
        for m in range(m_count):
            want = sum(pixel_ce(logits[m, i, :, y, x], int(target[i, y, x])) for y, x in pixels)
            assert got[m, i].item() == pytest.approx(want / max(len(pixels), 1), rel=1e-12, abs=1e-15)
            kl = 0.0
            for y, x in pixels:
                p = torch.softmax(logits[m, i, :, y, x], 0).tolist()
                kl += sum(math.log((1 / c_count) / q) / c_count for q in p)
            assert penalty[m, i].item() == pytest.approx(kl / max(len(pixels), 1), rel=1e-10, abs=1e-15)
        want_prob = want_score = 0.0
        for y, x in pixels:
            label = int(target[i, y, x])
            probs = [torch.softmax(logits[m, i, :, y, x], 0)[label].item() for m in range(m_count)]
            mean_p = sum(probs) / m_count
            want_prob += -math.log(mean_p)
            want_score += pixel_ce(logits[:, i, :, y, x].mean(0), label)
        assert prob[i].item() == pytest.approx(want_prob / max(len(pixels), 1), rel=1e-12, abs=1e-15)
        assert score[i].item() == pytest.approx(want_score / max(len(pixels), 1), rel=1e-12, abs=1e-15)
    assert (got[:, 1] == 0).all()


def test_mcl_assigns_whole_images_and_an_unlabelled_image_gets_no_gradient():
    logits, target = batch()
    x = logits.clone().requires_grad_(True)
    result = segmentation(3).loss("mcl", x, target)
    result.loss.backward()
    for i in (0, 2, 3):
        winner = int(result.assignment[:, i].nonzero())
        for m in range(3):
            assert bool((x.grad[m, i] != 0).any()) == (m == winner)
    assert (x.grad[:, 1] == 0).all() and torch.isfinite(x.grad).all()
    cmcl = segmentation(3).loss("cmcl", logits, target, beta=0.5)
    assert torch.isfinite(cmcl.loss)


def test_iou_pixel_accuracy_and_oracle_on_a_hand_case():
    # Two 1x2 images, two classes; member 0 says class 0 everywhere, member 1 class 1 everywhere (more
    # confidently), so the ensemble (mean probabilities) says class 1.
    big = 4.0
    m0 = torch.tensor([[big, 0.0], [big, 0.0]], dtype=F64).T.reshape(2, 1, 2)  # (C, H, W): class 0
    m1 = torch.tensor([[0.0, 2 * big], [0.0, 2 * big]], dtype=F64).T.reshape(2, 1, 2)  # class 1, surer
    logits = torch.stack([torch.stack([m0, m0]), torch.stack([m1, m1])])  # (2, 2, 2, 1, 2)
    target = torch.tensor([[[0, 0]], [[1, IGNORE]]])
    metrics = segmentation(2).metrics(logits, target)
    # Ensemble predicts class 1 on all three labelled pixels: 1 right (image 1), 2 wrong.
    assert metrics["pixel_acc"] == pytest.approx(1 / 3)
    assert metrics["mean_iou"] == pytest.approx((0 / 2 + 1 / 3) / 2)
    # Oracle: member 0 on image 0 (both right), member 1 on image 1 (right): perfect.
    assert metrics["oracle_pixel_acc"] == 1.0 and metrics["oracle_mean_iou"] == 1.0
    assert metrics["member_pixel_acc"] == pytest.approx([2 / 3, 1 / 3])
    assert segmentation(2).oracle(logits, target).member.tolist() == [0, 1]
    assert mean_iou(torch.zeros(3, 3, dtype=torch.int64)) == 0.0


def test_streamed_metrics_equal_the_whole_set_and_checks():
    logits, target = batch(1, b=5)
    task = segmentation(3)
    acc = TaskMetrics(task)
    for lo in range(0, 5, 2):
        acc.update(logits[:, lo : lo + 2], target[lo : lo + 2])
    assert acc.compute() == task.metrics(logits, target)
    with pytest.raises(ValueError, match="target: got class 7"):
        task.member_losses(logits, torch.full((5, 3, 4), 7))
    with pytest.raises(ValueError, match="expected \\(M, B, C, H, W\\) and \\(B, H, W\\)"):
        task.member_losses(logits, target[:, :2])
    with pytest.raises(ValueError, match="num_classes = 4"):
        segmentation(4).member_losses(logits, target)


def test_score_averaged_ce_of_members_masking_disjoint_classes_is_finite():
    """A pixel every class of which some member masks with -inf: the cross-entropy of the members' mean
    probabilities there (it was NaN); the other pixel's mean scores as before."""
    from mheads.ensemble.combine import ensemble_nll

    inf = math.inf
    pixel = torch.tensor(
        [[-inf, 0.0, 1.0], [0.0, -inf, 1.0], [0.0, 3.0, -inf]], dtype=torch.float64
    )  # (M, C)
    logits = torch.zeros(3, 1, 3, 1, 2, dtype=torch.float64)  # (M, B, C, H, W): pixel 1 masked
    logits[:, 0, :, 0, 1] = pixel
    target = torch.tensor([[[0, 2]]])
    got = segmentation(3).combined_loss("score_averaged_ce", logits, target)
    masked = ensemble_nll(pixel.unsqueeze(1), torch.tensor([2]))[0]  # -log of the mean probability of 2
    assert got.item() == pytest.approx((math.log(3) + masked.item()) / 2, rel=1e-12)
