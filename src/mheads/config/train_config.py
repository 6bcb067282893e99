"""The ``train:`` section of a run's configuration, :class:`TrainConfig`: the run's length and batch,
evaluation and checkpoints, where it starts from, what a non-finite step does, and the device and its
performance switches. Part of :mod:`mheads.config.schema`, which gathers the sections into a
:class:`~mheads.config.schema.Config`."""

from __future__ import annotations

from dataclasses import dataclass, field

from mheads.config.fields import ConfigError
from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.core.checks import check_iterations

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """The ``train:`` section: the length and batch of the run, evaluation and checkpoints, where it starts
    from, failures, and the device and its performance switches."""

    seed: int = 0
    """The run's seed (member initializations, data order, subsets, bagging derive from it), an integer >=
    0."""
    iterations: int = 5000
    """The number of optimizer updates, an integer >= 1."""
    batch_size: int = 100
    """Examples per batch, an integer >= 1 (divisible by dist.replicas)."""
    accumulate: int = 1
    """Gradient accumulation over this many batches per update (Table 6), an integer >= 1."""
    eval_every: int = 1000
    """Evaluate on the test split every this many iterations, an integer >= 0 (0: only the final evaluation,
    which every run makes)."""
    eval_batch_size: int = 1000
    """Examples per evaluation batch, an integer >= 1."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many iterations, an integer >= 0 (0: none in between)."""
    keep_checkpoints: int = 3
    """The newest checkpoints kept, an integer >= 2 (older ones are pruned)."""
    keep_steps: list[int] = field(default_factory=list)
    """The iterations whose checkpoints are saved and never pruned, a list of integers >= 1: sweeps keep the
    end of a shared cross-entropy pretraining here, for the cells that continue from it
    (mheads.reproduce.fork)."""
    init_from: str | None = None
    """null, or a run folder or checkpoint to start from (fine-tuning)."""
    init_from_member: int | None = None
    """null, or a member index m >= 0 of train.init_from copied into every member (identical members); null
    unless train.init_from is set."""
    nan_policy: str = "stop"
    """A step whose loss or gradients are not finite: stop (the run fails) | skip (the update is dropped)."""
    max_skipped: int = 10
    """nan_policy skip: stop after this many bad steps in a row, an integer >= 1."""
    device: str = "auto"
    """auto (cuda when available, else cpu) | cpu | cuda."""
    channels_last: bool = True
    """true or false: keep the model and images in channels-last memory format."""
    amp: bool = False
    """true or false: bf16 autocast (GPU; on a CPU without bf16 units it is much slower)."""
    compile: bool = False
    """true or false: torch.compile, used only if its gradients match eager mode on a first batch."""
    threads: int | None = None
    """CPU threads for the run, an integer >= 1 (null: torch's default); restored on exit."""
    flush_denormal: bool = True
    """true or false; CPU: treat denormal floats as zero. MCL's specialised members drive some values into the
    denormal range, where x86 arithmetic is many times slower: without this, late MCL k=1 steps ran ~25%
    slower here."""
    sync: str = "auto"
    """step (decide the finiteness guard and read the loss on the host every step: free on a CPU) | deferred
    (keep them on the device and read them every train.log_every iterations and at evaluations and
    checkpoints: no host synchronisation in between, what a GPU needs) | auto (deferred on CUDA, step
    elsewhere)."""
    log_every: int = 100
    """Log the training loss every this many iterations, an integer >= 1."""

    def validate(self, p: str = "train") -> None:
        _int(f"{p}.seed", self.seed, 0)
        _int(f"{p}.iterations", self.iterations, 1)
        _int(f"{p}.batch_size", self.batch_size, 1)
        _int(f"{p}.accumulate", self.accumulate, 1)
        _int(f"{p}.eval_every", self.eval_every, 0)
        _int(f"{p}.eval_batch_size", self.eval_batch_size, 1)
        _int(f"{p}.checkpoint_every", self.checkpoint_every, 0)
        _int(f"{p}.keep_checkpoints", self.keep_checkpoints, 2)
        check_iterations(f"{p}.keep_steps", self.keep_steps, error=ConfigError)
        _choice(f"{p}.nan_policy", self.nan_policy, ("stop", "skip"))
        _int(f"{p}.max_skipped", self.max_skipped, 1)
        _choice(f"{p}.device", self.device, ("auto", "cpu", "cuda"))
        _choice(f"{p}.sync", self.sync, ("auto", "step", "deferred"))
        _int(f"{p}.log_every", self.log_every, 1)
        if self.threads is not None:
            _int(f"{p}.threads", self.threads, 1)
        if self.init_from_member is not None:
            _int(f"{p}.init_from_member", self.init_from_member, 0)
            if self.init_from is None:
                _fail(f"{p}.init_from_member", self.init_from_member, "null unless train.init_from is set")
