"""Optimization: building the optimizer a config describes (``build``) and learning-rate schedules
(``schedules``)."""
