"""Training: the loop (``loop.fit``: restore, iterate, finish), one update (``step``), evaluation and
re-evaluation (``evaluate``), building the ensemble a config describes (``build``), the communicator protocol
(``comm``), learning-rate schedules, numerical faults, preemption, the device and the compile check."""
