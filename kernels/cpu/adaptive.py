"""Fused CPU scans of rnnbuilder's Adaptive neuron, SPEC.md section 3.

Per lane, membrane m and threshold excess r, the spike read from the state the
step starts from (m[-1], r[-1] the initial state):

    (1) A = 1 + r[t-1];   u[t] = (m[t-1] - A) / A;   s[t] = H(u[t])   (F(u) for the smooth twin)
    (2) m[t] = beta m[t-1] + x[t] - s[t] A
    (3) r[t] = beta_thr r[t-1] + gamma s[t]

with beta = exp(-1/tau) and beta_thr = exp(-1/tau_thr) computed by torch.
Nothing is detached.  Reverse scan, G_m and G_r the gradients reaching m[t], r[t]:

    (4) G_m += dL/dm_rec[t];   G_r += dL/dr_rec[t];   dx[t] = G_m
    (5) dbeta += G_m m[t-1];   dbeta_thr += G_r r[t-1];   dgamma += G_r s[t]
    (6) g_u = (dL/ds[t] - A G_m + gamma G_r) f(u[t])
    (7) dA = -s[t] G_m - g_u m[t-1] / A^2           (A enters the reset and the normalisation)
    (8) G_m = beta G_m + g_u / A;   G_r = beta_thr G_r + dA

Saved: the two recorded sequences (outputs).  No fastmath (see lif.py).
"""

from __future__ import annotations

import torch
from numba import njit

from . import _launch
from .surrogates import derivatives, kind, step


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, m0, r0, beta, beta_thr, gamma, scale, spikes, m_rec, r_rec, m_final, r_final,
                 strict, smooth, surrogate, tile, c, first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            m_final[j] = m0[j]
            r_final[j] = r0[j]
        for t in range(steps):
            for j in range(start, stop):
                m = m_final[j]
                r = r_final[j]
                threshold = one + r  # (1)
                s = step((m - threshold) / threshold, scale[j], surrogate, strict, smooth, c)
                m = beta[j] * m + x[t, j] - s * threshold  # (2)
                r = beta_thr[j] * r + gamma[j] * s  # (3)
                spikes[t, j] = s
                m_rec[t, j] = m
                r_rec[t, j] = r
                m_final[j] = m
                r_final[j] = r


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(m0, r0, beta, beta_thr, gamma, scale, m_rec, r_rec, g_spikes, g_m_rec, g_r_rec,
                  g_m_final, g_r_final, g_x, g_m0, g_r0, g_beta, g_beta_thr, g_gamma,
                  has_g_spikes, has_g_m_rec, has_g_r_rec, has_g_m_final, has_g_r_final,
                  strict, smooth, surrogate, tile, c, first_tile, last_tile):
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
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                g_m = g_m0[j] + (g_m_rec[t, j] if has_g_m_rec else zero)  # (4)
                g_r = g_r0[j] + (g_r_rec[t, j] if has_g_r_rec else zero)
                m_before = m_rec[t - 1, j] if t > 0 else m0[j]
                r_before = r_rec[t - 1, j] if t > 0 else r0[j]
                threshold = one + r_before
                u = (m_before - threshold) / threshold
                s = step(u, scale[j], surrogate, strict, smooth, c)
                g_x[t, j] = g_m
                g_beta[j] += g_m * m_before  # (5)
                g_beta_thr[j] += g_r * r_before
                g_gamma[j] += g_r * s
                f, _ = derivatives(u, scale[j], surrogate, c)
                g_s = g_spikes[t, j] if has_g_spikes else zero
                g_u = (g_s - threshold * g_m + gamma[j] * g_r) * f  # (6)
                g_threshold = -s * g_m - g_u * m_before / (threshold * threshold)  # (7)
                g_m0[j] = beta[j] * g_m + g_u / threshold  # (8)
                g_r0[j] = beta_thr[j] * g_r + g_threshold


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, r0, beta, beta_thr, gamma, scale, config):
        strict, smooth, surrogate = config
        step_shape = x.shape[1:]
        lanes = [_launch.per_lane(value, step_shape) for value in (m0, r0, beta, beta_thr, gamma, scale)]
        spikes, m_rec, r_rec = (_launch.empty(x.shape, x.dtype) for _ in range(3))
        m_final, r_final = (_launch.empty(step_shape, x.dtype) for _ in range(2))
        _launch.run_tiles(forward_scan, x[0].numel(), _launch.sequence(x), *lanes, _launch.sequence(spikes), _launch.sequence(m_rec),
                     _launch.sequence(r_rec), _launch.lanes(m_final), _launch.lanes(r_final),
                     strict, smooth, surrogate, _launch.TILE, _launch.constants(x.dtype))
        ctx.save_for_backward(m_rec, r_rec, beta, beta_thr, gamma)
        ctx.lanes, ctx.config = lanes, config
        ctx.set_materialize_grads(False)
        return spikes, m_rec, r_rec, m_final, r_final

    @staticmethod
    def backward(ctx, g_spikes, g_m_rec, g_r_rec, g_m_final, g_r_final):
        m_rec, r_rec, *parameters = ctx.saved_tensors
        dtype, count = m_rec.dtype, m_rec[0].numel()
        cotangents = [_launch.optional(g, dtype) for g in (g_spikes, g_m_rec, g_r_rec)]
        cotangents += [_launch.optional(g, dtype, rank=1) for g in (g_m_final, g_r_final)]
        g_x = _launch.empty(m_rec.shape, dtype)
        g_m0, g_r0 = (torch.empty(m_rec.shape[1:], dtype=dtype) for _ in range(2))
        sums = [_launch.lane_sums(count) for _ in parameters]
        strict, smooth, surrogate = ctx.config
        _launch.run_tiles(backward_scan, count, *ctx.lanes, _launch.sequence(m_rec), _launch.sequence(r_rec),
                      *(view for view, _ in cotangents), _launch.sequence(g_x), _launch.lanes(g_m0),
                      _launch.lanes(g_r0), *sums, *(present for _, present in cotangents),
                      strict, smooth, surrogate, _launch.TILE, _launch.constants(dtype))
        neurons = m_rec.shape[-1]
        grads = [_launch.reduce_lanes(total, like, neurons) if want else None
                 for total, like, want in zip(sums, parameters, ctx.needs_input_grad[3:6])]
        # gradient_factor is spike_linear's fixed scale: no gradient.
        return (g_x, g_m0, g_r0, *grads, None, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    config = (row.spike_test == ">", bool(smooth), kind(surrogate))
    spikes, m_rec, r_rec, m_final, r_final = _Scan.apply(
        x, state["m"], state["r"], torch.exp(-1 / params["tau"]), torch.exp(-1 / params["tau_thr"]),
        params["gamma"], params["gradient_factor"], config,
    )
    return {"out": spikes, "m": m_rec, "r": r_rec}, {"m": m_final, "r": r_final}, {}
