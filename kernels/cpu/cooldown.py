"""Fused CPU scans of rnnbuilder's Cooldown neuron, SPEC.md section 3.

Per lane, the spike read from the membrane the step starts from (m[-1] the
initial state), then the membrane integrates the exponentiated input:

    (1) u[t] = sgn (m[t-1] - 1);   s[t] = H(u[t])   (F(u) for the smooth twin)
    (2) m[t] = beta m[t-1] + c exp(x[t])

with beta = exp(-1/tau), c = 1 - beta (computed by torch, so autograd carries
their gradients to tau), sgn = +1 on the first N//2 units of the last axis and
-1 on the rest.  Reverse scan, G the gradient reaching m[t]:

    (3) G += dL/dm_rec[t];   dx[t] = G c exp(x[t]);   dbeta += G m[t-1];   dc += G exp(x[t])
    (4) G = beta G + dL/ds[t] f(u[t]) sgn            (the gradient reaching m[t-1])

Saved: x (an input) and the membrane sequence (an output).  No fastmath (see lif.py).
"""

from __future__ import annotations

import math

import torch
from numba import njit

from . import _launch
from .surrogates import derivatives, kind, step


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, m0, beta, gain, sign, scale, spikes, m_rec, m_final, strict, smooth, surrogate, tile, c, first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            m_final[j] = m0[j]
        for t in range(steps):
            for j in range(start, stop):
                m = m_final[j]
                spikes[t, j] = step(sign[j] * (m - one), scale[j], surrogate, strict, smooth, c)  # (1)
                m = beta[j] * m + gain[j] * math.exp(x[t, j])  # (2)
                m_rec[t, j] = m
                m_final[j] = m


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(x, m0, beta, gain, sign, scale, m_rec, g_spikes, g_m_rec, g_m_final,
                  g_x, g_m0, g_beta, g_gain, has_g_spikes, has_g_m_rec, has_g_m_final, surrogate, tile, c, first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            # g_m0 carries G through the scan.
            g_m0[j] = g_m_final[j] if has_g_m_final else zero
            g_beta[j] = 0.0
            g_gain[j] = 0.0
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                g_m = g_m0[j] + (g_m_rec[t, j] if has_g_m_rec else zero)  # (3)
                e = math.exp(x[t, j])
                m_before = m_rec[t - 1, j] if t > 0 else m0[j]
                g_x[t, j] = g_m * gain[j] * e
                g_beta[j] += g_m * m_before
                g_gain[j] += g_m * e
                f, _ = derivatives(sign[j] * (m_before - one), scale[j], surrogate, c)
                g_s = g_spikes[t, j] if has_g_spikes else zero
                g_m0[j] = beta[j] * g_m + g_s * f * sign[j]  # (4)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, beta, gain, sign, scale, config):
        strict, smooth, surrogate = config
        step_shape = x.shape[1:]
        lanes = [_launch.per_lane(value, step_shape) for value in (m0, beta, gain, sign, scale)]
        spikes, m_rec = (_launch.empty(x.shape, x.dtype) for _ in range(2))
        m_final = _launch.empty(step_shape, x.dtype)
        _launch.run_tiles(forward_scan, x[0].numel(), _launch.sequence(x), *lanes, _launch.sequence(spikes), _launch.sequence(m_rec),
                     _launch.lanes(m_final), strict, smooth, surrogate, _launch.TILE, _launch.constants(x.dtype))
        ctx.save_for_backward(x, m_rec, beta, gain)
        ctx.lanes, ctx.config = lanes, config
        ctx.set_materialize_grads(False)
        return spikes, m_rec, m_final

    @staticmethod
    def backward(ctx, g_spikes, g_m_rec, g_m_final):
        x, m_rec, beta, gain = ctx.saved_tensors
        dtype, count = x.dtype, m_rec[0].numel()
        cotangents = [_launch.optional(g, dtype) for g in (g_spikes, g_m_rec)]
        cotangents.append(_launch.optional(g_m_final, dtype, rank=1))
        g_x = _launch.empty(x.shape, dtype)
        g_m0 = torch.empty(x.shape[1:], dtype=dtype)
        sums = [_launch.lane_sums(count) for _ in range(2)]
        _launch.run_tiles(backward_scan, count, _launch.sequence(x), *ctx.lanes, _launch.sequence(m_rec), *(view for view, _ in cotangents),
                      _launch.sequence(g_x), _launch.lanes(g_m0), *sums, *(present for _, present in cotangents),
                      ctx.config[2], _launch.TILE, _launch.constants(dtype))
        neurons = x.shape[-1]
        wants = ctx.needs_input_grad
        g_beta = _launch.reduce_lanes(sums[0], beta, neurons) if wants[2] else None
        g_gain = _launch.reduce_lanes(sums[1], gain, neurons) if wants[3] else None
        # rnnbuilder's gradient_factor is spike_linear's fixed scale: no gradient.
        return g_x, g_m0, g_beta, g_gain, None, None, None


def check_input(row, x, params):
    """Reject an x whose exp overflows in x's dtype (called before the run)."""
    x = x.detach()
    overflow = torch.isfinite(x) & torch.isinf(torch.exp(x))
    if bool(overflow.any()):
        raise ValueError(
            f"x: {row.key} integrates exp(x), which overflows in {x.dtype} for x = {float(x[overflow].max())!r}; "
            f"exp(x) must stay below {torch.finfo(x.dtype).max!r}"
        )


def signs(x):
    """sgn of eq. (1): +1 on the first N//2 units of the last axis, -1 on the rest."""
    n = x.shape[-1]
    return torch.where(torch.arange(n) < n // 2, 1.0, -1.0).to(x.dtype)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    beta = torch.exp(-1 / params["tau"])
    config = (row.spike_test == ">", bool(smooth), kind(surrogate))
    spikes, m_rec, m_final = _Scan.apply(x, state["m"], beta, 1 - beta, signs(x), params["gradient_factor"], config)
    return {"out": spikes, "m": m_rec}, {"m": m_final}, {}
