"""mheads: diverse deep ensembles in PyTorch (Lee et al. 2015, "Why M Heads are Better than One").

Member logits are ``(M, B, C)`` everywhere. The public API is re-exported here; the packages, from the bottom
of the dependency order up: ``core`` (checks, seeds, atomic files), ``config``, ``models``, ``tree``,
``ensemble``, ``data``, ``runs``, ``train``, ``report``, ``dist``, ``reproduce``, ``cli``.
"""

from mheads.config import Config, ConfigError, load_config
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.ensemble.losses import (
    LOSS_NAMES,
    LOSSES,
    compute_loss,
    confident_mcl_loss,
    independent_ce,
    mcl_assignment,
    mcl_ce_loss,
    mcl_loss,
    prob_averaged_ce,
    score_averaged_ce,
)
from mheads.models import create_model, list_models, model_factory, register_model
from mheads.train.api import fit
from mheads.tree import TreeNet

__version__ = "0.1.0"

__all__ = [
    "LOSSES", "LOSS_NAMES", "Config", "ConfigError", "EnsembleMetrics", "TreeNet", "compute_loss", "fit",
    "confident_mcl_loss", "create_model", "independent_ce", "list_models", "load_config", "mcl_assignment",
    "mcl_ce_loss", "mcl_loss", "model_factory", "prob_averaged_ce", "register_model", "score_averaged_ce",
]
