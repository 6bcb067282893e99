"""Presenting results: text tables of runs (``tables``), figures (``figures``: heatmaps, training curves),
the eval report of a classification run (``evaluation``, ``uncertainty_figures``) and of a task run
(``task_report``, ``task_figures``)."""
