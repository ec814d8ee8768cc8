"""Torch path of rnnbuilder's Adaptive neuron.

Membrane m and threshold excess r; the spike is read from the state the step
starts from (m[-1], r[-1] the initial state), normalised by the threshold:

    A = 1 + r[t-1];  u = (m[t-1] - A) / A;  s[t] = H(u)
    m[t] = beta m[t-1] + x[t] - s[t] A;  r[t] = beta_thr r[t-1] + gamma s[t]

with beta = exp(-1/tau), beta_thr = exp(-1/tau_thr) computed outside the scan
(``snnref.leak.decay_of``).
Nothing is detached.  The reverse scan, with G_m, G_r the gradients reaching
m[t], r[t]:

    dx[t] = G_m;  dL/ds = dL/ds[t] - A G_m + gamma G_r;  g_u = dL/ds f(u)
    dA = -s G_m - g_u m[t-1] / A^2
    G_m <- beta G_m + g_u / A;  G_r <- beta_thr G_r + dA      (A = 1 + r[t-1])
    dbeta += G_m m[t-1];  dbeta_thr += G_r r[t-1];  dgamma += G_r s

The forward saves the m and r sequences (the recorded outputs themselves); A,
u and the spike are recomputed from them in the backward.
"""

from __future__ import annotations

import torch

from ..leak import decay_of
from ..second_order import unbatched
from .surrogates import Step


def _distance(m, r):
    a = 1 + r
    return a, (m - a) / a


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, r0, beta, beta_thr, gamma, scale, step):
        spike = step.with_scale(scale)
        spikes = torch.empty_like(x)
        membrane = torch.empty_like(x)
        excess = torch.empty_like(x)
        m, r = m0, r0
        for t in range(x.shape[0]):
            a, u = _distance(m, r)
            s = spike(u)
            m = beta * m + x[t] - s * a
            r = beta_thr * r + gamma * s
            spikes[t], membrane[t], excess[t] = s, m, r
        ctx.save_for_backward(m0, r0, beta, beta_thr, gamma, scale, membrane, excess)
        ctx.step = step
        return spikes, membrane, excess, m, r

    @staticmethod
    @unbatched
    def backward(ctx, g_spikes, g_membrane, g_excess, g_final_m, g_final_r):
        m0, r0, beta, beta_thr, gamma, scale, membrane, excess = ctx.saved_tensors
        spike = ctx.step.with_scale(scale)
        g_x = torch.empty_like(membrane)
        g_beta = torch.zeros_like(membrane[0])
        g_beta_thr = torch.zeros_like(membrane[0])
        g_gamma = torch.zeros_like(membrane[0])
        g_m, g_r = g_final_m, g_final_r
        for t in reversed(range(membrane.shape[0])):
            g_m = g_m + g_membrane[t]
            g_r = g_r + g_excess[t]
            m_prev = membrane[t - 1] if t > 0 else m0
            r_prev = excess[t - 1] if t > 0 else r0
            a, u = _distance(m_prev, r_prev)
            s = spike(u)
            g_x[t] = g_m
            g_beta += g_m * m_prev
            g_beta_thr += g_r * r_prev
            g_gamma += g_r * s
            g_u = (g_spikes[t] - a * g_m + gamma * g_r) * spike.grad(u)
            # A enters twice: in the reset (-s A) and in the normalisation of u.
            g_a = -s * g_m - g_u * m_prev / (a * a)
            g_m = beta * g_m + g_u / a
            g_r = beta_thr * g_r + g_a
        return (
            g_x,
            g_m,
            g_r,
            g_beta.sum_to_size(beta.shape),
            g_beta_thr.sum_to_size(beta_thr.shape),
            g_gamma.sum_to_size(gamma.shape),
            None,  # gradient_factor: spike_linear's fixed scale
            None,
        )


def run(row, x, params, state, surrogate, inject, smooth, detached):
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    spikes, membrane, excess, final_m, final_r = _Scan.apply(
        x,
        state["m"],
        state["r"],
        decay_of(params["tau"]),
        decay_of(params["tau_thr"]),
        params["gamma"],
        params["gradient_factor"],
        step,
    )
    return {"out": spikes, "m": membrane, "r": excess}, {"m": final_m, "r": final_r}, {}
