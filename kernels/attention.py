"""Triton context scan of tether's SpikingSelfAttention.

Input x of shape (T, B, N, D).  The bias-free linear maps and the output
projection stay torch matmuls (autograd gives every weight its gradient); the
kernels run what lies between them, per element of (B, N, D), with the three
LIF membranes and the context S in float32 registers.  For each branch c in
(q, k, v), with its own leak lam_c, threshold theta_c and arctan scale alpha_c,
from the previous post-reset membranes p_c and context S:

    z_c[t] = x[t] W_c^T                                              (host)
    v_c = lam_c p_c + z_c[t];  s_c = H(v_c - theta_c) (smooth twin: F);  p_c = v_c (1 - sg(s_c)), 0 where sg(s_c) = 1
    S = S + s_k s_v;  o[t] = s_q S
    out[t] = o[t] W_proj^T + b_proj                                  (host)

Recorded: the pre-reset v_c[t] and S[t]; final state p_c and S.  The reverse
scan, with g_S = dL/dS[t+1] (the final cotangent at first):

    g_S <- g_S + dL/do[t] s_q + dL/dS_rec[t]
    g s_q = dL/do[t] S[t];  g s_k = g_S s_v;  g s_v = g_S s_k
    per branch, u_c = v_c - theta_c:
    dL/dv_c = dL/dp_c (1 - sg(s_c)) + dL/dv_c,rec + g s_c f(u_c);  dL/dz_c[t] = dL/dv_c;  dL/dp_c(prev) = lam_c dL/dv_c
    dL/dlam_c += dL/dv_c p_c[t-1];  dL/dtheta_c -= g s_c f(u_c);  dL/dalpha_c += g s_c dF(u_c)

The maps are computed in float32 (half storage rounds x and the weights,
never z or o, so the spike decisions match a float32 computation); the
kernels read z_q, z_k, z_v where the matmuls left them and write their
gradients as three tensors, so no stacking copy is made on either side.

Per neuron-step the forward saves v_q, v_k, v_v and S in float32 (16 bytes;
with float32 storage these are the recorded outputs themselves, so nothing
extra); the backward recomputes spikes and post-reset membranes from them,
carrying step t-1's loads into the next iteration so that each saved value is
read once.  Branch parameters come stacked, shape (3,) or (3, D); their
gradients leave the kernel as per-lane float32 partial sums reduced by torch
in a fixed order (no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _launch, common
from ._jit import reset_to_zero, spike
from .common import device_function
from .surrogates import derivatives, kind_id

BRANCHES = ("q", "k", "v")
# Warps per program on a GPU.  Three membranes, the context and their adjoints
# live in registers: with the default 4 warps a block of 1024 lanes is 8 lanes
# per thread, and ptxas (sm_90) spills the backward to local memory (255
# registers, 296 bytes of stack; 648 with per-neuron parameters).  8 warps,
# 4 lanes per thread, fit both kernels in registers (228 and 242).
NUM_WARPS = 8


@device_function
def _branch_param(ptr, C: tl.constexpr, offs, mask, D, PER_NEURON: tl.constexpr):
    """Branch C's value of a stacked parameter: row C of (3, D), or entry C of (3,)."""
    # One return: the GPU compiler types every return of a jit function alike.
    if PER_NEURON:
        value = tl.load(ptr + C * D + offs % D, mask=mask, other=0.0).to(tl.float32)
    else:
        value = tl.load(ptr + C).to(tl.float32) + (offs * 0).to(tl.float32)
    return value


@device_function
def _fired(v, theta, scale, KIND: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr):
    """The forward's spike from the pre-reset membrane (recomputed in the backward)."""
    return spike(v - theta, scale, KIND, STRICT, SMOOTH)


