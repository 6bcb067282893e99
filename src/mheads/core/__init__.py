"""Primitives every other package builds on: argument checks, derived seeds and stream tags, atomic file
writes, log notes a command says once.

Nothing here imports another ``mheads`` package.
"""
