"""Training: the loop (``loop.fit``: ``restore``, iterate, ``finish``; ``points``: what happens at a logging,
evaluation or checkpoint point), one update (``step``), evaluation on a split during training (``evaluate``),
the uncertainty analysis at the end of a run (``analysis``), building the ensemble a config describes
(``build``) and reopening the one a run folder holds (``reopen``, ``run_model``: ``mheads.load_run``), the
Python API (``api``: ``mheads.fit``), the communicator protocol (``comm``), learning-rate schedules, numerical
faults, preemption, the device and the compile check. Evaluating and predicting with a finished run is
:mod:`mheads.infer`'s."""