@device_function
def _branch_forward(z_ptr, p, lam, theta, scale, replay_ptr, spikes_ptr, v_rec_ptr, v_save_ptr, at, bat, mask,
                    SAVE_SEPARATE: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr,
                    REPLAY: tl.constexpr, KIND: tl.constexpr):
    """One step of one branch's LIF (z at at, its rows of the stacked sequences at
    bat): the spike and the post-reset membrane."""
    z = tl.load(z_ptr + at, mask=mask, other=0.0).to(tl.float32)
    v = lam * p + z
    s = _fired(v, theta, scale, KIND, STRICT, SMOOTH)
    if REPLAY:
        r = tl.load(replay_ptr + bat, mask=mask, other=0.0).to(tl.float32)
    else:
        # The reset spikes are returned as the detached values used (a replay returns its own).
        r = s
        tl.store(spikes_ptr + bat, s.to(spikes_ptr.dtype.element_ty), mask=mask)
    tl.store(v_rec_ptr + bat, v.to(v_rec_ptr.dtype.element_ty), mask=mask)
    if SAVE_SEPARATE:
        # Half storage: the backward needs the float32 membrane, not the rounded record.
        tl.store(v_save_ptr + bat, v, mask=mask)
    return s, reset_to_zero(v, r)


@device_function
def _branch_params(lam_ptr, theta_ptr, scale_ptr, offs, mask, D, LAM_PER_NEURON: tl.constexpr,
                   THETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr):
    """Leak, threshold and arctan scale of the q, k and v branches."""
    lam_q = _branch_param(lam_ptr, 0, offs, mask, D, LAM_PER_NEURON)
    lam_k = _branch_param(lam_ptr, 1, offs, mask, D, LAM_PER_NEURON)
    lam_v = _branch_param(lam_ptr, 2, offs, mask, D, LAM_PER_NEURON)
    theta_q = _branch_param(theta_ptr, 0, offs, mask, D, THETA_PER_NEURON)
    theta_k = _branch_param(theta_ptr, 1, offs, mask, D, THETA_PER_NEURON)
    theta_v = _branch_param(theta_ptr, 2, offs, mask, D, THETA_PER_NEURON)
    scale_q = _branch_param(scale_ptr, 0, offs, mask, D, SCALE_PER_NEURON)
    scale_k = _branch_param(scale_ptr, 1, offs, mask, D, SCALE_PER_NEURON)
    scale_v = _branch_param(scale_ptr, 2, offs, mask, D, SCALE_PER_NEURON)
    return lam_q, lam_k, lam_v, theta_q, theta_k, theta_v, scale_q, scale_k, scale_v


