"""Triton scans of rnnbuilder's Adaptive neuron (adaptive threshold, Bellec et al. 2018).

Each program owns a block of neurons and runs the whole time loop with the
membrane m and the threshold excess r in float32 registers (storage may be
float32, float16 or bfloat16).  The spike reads the state the step starts from
(m[-1], r[-1] the initial state), in units of the threshold A:

    A = 1 + r[t-1];  u[t] = (m[t-1] - A) / A;  s[t] = H(u[t]) strict (smooth twin: F(u[t]))
    m[t] = beta m[t-1] + x[t] - s[t] A;  r[t] = beta_thr r[t-1] + gamma s[t]

beta = exp(-1/tau) and beta_thr = exp(-1/tau_thr) come from the host (torch
autograd carries them to tau, tau_thr); gradient_factor is spike_linear's
fixed scale.  Nothing is detached: the gradient flows through A (hence r) in
the normalisation and in the reset.  The reverse scan, with G_m, G_r the
gradients reaching m[t], r[t] (from the final state's cotangents down):

    G_m += dL/dm[t];  G_r += dL/dr[t];  dx[t] = G_m
    g_u = (dL/ds[t] - A G_m + gamma G_r) f(u[t])
    dbeta += G_m m[t-1];  dbeta_thr += G_r r[t-1];  dgamma += G_r s[t]
    G_m <- beta G_m + g_u / A;  G_r <- beta_thr G_r - s[t] G_m - g_u m[t-1] / A^2

and the initial state receives the last G_m, G_r.  The forward saves m and r
in float32: with float32 storage those are the recorded outputs themselves
(0 extra bytes per neuron-step), otherwise their own buffers (8 bytes); A, u
and the spikes are recomputed from them in the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from snnref.leak import decay_of

from . import _launch
from ._jit import load_param, spike
from .common import device_function
from .surrogates import derivatives, kind_id


@device_function
def _distance(m, r):
    """The threshold A = 1 + r and the distance u = (m - A) / A, as the spike sees them."""
    big_a = 1.0 + r
    return big_a, (m - big_a) / big_a


@triton.jit
def _forward(x_ptr, m0_ptr, r0_ptr, beta_ptr, beta_thr_ptr, gamma_ptr, scale_ptr,
             spikes_ptr, m_record_ptr, r_record_ptr, m_saved_ptr, r_saved_ptr, m_final_ptr, r_final_ptr,
             T, M, N,
             BETA_PER_NEURON: tl.constexpr, BETA_THR_PER_NEURON: tl.constexpr,
             GAMMA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
             SAVE_SEPARATE: tl.constexpr, SMOOTH: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(6) of ``snnref/spec/adaptive.py``, one program per block of lanes over every step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    beta_thr = load_param(beta_thr_ptr, offs, mask, N, BETA_THR_PER_NEURON)
    gamma = load_param(gamma_ptr, offs, mask, N, GAMMA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    # Masked lanes start from a defined 0 and are never stored.
    m = tl.load(m0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(r0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # The spike reads the previous state, in units of the current threshold.
        big_a, u = _distance(m, r)
        s = spike(u, a, KIND, True, SMOOTH)
        m = beta * m + x - s * big_a
        r = beta_thr * r + gamma * s
        tl.store(spikes_ptr + at, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(m_record_ptr + at, m.to(m_record_ptr.dtype.element_ty), mask=mask)
        tl.store(r_record_ptr + at, r.to(r_record_ptr.dtype.element_ty), mask=mask)
        if SAVE_SEPARATE:
            tl.store(m_saved_ptr + at, m, mask=mask)
            tl.store(r_saved_ptr + at, r, mask=mask)
        at += M
    tl.store(m_final_ptr + offs, m.to(m_final_ptr.dtype.element_ty), mask=mask)
    tl.store(r_final_ptr + offs, r.to(r_final_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(m_saved_ptr, r_saved_ptr, m0_ptr, r0_ptr, beta_ptr, beta_thr_ptr, gamma_ptr, scale_ptr,
              g_spikes_ptr, g_m_record_ptr, g_r_record_ptr, g_m_final_ptr, g_r_final_ptr,
              g_x_ptr, g_m0_ptr, g_r0_ptr, g_beta_ptr, g_beta_thr_ptr, g_gamma_ptr,
              T, M, N, LAST,
              BETA_PER_NEURON: tl.constexpr, BETA_THR_PER_NEURON: tl.constexpr,
              GAMMA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
              SMOOTH: tl.constexpr, KIND: tl.constexpr,
              HAS_G_SPIKES: tl.constexpr, HAS_G_M_RECORD: tl.constexpr, HAS_G_R_RECORD: tl.constexpr,
              HAS_G_M_FINAL: tl.constexpr, HAS_G_R_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (7)-(15) of ``snnref/spec/adaptive.py`` from the saved m[t] and r[t], last step first."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    beta_thr = load_param(beta_thr_ptr, offs, mask, N, BETA_THR_PER_NEURON)
    gamma = load_param(gamma_ptr, offs, mask, N, GAMMA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    m0 = tl.load(m0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r0 = tl.load(r0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_m = tl.full([BLOCK], 0.0, tl.float32)
    g_r = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_M_FINAL:
        g_m = tl.load(g_m_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_G_R_FINAL:
        g_r = tl.load(g_r_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_beta = tl.full([BLOCK], 0.0, tl.float32)
    g_beta_thr = tl.full([BLOCK], 0.0, tl.float32)
    g_gamma = tl.full([BLOCK], 0.0, tl.float32)
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    for _ in range(T):
        if HAS_G_M_RECORD:
            g_m += tl.load(g_m_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_G_R_RECORD:
            g_r += tl.load(g_r_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # The state this step started from: the initial state at step 0
        # (at >= M holds for every later step), recomputed into A, u and s as
        # the forward did.
        later = at >= M
        earlier = mask & later
        m_prev = tl.where(later, tl.load(m_saved_ptr + at - M, mask=earlier, other=0.0), m0)
        r_prev = tl.where(later, tl.load(r_saved_ptr + at - M, mask=earlier, other=0.0), r0)
        big_a, u = _distance(m_prev, r_prev)
        s = spike(u, a, KIND, True, SMOOTH)
        tl.store(g_x_ptr + at, g_m.to(g_x_ptr.dtype.element_ty), mask=mask)
        g_beta += g_m * m_prev
        g_beta_thr += g_r * r_prev
        g_gamma += g_r * s
        # The spike feeds the output, the reset (-A s) and the adaptation (+gamma s).
        g_s = gamma * g_r - big_a * g_m
        if HAS_G_SPIKES:
            g_s += tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g_u = g_s * derivatives(u, a, KIND)[0]
        # A enters the reset and the normalisation u = m[t-1] / A - 1.
        g_big_a = -s * g_m - g_u * m_prev / (big_a * big_a)
        g_m = beta * g_m + g_u / big_a
        g_r = beta_thr * g_r + g_big_a
        at -= M
    tl.store(g_m0_ptr + offs, g_m.to(g_m0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_r0_ptr + offs, g_r.to(g_r0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_beta_ptr + offs, g_beta, mask=mask)
    tl.store(g_beta_thr_ptr + offs, g_beta_thr, mask=mask)
    tl.store(g_gamma_ptr + offs, g_gamma, mask=mask)


# gradient_factor (scale) is spike_linear's fixed scale: the backward sums no gradient for it.
SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("x", "m0", "r0"), params=("beta", "beta_thr", "gamma", "scale"),
    outputs=(_launch.Output("spikes"), _launch.Output("m_record"), _launch.Output("r_record"),
             _launch.Output("m_final", per_step=False), _launch.Output("r_final", per_step=False)),
    saved=(_launch.Saved("m_saved", of="m_record"), _launch.Saved("r_saved", of="r_record")),
)


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    # The decays in float32 whatever the storage: a half-precision decay would
    # be off by up to half an ulp of float16 at every step.  Autograd carries
    # them to tau and tau_thr.
    beta = decay_of(params["tau"].float())
    beta_thr = decay_of(params["tau_thr"].float())
    scale = params[registry.surrogate(surrogate_key).scale]
    scan = SCAN(dict(smooth=smooth, kind=kind_id(surrogate_key)), x=x, m0=state["m"], r0=state["r"], beta=beta,
                beta_thr=beta_thr, gamma=params["gamma"], scale=scale)
    return ({"out": scan["spikes"], "m": scan["m_record"], "r": scan["r_record"]},
            {"m": scan["m_final"], "r": scan["r_final"]}, {})


COMPILE_VARIANTS = _launch.CompileVariants(
    # The decays are computed on the host in float32 whatever the storage.
    float32_pointers=frozenset({"beta", "beta_thr", "m_saved", "r_saved", "g_beta", "g_beta_thr", "g_gamma"}),
    variants=(
        _launch.variant(torch.float32, "SPIKES M_RECORD R_RECORD M_FINAL R_FINAL", BETA_PER_NEURON=True,
                        BETA_THR_PER_NEURON=False, GAMMA_PER_NEURON=True, SCALE_PER_NEURON=False, SMOOTH=False,
                        KIND=4, SAVE_SEPARATE=False),
        _launch.variant(torch.float16, "SPIKES R_RECORD", BETA_PER_NEURON=False, BETA_THR_PER_NEURON=True,
                        GAMMA_PER_NEURON=False, SCALE_PER_NEURON=True, SMOOTH=True, KIND=1, SAVE_SEPARATE=True),
        _launch.variant(torch.bfloat16, "M_RECORD M_FINAL R_FINAL", BETA_PER_NEURON=True, BETA_THR_PER_NEURON=True,
                        GAMMA_PER_NEURON=True, SCALE_PER_NEURON=True, SMOOTH=False, KIND=3, SAVE_SEPARATE=True),
    ),
)
