"""Fused CPU scans of rnnbuilder's Adaptive neuron, SPEC.md section 3.

Per lane, membrane m and threshold excess r, the spike read from the state the
step starts from (m[-1], r[-1] the initial state):

    (1) A = 1 + r[t-1];   u[t] = (m[t-1] - A) / A;   s[t] = H(u[t])   (F(u) for the smooth twin)
    (2) m[t] = beta m[t-1] + x[t] - s[t] A
    (3) r[t] = beta_thr r[t-1] + gamma s[t]

with beta = exp(-1/tau) and beta_thr = exp(-1/tau_thr) computed by torch
(``snnref.leak.decay_of``).
Nothing is detached.  Reverse scan, G_m and G_r the gradients reaching m[t], r[t]:

    (4) G_m += dL/dm_rec[t];   G_r += dL/dr_rec[t];   dx[t] = G_m
    (5) dbeta += G_m m[t-1];   dbeta_thr += G_r r[t-1];   dgamma += G_r s[t]
    (6) g_u = (dL/ds[t] - A G_m + gamma G_r) f(u[t])
    (7) dA = -s[t] G_m - g_u m[t-1] / A^2           (A enters the reset and the normalisation)
    (8) G_m = beta G_m + g_u / A;   G_r = beta_thr G_r + dA

Saved: the two recorded sequences (outputs).  No fastmath (see lif.py).

Each kernel has a general loop and, for the common case (H; in the backward
also a surrogate other than sigmoid), a tile loop on row slices whose body is
branch-free (an absent cotangent is a row of zeros, invariant flags become
selects), which the compiler vectorizes; both compute the same roundings, so
every spike the backward rebuilds is the forward's.
"""

from __future__ import annotations

import numpy as np
import torch

from snnref.leak import decay_of
from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._parameters import lane_value, tile_values
from ._stream import drain, put
from .surrogates import SIGMOID, algebraic_derivatives, derivatives, kind, kind_flags, step


@njit(cache=True, error_model="numpy")
def _forward_tile(x, beta, beta_thr, gamma, spikes, m_rec, r_rec, m_final, r_final, start, stop, strict, c,
                  streaming):
    """Eqs. (1)-(3) over one tile with H (no smooth twin): the body is
    branch-free on row slices, so it vectorizes.  With ``streaming`` (a
    constant: compiled once per value) the rows are written with streaming
    stores (``_stream``)."""
    one = c[0]
    zero = one - one
    membrane = m_final[start:stop]
    excess = r_final[start:stop]
    leak = tile_values(beta, start, stop)
    leak_thr = tile_values(beta_thr, start, stop)
    jump = tile_values(gamma, start, stop)
    inclusive = not strict
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        fired = spikes[t, start:stop]
        kept_m = m_rec[t, start:stop]
        kept_r = r_rec[t, start:stop]
        for i in range(membrane.shape[0]):
            m = membrane[i]
            r = excess[i]
            threshold = one + r  # (1)
            u = (m - threshold) / threshold
            s = one if (u > 0) | (inclusive & (u == 0)) else zero
            m = lane_value(leak, i) * m + drive[i] - s * threshold  # (2)
            r = lane_value(leak_thr, i) * r + lane_value(jump, i) * s  # (3)
            put(fired, i, s, streaming)
            put(kept_m, i, m, streaming)
            put(kept_r, i, r, streaming)
            membrane[i] = m
            excess[i] = r
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, m0, r0, beta, beta_thr, gamma, scale, spikes, m_rec, r_rec, m_final, r_final,
                 strict, smooth, surrogate, c, streaming, tile, first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            m_final[j] = m0[j]
            r_final[j] = r0[j]
        if not smooth:
            _forward_tile(x, beta, beta_thr, gamma, spikes, m_rec, r_rec, m_final, r_final, start, stop, strict,
                          c, streaming)
            continue
        for t in range(steps):
            for j in range(start, stop):
                m = m_final[j]
                r = r_final[j]
                threshold = one + r  # (1)
                s = step((m - threshold) / threshold, lane_value(scale, j), surrogate, strict, smooth, c)
                m = lane_value(beta, j) * m + x[t, j] - s * threshold  # (2)
                r = lane_value(beta_thr, j) * r + lane_value(gamma, j) * s  # (3)
                spikes[t, j] = s
                m_rec[t, j] = m
                r_rec[t, j] = r
                m_final[j] = m
                r_final[j] = r


