"""Inference with a finished run, read through :mod:`mheads.runs` and rebuilt with :mod:`mheads.train`'s model
building: re-evaluation on its own or other data (``evaluate``: ``mheads eval``, reading only the split it
scores: ``eval_data``; a task run's metrics with the report's additions: ``task_eval``), prediction on image
files (``predict``) and on inputs of any task (``predict_task``), the records' formats (``predict_format``),
and the Python API over them (``api``: ``mheads.evaluate``, ``mheads.predict``). Nothing in ``train`` imports
this package."""
