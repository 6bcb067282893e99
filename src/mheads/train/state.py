"""What a run carries from one iteration to the next (:class:`RunState`); every checkpoint saves all of it,
so a resumed run continues exactly where the checkpoint left it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mheads.core.checks import is_int
from mheads.optim.schedules import Schedule
from mheads.runs.checkpoint import CheckpointError

__all__ = ["RunState", "check_run_state"]


@dataclass
class RunState:
    """What a run carries from one iteration to the next; a checkpoint saves all of it."""

    step: int = 0  # iterations done
    skipped: int = 0  # non-finite steps in a row (train.nan_policy: skip)
    skipped_total: int = 0
    run_loss: float = 0.0  # training loss summed since the last evaluation (eval.jsonl's train_loss)
    run_n: int = 0
    # (M,) int64: training examples each member was assigned since the last evaluation (eval.jsonl's
    # win_fraction); None while the loss assigns nothing
    wins: torch.Tensor | None = None
    before_wall: float = 0.0  # seconds spent by earlier processes of this run, up to their checkpoint
    before_train: float = 0.0
    train_time: float = 0.0  # seconds of training steps in this process
    steps_timed: int = 0
    last_eval: tuple[int, dict | None] | None = None  # (step, metrics) of this process's newest evaluation

    def to_checkpoint(self, step: int, optimizer_state: dict, schedule: Schedule, wall_s: float) -> dict:
        """The state to save at iteration ``step`` (which a run whose last iterations were skipped as
        non-finite has passed without advancing ``self.step``)."""
        return {
            "step": step,
            "optimizer": optimizer_state,
            "schedule": schedule.state_dict(),
            "skipped": self.skipped,
            "skipped_total": self.skipped_total,
            "run_loss": self.run_loss,
            "run_n": self.run_n,
            "wall_time_s": self.before_wall + wall_s,
            "train_time_s": self.before_train + self.train_time,
            "wins": None if self.wins is None else [int(n) for n in self.wins.tolist()],
        }

    @classmethod
    def from_checkpoint(cls, state: dict) -> RunState:
        return cls(
            step=int(state["step"]),
            skipped=int(state["skipped"]),
            skipped_total=int(state["skipped_total"]),
            run_loss=float(state.get("run_loss", 0.0)),
            run_n=int(state.get("run_n", 0)),
            before_wall=float(state.get("wall_time_s", 0.0)),
            before_train=float(state.get("train_time_s", 0.0)),
            # a list of ints, or None (also in checkpoints older than the win counts)
            wins=None if state.get("wins") is None else torch.tensor(state["wins"], dtype=torch.int64),
        )

    def win_fraction(self) -> dict:
        """``{"win_fraction": [M floats summing to 1]}``: the share of the training examples each member was
        assigned since the last evaluation, the collapse diagnostic of the assigning losses (a member near 0
        has stopped winning); empty when nothing was assigned."""
        if self.wins is None:
            return {}
        counts = [int(n) for n in self.wins.tolist()]
        total = sum(counts)
        return {"win_fraction": [n / total for n in counts]} if total else {}


_COUNTS = {"step": True, "skipped": True, "skipped_total": True, "run_n": False}  # name: required
_NUMBERS = ("run_loss", "wall_time_s", "train_time_s")


def check_run_state(state: dict, where: object) -> None:
    """Raise ``CheckpointError`` naming ``where`` (the checkpoint's state.pt) and the field when the run state
    :meth:`RunState.from_checkpoint` reads is not what a checkpoint holds: counts are integers >= 0, times
    and the loss sum numbers, ``wins`` None or a list of counts, ``optimizer`` and ``schedule`` objects (an
    edited file gave a ValueError traceback)."""

    def bad(key: str, value: object, allowed: str) -> CheckpointError:
        text = repr(value)
        return CheckpointError(f"{where}: {key}: got {text[:60]}; expected {allowed}")

    for key, required in _COUNTS.items():
        if key not in state and not required:
            continue
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(key, value, "an integer >= 0")
    for key in _NUMBERS:
        value = state.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(key, value, "a number")
    wins = state.get("wins")
    if wins is not None and not (isinstance(wins, list) and all(is_int(n) and n >= 0 for n in wins)):
        raise bad("wins", wins, "null or a list of integers >= 0 (one per member)")
    for key in ("optimizer", "schedule"):
        if key in state and not isinstance(state[key], dict):
            raise bad(key, state[key], "an object (the state torch saved)")
