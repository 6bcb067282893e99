"""The ``loss:`` section of a run's configuration, :class:`LossConfig`: the ensemble loss by name and the
parameters each loss reads, checked against the task's loss registry (``mheads.config.task``) and the model
section. Part of :mod:`mheads.config.schema`, which gathers the sections into a
:class:`~mheads.config.schema.Config`."""

from __future__ import annotations

from dataclasses import dataclass

from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.config.fields import number as _num
from mheads.config.model_config import ModelConfig
from mheads.config.task import TaskConfig, task_loss_name, task_loss_names, task_loss_spec

__all__ = ["LossConfig"]


@dataclass
class LossConfig:
    """The ``loss:`` section: the ensemble loss and its parameters (docs/losses.md; paper sections 3-4).

    Each parameter is read only by the losses it names; the others ignore it."""

    name: str = "independent_ce"
    """The loss. Classification: independent_ce (independent, the other tasks' name of it, is recorded as
    independent_ce) | score_averaged_ce | prob_averaged_ce | mcl | mcl_ce | cmcl | rwta | amcl | mcl_scored
    (mheads.ensemble.losses.LOSSES, with any registered there). Other tasks: the
    ensemble losses (independent, mcl, mcl_ce, rwta, amcl, mcl_scored; cmcl and the averaged cross-entropies
    for segmentation) and the task's loss of the combined prediction (averaged; mixture_nll for a user's
    task); docs/tasks.md."""
    k: int = 1
    """MCL: the members assigned to each example, an integer in 1..model.members (1 with amcl)."""
    mix: float = 0.5
    """mcl_ce: the weight of the MCL term (1 - mix on independent cross-entropy), a number in [0, 1]."""
    beta: float = 0.75
    """cmcl: the weight pulling non-assigned members toward uniform, a number >= 0."""
    epsilon: float = 0.05
    """rwta: the non-winners' share of each example, a number in [0, 1) (0 is mcl)."""
    temperature: float = 1.0
    """amcl: the starting temperature T0 of the soft assignment, a number > 0."""
    anneal_iterations: int = 1000
    """amcl: the iteration (counted from 0, pretraining included) at which the temperature reaches 0, an
    integer >= 0: it decays exponentially to T0 / 1000 there, then is 0, exactly mcl with k 1
    (mheads.ensemble.wta.annealed_temperature)."""
    score_weight: float = 1.0
    """mcl_scored: the weight of the scoring heads' binary cross-entropy, a number >= 0."""
    pretrain_iterations: int = 0
    """Train with independent cross-entropy for this many iterations first, then with loss.name (Table 5);
    an integer >= 0."""
    label_smoothing: float = 0.0
    """Cross-entropy against (1 - eps) one-hot + eps uniform targets: eps, a number in [0, 1]."""

    def validate(
        self, members: int, p: str = "loss", model: ModelConfig | None = None, task: TaskConfig | None = None
    ) -> None:
        """``model``: also check the loss against the model (a scored loss needs ``model.scoring_heads``,
        unless the task's outputs carry the scores). ``task``: the names it takes (default:
        classification's)."""
        task = task if task is not None else TaskConfig()
        _choice(f"{p}.name", self.name, task_loss_names(task))
        self.name = task_loss_name(task, self.name)  # one name per loss in the run's config and its code
        spec = task_loss_spec(task, self.name)
        _int(f"{p}.k", self.k, 1)
        if spec.assigns and self.k > members:
            _fail(f"{p}.k", self.k, f"an integer in 1..{members} (model.members)")
        if spec.single_winner and self.k != 1:
            _fail(f"{p}.k", self.k, f"1 with {p}.name {self.name} (it anneals toward a single winner)")
        _num(f"{p}.mix", self.mix, 0.0, high=1.0)
        _num(f"{p}.beta", self.beta, 0.0)
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 1.0:
            _fail(f"{p}.epsilon", eps, "a number >= 0.0 and < 1.0")
        _num(f"{p}.temperature", self.temperature, 0.0, strict=True)
        _int(f"{p}.anneal_iterations", self.anneal_iterations, 0)
        _num(f"{p}.score_weight", self.score_weight, 0.0)
        own_scores = task.name == "multi_hypothesis"  # its outputs carry a score logit per hypothesis
        if model is not None and spec.scores and model.scoring_heads is not True and not own_scores:
            _fail(
                "model.scoring_heads",
                model.scoring_heads,
                f"true with {p}.name {self.name} (the loss trains the members' scoring heads)",
            )
        _int(f"{p}.pretrain_iterations", self.pretrain_iterations, 0)
        _num(f"{p}.label_smoothing", self.label_smoothing, 0.0, high=1.0)
