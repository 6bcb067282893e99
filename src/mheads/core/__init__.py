"""Primitives every other package builds on: argument checks, derived seeds and stream tags, atomic file
writes.

Nothing here imports another ``mheads`` package.
"""
