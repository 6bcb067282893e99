"""The (M, B, C) math of an ensemble: combining members (``combine``), MCL's assignment, the ensemble-aware
losses (``losses``, with their shared terms in ``loss_terms``), metrics as pure functions (``metrics``) and
their exact streaming accumulator (``accumulator``), and the ensembling strategies as data
(``strategies``)."""

from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.ensemble.losses import LOSS_NAMES, LOSSES, LossResult, compute_loss

__all__ = ["LOSSES", "LOSS_NAMES", "EnsembleMetrics", "LossResult", "compute_loss"]
