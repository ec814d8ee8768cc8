"""Parameters in a scan: one value for every lane, or one value per lane.

A model's parameters are most often single values (a scalar or shape (1,)):
one decay, one threshold for every neuron.  ``_launch.parameters`` then hands
the kernels NumPy scalars, else (M,) per-lane arrays, and the kernels read a
parameter only through ``tile_values`` and ``lane_value``, which numba specializes on
the argument's type: for a scalar the loop holds it in a register, for an array
it loads the lane's element.  Per-lane copies of single values cost a load per
parameter, lane and step, and lane arrays that crowd a tile's share of the
caches: tether.LIF at N = 2^20, T = 100, one thread, kernels alone, per-lane
copies against scalars in one process (bitwise equal), in tiles of 32768
lanes forward 0.98 -> 0.67 and backward 1.58 -> 1.32 ns per neuron-step (in
tiles of 2048: 0.99 -> 0.91 and 1.62 -> 1.35).  ``single_valued`` lets a
kernel pick a loop by the kind (cuba.py's paired backward).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload


def tile_values(values, start, stop):
    """A tile's lanes [start, stop) of a per-lane parameter; a single value itself."""
    return values[start:stop] if isinstance(values, np.ndarray) else values


def single_valued(values):
    """Whether ``values`` is one value for every lane (a constant when compiled)."""
    return not isinstance(values, np.ndarray)


def lane_value(values, lane):
    """One lane's value of a parameter (``values`` from ``tile_values`` or whole)."""
    return values[lane] if isinstance(values, np.ndarray) else values


@overload(tile_values, inline="always")
def _tile_values(values, start, stop):
    if isinstance(values, types.Array):
        return lambda values, start, stop: values[start:stop]
    return lambda values, start, stop: values


@overload(lane_value, inline="always")
def _lane_value(values, lane):
    if isinstance(values, types.Array):
        return lambda values, lane: values[lane]
    return lambda values, lane: values


@overload(single_valued, inline="always")
def _single_valued(values):
    if isinstance(values, types.Array):
        return lambda values: False
    return lambda values: True
