"""Torch path of rnnbuilder's Cooldown neuron.

One membrane m per unit and no reset.  The spike is read from the membrane the
step starts from (m[-1] is the initial state), then the membrane integrates the
exponentiated input:

    u[t] = sgn (m[t-1] - 1);  s[t] = H(u[t]);  m[t] = beta m[t-1] + c exp(x[t])

with beta = exp(-1/tau) (``snnref.leak.decay_of``), c = 1 - beta (both ordinary autograd outside the
scan), sgn = +1 on the first F//2 units of the last axis and -1 on the rest
(those fire while m < 1).  The reverse scan, with G the gradient reaching m[t]:

    dx[t] = G c exp(x[t]);  dbeta += G m[t-1];  dc += G exp(x[t])
    G <- beta G + dL/ds[t] f(u[t]) sgn          (the gradient reaching m[t-1])

The forward saves the membrane sequence (the recorded output itself) and x;
u, the spike and exp(x) are recomputed in the backward.
"""

from __future__ import annotations

import torch

from ..leak import decay_of
from ..second_order import unbatched
from .surrogates import Step


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, beta, c, sgn, scale, step):
        spike = step.with_scale(scale)
        spikes = torch.empty_like(x)
        membrane = torch.empty_like(x)
        m = m0
        for t in range(x.shape[0]):
            spikes[t] = spike(sgn * (m - 1))
            m = beta * m + c * torch.exp(x[t])
            membrane[t] = m
        ctx.save_for_backward(x, m0, beta, c, sgn, scale, membrane)
        ctx.step = step
        return spikes, membrane, m

    @staticmethod
    @unbatched
    def backward(ctx, g_spikes, g_membrane, g_final):
        x, m0, beta, c, sgn, scale, membrane = ctx.saved_tensors
        spike = ctx.step.with_scale(scale)
        g_x = torch.empty_like(x)
        g_beta = torch.zeros_like(membrane[0])
        g_c = torch.zeros_like(membrane[0])
        g_m = g_final
        for t in reversed(range(x.shape[0])):
            g_m = g_m + g_membrane[t]
            e = torch.exp(x[t])
            m_prev = membrane[t - 1] if t > 0 else m0
            g_x[t] = g_m * c * e
            g_beta += g_m * m_prev
            g_c += g_m * e
            u = sgn * (m_prev - 1)
            g_m = beta * g_m + g_spikes[t] * spike.grad(u) * sgn
        # rnnbuilder's gradient_factor is spike_linear's fixed scale: no gradient.
        return g_x, g_m, g_beta.sum_to_size(beta.shape), g_c.sum_to_size(c.shape), None, None, None


def check_input(row, x, params):
    """Reject an x whose exp overflows in x's dtype (called before the run)."""
    x = x.detach()
    # Evaluated with the same torch.exp the scan uses, so the test is exact for
    # this dtype and device.  An inf in x only gets here with allow_nonfinite.
    overflow = torch.isfinite(x) & torch.isinf(torch.exp(x))
    if bool(overflow.any()):
        raise ValueError(
            f"x: {row.key} integrates exp(x), which overflows in {x.dtype} for x = {float(x[overflow].max())!r}; "
            f"exp(x) must stay below {torch.finfo(x.dtype).max!r}"
        )


def _signs(x):
    n = x.shape[-1]
    first_half = torch.arange(n, device=x.device) < n // 2
    return torch.where(first_half, 1.0, -1.0).to(x.dtype)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    beta = decay_of(params["tau"])
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    spikes, membrane, final = _Scan.apply(
        x, state["m"], beta, 1 - beta, _signs(x), params["gradient_factor"], step
    )
    return {"out": spikes, "m": membrane}, {"m": final}, {}
