"""Semantic segmentation: per-pixel classification, as in sMCL (Lee et al. NeurIPS 2016, section 5).

Shapes: `outputs: (M, B, C, H, W)` member logits (the head width is C channels per pixel), `target: (B, H, W)`
integer classes, `ignore_index` marking pixels that count nowhere.

Member losses `(M, B)`: each image's mean cross-entropy over its labelled pixels (0 for an image without
any), so MCL assigns whole images, as sMCL did. `combine` is the members' mean probability per pixel, in log
space, `(B, C, H, W)`; "prob_averaged_ce" and "score_averaged_ce" are the image's mean pixel cross-entropy
of the mean probabilities and of the mean scores. Confident MCL's penalty is the image's mean `KL(U || p_m)`
over labelled pixels. The oracle's error is a member's pixel error rate on the image.

Metrics: `pixel_acc` (of the combined prediction, over labelled pixels), `mean_iou` (of the combined
prediction, from the confusion matrix over the whole set: per class `TP / (TP + FP + FN)`, averaged over the
classes that occur in the target or the prediction), `oracle_mean_iou` and `oracle_pixel_acc` (each image
predicted by its best member: the lowest pixel error, ties to the lowest index), `member_pixel_acc` (M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mheads.core.checks import check_int
from mheads.ensemble.combine import compute_dtype, ensemble_scores
from mheads.ensemble.metrics import LOGITS_WHY, non_finite
from mheads.tasks.base import Task, Terms, check_outputs, first_argmin

__all__ = ["Segmentation", "segmentation"]


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.to(compute_dtype(logits)), dim=-3)  # over C in (..., C, H, W)


@dataclass(frozen=True)
class Segmentation(Task):
    """`num_classes`: C (None: taken from the outputs). `ignore_index`: the unlabelled pixels' value."""

    num_classes: int | None = None
    ignore_index: int = 255
    name: ClassVar[str] = "segmentation"
    averaged: ClassVar[tuple[str, ...]] = ("score_averaged_ce", "prob_averaged_ce")
    head_layer: ClassVar[str] = "conv"  # a 1x1 convolution per pixel on (B, F, H, W) maps
    non_finite_why: ClassVar[str] = LOGITS_WHY

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, 1)
        check_int("ignore_index", self.ignore_index)

    def head_width(self) -> int:
        if self.num_classes is None:
            raise ValueError("num_classes: got None; give the number of classes to know the head width")
        return self.num_classes

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_outputs(outputs, target, min_ndim=5)
        if outputs.ndim != 5 or tuple(target.shape) != (outputs.shape[1], *outputs.shape[3:]):
            raise ValueError(
                f"outputs and target: got shapes {tuple(outputs.shape)} and "
                f"{tuple(target.shape)}; expected (M, B, C, H, W) and (B, H, W)"
            )
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"target: got dtype {target.dtype}; expected integer classes")
        classes = outputs.shape[2]
        if self.num_classes is not None and classes != self.num_classes:
            raise ValueError(f"outputs: got {classes} classes; expected num_classes = {self.num_classes}")
        if target.device.type == "cpu":
            bad = (target != self.ignore_index) & ((target < 0) | (target >= classes))
            if bool(bad.any()):
                raise ValueError(
                    f"target: got class {int(target[bad][0])}; expected 0..{classes - 1} or "
                    f"ignore_index {self.ignore_index}"
                )

    def _pixels(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(B, H, W)` -> labelled mask, targets with ignored pixels set to 0, labelled pixels per image."""
        valid = target != self.ignore_index
        return valid, torch.where(valid, target, 0).long(), valid.sum(dim=(-2, -1))

    def _image_mean(self, pixel: torch.Tensor, valid: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """`(..., B, H, W)` per-pixel values -> `(..., B)` mean over labelled pixels (0 where none)."""
        # torch.where, not a product: an ignored pixel's non-finite value must not reach the mean or gradient
        return torch.where(valid, pixel, 0.0).sum(dim=(-2, -1)) / count.clamp(min=1)

    def _image_nll(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`log_probs: (..., B, C, H, W)` -> `(..., B)` mean labelled-pixel cross-entropy."""
        valid, labels, count = self._pixels(target)
        index = labels.unsqueeze(-3).expand(*log_probs.shape[:-3], 1, *labels.shape[-2:])
        return self._image_mean(-log_probs.gather(-3, index).squeeze(-3), valid, count)

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check(outputs, target)
        return self._image_nll(_log_softmax(outputs), target)

    def combine(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, C, H, W) -> (B, C, H, W)` log of the members' mean probabilities."""
        return torch.logsumexp(_log_softmax(outputs), dim=0) - math.log(outputs.shape[0])

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if name == "prob_averaged_ce":
            return self._image_nll(self.combine(outputs), target)
        if name == "score_averaged_ce":
            scores = ensemble_scores(outputs.movedim(2, -1)).movedim(-1, 1)  # (B, C, H, W), each pixel's
            return self._image_nll(_log_softmax(scores), target)
        return super().combined_loss(name, outputs, target)

    def penalty(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid, _, count = self._pixels(target)
        log_probs = _log_softmax(outputs)
        kl = -math.log(outputs.shape[2]) - log_probs.mean(dim=-3)  # (M, B, H, W)
        return self._image_mean(kl, valid, count)

    def non_finite(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, C, H, W) -> (M, B)`: an image with a pixel whose logits have no softmax (a NaN, a +inf,
        -inf on every class); a -inf class mask is scored, as classification's."""
        if outputs.ndim < 3:  # the task's own check names the shape
            return super().non_finite(outputs)
        pixels = non_finite(outputs.detach().movedim(2, -1))  # (M, B, H, W)
        return pixels.flatten(2).any(dim=-1) if pixels.ndim > 2 else pixels

    def errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pixel error rate per member and image, `(M, B)` float64 (0 for an image without labels)."""
        self.check(outputs, target)
        valid, labels, count = self._pixels(target)
        wrong = (outputs.detach().argmax(dim=2) != labels).to(torch.float64)
        return self._image_mean(wrong, valid, count)

    def _confusion(
        self, predicted: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, classes: int
    ) -> torch.Tensor:
        index = labels[valid] * classes + predicted[valid]
        return torch.bincount(index, minlength=classes * classes).view(classes, classes)  # (true, predicted)

    def metric_terms(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> Terms:
        self.check(outputs, target)
        outputs = outputs.detach().to(torch.float64)
        classes = outputs.shape[2]
        valid, labels, _ = self._pixels(target)
        member_pred = outputs.argmax(dim=2)  # (M, B, H, W)
        ensemble_pred = self.combine(outputs).argmax(dim=1)  # (B, H, W)
        best = first_argmin(self.errors(outputs, target))  # (B,)
        oracle_pred = member_pred.gather(0, best.view(1, -1, 1, 1).expand(1, *member_pred.shape[1:]))[0]
        return {
            "labelled": valid.sum(),
            "member_correct": ((member_pred == labels) & valid).sum(dim=(1, 2, 3)),
            "confusion": self._confusion(ensemble_pred, labels, valid, classes),
            "oracle_confusion": self._confusion(oracle_pred, labels, valid, classes),
        }

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        labelled = max(int(sums["labelled"]), 1)
        return {
            "num_examples": num_examples,
            "pixel_acc": int(sums["confusion"].diagonal().sum()) / labelled,
            "mean_iou": mean_iou(sums["confusion"]),
            "oracle_pixel_acc": int(sums["oracle_confusion"].diagonal().sum()) / labelled,
            "oracle_mean_iou": mean_iou(sums["oracle_confusion"]),
            "member_pixel_acc": [int(c) / labelled for c in sums["member_correct"].tolist()],
        }


def mean_iou(confusion: torch.Tensor) -> float:
    """`confusion: (C, C)` counts (true, predicted) -> mean over classes with a non-empty union of
    `TP / (TP + FP + FN)`; 0.0 when no class occurs."""
    tp = confusion.diagonal().to(torch.float64)
    union = confusion.sum(dim=0).to(torch.float64) + confusion.sum(dim=1).to(torch.float64) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if bool(present.any()) else 0.0


def segmentation(num_classes: int | None = None, *, ignore_index: int = 255) -> Segmentation:
    """The segmentation task; see the module docstring."""
    return Segmentation(num_classes, ignore_index)
