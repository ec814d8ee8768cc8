"""Fused CPU kernels of rnnbuilder's Discontinuous neuron (SPEC.md section 3):
stateless and elementwise,

    (1) s = H(x - theta)   (F(x - theta) for the smooth twin)
    (2) dx = dL/ds f(x - theta);   dtheta = -sum dx

Lanes are tiled as in the scans, one row slice x[t, tile] at a time; the
loop bodies are branch-free (the step's flags become selects), so the compiler
vectorizes them.  The threshold's gradient is summed per lane over time and
reduced in a fixed order (``_launch.reduce_lanes``).
"""

from __future__ import annotations

import torch

from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._parameters import lane_value, tile_values
from ._stream import drain, put
from .surrogates import SIGMOID, derivatives, kind, step


@njit(nogil=True, cache=True, error_model="numpy")
def forward_map(x, theta, scale, spikes, strict, smooth, surrogate, c, streaming, tile, first_tile, last_tile):
    """Eq. (1) over tiles [first_tile, last_tile).  With
    ``streaming`` (a constant: compiled once per value) the rows of the
    branch-free lane loop are written with streaming stores (``_stream``); the
    smooth twin's stay plain."""
    steps, count = x.shape
    one = c[0]
    zero = one - one
    inclusive = not strict
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        threshold = tile_values(theta, start, stop)
        scales = tile_values(scale, start, stop)
        for t in range(steps):
            drive = x[t, start:stop]
            fired = spikes[t, start:stop]
            if smooth:
                for i in range(fired.shape[0]):
                    u = drive[i] - lane_value(threshold, i)  # (1)
                    fired[i] = step(u, lane_value(scales, i), surrogate, strict, smooth, c)
            else:
                for i in range(fired.shape[0]):
                    u = drive[i] - lane_value(threshold, i)  # (1)
                    s = one if (u > 0) | (inclusive & (u == 0)) else zero
                    put(fired, i, s, streaming)
        drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def backward_map(x, theta, scale, g_spikes, g_x, g_theta, surrogate, c, streaming, tile, first_tile, last_tile):
    """Eq. (2) over tiles [first_tile, last_tile).  With
    ``streaming`` (a constant: compiled once per value) dx's rows are written
    with streaming stores (``_stream``)."""
    steps, count = x.shape
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        threshold = tile_values(theta, start, stop)
        scales = tile_values(scale, start, stop)
        d_theta = g_theta[start:stop]
        d_theta[:] = 0.0
        for t in range(steps):
            drive = x[t, start:stop]
            g_s_row = g_spikes[t % g_spikes.shape[0], start:stop]
            g_x_row = g_x[t, start:stop]
            for i in range(g_x_row.shape[0]):
                f, _ = derivatives(drive[i] - lane_value(threshold, i), lane_value(scales, i), surrogate, c)
                g = g_s_row[i] * f  # (2)
                put(g_x_row, i, g, streaming)
                d_theta[i] -= g
        drain(streaming)


class _Fire(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, scale, config):
        # A strided x is copied here, once, and the backward reads the copy (held between the passes:
        # one sequence more in memory there, where the backward used to copy x again).
        x = _launch.contiguous(x)
        strict, smooth, surrogate = config
        lanes = _launch.parameters((theta, scale), x.shape[1:])
        spikes = _launch.empty(x.shape, x.dtype)
        spike_rows = _launch.sequence(spikes)
        _launch.run_tiles(forward_map, _launch.lane_count(x), _launch.sequence(x), *lanes, spike_rows,
                          strict, smooth, surrogate, _launch.constants(x.dtype), streamed=[spike_rows])
        ctx.save_for_backward(x, theta)
        ctx.lanes, ctx.config = lanes, config
        return spikes

    @staticmethod
    @first_order("discontinuous", "cpu")
    def backward(ctx, g_spikes):
        x, theta = ctx.saved_tensors
        g_x = _launch.empty(x.shape, x.dtype)
        total = _launch.lane_sums(_launch.lane_count(x), x.dtype)
        g_x_rows = _launch.sequence(g_x)
        # Streamed only where the lane loop vectorizes: sigmoid's exp keeps it scalar.
        _launch.run_tiles(backward_map, _launch.lane_count(x), _launch.sequence(x), *ctx.lanes,
                          _launch.cotangent(g_spikes, x.dtype)[0], g_x_rows, total, ctx.config[2],
                          _launch.constants(x.dtype), streamed=[g_x_rows] if ctx.config[2] != SIGMOID else [])
        g_theta = _launch.reduce_lanes(total, theta, x.shape[-1]) if ctx.needs_input_grad[1] else None
        # gradient_factor is spike_linear's fixed scale: no gradient.
        return g_x, g_theta, None, None


def run(row, x, params, state, surrogate, inject, smooth, detached):
    config = (row.spike_test == ">", bool(smooth), kind(surrogate))
    return {"out": _Fire.apply(x, params["threshold"], params["gradient_factor"], config)}, {}, {}
