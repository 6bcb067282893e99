"""Presenting results: text tables of runs (``tables``) and figures (``figures``: heatmaps, training
curves)."""
