"""Triton scans of the LIF family (tether LIF/PLIF, rnnbuilder LIF/NoReset, qualia IFSRL/ATIF).

Each program owns a block of neurons and runs the whole time loop with the
membrane in float32 registers (storage may be float32, float16 or bfloat16):

    v = lam p + x[t];  u = v - theta;  s = H(u) (smooth twin: F(u))
    p = v (1 - sg(s)) | v - theta s | v          (zero / subtract / no reset)

Compile-time options: leak or none, per-neuron or scalar parameters, reset
mode, which membrane is recorded, strict or non-strict threshold, smooth twin,
replayed stop-gradient spikes, and the surrogate id.  T is a runtime argument,
so a new sequence length does not recompile.

The forward saves only the pre-reset membrane in float32 (4 bytes per
neuron-step); the backward scan recomputes spikes, reset spikes and the
post-reset membrane from it.  Parameter gradients leave the kernel as
per-neuron float32 partial sums and are reduced by torch in a fixed order:
no atomics, the same bits on every run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import common
from .surrogates import kind_id, surrogate

RESETS = {None: 0, "zero": 1, "subtract": 2}


@triton.jit
def _param(ptr, offs, mask, N, PER_NEURON: tl.constexpr):
    # One return: the GPU compiler types every return of a jit function alike.
    if PER_NEURON:
        value = tl.load(ptr + offs % N, mask=mask, other=0.0).to(tl.float32)
    else:
        value = tl.load(ptr).to(tl.float32) + tl.zeros_like(offs).to(tl.float32)
    return value


@triton.jit
def _spike(u, a, KIND: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr):
    f, F, dF = surrogate(u, a, KIND)
    if SMOOTH:
        s = F
    elif STRICT:
        s = (u > 0).to(tl.float32)
    else:
        s = (u >= 0).to(tl.float32)
    return s, f, dF


@triton.jit
def _post_reset(v, s, r, theta, RESET: tl.constexpr):
    if RESET == 1:
        return v * (1.0 - r)
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
             REPLAY: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = _param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = _param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    if LEAK:
        lam = _param(lam_ptr, offs, mask, N, LAM_PER_NEURON)
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
        s, f, dF = _spike(v - theta, a, KIND, STRICT, SMOOTH)
        if REPLAY:
            r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        else:
            r = s
        p = _post_reset(v, s, r, theta, RESET)
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
              REPLAY: tl.constexpr, KIND: tl.constexpr,
              HAS_G_SPIKES: tl.constexpr, HAS_G_RECORD: tl.constexpr, HAS_G_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = _param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = _param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    if LEAK:
        lam = _param(lam_ptr, offs, mask, N, LAM_PER_NEURON)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_p = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_G_FINAL:
        g_p = tl.load(g_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_lam = tl.zeros([BLOCK], dtype=tl.float32)
    g_theta = tl.zeros([BLOCK], dtype=tl.float32)
    g_scale = tl.zeros([BLOCK], dtype=tl.float32)
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    for _ in range(T):
        v = tl.load(v_pre_ptr + at, mask=mask, other=0.0)
        s, f, dF = _spike(v - theta, a, KIND, STRICT, SMOOTH)
        if REPLAY:
            r = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        else:
            r = s
        if HAS_G_RECORD and not RECORD_PRE:
            g_p += tl.load(g_record_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g_s = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_G_SPIKES:
            g_s = tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32)
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
            s_prev, f_prev, dF_prev = _spike(v_prev - theta, a, KIND, STRICT, SMOOTH)
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


def _options(config, lam, theta, scale, replay):
    return dict(
        LEAK=lam is not None, LAM_PER_NEURON=lam is not None and common.per_neuron(lam),
        THETA_PER_NEURON=common.per_neuron(theta), SCALE_PER_NEURON=common.per_neuron(scale), RESET=RESETS[config["reset"]],
        RECORD_PRE=config["record_pre"], STRICT=config["strict"], SMOOTH=config["smooth"],
        REPLAY=replay is not None, KIND=config["kind"],
    )


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, lam, theta, scale, replay, config):
        steps, shape = x.shape[0], x.shape[1:]
        neurons = x[0].numel()
        flat_x = x.contiguous()
        flat_v0 = v0.contiguous()
        spikes = common.empty(x.shape, x.dtype, x.device)
        v_pre = common.empty(x.shape, torch.float32, x.device)
        record = v_pre if config["record_pre"] and x.dtype == torch.float32 else common.empty(x.shape, x.dtype, x.device)
        final = common.empty(shape, x.dtype, x.device)
        params = [common.contiguous_float(p) for p in (lam if lam is not None else theta, theta, scale)]
        lanes = common.block(neurons, x.device)
        _forward[common.grid(neurons, lanes)](
            flat_x, flat_v0, params[0], params[1], params[2], replay if replay is not None else flat_x,
            spikes, record, v_pre, final, steps, neurons, shape[-1],
            **_options(config, lam, theta, scale, replay), BLOCK=lanes,
        )
        ctx.save_for_backward(v_pre, flat_v0, lam, theta, scale, replay)
        ctx.config = config
        ctx.set_materialize_grads(False)
        return spikes, record, final

    @staticmethod
    def backward(ctx, g_spikes, g_record, g_final):
        v_pre, v0, lam, theta, scale, replay = ctx.saved_tensors
        config = ctx.config
        steps, shape = v_pre.shape[0], v_pre.shape[1:]
        neurons = v0.numel()
        dtype, device = v0.dtype, v0.device
        g_x = common.empty(v_pre.shape, dtype, device)
        g_v0 = common.empty(shape, dtype, device)
        partials = [common.empty(shape, torch.float32, device) for _ in range(3)]
        params = [common.contiguous_float(p) for p in (lam if lam is not None else theta, theta, scale)]
        lanes = common.block(neurons, device)
        present = [g.contiguous() if g is not None else v_pre for g in (g_spikes, g_record, g_final)]
        _backward[common.grid(neurons, lanes)](
            v_pre, v0, params[0], params[1], params[2], replay if replay is not None else v_pre,
            *present, g_x, g_v0, *partials, steps, neurons, shape[-1], (steps - 1) * neurons,
            **_options(config, lam, theta, scale, replay),
            HAS_G_SPIKES=g_spikes is not None, HAS_G_RECORD=g_record is not None, HAS_G_FINAL=g_final is not None,
            BLOCK=lanes,
        )
        g_lam, g_theta, g_scale = partials
        wants = ctx.needs_input_grad
        return (
            g_x,
            g_v0,
            g_lam.sum_to_size(lam.shape).to(lam.dtype) if wants[2] else None,
            g_theta.sum_to_size(theta.shape).to(theta.dtype) if wants[3] else None,
            g_scale.sum_to_size(scale.shape).to(scale.dtype) if wants[4] and config["scale_trainable"] else None,
            None,
            None,
        )


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry
    # The leak is a function of the parameters, computed by torch (autograd) as
    # on the torch path.
    from snnref.ops.lif import _leak

    theta = params.get("threshold", torch.ones((), dtype=x.dtype, device=x.device))
    scale = params[registry.surrogate(surrogate_key).scale]
    var = row.state_names[0]
    replay = detached["reset_spike"].contiguous() if detached is not None and row.reset == "zero" else None
    config = dict(reset=row.reset, record_pre=row.options["record"] == "pre", strict=row.spike_test == ">",
                  smooth=smooth, kind=kind_id(surrogate_key),
                  scale_trainable=registry.surrogate(surrogate_key).trainable_scale)
    spikes, recorded, final = _Scan.apply(x, state[var], _leak(row, params), theta, scale, replay, config)
    out = spikes * theta if row.out == "spikes*threshold" else spikes
    used = {}
    if row.reset == "zero":
        used["reset_spike"] = replay if replay is not None else spikes.detach()
    return {"out": out, var: recorded}, {var: final}, used
