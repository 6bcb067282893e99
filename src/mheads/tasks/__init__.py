"""What a member's output means (issue 32): per-example member losses `(M, B)`, the one place members are
combined, the oracle and the task's metrics, for any task. Every ensemble loss
(`mheads.ensemble.losses.ensemble_loss`: independent, MCL, MCL-CE, confident MCL where the output is
categorical, relaxed and annealed WTA, scored MCL) works on every task through `Task.loss`.

Built in (shapes in each module's docstring):

- `classification(num_classes)`: logits `(M, B, C)`, targets `(B,)`; `loss` is `compute_loss` unchanged.
- `regression(dim, head="point"|"gaussian", loss="mse"|"l1", variance="softplus"|"exp")`: outputs
  `(M, B, D)` or `(M, B, 2D)`, targets `(B, D)`; aleatoric and epistemic variance, mixture NLL, coverage.
- `multi_hypothesis(dim)`: hypotheses with score logits `(M, B, D + 1)` (resilient MCL, default loss
  "mcl_scored"); minADE, distortion, earth mover's distance to target samples.
- `segmentation(num_classes, ignore_index=255)`: logits `(M, B, C, H, W)`, targets `(B, H, W)`; pixel
  accuracy, mean IoU and the oracle's mean IoU.
- `custom_task(loss_fn)` / `Task.from_loss(loss_fn)`: any per-example loss
  `(output (B, ...), target) -> (B,)`.

`task.build_head(F)` is the task's head on any base's F features (`mheads.tasks.heads`: a linear layer, a 1x1
convolution for segmentation), put on every member by `model.head: task`.

`TaskMetrics(task)` accumulates a task's metrics batch by batch; `wasserstein_1d` and `sliced_wasserstein`
are the distances the multiple-hypotheses metrics use.
"""

from mheads.tasks.base import Oracle, Task, TaskMetrics
from mheads.tasks.classification import Classification, classification
from mheads.tasks.custom import CustomTask, custom_task
from mheads.tasks.hypotheses import MultiHypothesis, WeightedHypotheses, multi_hypothesis, with_scores
from mheads.tasks.regression import Regression, RegressionPrediction, regression
from mheads.tasks.segmentation import Segmentation, mean_iou, segmentation
from mheads.tasks.transport import sliced_wasserstein, wasserstein_1d

__all__ = [
    "Classification",
    "CustomTask",
    "MultiHypothesis",
    "Oracle",
    "Regression",
    "RegressionPrediction",
    "Segmentation",
    "Task",
    "TaskMetrics",
    "WeightedHypotheses",
    "classification",
    "custom_task",
    "mean_iou",
    "multi_hypothesis",
    "regression",
    "segmentation",
    "sliced_wasserstein",
    "wasserstein_1d",
    "with_scores",
]
