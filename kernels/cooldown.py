"""Triton scans of rnnbuilder's Cooldown neuron.

Each program owns a block of neurons and runs the whole time loop with the
membrane m in float32 registers (storage may be float32, float16 or bfloat16).
The spike reads the membrane the step starts from (m[-1] is the initial
state); then the membrane integrates the exponentiated input, with no reset:

    u[t] = sgn (m[t-1] - 1);  s[t] = H(u[t]) strict (smooth twin: F(u[t]))
    m[t] = beta m[t-1] + (1 - beta) exp(x[t])

sgn = +1 on the first N // 2 units of the last axis and -1 on the rest (those
fire while m < 1).  beta = exp(-1/tau) comes from the host (torch autograd
carries it to tau); gradient_factor is spike_linear's fixed scale.

The reverse scan, with G the gradient reaching m[t] (from the final state's
cotangent down), per step:

    G += dL/dm[t];  dx[t] = G (1 - beta) exp(x[t]);  dbeta += G (m[t-1] - exp(x[t]))
    G <- beta G + dL/ds[t] f(u[t]) sgn               (the gradient reaching m[t-1])

and the initial state receives the last G.  The forward saves the membrane
sequence in float32: with float32 storage that is the recorded output itself
(0 extra bytes per neuron-step), otherwise its own buffer (4 bytes); spikes and
exp(x) are recomputed in the backward from it and from x.
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

# exp(x) = 2^n exp(r), r = x - n ln 2, with ln 2 split Cody-Waite style: LN2_HI
# has 9 significant bits, so n LN2_HI is exact for |n| < 2^15, and so is
# x - n LN2_HI (the two lie within a factor 2 of each other).
LOG2E = tl.constexpr(1.4426950408889634)
LN2_HI = tl.constexpr(0.693359375)
LN2_LO = tl.constexpr(-2.12194440e-4)


@device_function
def _pow2(k):
    """2^k for an integer-valued float k in [-126, 127], from its exponent bits."""
    return ((k.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)


@device_function
def _exp(x):
    # On NVIDIA GPUs tl.exp(x) is ex2.approx(x log2 e): rounding the product
    # costs up to |x| / 2 ulp, some 44 ulp next to the float32 overflow at 88.7.
    # Reducing to |r| <= ln 2 / 2 first leaves only ex2.approx's own few ulp.
    # n is clamped to [-151, 129], past which exp(x) is 0 or inf anyway (and
    # x = +-inf gives r = +-inf, so exp(r) gives that 0 or inf); 2^n is applied
    # in two factors so that each is a normal float and the result is rounded once.
    n = tl.minimum(tl.maximum(tl.floor(x * LOG2E + 0.5), -151.0), 129.0)
    r = (x - n * LN2_HI) - n * LN2_LO
    half = tl.floor(n * 0.5)
    return tl.exp(r) * _pow2(half) * _pow2(n - half)


@device_function
def _sign(offs, N, HALF):
    """+1 on the first N // 2 units of the last axis, -1 on the rest."""
    return tl.where(offs % N < HALF, 1.0, -1.0)


