"""Torch path of tether's SpikingSelfAttention, from SPEC.md sections 2 and 8.

Input x of shape (T, B, N, D).  Three branches b in (q, k, v), each a tether
LIF (leak lam_b, threshold theta_b, arctan scale alpha_b) driven by a
bias-free linear map z_b = x W_b^T; per step t, from the previous post-reset
membranes p_b and context S (the initial state at t = 0):

    v_b = lam_b p_b + z_b[t];  s_b = H(v_b - theta_b);  p_b = v_b (1 - sg(s_b)), 0 where sg(s_b) = 1
    S = S + s_k s_v;  o[t] = s_q S
    out = o W_proj^T + b_proj

The linear maps are batched matmuls over all steps at once, left to autograd.
``_Scan`` is one autograd Function for the three LIF scans and the context.
Its reverse scan, with dL/dS accumulated from the end (S[t] carries S[t-1]
unchanged):

    dL/dS[t] = dL/dS[t+1] + dL/dS_rec[t] + dL/do[t] s_q
    dL/ds_q = dL/do[t] S[t];  dL/ds_k = dL/dS[t] s_v;  dL/ds_v = dL/dS[t] s_k

and per branch the LIF backward, u_b = v_b - theta_b:

    dL/dv_b = dL/dp_b (1 - s_b) + dL/dv_b,rec + dL/ds_b f(u_b);  dL/dp_b(prev) = lam_b dL/dv_b

It saves the three pre-reset membranes and the context sequence (all outputs
anyway) and the spikes as bytes; u and the post-reset membranes are recomputed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..second_order import first_order
from .lif import reset_to_zero
from .surrogates import Step

BRANCHES = ("q", "k", "v")


class Config(NamedTuple):
    step: Step
    replay: bool  # detached reset spikes supplied by the caller


class Branch(NamedTuple):
    """One LIF branch's arguments to ``_Scan``, flattened into its argument list."""

    z: torch.Tensor  # the linear map's output, (T, B, N, D)
    v0: torch.Tensor
    lam: torch.Tensor
    theta: torch.Tensor
    scale: torch.Tensor
    replayed: object  # detached reset spikes, or None


def _branches(flat):
    width = len(Branch._fields)
    return [Branch(*flat[width * i: width * (i + 1)]) for i in range(len(BRANCHES))]


class _Scan(torch.autograd.Function):
    """Arguments: S0, the three branches' fields flattened, the config."""

    @staticmethod
    def forward(ctx, s0, *args):
        *flat, config = args
        branches = _branches(flat)
        steps = [config.step.with_scale(b.scale) for b in branches]
        z = branches[0].z
        v_pre = [torch.empty_like(z) for _ in BRANCHES]
        spikes = [torch.empty_like(z) for _ in BRANCHES]
        context = torch.empty_like(z)
        out = torch.empty_like(z)
        p = [b.v0 for b in branches]
        S = s0
        for t in range(z.shape[0]):
            s = []
            for i, b in enumerate(branches):
                v = b.lam * p[i] + b.z[t]
                s.append(steps[i](v - b.theta))
                p[i] = reset_to_zero(v, b.replayed[t] if config.replay else s[i])
                v_pre[i][t], spikes[i][t] = v, s[i]
            s_q, s_k, s_v = s
            S = S + s_k * s_v
            context[t], out[t] = S, s_q * S
        # The smooth twin's spikes are not 0/1: kept as floats there.  The
        # branch inputs z are not saved: the backward needs only dL/dz.
        saved = spikes if config.step.smooth else [s.to(torch.uint8) for s in spikes]
        ctx.save_for_backward(context, *v_pre, *saved, *(t for b in branches for t in b._replace(z=None)))
        ctx.config = config
        ctx.mark_non_differentiable(*spikes)
        return (out, context, S, *v_pre, *p, *spikes)

    @staticmethod
    @first_order("attention", "torch")
    def backward(ctx, g_out, g_context, g_S_final, *grads):
        config = ctx.config
        n = len(BRANCHES)
        context, *saved = ctx.saved_tensors
        v_pre, spikes, branches = saved[:n], saved[n:2 * n], _branches(saved[2 * n:])
        g_v_rec, g_p = grads[:n], [g.clone() for g in grads[n:2 * n]]
        steps = [config.step.with_scale(b.scale) for b in branches]
        g_z = [torch.empty_like(context) for _ in BRANCHES]
        g_lam, g_theta, g_scale = ([torch.zeros_like(context[0]) for _ in BRANCHES] for _ in range(3))
        g_S = g_S_final.clone()

        def spike(i, t):
            return spikes[i][t].to(context.dtype)

        def reset_spike(i, t):
            return branches[i].replayed[t] if config.replay else spike(i, t)

        for t in reversed(range(context.shape[0])):
            s_q, s_k, s_v = (spike(i, t) for i in range(n))
            g_S = g_S + g_context[t] + g_out[t] * s_q
            g_s = (g_out[t] * context[t], g_S * s_v, g_S * s_k)
            for i, b in enumerate(branches):
                u = v_pre[i][t] - b.theta
                g_u = g_s[i] * steps[i].grad(u)
                g_v = g_p[i] * (1 - reset_spike(i, t)) + g_v_rec[i][t] + g_u
                g_theta[i] -= g_u
                g_scale[i] += g_s[i] * steps[i].scale_grad(u)
                g_z[i][t] = g_v
                # The membrane this step started from, recomputed as the forward did.
                p_before = reset_to_zero(v_pre[i][t - 1], reset_spike(i, t - 1)) if t > 0 else b.v0
                g_lam[i] += g_v * p_before
                g_p[i] = b.lam * g_v
        flat = []
        for i, b in enumerate(branches):
            flat += Branch(
                g_z[i],
                g_p[i],
                g_lam[i].sum_to_size(b.lam.shape),
                g_theta[i].sum_to_size(b.theta.shape),
                g_scale[i].sum_to_size(b.scale.shape),
                None,
            )
        return (g_S, *flat, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    replay = detached is not None
    args = []
    for b in BRANCHES:
        # torch's Linear convention, one batched matmul over every step.
        z = x @ params[f"{b}_weight"].T
        replayed = detached[f"{b}_reset_spike"] if replay else None
        args += [z, state[f"{b}_v"], params[f"{b}_decay"], params[f"{b}_threshold"], params[f"{b}_alpha"], replayed]
    n = len(BRANCHES)
    out, context, context_final, *rest = _Scan.apply(state["context"], *args, Config(step, replay))
    v_pre, v_final, spikes = rest[:n], rest[n:2 * n], rest[2 * n:]
    outputs = {"out": out @ params["proj_weight"].T + params["proj_bias"], "context": context}
    final = {"context": context_final}
    used = {}
    for i, b in enumerate(BRANCHES):
        outputs[f"{b}_v"] = v_pre[i]
        final[f"{b}_v"] = v_final[i]
        used[f"{b}_reset_spike"] = detached[f"{b}_reset_spike"] if replay else spikes[i]
    return outputs, final, used
