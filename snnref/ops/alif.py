"""Torch path of tether's ALIF (adaptive-threshold LIF), from SPEC.md section 2.

A membrane v with leak lam_v and an adaptation a with leak lam_a; per step t,
from the post-reset membrane p and the adaptation a[t] of the previous step
(the initial state at t = 0):

    v[t] = lam_v p + x[t];  u = v[t] - (theta + beta a[t]);  s = H(u)
    p = v[t] (1 - sg(s))          (hard reset to 0, the spike detached; 0 where sg(s) = 1: lif.reset_to_zero)
    a[t+1] = lam_a a[t] + s       (differentiated: the spike feeds a with sg)

Recorded: the pre-reset v[t] and a[t] before its update; final state: p and
a[T].  In the reverse scan, with g_s = dL/ds[t] + dL/da[t+1]:

    dL/dv[t] = dL/dp (1 - s) + dL/dv_rec[t] + g_s f(u)
    dL/da[t] = lam_a dL/da[t+1] - beta g_s f(u) + dL/da_rec[t]
    dL/dlam_a = sum_t dL/da[t+1] a[t]     (t >= 0: no term for a's initial value)

``_Scan`` saves the two recorded sequences (outputs anyway) and the spikes as
bytes; u and the post-reset membrane are recomputed from them exactly as the
forward computed them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..second_order import unbatched
from .lif import reset_to_zero
from .surrogates import Step


class Config(NamedTuple):
    step: Step
    replay: bool  # detached reset spikes supplied by the caller


def _distance(v, a, theta, beta):
    # One function for forward and backward, so the recomputed u is bit-identical.
    return v - (theta + beta * a)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, a0, lam_v, lam_a, theta, beta, scale, replayed, config):
        step = config.step.with_scale(scale)
        v_pre = torch.empty_like(x)
        a_before = torch.empty_like(x)
        spikes = torch.empty_like(x)
        p, a = v0, a0
        for t in range(x.shape[0]):
            v = lam_v * p + x[t]
            s = step(_distance(v, a, theta, beta))
            p = reset_to_zero(v, replayed[t] if config.replay else s)
            v_pre[t], a_before[t], spikes[t] = v, a, s
            a = lam_a * a + s
        # The smooth twin's spikes are not 0/1: kept as floats there.
        saved_spikes = spikes if config.step.smooth else spikes.to(torch.uint8)
        ctx.save_for_backward(v0, lam_v, lam_a, theta, beta, scale, v_pre, a_before, saved_spikes, replayed)
        ctx.config = config
        return spikes, v_pre, a_before, p, a

    @staticmethod
    @unbatched
    def backward(ctx, g_spikes, g_v_rec, g_a_rec, g_p_final, g_a_final):
        v0, lam_v, lam_a, theta, beta, scale, v_pre, a_before, saved_spikes, replayed = ctx.saved_tensors
        config = ctx.config
        step = config.step.with_scale(scale)
        g_lam_v, g_lam_a, g_theta, g_beta, g_scale = (torch.zeros_like(v_pre[0]) for _ in range(5))
        g_x = torch.empty_like(v_pre)
        g_p = g_p_final.clone()
        g_a = g_a_final.clone()  # dL/da[t+1] while step t is processed

        def reset_spike(t):
            return replayed[t] if config.replay else saved_spikes[t].to(v_pre.dtype)

        for t in reversed(range(v_pre.shape[0])):
            a = a_before[t]
            u = _distance(v_pre[t], a, theta, beta)
            g_s = g_spikes[t] + g_a
            g_u = g_s * step.grad(u)
            g_v = g_p * (1 - reset_spike(t)) + g_v_rec[t] + g_u
            g_theta -= g_u
            g_beta -= g_u * a
            g_scale += g_s * step.scale_grad(u)
            g_lam_a += g_a * a
            g_a = lam_a * g_a - beta * g_u + g_a_rec[t]
            g_x[t] = g_v
            # The membrane this step started from, recomputed as the forward did.
            p_before = reset_to_zero(v_pre[t - 1], reset_spike(t - 1)) if t > 0 else v0
            g_lam_v += g_v * p_before
            g_p = lam_v * g_v
        return (
            g_x,
            g_p,
            g_a,
            g_lam_v.sum_to_size(lam_v.shape),
            g_lam_a.sum_to_size(lam_a.shape),
            g_theta.sum_to_size(theta.shape),
            g_beta.sum_to_size(beta.shape),
            g_scale.sum_to_size(scale.shape),
            None,
            None,
        )


def run(row, x, params, state, surrogate, inject, smooth, detached):
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    replay = detached is not None
    replayed = detached["reset_spike"] if replay else None
    spikes, v_pre, a_before, v_final, a_final = _Scan.apply(
        x, state["v"], state["a"], params["decay_v"], params["decay_a"], params["threshold"],
        params["beta"], params["alpha"], replayed, Config(step, replay),
    )
    used = {"reset_spike": replayed if replay else spikes.detach()}
    return {"out": spikes, "v": v_pre, "a": a_before}, {"v": v_final, "a": a_final}, used