@triton.jit
def _forward(x_ptr, m0_ptr, beta_ptr, scale_ptr,
             spikes_ptr, record_ptr, m_saved_ptr, final_ptr,
             T, M, N, HALF,
             BETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr, SAVE_SEPARATE: tl.constexpr,
             SMOOTH: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(4) of ``snnref/spec/cooldown.py``, one program per block of lanes over every step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    sgn = _sign(offs, N, HALF)
    # Masked lanes start from a defined 0 and are never stored.
    m = tl.load(m0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # The spike reads the membrane left by the previous step.
        s = spike(sgn * (m - 1.0), a, KIND, True, SMOOTH)
        m = beta * m + (1.0 - beta) * _exp(x)
        tl.store(spikes_ptr + at, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(record_ptr + at, m.to(record_ptr.dtype.element_ty), mask=mask)
        if SAVE_SEPARATE:
            tl.store(m_saved_ptr + at, m, mask=mask)
        at += M
    tl.store(final_ptr + offs, m.to(final_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(x_ptr, m_saved_ptr, m0_ptr, beta_ptr, scale_ptr,
              g_spikes_ptr, g_record_ptr, g_final_ptr,
              g_x_ptr, g_m0_ptr, g_beta_ptr,
              T, M, N, HALF, LAST,
              BETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr, KIND: tl.constexpr,
              HAS_G_SPIKES: tl.constexpr, HAS_G_RECORD: tl.constexpr, HAS_G_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (5)-(8) and g beta of (9) of ``snnref/spec/cooldown.py`` from the saved membrane, last step first."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta = load_param(beta_ptr, offs, mask, N, BETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    sgn = _sign(offs, N, HALF)
    m0 = tl.load(m0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_m = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_FINAL:
        g_m = tl.load(g_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_beta = tl.full([BLOCK], 0.0, tl.float32)
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    for _ in range(T):
        if HAS_G_RECORD:
            g_m += tl.load(g_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # The membrane this step started from: the initial state at step 0
        # (at >= M holds for every later step).
        later = at >= M
        m_prev = tl.where(later, tl.load(m_saved_ptr + at - M, mask=mask & later, other=0.0), m0)
        e = _exp(tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32))
        tl.store(g_x_ptr + at, (g_m * (1.0 - beta) * e).to(g_x_ptr.dtype.element_ty), mask=mask)
        # beta scales m[t-1] and, through 1 - beta, exp(x[t]).
        g_beta += g_m * (m_prev - e)
        g_m = beta * g_m
        if HAS_G_SPIKES:
            # Only the bump is needed: the step's value does not enter the backward.
            f = derivatives(sgn * (m_prev - 1.0), a, KIND)[0]
            g_m += tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32) * f * sgn
        at -= M
    tl.store(g_m0_ptr + offs, g_m.to(g_m0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_beta_ptr + offs, g_beta, mask=mask)


# gradient_factor (scale) is spike_linear's fixed scale: the backward sums no gradient for it.
SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("x", "m0"), params=("beta", "scale"),
    outputs=(_launch.Output("spikes"), _launch.Output("record"), _launch.Output("final", per_step=False)),
    saved=(_launch.Saved("m_saved", of="record"),),
    scalars=lambda steps, neurons, features: dict(HALF=features // 2),
)


def check_input(row, x, params):
    """Reject an x whose exp overflows in x's dtype (called before the run)."""
    x = x.detach()
    # exp is increasing: only the largest x can overflow.  An inf or NaN in x
    # only gets here with allow_nonfinite=True (it was asked for), so the
    # largest finite value is the one tested.
    top = x.amax()
    if not torch.isfinite(top):
        finite = x[torch.isfinite(x)]
        if finite.numel() == 0:
            return
        top = finite.amax()
    # Evaluated by torch in x's dtype: exactly "exp(x) rounds to inf there".
    if bool(torch.isinf(torch.exp(top))):
        raise ValueError(
            f"x: {row.key} integrates exp(x), which overflows in {x.dtype} for x = {float(top)!r}; "
            f"exp(x) must stay below {torch.finfo(x.dtype).max!r}"
        )


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    # beta in float32 whatever the storage: a half-precision beta would be off by
    # up to half an ulp of float16 at every step.  Autograd carries it to tau.
    beta = decay_of(params["tau"].float())
    scale = params[registry.surrogate(surrogate_key).scale]
    scan = SCAN(dict(smooth=smooth, kind=kind_id(surrogate_key)), x=x, m0=state["m"], beta=beta, scale=scale)
    return {"out": scan["spikes"], "m": scan["record"]}, {"m": scan["final"]}, {}


COMPILE_VARIANTS = _launch.CompileVariants(
    # beta is computed on the host in float32 whatever the storage.
    float32_pointers=frozenset({"beta", "m_saved", "g_beta"}),
    variants=(
        _launch.variant(torch.float32, "SPIKES RECORD FINAL", BETA_PER_NEURON=True, SCALE_PER_NEURON=False,
                        SMOOTH=False, KIND=4, SAVE_SEPARATE=False),
        _launch.variant(torch.float16, "SPIKES", BETA_PER_NEURON=False, SCALE_PER_NEURON=True, SMOOTH=True, KIND=0,
                        SAVE_SEPARATE=True),
        _launch.variant(torch.bfloat16, "RECORD FINAL", BETA_PER_NEURON=True, SCALE_PER_NEURON=True, SMOOTH=False,
                        KIND=2, SAVE_SEPARATE=True),
    ),
)
