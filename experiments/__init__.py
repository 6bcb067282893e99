"""The experiment recipes, shipped inside the package as ``mheads.experiments`` (read with
importlib.resources): one YAML per paper table (a base config, scales and cells with the paper's numbers), the
scales, the demo and example configs. Results (``results/``) stay in the source checkout."""
