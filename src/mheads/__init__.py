"""mheads: diverse deep ensembles in PyTorch (Lee et al. 2015, "Why M Heads are Better than One").

Member logits are ``(M, B, C)`` everywhere. The public API is re-exported here; the packages, from the
bottom of the dependency order up: ``core`` (checks, seeds, atomic files), ``models``, ``tree``, ``ensemble``,
``optim``, ``config``, ``data``, ``runs``, ``train``, ``infer``, ``report``, ``dist``, ``reproduce``, ``cli``.

The names load on first use (PEP 562), so ``mheads`` on the command line starts, and installs its signal
handling, before torch is imported.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "mheads.config",
    "ConfigError": "mheads.config",
    "load_config": "mheads.config",
    "EnsembleMetrics": "mheads.ensemble.accumulator",
    "LOSSES": "mheads.ensemble.losses",
    "LOSS_NAMES": "mheads.ensemble.losses",
    "compute_loss": "mheads.ensemble.losses",
    "confident_mcl_loss": "mheads.ensemble.losses",
    "independent_ce": "mheads.ensemble.losses",
    "mcl_assignment": "mheads.ensemble.losses",
    "mcl_ce_loss": "mheads.ensemble.losses",
    "mcl_loss": "mheads.ensemble.losses",
    "prob_averaged_ce": "mheads.ensemble.losses",
    "score_averaged_ce": "mheads.ensemble.losses",
    "create_model": "mheads.models",
    "list_models": "mheads.models",
    "model_factory": "mheads.models",
    "register_model": "mheads.models",
    "FitResult": "mheads.train.result",
    "fit": "mheads.train.api",
    "load_run": "mheads.train.run_model",
    "evaluate": "mheads.infer.api",
    "predict": "mheads.infer.api",
    "train_step": "mheads.train.user_step",
    "TreeNet": "mheads.tree",
    "split_points": "mheads.tree",
}

__all__ = sorted(_EXPORTS)
# Subpackages the docs reach as attributes (``mheads.tasks.regression``, ``mheads.tree.split_points``): they
# load on first use too, so such a line works as the first one a script runs, not only after ``mheads.fit``.
_SUBPACKAGES = {
    "cli", "config", "core", "data", "dist", "ensemble", "infer", "models", "optim", "report", "reproduce",
    "runs", "tasks", "train", "tree",
}  # fmt: skip


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mheads.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mheads' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