@njit(cache=True, error_model="numpy")
def _backward_tile(m0, r0, beta, beta_thr, gamma, scale, m_rec, r_rec, g_spikes, g_m_rec, g_r_rec,
                   g_x, g_m0, g_r0, g_beta, g_beta_thr, g_gamma,
                   has_g_spikes, has_g_m_rec, has_g_r_rec, start, stop, strict, surrogate, c, streaming):
    """Eqs. (4)-(8) over one tile with H (no smooth twin) and an algebraic
    surrogate (sigmoid's exp would keep the loop scalar), on row slices with a
    branch-free body; an absent cotangent is a row of zeros.  With
    ``streaming`` (a constant: compiled once per value) dx's rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    zero = one - one
    kinds = kind_flags(surrogate)
    absent = np.zeros(stop - start, dtype=g_x.dtype)
    leak = tile_values(beta, start, stop)
    leak_thr = tile_values(beta_thr, start, stop)
    jump = tile_values(gamma, start, stop)
    scales = tile_values(scale, start, stop)
    carry_m = g_m0[start:stop]
    carry_r = g_r0[start:stop]
    d_beta = g_beta[start:stop]
    d_beta_thr = g_beta_thr[start:stop]
    d_gamma = g_gamma[start:stop]
    inclusive = not strict
    for t in range(g_x.shape[0] - 1, -1, -1):
        first = t == 0
        m_before_row = m0[start:stop] if first else m_rec[t - 1, start:stop]
        r_before_row = r0[start:stop] if first else r_rec[t - 1, start:stop]
        g_s_row = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent
        g_m_rec_row = g_m_rec[t % g_m_rec.shape[0], start:stop] if has_g_m_rec else absent
        g_r_rec_row = g_r_rec[t % g_r_rec.shape[0], start:stop] if has_g_r_rec else absent
        g_x_row = g_x[t, start:stop]
        for i in range(carry_m.shape[0]):
            g_m = carry_m[i] + g_m_rec_row[i]  # (4)
            g_r = carry_r[i] + g_r_rec_row[i]
            # s[t], rebuilt as the forward computed it (1).
            m_before = m_before_row[i]
            r_before = r_before_row[i]
            threshold = one + r_before
            u = (m_before - threshold) / threshold
            s = one if (u > 0) | (inclusive & (u == 0)) else zero
            put(g_x_row, i, g_m, streaming)
            d_beta[i] += g_m * m_before  # (5)
            d_beta_thr[i] += g_r * r_before
            d_gamma[i] += g_r * s
            f, _ = algebraic_derivatives(u, lane_value(scales, i), kinds, c)
            g_u = (g_s_row[i] - threshold * g_m + lane_value(jump, i) * g_r) * f  # (6)
            g_threshold = -s * g_m - g_u * m_before / (threshold * threshold)  # (7)
            carry_m[i] = lane_value(leak, i) * g_m + g_u / threshold  # (8)
            carry_r[i] = lane_value(leak_thr, i) * g_r + g_threshold
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(m0, r0, beta, beta_thr, gamma, scale, m_rec, r_rec, g_spikes, g_m_rec, g_r_rec,
                  g_m_final, g_r_final, g_x, g_m0, g_r0, g_beta, g_beta_thr, g_gamma,
                  has_g_spikes, has_g_m_rec, has_g_r_rec, has_g_m_final, has_g_r_final,
                  strict, smooth, surrogate, c, streaming, tile, first_tile, last_tile):
    steps, count = g_x.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            # g_m0 and g_r0 carry G_m and G_r through the scan.
            g_m0[j] = g_m_final[j] if has_g_m_final else zero
            g_r0[j] = g_r_final[j] if has_g_r_final else zero
            g_beta[j] = 0.0
            g_beta_thr[j] = 0.0
            g_gamma[j] = 0.0
        if not smooth and surrogate != SIGMOID:
            _backward_tile(m0, r0, beta, beta_thr, gamma, scale, m_rec, r_rec, g_spikes, g_m_rec, g_r_rec,
                           g_x, g_m0, g_r0, g_beta, g_beta_thr, g_gamma,
                           has_g_spikes, has_g_m_rec, has_g_r_rec, start, stop, strict, surrogate, c, streaming)
            continue
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                g_m = g_m0[j] + (g_m_rec[t % g_m_rec.shape[0], j] if has_g_m_rec else zero)  # (4)
                g_r = g_r0[j] + (g_r_rec[t % g_r_rec.shape[0], j] if has_g_r_rec else zero)
                m_before = m_rec[t - 1, j] if t > 0 else m0[j]
                r_before = r_rec[t - 1, j] if t > 0 else r0[j]
                threshold = one + r_before
                u = (m_before - threshold) / threshold
                s = step(u, lane_value(scale, j), surrogate, strict, smooth, c)
                g_x[t, j] = g_m
                g_beta[j] += g_m * m_before  # (5)
                g_beta_thr[j] += g_r * r_before
                g_gamma[j] += g_r * s
                f, _ = derivatives(u, lane_value(scale, j), surrogate, c)
                g_s = g_spikes[t % g_spikes.shape[0], j] if has_g_spikes else zero
                g_u = (g_s - threshold * g_m + lane_value(gamma, j) * g_r) * f  # (6)
                g_threshold = -s * g_m - g_u * m_before / (threshold * threshold)  # (7)
                g_m0[j] = lane_value(beta, j) * g_m + g_u / threshold  # (8)
                g_r0[j] = lane_value(beta_thr, j) * g_r + g_threshold


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, r0, beta, beta_thr, gamma, scale, config):
        strict, smooth, surrogate = config
        step_shape = x.shape[1:]
        lanes = [_launch.per_lane(value, step_shape) for value in (m0, r0)]
        lanes += _launch.parameters((beta, beta_thr, gamma, scale), step_shape)
        spikes, m_rec, r_rec = (_launch.empty(x.shape, x.dtype) for _ in range(3))
        m_final, r_final = (_launch.empty_lanes(step_shape, x.dtype) for _ in range(2))
        rows = [_launch.sequence(s) for s in (spikes, m_rec, r_rec)]
        _launch.run_tiles(forward_scan, _launch.lane_count(x), _launch.sequence(x), *lanes, *rows,
                          _launch.lanes(m_final), _launch.lanes(r_final), strict, smooth, surrogate,
                          _launch.constants(x.dtype), streamed=rows)
        ctx.save_for_backward(m_rec, r_rec, beta, beta_thr, gamma)
        ctx.lanes, ctx.config = lanes, config
        ctx.set_materialize_grads(False)
        return spikes, m_rec, r_rec, m_final, r_final

    @staticmethod
    @first_order("adaptive", "cpu")
    def backward(ctx, g_spikes, g_m_rec, g_r_rec, g_m_final, g_r_final):
        m_rec, r_rec, *parameters = ctx.saved_tensors
        dtype, count = m_rec.dtype, _launch.lane_count(m_rec)
        cotangents = [_launch.cotangent(g, dtype) for g in (g_spikes, g_m_rec, g_r_rec)]
        cotangents += [_launch.optional(g, dtype, rank=1) for g in (g_m_final, g_r_final)]
        g_x = _launch.empty(m_rec.shape, dtype)
        g_m0, g_r0 = (_launch.empty_lanes(m_rec.shape[1:], dtype) for _ in range(2))
        sums = [_launch.lane_sums(count, dtype) for _ in parameters]
        strict, smooth, surrogate = ctx.config
        g_x_rows = _launch.sequence(g_x)
        _launch.run_tiles(backward_scan, count, *ctx.lanes, _launch.sequence(m_rec), _launch.sequence(r_rec),
                          *(view for view, _ in cotangents), g_x_rows, _launch.lanes(g_m0),
                          _launch.lanes(g_r0), *sums, *(present for _, present in cotangents), strict, smooth,
                          surrogate, _launch.constants(dtype), streamed=[g_x_rows])
        neurons = m_rec.shape[-1]
        grads = [_launch.reduce_lanes(total, like, neurons) if want else None
                 for total, like, want in zip(sums, parameters, ctx.needs_input_grad[3:6])]
        # gradient_factor is spike_linear's fixed scale: no gradient.
        return (g_x, g_m0, g_r0, *grads, None, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    config = (row.spike_test == ">", bool(smooth), kind(surrogate))
    spikes, m_rec, r_rec, m_final, r_final = _Scan.apply(
        x, state["m"], state["r"], decay_of(params["tau"]), decay_of(params["tau_thr"]),
        params["gamma"], params["gradient_factor"], config,
    )
    return {"out": spikes, "m": m_rec, "r": r_rec}, {"m": m_final, "r": r_final}, {}
