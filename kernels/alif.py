"""Triton scans of the adaptive LIF family (tether ALIF).

Each program owns a block of neurons and runs the whole time loop with the
membrane v and the adaptation a in float32 registers (storage may be float32,
float16 or bfloat16).  Per step t, from the post-reset membrane p and a[t]:

    v[t] = lam_v p + x[t];  u = v[t] - (theta + beta a[t]);  s = H(u) (smooth twin: F(u))
    p = v[t] (1 - sg(s))            hard reset to 0, the spike detached (0 where sg(s) = 1)
    a[t+1] = lam_a a[t] + s         differentiated: the spike feeds a with f(u)

Recorded: the pre-reset v[t] and a[t] before its update; final state p and
a[T].  The reverse scan, with g_a = dL/da[t+1] (the final cotangent at first):

    g_s = dL/ds[t] + g_a;  g_u = g_s f(u)
    dL/dv[t] = dL/dp (1 - sg(s)) + dL/dv_rec[t] + g_u;  dL/dx[t] = dL/dv[t];  dL/dp_prev = lam_v dL/dv[t]
    g_a <- lam_a g_a - beta g_u + dL/da_rec[t]
    dL/dlam_v += dL/dv[t] p[t-1];  dL/dlam_a += g_a a[t] (before g_a steps back: no term for a[0]'s start)
    dL/dtheta -= g_u;  dL/dbeta -= g_u a[t];  dL/dalpha += g_s dF(u)

The forward saves v[t] and a[t] in float32 (8 bytes per neuron-step; with
float32 storage these are the recorded outputs themselves, so nothing extra);
the backward recomputes u, the spikes and the post-reset membrane from them
exactly as the forward computed them.  It walks back carrying step t-1's
values into the next iteration, so each saved value is read once.  Parameter
gradients leave the kernel as per-neuron float32 partial sums, reduced by
torch in a fixed order (no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _launch
from ._jit import load_param, reset_to_zero, spike
from .common import device_function
from .surrogates import derivatives, kind_id


@device_function
def _distance(v, a, theta, beta):
    # One expression for both scans, so the backward's u is bit-identical.
    return v - (theta + beta * a)


@device_function
def _fired(v, a, theta, beta, scale, KIND: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr):
    """The forward's spike (the reset spike unless replayed), recomputed in the backward."""
    return spike(_distance(v, a, theta, beta), scale, KIND, STRICT, SMOOTH)