@triton.jit
def _forward(z_q_ptr, z_k_ptr, z_v_ptr, s0_ptr, v0_ptr, lam_ptr, theta_ptr, scale_ptr, replay_ptr,
             o_ptr, context_ptr, s_save_ptr, v_rec_ptr, v_save_ptr, spikes_ptr, s_final_ptr, v_final_ptr,
             T, M, D, TM,
             LAM_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
             SAVE_SEPARATE: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr,
             REPLAY: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (2)-(7) of ``snnref/spec/attention.py`` (the linear maps (1), (8) are host matmuls)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    lam_q, lam_k, lam_v, theta_q, theta_k, theta_v, scale_q, scale_k, scale_v = _branch_params(
        lam_ptr, theta_ptr, scale_ptr, offs, mask, D, LAM_PER_NEURON, THETA_PER_NEURON, SCALE_PER_NEURON)
    # Offsets in int64 (3 T M may pass 2^31); a branch's row of the (3, ...)
    # buffers is reached by adding to a tensor offset, never by a scalar product.
    lane = offs.to(tl.int64)
    # Masked lanes start from a defined 0 and are never stored.
    S = tl.load(s0_ptr + lane, mask=mask, other=0.0).to(tl.float32)
    p_q = tl.load(v0_ptr + lane, mask=mask, other=0.0).to(tl.float32)
    p_k = tl.load(v0_ptr + (lane + M), mask=mask, other=0.0).to(tl.float32)
    p_v = tl.load(v0_ptr + (lane + M + M), mask=mask, other=0.0).to(tl.float32)
    at = lane
    for t in range(T):
        s_q, p_q = _branch_forward(z_q_ptr, p_q, lam_q, theta_q, scale_q, replay_ptr, spikes_ptr,
                                   v_rec_ptr, v_save_ptr, at, at, mask,
                                   SAVE_SEPARATE, STRICT, SMOOTH, REPLAY, KIND)
        s_k, p_k = _branch_forward(z_k_ptr, p_k, lam_k, theta_k, scale_k, replay_ptr, spikes_ptr,
                                   v_rec_ptr, v_save_ptr, at, at + TM, mask,
                                   SAVE_SEPARATE, STRICT, SMOOTH, REPLAY, KIND)
        s_v, p_v = _branch_forward(z_v_ptr, p_v, lam_v, theta_v, scale_v, replay_ptr, spikes_ptr,
                                   v_rec_ptr, v_save_ptr, at, at + TM + TM, mask,
                                   SAVE_SEPARATE, STRICT, SMOOTH, REPLAY, KIND)
        S = S + s_k * s_v
        tl.store(o_ptr + at, s_q * S, mask=mask)
        tl.store(context_ptr + at, S.to(context_ptr.dtype.element_ty), mask=mask)
        if SAVE_SEPARATE:
            tl.store(s_save_ptr + at, S, mask=mask)
        at += M
    tl.store(s_final_ptr + lane, S.to(s_final_ptr.dtype.element_ty), mask=mask)
    tl.store(v_final_ptr + lane, p_q.to(v_final_ptr.dtype.element_ty), mask=mask)
    tl.store(v_final_ptr + (lane + M), p_k.to(v_final_ptr.dtype.element_ty), mask=mask)
    tl.store(v_final_ptr + (lane + M + M), p_v.to(v_final_ptr.dtype.element_ty), mask=mask)


@device_function
def _branch_backward(g_s, f, dF, later, r, g_p, g_lam, g_theta, g_scale, lam, theta, scale, v0,
                     v_save_ptr, replay_ptr, g_v_rec_ptr, g_z_ptr, at, bat, M, mask,
                     STRICT: tl.constexpr, SMOOTH: tl.constexpr, REPLAY: tl.constexpr, KIND: tl.constexpr,
                     HAS_G_V_REC: tl.constexpr):
    """Step t of one branch's reverse scan, given dL/ds and the surrogate at step t and
    step t's reset spike r.  Returns step t-1's membrane and reset spike, read here
    for the leak's gradient and handed on, and the updated adjoint and partial sums."""
    g_u = g_s * f
    g_theta -= g_u
    g_scale += g_s * dF
    # The detached reset passes only its (1 - s) factor.
    g_v = g_p * (1.0 - r) + g_u
    if HAS_G_V_REC:
        g_v += tl.load(g_v_rec_ptr + bat, mask=mask, other=0.0).to(tl.float32)
    tl.store(g_z_ptr + at, g_v, mask=mask)
    # The membrane this step started from, recomputed as the forward did
    # (later: not step 0, which starts from the initial state).
    earlier = mask & later
    before = bat - M
    v = tl.load(v_save_ptr + before, mask=earlier, other=0.0).to(tl.float32)
    if REPLAY:
        r = tl.load(replay_ptr + before, mask=earlier, other=0.0).to(tl.float32)
    else:
        r = _fired(v, theta, scale, KIND, STRICT, SMOOTH)
    g_lam += g_v * tl.where(later, reset_to_zero(v, r), v0)
    return v, r, lam * g_v, g_lam, g_theta, g_scale


@triton.jit
def _backward(v_save_ptr, s_save_ptr, v0_ptr, lam_ptr, theta_ptr, scale_ptr, replay_ptr,
              g_o_ptr, g_context_ptr, g_s_final_ptr, g_v_rec_ptr, g_v_final_ptr,
              g_z_q_ptr, g_z_k_ptr, g_z_v_ptr, g_s0_ptr, g_v0_ptr, g_lam_ptr, g_theta_ptr, g_scale_ptr,
              T, M, D, TM, LAST,
              LAM_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
              STRICT: tl.constexpr, SMOOTH: tl.constexpr, REPLAY: tl.constexpr, KIND: tl.constexpr,
              HAS_G_O: tl.constexpr, HAS_G_CONTEXT: tl.constexpr, HAS_G_S_FINAL: tl.constexpr,
              HAS_G_V_REC: tl.constexpr, HAS_G_V_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (10)-(14) of ``snnref/spec/attention.py``, last step first (the host does (9), (15))."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    lam_q, lam_k, lam_v, theta_q, theta_k, theta_v, scale_q, scale_k, scale_v = _branch_params(
        lam_ptr, theta_ptr, scale_ptr, offs, mask, D, LAM_PER_NEURON, THETA_PER_NEURON, SCALE_PER_NEURON)
    lane = offs.to(tl.int64)
    v0_q = tl.load(v0_ptr + lane, mask=mask, other=0.0).to(tl.float32)
    v0_k = tl.load(v0_ptr + (lane + M), mask=mask, other=0.0).to(tl.float32)
    v0_v = tl.load(v0_ptr + (lane + M + M), mask=mask, other=0.0).to(tl.float32)
    # Adjoints of the post-reset membranes and of S, entering from the final state.
    g_p_q = tl.full([BLOCK], 0.0, tl.float32)
    g_p_k = tl.full([BLOCK], 0.0, tl.float32)
    g_p_v = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_V_FINAL:
        g_p_q = tl.load(g_v_final_ptr + lane, mask=mask, other=0.0).to(tl.float32)
        g_p_k = tl.load(g_v_final_ptr + (lane + M), mask=mask, other=0.0).to(tl.float32)
        g_p_v = tl.load(g_v_final_ptr + (lane + M + M), mask=mask, other=0.0).to(tl.float32)
    g_S = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_G_S_FINAL:
        g_S = tl.load(g_s_final_ptr + lane, mask=mask, other=0.0).to(tl.float32)
    g_lam_q = tl.full([BLOCK], 0.0, tl.float32)
    g_lam_k = tl.full([BLOCK], 0.0, tl.float32)
    g_lam_v = tl.full([BLOCK], 0.0, tl.float32)
    g_theta_q = tl.full([BLOCK], 0.0, tl.float32)
    g_theta_k = tl.full([BLOCK], 0.0, tl.float32)
    g_theta_v = tl.full([BLOCK], 0.0, tl.float32)
    g_scale_q = tl.full([BLOCK], 0.0, tl.float32)
    g_scale_k = tl.full([BLOCK], 0.0, tl.float32)
    g_scale_v = tl.full([BLOCK], 0.0, tl.float32)
    # From the last step down (LAST = (T - 1) M).
    at = lane + LAST
    # Step t's membranes and reset spikes; each iteration reads step t-1's and hands them on.
    v_q = tl.load(v_save_ptr + at, mask=mask, other=0.0).to(tl.float32)
    v_k = tl.load(v_save_ptr + (at + TM), mask=mask, other=0.0).to(tl.float32)
    v_v = tl.load(v_save_ptr + (at + TM + TM), mask=mask, other=0.0).to(tl.float32)
    if REPLAY:
        r_q = tl.load(replay_ptr + at, mask=mask, other=0.0).to(tl.float32)
        r_k = tl.load(replay_ptr + (at + TM), mask=mask, other=0.0).to(tl.float32)
        r_v = tl.load(replay_ptr + (at + TM + TM), mask=mask, other=0.0).to(tl.float32)
    else:
        r_q = _fired(v_q, theta_q, scale_q, KIND, STRICT, SMOOTH)
        r_k = _fired(v_k, theta_k, scale_k, KIND, STRICT, SMOOTH)
        r_v = _fired(v_v, theta_v, scale_v, KIND, STRICT, SMOOTH)
    for t in range(T):
        u_q, u_k, u_v = v_q - theta_q, v_k - theta_k, v_v - theta_v
        s_q = spike(u_q, scale_q, KIND, STRICT, SMOOTH)
        f_q, dF_q = derivatives(u_q, scale_q, KIND)
        s_k = spike(u_k, scale_k, KIND, STRICT, SMOOTH)
        f_k, dF_k = derivatives(u_k, scale_k, KIND)
        s_v = spike(u_v, scale_v, KIND, STRICT, SMOOTH)
        f_v, dF_v = derivatives(u_v, scale_v, KIND)
        # o = s_q S and S[t] = S[t-1] + s_k s_v.
        S = tl.load(s_save_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g_o = tl.full([BLOCK], 0.0, tl.float32)
        if HAS_G_O:
            g_o = tl.load(g_o_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g_S += g_o * s_q
        if HAS_G_CONTEXT:
            g_S += tl.load(g_context_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # at >= M holds for every step but the first (never a test on the loop variable).
        later = at >= M
        v_q, r_q, g_p_q, g_lam_q, g_theta_q, g_scale_q = _branch_backward(
            g_o * S, f_q, dF_q, later, r_q, g_p_q, g_lam_q, g_theta_q, g_scale_q, lam_q, theta_q, scale_q, v0_q,
            v_save_ptr, replay_ptr, g_v_rec_ptr, g_z_q_ptr, at, at, M, mask,
            STRICT, SMOOTH, REPLAY, KIND, HAS_G_V_REC)
        v_k, r_k, g_p_k, g_lam_k, g_theta_k, g_scale_k = _branch_backward(
            g_S * s_v, f_k, dF_k, later, r_k, g_p_k, g_lam_k, g_theta_k, g_scale_k, lam_k, theta_k, scale_k, v0_k,
            v_save_ptr, replay_ptr, g_v_rec_ptr, g_z_k_ptr, at, at + TM, M, mask,
            STRICT, SMOOTH, REPLAY, KIND, HAS_G_V_REC)
        v_v, r_v, g_p_v, g_lam_v, g_theta_v, g_scale_v = _branch_backward(
            g_S * s_k, f_v, dF_v, later, r_v, g_p_v, g_lam_v, g_theta_v, g_scale_v, lam_v, theta_v, scale_v, v0_v,
            v_save_ptr, replay_ptr, g_v_rec_ptr, g_z_v_ptr, at, at + TM + TM, M, mask,
            STRICT, SMOOTH, REPLAY, KIND, HAS_G_V_REC)
        at -= M
    tl.store(g_s0_ptr + lane, g_S.to(g_s0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_v0_ptr + lane, g_p_q.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_v0_ptr + (lane + M), g_p_k.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_v0_ptr + (lane + M + M), g_p_v.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_lam_ptr + lane, g_lam_q, mask=mask)
    tl.store(g_lam_ptr + (lane + M), g_lam_k, mask=mask)
    tl.store(g_lam_ptr + (lane + M + M), g_lam_v, mask=mask)
    tl.store(g_theta_ptr + lane, g_theta_q, mask=mask)
    tl.store(g_theta_ptr + (lane + M), g_theta_k, mask=mask)
    tl.store(g_theta_ptr + (lane + M + M), g_theta_v, mask=mask)
    tl.store(g_scale_ptr + lane, g_scale_q, mask=mask)
    tl.store(g_scale_ptr + (lane + M), g_scale_k, mask=mask)
    tl.store(g_scale_ptr + (lane + M + M), g_scale_v, mask=mask)


def _reduce(partial, shape, dtype):
    """Per-lane partial sums (3, ..., D) to the stacked parameter's shape, (3, D)
    or (3,), in a fixed order (``_launch`` eq. 2, per branch)."""
    if len(shape) == 2:
        return partial.flatten(1, -2).sum(1).to(dtype)
    return partial.flatten(1).sum(1).to(dtype)


# Branch parameters are tables: shape (3, D) is per feature, (3,) one value per branch.
SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("z_q", "z_k", "z_v", "s0", "v0"), params=("lam", "theta", "scale"), constants=("replay",),
    outputs=(_launch.Output("o", float32=True), _launch.Output("context"), _launch.Output("s_final", per_step=False),
             _launch.Output("v_rec", branches=3), _launch.Output("v_final", per_step=False, branches=3),
             # The reset spikes, unless the caller replays its own.
             _launch.Output("spikes", branches=3, when=lambda constexprs: not constexprs["REPLAY"],
                            differentiable=False)),
    saved=(_launch.Saved("s_save", of="context"), _launch.Saved("v_save", of="v_rec")),
    storage="s0", param_branches=3, per_neuron=lambda table: table.dim() == 2, reduce=_reduce,
    scalars=lambda steps, neurons, features: dict(D=features, TM=steps * neurons), num_warps=NUM_WARPS,
)


def _stacked(values, d):
    """The three branches' values of one parameter as one tensor: (3,) when each is
    one value, (3, D) when any is per neuron (the others broadcast to it)."""
    if any(common.per_neuron(v) for v in values):
        return torch.stack([v.expand(d) for v in values])
    return torch.stack([v.reshape(()) for v in values])


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    d = x.shape[-1]
    # torch's Linear convention, z_c = x W_c^T.
    x32 = x.float()
    z = [x32 @ params[f"{b}_weight"].float().T for b in BRANCHES]
    v0 = torch.stack([state[f"{b}_v"] for b in BRANCHES])
    names = ("decay", "threshold", registry.surrogate(surrogate_key).scale)
    lam, theta, scale = (_stacked([params[f"{b}_{name}"] for b in BRANCHES], d) for name in names)
    replay = torch.stack([detached[f"{b}_reset_spike"] for b in BRANCHES]) if detached is not None else None
    options = dict(strict=row.spike_test == ">", smooth=smooth, kind=kind_id(surrogate_key), replay=replay is not None)
    untrained = () if registry.surrogate(surrogate_key).trainable_scale else ("scale",)
    scan = SCAN(options, untrained, z_q=z[0], z_k=z[1], z_v=z[2], s0=state["context"], v0=v0, lam=lam, theta=theta,
                scale=scale, replay=replay)
    projected = scan["o"] @ params["proj_weight"].float().T + params["proj_bias"].float()
    outputs = {"out": projected.to(x.dtype), "context": scan["context"]}
    final = {"context": scan["s_final"]}
    used = {}
    for i, b in enumerate(BRANCHES):
        outputs[f"{b}_v"] = scan["v_rec"][i]
        final[f"{b}_v"] = scan["v_final"][i]
        used[f"{b}_reset_spike"] = detached[f"{b}_reset_spike"] if detached is not None else scan["spikes"][i]
    return outputs, final, used


COMPILE_VARIANTS = _launch.CompileVariants(
    # z and o are float32 host matmuls; g_o is the cotangent of the float32 o.
    float32_pointers=frozenset({"z_q", "z_k", "z_v", "o", "s_save", "v_save", "g_o", "g_z_q", "g_z_k", "g_z_v",
                                "g_lam", "g_theta", "g_scale"}),
    variants=(
        _launch.variant(torch.float32, "O CONTEXT S_FINAL V_REC V_FINAL", LAM_PER_NEURON=True, THETA_PER_NEURON=False,
                        SCALE_PER_NEURON=True, STRICT=True, SMOOTH=False, REPLAY=False, KIND=0, SAVE_SEPARATE=False),
        _launch.variant(torch.float16, "O V_REC", LAM_PER_NEURON=False, THETA_PER_NEURON=True,
                        SCALE_PER_NEURON=False, STRICT=False, SMOOTH=True, REPLAY=True, KIND=3, SAVE_SEPARATE=True),
        _launch.variant(torch.bfloat16, "CONTEXT S_FINAL V_FINAL", LAM_PER_NEURON=True, THETA_PER_NEURON=True,
                        SCALE_PER_NEURON=True, STRICT=False, SMOOTH=False, REPLAY=True, KIND=1, SAVE_SEPARATE=True),
    ),
    num_warps=NUM_WARPS,
)
