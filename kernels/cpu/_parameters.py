"""Parameters in a scan: one value for every lane, or one value per lane.

A model's parameters are most often single values (a scalar or shape (1,)):
one decay, one threshold for every neuron.  ``_launch.parameters`` then hands
the kernels NumPy scalars, else (M,) per-lane arrays, and the kernels read a
parameter only through the two functions below, which numba specializes on
the argument's type: for a scalar the loop holds it in a register, for an array
it loads the lane's element.  Per-lane copies of single values cost a load per
parameter, lane and step, and a tile's lane arrays that outgrew L1: tether.LIF
at N = 2^20, T = 100, one thread, forward 0.99 -> 0.67 and backward 1.62 ->
1.32 ns per neuron-step (kernels alone, in one process, bitwise equal).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload


def tile_values(values, start, stop):
    """A tile's lanes [start, stop) of a per-lane parameter; a single value itself."""
    return values[start:stop] if isinstance(values, np.ndarray) else values


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
