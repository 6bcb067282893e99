"""The (M, B, C) math of an ensemble: combining members (``combine``), MCL's assignment, the ensemble-aware
losses (``losses``: the registries and dispatch by name; the cross-entropy losses in ``ce_losses``, the
winner-takes-all family in ``wta``, what a registered loss is in ``loss_spec``, their shared terms in
``loss_terms``), metrics as pure functions (``metrics``) and their exact streaming accumulator
(``accumulator``), and the ensembling strategies as data (``strategies``). Uncertainty: the entropy
decomposition and OOD scores (``uncertainty``), OOD detection (``detection``), selective prediction
(``selective``), calibration and temperature scaling (``calibration``), MCL set metrics (``sets``) and one
report over all of them (``uncertainty_report``)."""

from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.ensemble.calibration import apply_temperature, fit_temperature
from mheads.ensemble.detection import detection_metrics
from mheads.ensemble.losses import LOSS_NAMES, LOSSES, LossResult, compute_loss
from mheads.ensemble.uncertainty import CRITERIA, entropy_decomposition
from mheads.ensemble.uncertainty_report import uncertainty_arrays, uncertainty_report

__all__ = [
    "CRITERIA",
    "LOSSES",
    "LOSS_NAMES",
    "EnsembleMetrics",
    "LossResult",
    "apply_temperature",
    "compute_loss",
    "detection_metrics",
    "entropy_decomposition",
    "fit_temperature",
    "uncertainty_arrays",
    "uncertainty_report",
]
