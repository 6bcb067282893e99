"""mheads: diverse deep ensembles in PyTorch (Lee et al. 2015, "Why M Heads are Better than One")."""

__version__ = "0.1.0"
