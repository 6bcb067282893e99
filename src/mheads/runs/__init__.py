"""Run folders on disk: atomic, verified checkpoints (``checkpoint``: save, list and prune; it re-exports
``checkpoint_load``: load and validate, and ``checkpoint_format``: the shared layout, names and errors) and
the folder's records and weights (``folder``), and whether two finished runs are the same (``compare``)."""
