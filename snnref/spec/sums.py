"""Gradients that are sums over time (and batch), with the size of what was summed.

A parameter's gradient is a sum of one contribution per time step and lane:

(1) g = sum_k c_k,        A = max over g's elements of sum_k |c_k|

``A`` is SPEC.md section 7's magnitude of a long sum: an honest implementation
that adds the same ``c_k`` in another order differs from the spec by about
``sqrt(n) eps A`` (``n`` the number of terms), however much ``g`` cancels.
The reverse loops accumulate with ``Sums.add`` so that ``A`` comes beside
every parameter gradient (``snnref.spec.vjp(..., magnitudes=...)``).

A gradient that is itself an adjoint recurrence with reductions in it
(tether.SpikingSelfAttention's ``x`` and initial-state gradients) is a long
sum too; its family propagates ``A`` through the recurrence with every factor
in absolute value (``spec/attention.py``, equations (16)-(21)) and reports it
under ``"x"`` / ``"state.<var>"`` with its count of roundings (``sum_terms``).
"""

from __future__ import annotations

import numpy as np


class Sums:
    """Running sums ``total[name]`` and ``magnitude[name]`` (equation (1)) of named gradients."""

    def __init__(self, shapes, dtype):
        self.total = {name: np.zeros(shape, dtype=dtype) for name, shape in shapes.items()}
        self.magnitude = {name: np.zeros(shape, dtype=dtype) for name, shape in shapes.items()}

    def add(self, name, term, magnitude=None):
        """Add ``term`` (``magnitude``: its |.| when it is itself a sum, e.g. a matrix product)."""
        self.total[name] += term
        self.magnitude[name] += np.abs(term) if magnitude is None else magnitude
