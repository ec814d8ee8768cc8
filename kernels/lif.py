"""Triton scans of the LIF family (tether LIF/PLIF, rnnbuilder LIF/NoReset, qualia IFSRL/ATIF).

Each program owns a block of neurons and runs the whole time loop with the
membrane in float32 registers (storage may be float32, float16 or bfloat16):

    v = lam p + x[t];  u = v - theta;  s = H(u) (smooth twin: F(u))
    p = v (1 - sg(s)) | v - theta s | v          (zero / subtract / no reset; zero: 0 where sg(s) = 1)

Compile-time options: leak or none, per-neuron or scalar parameters, reset
mode, which membrane is recorded, strict or non-strict threshold, smooth twin,
replayed stop-gradient spikes, the surrogate id, and whether the output is
the spike times the threshold (SCALED, qualia.ATIF: eq. (5)).  T is a runtime
argument, so a new sequence length does not recompile.

With SCALED the spikes buffer holds theta s[t], made here rather than by torch
after the scan: the threshold's gradient through it, s[t] cot_out[t] of eq.
(11), then joins the threshold's float32 partial sums and is rounded to the
storage dtype once, with the rest.  Made by torch in half storage, the two
partial gradients were each rounded before autograd added them, and
qualia.ATIF's float16 threshold gradient erred by twice its budget where they
cancelled.  The leak comes in float32 too (``run``).

The forward saves only the pre-reset membrane in float32 (4 bytes per
neuron-step); the backward scan recomputes spikes, reset spikes and the
post-reset membrane from it.  Parameter gradients leave the kernel as
per-neuron float32 partial sums and are reduced by torch in a fixed order:
no atomics, the same bits on every run (``_launch``, eq. 2).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from snnref.leak import leak_factor

from . import _launch
from ._jit import load_param, reset_to_zero, spike
from .common import device_function
from .surrogates import derivatives, kind_id

# The compile-time RESET of the registry row's Reset: none, hard to 0 with the
# spike detached, soft (differentiated).  Other resets are refused by name.
NO_RESET, HARD_DETACHED, SOFT = 0, 1, 2


def _reset_id(row):
    from snnref.registry import ResetKind

    kind, detached = row.reset.kind, row.reset.detached
    if kind is ResetKind.NONE:
        return NO_RESET
    if kind is ResetKind.TO_VALUE and detached and row.reset.to == 0:
        return HARD_DETACHED
    if kind is ResetKind.SUBTRACT and not detached:
        return SOFT
    raise ValueError(f"backend: 'triton' has no lif kernel for {row.key}'s reset {row.reset}; "
                     "use backend='torch' or 'cpu'")


@device_function
def _post_reset(v, s, r, theta, RESET: tl.constexpr):
    """Eq. (4): the post-reset membrane v+ (r: the detached reset spike)."""
    if RESET == 1:
        return reset_to_zero(v, r)
    elif RESET == 2:
        return v - theta * s
    else:
        return v


@triton.jit
def _forward(x_ptr, v0_ptr, lam_ptr, theta_ptr, scale_ptr, replay_ptr,
             spikes_ptr, record_ptr, v_pre_ptr, final_ptr,
             T, M, N,
             LEAK: tl.constexpr, LAM_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
             SCALE_PER_NEURON: tl.constexpr,
             RESET: tl.constexpr, RECORD_PRE: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr,
             REPLAY: tl.constexpr, KIND: tl.constexpr, SCALED: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(5) of ``snnref/spec/lif.py``, one program per block of lanes over every step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    if LEAK:
        lam = load_param(lam_ptr, offs, mask, N, LAM_PER_NEURON)
    # Masked lanes start from a defined 0 and are never stored.
    p = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if LEAK:
            v = lam * p + x
        else:
            v = p + x
        s = spike(v - theta, a, KIND, STRICT, SMOOTH)
        if REPLAY:
            r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        else:
            r = s
        p = _post_reset(v, s, r, theta, RESET)
        if SCALED:
            tl.store(spikes_ptr + at, (s * theta).to(spikes_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(spikes_ptr + at, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(v_pre_ptr + at, v, mask=mask)
        if RECORD_PRE:
            tl.store(record_ptr + at, v.to(record_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(record_ptr + at, p.to(record_ptr.dtype.element_ty), mask=mask)
        at += M
    tl.store(final_ptr + offs, p.to(final_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(v_pre_ptr, v0_ptr, lam_ptr, theta_ptr, scale_ptr, replay_ptr,
              g_spikes_ptr, g_record_ptr, g_final_ptr,
              g_x_ptr, g_v0_ptr, g_lam_ptr, g_theta_ptr, g_scale_ptr,
              T, M, N, LAST,
              LEAK: tl.constexpr, LAM_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
             SCALE_PER_NEURON: tl.constexpr,
              RESET: tl.constexpr, RECORD_PRE: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr,
              REPLAY: tl.constexpr, KIND: tl.constexpr, SCALED: tl.constexpr,
              HAS_G_SPIKES: tl.constexpr, HAS_G_RECORD: tl.constexpr, HAS_G_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (6)-(12) of ``snnref/spec/lif.py`` from the saved pre-reset membrane, last step first."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    if LEAK:
        lam = load_param(lam_ptr, offs, mask, N, LAM_PER_NEURON)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_p = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_FINAL:
        g_p = tl.load(g_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_lam = tl.full([BLOCK], 0.0, tl.float32)
    g_theta = tl.full([BLOCK], 0.0, tl.float32)
    g_scale = tl.full([BLOCK], 0.0, tl.float32)
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    for _ in range(T):
        v = tl.load(v_pre_ptr + at, mask=mask, other=0.0)
        u = v - theta
        s = spike(u, a, KIND, STRICT, SMOOTH)
        if REPLAY:
            r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        else:
            r = s
        if HAS_G_RECORD and not RECORD_PRE:
            g_p += tl.load(g_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g_s = tl.full([BLOCK], 0.0, tl.float32)
        if HAS_G_SPIKES:
            g_s = tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32)
            if SCALED:
                # Eqs. (8) and (11): out = theta s.
                g_theta += s * g_s
                g_s = g_s * theta
        if RESET == 1:
            g_v = g_p * (1.0 - r)
        elif RESET == 2:
            g_v = g_p
            g_s -= theta * g_p
            g_theta -= s * g_p
        else:
            g_v = g_p
        if HAS_G_RECORD and RECORD_PRE:
            g_v += tl.load(g_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        f, dF = derivatives(u, a, KIND)
        g_u = g_s * f
        g_v += g_u
        g_theta -= g_u
        g_scale += g_s * dF
        tl.store(g_x_ptr + at, g_v.to(g_x_ptr.dtype.element_ty), mask=mask)
        if LEAK:
            # The membrane this step started from, recomputed as the forward did
            # (at step 0: the initial state; at >= M holds for every later step).
            later = at >= M
            earlier = mask & later
            before = at - M
            v_prev = tl.load(v_pre_ptr + before, mask=earlier, other=0.0)
            s_prev = spike(v_prev - theta, a, KIND, STRICT, SMOOTH)
            if REPLAY:
                r_prev = tl.load(replay_ptr + before, mask=earlier, other=0.0).to(tl.float32)
            else:
                r_prev = s_prev
            p_before = tl.where(later, _post_reset(v_prev, s_prev, r_prev, theta, RESET), v0)
            g_lam += g_v * p_before
            g_p = lam * g_v
        else:
            g_p = g_v
        at -= M
    tl.store(g_v0_ptr + offs, g_p.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_lam_ptr + offs, g_lam, mask=mask)
    tl.store(g_theta_ptr + offs, g_theta, mask=mask)
    tl.store(g_scale_ptr + offs, g_scale, mask=mask)


SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("x", "v0"), params=("lam", "theta", "scale"), constants=("replay",),
    outputs=(_launch.Output("spikes"), _launch.Output("record"), _launch.Output("final", per_step=False)),
    # A float32 pre-reset record is the saved membrane itself.
    saved=(_launch.Saved("v_pre", of="record", shared_if="record_pre"),),
)


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    theta = params.get("threshold", torch.ones((), dtype=x.dtype, device=x.device))
    scale = params[registry.surrogate(surrogate_key).scale]
    var = row.state_names[0]
    replay = detached["reset_spike"].contiguous() if detached is not None and row.reset.detached else None
    # The leak is computed by torch (autograd), the same function as on the other
    # paths, in float32 whatever the storage, as the kernels compute: rounded to
    # bfloat16, rnnbuilder.LIF's exp(-1/tau) moved the membrane by 0.3%, and a
    # spike flipped at |u| = 1.7e-3 against a margin of 2.3e-6.
    lam = leak_factor(row, params, torch.float32)
    scaled = row.out is registry.Output.SCALED_SPIKES
    if scaled and row.reset.detached:
        # With SCALED the spikes buffer holds theta s, which a detached reset
        # would hand on as its recorded 0/1 reset spike (``used`` below).
        raise ValueError(f"backend: 'triton' has no lif kernel for {row.key}: its output is the spike times the "
                         f"threshold and its reset's spike is detached; use backend='torch' or 'cpu'")
    options = dict(leak=lam is not None, reset=_reset_id(row), record_pre=row.options.record is registry.Record.PRE,
                   smooth=smooth, kind=kind_id(surrogate_key), strict=row.spike_test == ">",
                   replay=replay is not None, scaled=scaled)
    untrained = () if registry.surrogate(surrogate_key).trainable_scale else ("scale",)
    scan = SCAN(options, untrained, x=x, v0=state[var], lam=lam, theta=theta, scale=scale, replay=replay)
    out = scan["spikes"]
    used = {}
    if row.reset.detached:
        used["reset_spike"] = replay if replay is not None else out.detach()
    return {"out": out, var: scan["record"]}, {var: scan["final"]}, used


# Joint branches: the leak's backward term recomputes the reset of each RESET
# (variants 0, 1, 4); g_record enters before or after the reset by RECORD_PRE
# (variants 0, 1).
COMPILE_VARIANTS = _launch.CompileVariants(
    float32_pointers=frozenset({"lam", "v_pre", "g_lam", "g_theta", "g_scale"}),
    variants=(
        _launch.variant(torch.float32, "SPIKES RECORD FINAL", LEAK=True, LAM_PER_NEURON=True, THETA_PER_NEURON=False,
                        SCALE_PER_NEURON=True, RESET=1, RECORD_PRE=False, STRICT=True, SMOOTH=False, REPLAY=False,
                        KIND=0, SCALED=False),
        _launch.variant(torch.float16, "SPIKES RECORD", LEAK=True, LAM_PER_NEURON=False, THETA_PER_NEURON=True,
                        SCALE_PER_NEURON=False, RESET=2, RECORD_PRE=True, STRICT=False, SMOOTH=False, REPLAY=False,
                        KIND=1, SCALED=True),
        _launch.variant(torch.bfloat16, "FINAL", LEAK=False, LAM_PER_NEURON=False, THETA_PER_NEURON=False,
                        SCALE_PER_NEURON=False, RESET=0, RECORD_PRE=False, STRICT=True, SMOOTH=True, REPLAY=False,
                        KIND=2, SCALED=False),
        _launch.variant(torch.bfloat16, "SPIKES", LEAK=True, LAM_PER_NEURON=True, THETA_PER_NEURON=True,
                        SCALE_PER_NEURON=True, RESET=1, RECORD_PRE=True, STRICT=False, SMOOTH=True, REPLAY=True,
                        KIND=3, SCALED=False),
        _launch.variant(torch.float16, "RECORD FINAL", LEAK=True, LAM_PER_NEURON=False, THETA_PER_NEURON=True,
                        SCALE_PER_NEURON=False, RESET=0, RECORD_PRE=False, STRICT=True, SMOOTH=False, REPLAY=False,
                        KIND=4, SCALED=False),
    ),
)