@triton.jit
def _forward(x_ptr, v0_ptr, a0_ptr, lam_v_ptr, lam_a_ptr, theta_ptr, beta_ptr, scale_ptr, replay_ptr,
             spikes_ptr, v_rec_ptr, a_rec_ptr, v_save_ptr, a_save_ptr, v_final_ptr, a_final_ptr,
             T, M, N,
             LAM_V_PER_NEURON: tl.constexpr, LAM_A_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
             BETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
             SAVE_SEPARATE: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr,
             REPLAY: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(7) of ``snnref/spec/alif.py``, one program per block of lanes over every step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    lam_v = load_param(lam_v_ptr, offs, mask, N, LAM_V_PER_NEURON)
    lam_a = load_param(lam_a_ptr, offs, mask, N, LAM_A_PER_NEURON)
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    scale = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    # Masked lanes start from a defined 0 and are never stored.
    p = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(a0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        v = lam_v * p + x
        s = spike(_distance(v, a, theta, beta), scale, KIND, STRICT, SMOOTH)
        if REPLAY:
            r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        else:
            r = s
        p = reset_to_zero(v, r)
        tl.store(spikes_ptr + at, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(v_rec_ptr + at, v.to(v_rec_ptr.dtype.element_ty), mask=mask)
        tl.store(a_rec_ptr + at, a.to(a_rec_ptr.dtype.element_ty), mask=mask)
        if SAVE_SEPARATE:
            # Half storage: the backward needs the float32 values, not the rounded records.
            tl.store(v_save_ptr + at, v, mask=mask)
            tl.store(a_save_ptr + at, a, mask=mask)
        a = lam_a * a + s
        at += M
    tl.store(v_final_ptr + offs, p.to(v_final_ptr.dtype.element_ty), mask=mask)
    tl.store(a_final_ptr + offs, a.to(a_final_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(v_save_ptr, a_save_ptr, v0_ptr, lam_v_ptr, lam_a_ptr, theta_ptr, beta_ptr, scale_ptr, replay_ptr,
              g_spikes_ptr, g_v_rec_ptr, g_a_rec_ptr, g_v_final_ptr, g_a_final_ptr,
              g_x_ptr, g_v0_ptr, g_a0_ptr, g_lam_v_ptr, g_lam_a_ptr, g_theta_ptr, g_beta_ptr, g_scale_ptr,
              T, M, N, LAST,
              LAM_V_PER_NEURON: tl.constexpr, LAM_A_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
              BETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
              STRICT: tl.constexpr, SMOOTH: tl.constexpr, REPLAY: tl.constexpr, KIND: tl.constexpr,
              HAS_G_SPIKES: tl.constexpr, HAS_G_V_REC: tl.constexpr, HAS_G_A_REC: tl.constexpr,
              HAS_G_V_FINAL: tl.constexpr, HAS_G_A_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (8)-(14) of ``snnref/spec/alif.py`` from the saved v[t] and a[t], last step first."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    lam_v = load_param(lam_v_ptr, offs, mask, N, LAM_V_PER_NEURON)
    lam_a = load_param(lam_a_ptr, offs, mask, N, LAM_A_PER_NEURON)
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    scale = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # dL/dp (post-reset membrane) and dL/da[t+1], entering from the final state.
    g_p = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_V_FINAL:
        g_p = tl.load(g_v_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_a = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_A_FINAL:
        g_a = tl.load(g_a_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_lam_v = tl.full([BLOCK], 0.0, tl.float32)
    g_lam_a = tl.full([BLOCK], 0.0, tl.float32)
    g_theta = tl.full([BLOCK], 0.0, tl.float32)
    g_beta = tl.full([BLOCK], 0.0, tl.float32)
    g_scale = tl.full([BLOCK], 0.0, tl.float32)
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    # Step t's saved v, a and reset spike; each iteration reads step t-1's and
    # hands them on, so every saved value is loaded once.
    v = tl.load(v_save_ptr + at, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(a_save_ptr + at, mask=mask, other=0.0).to(tl.float32)
    if REPLAY:
        r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
    else:
        r = _fired(v, a, theta, beta, scale, KIND, STRICT, SMOOTH)
    for t in range(T):
        f, dF = derivatives(_distance(v, a, theta, beta), scale, KIND)
        g_s = g_a
        if HAS_G_SPIKES:
            g_s += tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # a[t+1] = lam_a a[t] + s[t]: the only place lam_a and this g_a meet.
        g_lam_a += g_a * a
        g_u = g_s * f
        g_scale += g_s * dF
        g_theta -= g_u
        g_beta -= g_u * a
        g_a = lam_a * g_a - beta * g_u
        if HAS_G_A_REC:
            g_a += tl.load(g_a_rec_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # The detached reset passes only its (1 - s) factor.
        g_v = g_p * (1.0 - r) + g_u
        if HAS_G_V_REC:
            g_v += tl.load(g_v_rec_ptr + at, mask=mask, other=0.0).to(tl.float32)
        tl.store(g_x_ptr + at, g_v.to(g_x_ptr.dtype.element_ty), mask=mask)
        # The membrane this step started from, recomputed as the forward did
        # (at step 0: the initial state; at >= M holds for every later step).
        later = at >= M
        earlier = mask & later
        before = at - M
        v = tl.load(v_save_ptr + before, mask=earlier, other=0.0).to(tl.float32)
        a = tl.load(a_save_ptr + before, mask=earlier, other=0.0).to(tl.float32)
        if REPLAY:
            r = tl.load(replay_ptr + before, mask=earlier, other=0.0).to(tl.float32)
        else:
            r = _fired(v, a, theta, beta, scale, KIND, STRICT, SMOOTH)
        p_before = tl.where(later, reset_to_zero(v, r), v0)
        g_lam_v += g_v * p_before
        g_p = lam_v * g_v
        at -= M
    tl.store(g_v0_ptr + offs, g_p.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_a0_ptr + offs, g_a.to(g_a0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_lam_v_ptr + offs, g_lam_v, mask=mask)
    tl.store(g_lam_a_ptr + offs, g_lam_a, mask=mask)
    tl.store(g_theta_ptr + offs, g_theta, mask=mask)
    tl.store(g_beta_ptr + offs, g_beta, mask=mask)
    tl.store(g_scale_ptr + offs, g_scale, mask=mask)


SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("x", "v0", "a0"), params=("lam_v", "lam_a", "theta", "beta", "scale"), constants=("replay",),
    outputs=(_launch.Output("spikes"), _launch.Output("v_rec"), _launch.Output("a_rec"),
             _launch.Output("v_final", per_step=False), _launch.Output("a_final", per_step=False)),
    saved=(_launch.Saved("v_save", of="v_rec"), _launch.Saved("a_save", of="a_rec")),
)


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    replay = detached["reset_spike"].contiguous() if detached is not None else None
    options = dict(strict=row.spike_test == ">", smooth=smooth, kind=kind_id(surrogate_key), replay=replay is not None)
    untrained = () if registry.surrogate(surrogate_key).trainable_scale else ("scale",)
    scan = SCAN(options, untrained, x=x, v0=state["v"], a0=state["a"], lam_v=params["decay_v"],
                lam_a=params["decay_a"], theta=params["threshold"], beta=params["beta"],
                scale=params[registry.surrogate(surrogate_key).scale], replay=replay)
    used = {"reset_spike": replay if replay is not None else scan["spikes"].detach()}
    return ({"out": scan["spikes"], "v": scan["v_rec"], "a": scan["a_rec"]},
            {"v": scan["v_final"], "a": scan["a_final"]}, used)


COMPILE_VARIANTS = _launch.CompileVariants(
    float32_pointers=frozenset({"v_save", "a_save", "g_lam_v", "g_lam_a", "g_theta", "g_beta", "g_scale"}),
    variants=(
        _launch.variant(torch.float32, "SPIKES V_REC A_REC V_FINAL A_FINAL", LAM_V_PER_NEURON=True,
                        LAM_A_PER_NEURON=False, THETA_PER_NEURON=True, BETA_PER_NEURON=False, SCALE_PER_NEURON=True,
                        STRICT=True, SMOOTH=False, REPLAY=False, KIND=0, SAVE_SEPARATE=False),
        _launch.variant(torch.float16, "SPIKES A_REC", LAM_V_PER_NEURON=False, LAM_A_PER_NEURON=True,
                        THETA_PER_NEURON=False, BETA_PER_NEURON=True, SCALE_PER_NEURON=False,
                        STRICT=False, SMOOTH=False, REPLAY=True, KIND=1, SAVE_SEPARATE=True),
        _launch.variant(torch.bfloat16, "V_REC V_FINAL", LAM_V_PER_NEURON=True, LAM_A_PER_NEURON=True,
                        THETA_PER_NEURON=True, BETA_PER_NEURON=True, SCALE_PER_NEURON=True,
                        STRICT=True, SMOOTH=True, REPLAY=False, KIND=2, SAVE_SEPARATE=True),
        _launch.variant(torch.float32, "A_FINAL", LAM_V_PER_NEURON=False, LAM_A_PER_NEURON=False,
                        THETA_PER_NEURON=False, BETA_PER_NEURON=False, SCALE_PER_NEURON=False,
                        STRICT=False, SMOOTH=True, REPLAY=True, KIND=4, SAVE_SEPARATE=False),
    ),
)
