"""Triton scans of the CUBA family (hxtorch cuba_lif, cuba_refractory_lif, cuba_li,
cuba_iaf, cuba_refractory_iaf): forward Euler, SPEC.md section 5.

Each program owns a block of neurons and runs the whole time loop with the
state v, i (and r) in float32 registers.  With a = dt/tau_mem, b = dt/tau_syn,
k = refractory_time/dt (computed by torch on the host in float32, so autograd
carries their gradients to tau_mem, tau_syn, refractory_time and dt), per step t:

    w  = inj(v_obs[t], v + a (leak - v + i))     IAF: v + a i   (the old current)
    i' = (1 - b) i + x[t]
    u  = w - threshold;   z1 = inj(z_obs[t], H(u))   H(u) = [u > 0]; smooth twin F(u)
    v1 = (1 - sg(z1)) w + sg(z1) reset           v1 = w when the membrane is observed
  refractory models, with m = sg([r > 0]) and c = sg(relu(r - m)):
    v' = inj(v_obs[t], (1 - m) v1 + m reset);  z = inj(z_obs[t], (1 - m) z1)
    r' = (1 - z) c + z k
  otherwise v' = v1 and z = z1 (the LI readout stops at w: v' = w, no spikes).

``inj(o, w)`` is the observation o in value (stored exactly) with the gradient
of the model value w: the offset o - w is a stop-gradient, as is every ``sg``.
Outputs: out = z (LI: a copy of v'), and the sequences v', i', r'.  LI's out is
a tensor of its own so that the cotangents of out and v meet in float32 in the
kernel, not in autograd in the storage dtype, where half precision loses the
small difference of large gradients.  Every stop-gradient value of every step
is returned under the spec family's key (``reset_spike``, ``refractory_mask``,
``refractory_carry``, ``inject_v``, ``inject_spikes``, ``inject_v_refractory``,
``inject_spikes_refractory``) and replayed, instead of computed, when the
caller passes them back.

The membrane starts at the state tensor, or, when snnref.simulate started it at
the leak (IAF: reset) parameter because the caller gave no state, at that
parameter read directly: the initial membrane's adjoint then joins the
parameter's float32 partial sums, as the seed's autograd sums the two paths,
but without rounding it to the storage dtype per neuron first.

Reverse scan (adjoints ``g``), from the cotangents of the final v, i (and r):

    g v += cot_v[t] (LI: + cot_out[t]);  g i += cot_i[t];  g z = cot_out[t]
    refractory:  g r = cot_r[t] (+ cot of the final r at t = T-1)
                 g z += g r (k - c);  g k += g r z
                 g reset += m g v;  g v = (1 - m) g v;  g z = (1 - m) g z
    no observed membrane:  g reset += sg(z1) g v;  g v = (1 - sg(z1)) g v
    g u = g z f(u);  g v += g u;  g threshold -= g u
    g a += g v (leak - v + i);  g leak += a g v             IAF: g a += g v i
    g x[t] = g i;  g b -= g i i
    g i <- (1 - b) g i + a g v;  g v <- (1 - a) g v         IAF: g v unchanged

An injection passes its adjoint to the model value unchanged; the initial r
acts only through the mask and gets a zero gradient.

The forward keeps the post-step v, i (and r) in float32, one value per state
variable per neuron-step; for float32 storage these are the recorded output
sequences themselves, so nothing extra is kept (half storage: 8 bytes per
neuron-step, 12 with the refractory counter).  The backward recomputes w, u,
the spikes, the mask and the carry of each step from the previous step's state
with the forward's own code (``_advance``), so bit-identically.  Parameter
gradients leave the kernel as per-lane float32 partial sums, reduced by torch
in a fixed order: no atomics, the same bits on every run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from snnref import registry
from snnref.leak import quotient

from . import _launch, common
from ._jit import load_param
from .common import device_function
from .surrogates import derivatives, kind_id, primitive

# The kernels' pointer for each stop-gradient value, in the spec family's order;
# which of them a run has depends on the model and on the observations
# (snnref.registry.detached_keys).
DETACHED = dict(reset_spike="zb", refractory_mask="m", refractory_carry="c", inject_v="dv",
                inject_v_refractory="dv_ref", inject_spikes="dz", inject_spikes_refractory="dz_ref")
# Where the initial membrane comes from: the state tensor, or a parameter.
STARTS = {None: 0, "leak": 1, "reset": 2}


@device_function
def _held(ptr, at, mask):
    return tl.load(ptr + at, mask=mask, other=0.0).to(tl.float32)


@device_function
def _stop(computed, ptr, at, mask, REPLAY: tl.constexpr, RECORD: tl.constexpr):
    """A stop-gradient value: the caller's when replaying, else computed (and recorded)."""
    if REPLAY:
        value = _held(ptr, at, mask)
    else:
        value = computed
        if RECORD:
            tl.store(ptr + at, value.to(ptr.dtype.element_ty), mask=mask)
    return value


@device_function
def _inject(model, obs_ptr, offset_ptr, at, mask, REPLAY: tl.constexpr, RECORD: tl.constexpr):
    """The observation in value; the offset (observation - model) is the stop-gradient."""
    if REPLAY:
        value = model + _held(offset_ptr, at, mask)
    else:
        # The observation itself, not model + offset, which could round.
        value = _held(obs_ptr, at, mask)
        if RECORD:
            tl.store(offset_ptr + at, (value - model).to(offset_ptr.dtype.element_ty), mask=mask)
    return value


@device_function
def _start(v0_ptr, offs, mask, leak, reset, V0_FROM: tl.constexpr):
    """The initial membrane: the state tensor, or the leak (1) or reset (2)
    parameter, broadcast to the block (a scalar parameter is one value, and
    the loop carries a block) with masked lanes at a defined 0."""
    if V0_FROM == 1:
        v0 = tl.where(mask, leak, 0.0)
    elif V0_FROM == 2:
        v0 = tl.where(mask, reset, 0.0)
    else:
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return v0


@device_function
def _advance(v, i, r, at, mask, leak, a, theta, reset, alpha,
             v_obs_ptr, z_obs_ptr, zb_ptr, m_ptr, c_ptr, dv_ptr, dv_ref_ptr, dz_ptr, dz_ref_ptr,
             LEAK: tl.constexpr, SPIKING: tl.constexpr, REFRACTORY: tl.constexpr,
             OBS_V: tl.constexpr, OBS_Z: tl.constexpr, REPLAY: tl.constexpr, RECORD: tl.constexpr,
             RECORD_RESET: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr, KIND: tl.constexpr):
    """One step from the state (v, i, r) left by the previous step, except the
    current's own update.  Returns what the backward needs: dw/da, u, sg(z1),
    m, c, the spikes z and the new membrane.  Without spikes (LI) the spike
    quantities are zeros that nothing reads.  RECORD stores the computed
    stop-gradient values (RECORD_RESET the reset spike, which is not stored
    where it is the output spike train)."""
    # (1) the membrane moves with the previous step's current.
    if LEAK:
        base = leak - v + i
    else:
        base = i
    w = v + a * base
    if OBS_V:
        w = _inject(w, v_obs_ptr, dv_ptr, at, mask, REPLAY, RECORD)
    u = 0.0 * w
    zb = u
    m = u
    c = u
    z = u
    v_new = w
    if SPIKING:
        # The surrogate sees the (possibly observed) membrane.
        u = w - theta
        if SMOOTH:
            z = primitive(u, alpha, KIND)
        elif STRICT:
            z = (u > 0).to(tl.float32)
        else:
            z = (u >= 0).to(tl.float32)
        if OBS_Z:
            z = _inject(z, z_obs_ptr, dz_ptr, at, mask, REPLAY, RECORD)
        # An observed membrane already contains the hardware's reset.
        if not OBS_V:
            zb = _stop(z, zb_ptr, at, mask, REPLAY, RECORD_RESET)
            v_new = (1.0 - zb) * w + zb * reset
        if REFRACTORY:
            m = _stop((r > 0).to(tl.float32), m_ptr, at, mask, REPLAY, RECORD)
            c = _stop(tl.maximum(r - m, 0.0), c_ptr, at, mask, REPLAY, RECORD)
            v_new = (1.0 - m) * v_new + m * reset
            z = (1.0 - m) * z
            if OBS_V:
                v_new = _inject(v_new, v_obs_ptr, dv_ref_ptr, at, mask, REPLAY, RECORD)
            if OBS_Z:
                z = _inject(z, z_obs_ptr, dz_ref_ptr, at, mask, REPLAY, RECORD)
    return base, u, zb, m, c, z, v_new


@device_function
def _coefficients(a_ptr, b_ptr, leak_ptr, reset_ptr, theta_ptr, alpha_ptr, k_ptr, offs, mask, N,
                  A_PER_NEURON: tl.constexpr, B_PER_NEURON: tl.constexpr, LEAK_PER_NEURON: tl.constexpr,
                  RESET_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr, ALPHA_PER_NEURON: tl.constexpr,
                  K_PER_NEURON: tl.constexpr,
                  LEAK: tl.constexpr, SPIKING: tl.constexpr, REFRACTORY: tl.constexpr):
    """Every coefficient of the forward and the backward scan; those a model
    does not have are placeholders (a), never read."""
    a = load_param(a_ptr, offs, mask, N, A_PER_NEURON)
    b = load_param(b_ptr, offs, mask, N, B_PER_NEURON)
    leak = a
    reset = a
    theta = a
    alpha = a
    k = a
    if LEAK:
        leak = load_param(leak_ptr, offs, mask, N, LEAK_PER_NEURON)
    if SPIKING:
        reset = load_param(reset_ptr, offs, mask, N, RESET_PER_NEURON)
        theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
        alpha = load_param(alpha_ptr, offs, mask, N, ALPHA_PER_NEURON)
    if REFRACTORY:
        k = load_param(k_ptr, offs, mask, N, K_PER_NEURON)
    return a, b, leak, reset, theta, alpha, k


@triton.jit
def _forward(x_ptr, v0_ptr, i0_ptr, r0_ptr,
             leak_ptr, reset_ptr, theta_ptr, alpha_ptr, a_ptr, b_ptr, k_ptr,
             v_obs_ptr, z_obs_ptr, zb_ptr, m_ptr, c_ptr, dv_ptr, dv_ref_ptr, dz_ptr, dz_ref_ptr,
             out_ptr, v_ptr, i_ptr, r_ptr, v_keep_ptr, i_keep_ptr, r_keep_ptr,
             v_final_ptr, i_final_ptr, r_final_ptr,
             T, M, N,
             LEAK_PER_NEURON: tl.constexpr, RESET_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
             ALPHA_PER_NEURON: tl.constexpr, A_PER_NEURON: tl.constexpr, B_PER_NEURON: tl.constexpr,
             K_PER_NEURON: tl.constexpr,
             LEAK: tl.constexpr, SPIKING: tl.constexpr, REFRACTORY: tl.constexpr,
             OBS_V: tl.constexpr, OBS_Z: tl.constexpr, REPLAY: tl.constexpr, RECORD_RESET: tl.constexpr,
             STRICT: tl.constexpr, SMOOTH: tl.constexpr, KIND: tl.constexpr, V0_FROM: tl.constexpr,
             SAVE_SEPARATE: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(8) of ``snnref/spec/cuba.py``, one program per block of lanes over every step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    a, b, leak, reset, theta, alpha, k = _coefficients(
        a_ptr, b_ptr, leak_ptr, reset_ptr, theta_ptr, alpha_ptr, k_ptr, offs, mask, N,
        A_PER_NEURON, B_PER_NEURON, LEAK_PER_NEURON, RESET_PER_NEURON, THETA_PER_NEURON, ALPHA_PER_NEURON,
        K_PER_NEURON, LEAK, SPIKING, REFRACTORY)
    # Masked lanes start from a defined 0 and are never stored.
    v = _start(v0_ptr, offs, mask, leak, reset, V0_FROM)
    i = tl.load(i0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = 0.0 * v
    if REFRACTORY:
        r = tl.load(r0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        base, u, zb, m, c, z, v = _advance(
            v, i, r, at, mask, leak, a, theta, reset, alpha,
            v_obs_ptr, z_obs_ptr, zb_ptr, m_ptr, c_ptr, dv_ptr, dv_ref_ptr, dz_ptr, dz_ref_ptr,
            LEAK, SPIKING, REFRACTORY, OBS_V, OBS_Z, REPLAY, True, RECORD_RESET, STRICT, SMOOTH, KIND)
        # (2) the current integrates this step's input after the membrane moved.
        i = (1.0 - b) * i + x
        tl.store(v_ptr + at, v.to(v_ptr.dtype.element_ty), mask=mask)
        tl.store(i_ptr + at, i.to(i_ptr.dtype.element_ty), mask=mask)
        if SPIKING:
            tl.store(out_ptr + at, z.to(out_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(out_ptr + at, v.to(out_ptr.dtype.element_ty), mask=mask)
        if REFRACTORY:
            r = (1.0 - z) * c + z * k
            tl.store(r_ptr + at, r.to(r_ptr.dtype.element_ty), mask=mask)
        if SAVE_SEPARATE:
            # Half-precision outputs are rounded: the backward needs the registers.
            tl.store(v_keep_ptr + at, v, mask=mask)
            tl.store(i_keep_ptr + at, i, mask=mask)
            if REFRACTORY:
                tl.store(r_keep_ptr + at, r, mask=mask)
        at += M
    tl.store(v_final_ptr + offs, v.to(v_final_ptr.dtype.element_ty), mask=mask)
    tl.store(i_final_ptr + offs, i.to(i_final_ptr.dtype.element_ty), mask=mask)
    if REFRACTORY:
        tl.store(r_final_ptr + offs, r.to(r_final_ptr.dtype.element_ty), mask=mask)


@device_function
def _previous(keep_ptr, initial, at, later, earlier, M):
    """The state a step started from: the kept sequence one step back, or the
    initial state at step 0 (``later`` is at >= M, false only there)."""
    return tl.where(later, tl.load(keep_ptr + (at - M), mask=earlier, other=0.0).to(tl.float32), initial)


@triton.jit
def _backward(v0_ptr, i0_ptr, r0_ptr, v_keep_ptr, i_keep_ptr, r_keep_ptr,
              leak_ptr, reset_ptr, theta_ptr, alpha_ptr, a_ptr, b_ptr, k_ptr,
              v_obs_ptr, z_obs_ptr, zb_ptr, m_ptr, c_ptr, dv_ptr, dv_ref_ptr, dz_ptr, dz_ref_ptr,
              g_out_ptr, g_v_ptr, g_i_ptr, g_r_ptr, g_v_final_ptr, g_i_final_ptr, g_r_final_ptr,
              g_x_ptr, g_v0_ptr, g_i0_ptr,
              g_a_ptr, g_b_ptr, g_leak_ptr, g_reset_ptr, g_theta_ptr, g_k_ptr,
              T, M, N, LAST,
              LEAK_PER_NEURON: tl.constexpr, RESET_PER_NEURON: tl.constexpr, THETA_PER_NEURON: tl.constexpr,
              ALPHA_PER_NEURON: tl.constexpr, A_PER_NEURON: tl.constexpr, B_PER_NEURON: tl.constexpr,
              K_PER_NEURON: tl.constexpr,
              LEAK: tl.constexpr, SPIKING: tl.constexpr, REFRACTORY: tl.constexpr,
              OBS_V: tl.constexpr, OBS_Z: tl.constexpr, REPLAY: tl.constexpr,
              STRICT: tl.constexpr, SMOOTH: tl.constexpr, KIND: tl.constexpr, V0_FROM: tl.constexpr,
              HAS_G_OUT: tl.constexpr, HAS_G_V: tl.constexpr, HAS_G_I: tl.constexpr, HAS_G_R: tl.constexpr,
              HAS_G_V_FINAL: tl.constexpr, HAS_G_I_FINAL: tl.constexpr, HAS_G_R_FINAL: tl.constexpr,
              BLOCK: tl.constexpr):
    """Eqs. (9)-(17) and (19) of ``snnref/spec/cuba.py``, last step first (autograd carries (18), (20))."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    a, b, leak, reset, theta, alpha, k = _coefficients(
        a_ptr, b_ptr, leak_ptr, reset_ptr, theta_ptr, alpha_ptr, k_ptr, offs, mask, N,
        A_PER_NEURON, B_PER_NEURON, LEAK_PER_NEURON, RESET_PER_NEURON, THETA_PER_NEURON, ALPHA_PER_NEURON,
        K_PER_NEURON, LEAK, SPIKING, REFRACTORY)
    v0 = _start(v0_ptr, offs, mask, leak, reset, V0_FROM)
    i0 = tl.load(i0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r0 = 0.0 * v0
    if REFRACTORY:
        r0 = tl.load(r0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    zeros = tl.full([BLOCK], 0.0, tl.float32)
    g_v = zeros
    g_i = zeros
    g_r_final = zeros
    if HAS_G_V_FINAL:
        g_v = tl.load(g_v_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_G_I_FINAL:
        g_i = tl.load(g_i_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_G_R_FINAL:
        g_r_final = tl.load(g_r_final_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g_a = zeros
    g_b = zeros
    g_leak = zeros
    g_reset = zeros
    g_theta = zeros
    g_k = zeros
    # Element offsets in int64 from the last step (LAST = (T - 1) M) down.
    at = offs.to(tl.int64) + LAST
    for _ in range(T):
        # The previous step's state (the initial state at step 0: at >= M holds
        # for every later step).
        later = at >= M
        earlier = mask & later
        v_prev = _previous(v_keep_ptr, v0, at, later, earlier, M)
        i_prev = _previous(i_keep_ptr, i0, at, later, earlier, M)
        r_prev = r0
        if REFRACTORY:
            r_prev = _previous(r_keep_ptr, r0, at, later, earlier, M)
        base, u, zb, m, c, z, v_new = _advance(
            v_prev, i_prev, r_prev, at, mask, leak, a, theta, reset, alpha,
            v_obs_ptr, z_obs_ptr, zb_ptr, m_ptr, c_ptr, dv_ptr, dv_ref_ptr, dz_ptr, dz_ref_ptr,
            LEAK, SPIKING, REFRACTORY, OBS_V, OBS_Z, REPLAY, False, False, STRICT, SMOOTH, KIND)
        g_out = zeros
        if HAS_G_OUT:
            g_out = tl.load(g_out_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_G_V:
            g_v += tl.load(g_v_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if not SPIKING:
            g_v += g_out
        if HAS_G_I:
            g_i += tl.load(g_i_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if SPIKING:
            g_z = g_out
            if REFRACTORY:
                # r' reaches later steps only through the mask: its adjoint is
                # this step's cotangent (and the final state's at the end).
                g_r = g_r_final
                g_r_final = zeros
                if HAS_G_R:
                    g_r += tl.load(g_r_ptr + at, mask=mask, other=0.0).to(tl.float32)
                g_z += g_r * (k - c)
                g_k += g_r * z
                g_reset += m * g_v
                g_v = (1.0 - m) * g_v
                g_z = (1.0 - m) * g_z
            if not OBS_V:
                g_reset += zb * g_v
                g_v = (1.0 - zb) * g_v
            g_u = g_z * derivatives(u, alpha, KIND)[0]
            g_v += g_u
            g_theta -= g_u
        # g_v is now the adjoint of the model's w = v + a base (an injection
        # passes it through unchanged).
        g_a += g_v * base
        tl.store(g_x_ptr + at, g_i.to(g_x_ptr.dtype.element_ty), mask=mask)
        g_b -= g_i * i_prev
        g_i = (1.0 - b) * g_i + a * g_v
        if LEAK:
            g_leak += a * g_v
            g_v = (1.0 - a) * g_v
        at -= M
    # A membrane that started at a parameter adds its adjoint to that
    # parameter's float32 partial sums.
    if V0_FROM == 1:
        g_leak += g_v
    elif V0_FROM == 2:
        g_reset += g_v
    else:
        tl.store(g_v0_ptr + offs, g_v.to(g_v0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_i0_ptr + offs, g_i.to(g_i0_ptr.dtype.element_ty), mask=mask)
    tl.store(g_a_ptr + offs, g_a, mask=mask)
    tl.store(g_b_ptr + offs, g_b, mask=mask)
    if LEAK:
        tl.store(g_leak_ptr + offs, g_leak, mask=mask)
    if SPIKING:
        tl.store(g_reset_ptr + offs, g_reset, mask=mask)
        tl.store(g_theta_ptr + offs, g_theta, mask=mask)
    if REFRACTORY:
        tl.store(g_k_ptr + offs, g_k, mask=mask)


def _refractory(constexprs):
    return constexprs["REFRACTORY"]


SCAN = _launch.Scan(
    forward=_forward, backward=_backward,
    tensors=("x", "v0", "i0", "r0"), params=("leak", "reset", "theta", "alpha", "a", "b", "k"),
    constants=("v_obs", "z_obs", *DETACHED.values()),
    outputs=(_launch.Output("out"), _launch.Output("v"), _launch.Output("i"), _launch.Output("r", when=_refractory),
             _launch.Output("v_final", per_step=False), _launch.Output("i_final", per_step=False),
             _launch.Output("r_final", per_step=False, when=_refractory)),
    saved=(_launch.Saved("v_keep", of="v"), _launch.Saved("i_keep", of="i"), _launch.Saved("r_keep", of="r")),
)
# r0 acts only through the refractory mask: the backward takes no g_r0, so r0's gradient is zeros.


def _starts_at(v0, param):
    """Whether the initial membrane is ``param`` broadcast over the state's shape
    (snnref.simulate's start when the caller gave no state).  The kernel then
    reads the parameter and sums the membrane's adjoint into its float32
    partial sums, rather than autograd summing a gradient already rounded to
    the storage dtype per neuron.  The same memory, read with the strides of
    ``param.expand``, and with a gradient, made from ``param`` by one step of
    autograd: ``v0._base is param`` missed a parameter that is itself a view
    (its broadcast's base is the view's base), and a bfloat16 gradient of
    hxtorch.cuba_refractory_iaf's reset, rounded twice, erred by 1.5 times its
    budget."""
    if v0.data_ptr() != param.data_ptr() or v0.stride() != param.expand(v0.shape).stride():
        return False
    if not (v0.requires_grad and param.requires_grad):
        return not (v0.requires_grad or param.requires_grad)
    if v0.grad_fn is None or len(v0.grad_fn.next_functions) != 1:
        return False
    source = v0.grad_fn.next_functions[0][0]
    if param.grad_fn is not None:
        return source is param.grad_fn
    return getattr(source, "variable", None) is param


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    spiking = row.options.spiking
    # a, b, k by snnref.leak.quotient, in float32 whatever the storage: autograd carries their
    # gradients to dt, tau_mem, tau_syn and refractory_time.
    dt = params["dt"].float()
    a = quotient(dt, params["tau_mem"].float())
    b = quotient(dt, params["tau_syn"].float())
    k = quotient(params["refractory_time"].float(), dt) if row.refractory else None
    v_obs, z_obs = inject.get("v"), inject.get("spikes")
    start = next(var.initial for var in row.state if var.name == "v")
    v0_from = start if _starts_at(state["v"], params[start]) else None
    replay = detached is not None
    # Without the clamp the reset spike is the output spike train: no copy.
    reset_is_spikes = spiking and v_obs is None and not row.refractory
    options = dict(leak=row.options.leak, spiking=spiking, refractory=row.refractory, obs_v=v_obs is not None,
                   obs_z=z_obs is not None, replay=replay, record_reset=not reset_is_spikes,
                   strict=row.spike_test == ">", smooth=bool(smooth),
                   kind=kind_id(surrogate_key) if spiking else -1, v0_from=STARTS[v0_from])
    keys = registry.detached_keys(row, inject)
    if replay:
        missing = [key for key in keys if key not in detached]
        if missing:
            raise ValueError(f"detached: {row.key} with these observations needs {', '.join(missing)}")
        frozen = {key: detached[key].contiguous() for key in keys}
    else:
        # Written by the forward kernel.
        frozen = {key: common.empty(x.shape, x.dtype, x.device) for key in keys
                  if not (key == "reset_spike" and reset_is_spikes)}
    # superspike's scale (alpha) gets no gradient: the backward sums none for it.
    scan = SCAN(options, x=x, v0=None if v0_from else state["v"], i0=state["i"],
                r0=state["r"] if row.refractory else None, leak=params.get("leak"), reset=params.get("reset"),
                theta=params.get("threshold"), alpha=params.get("alpha"), a=a, b=b, k=k,
                v_obs=v_obs, z_obs=z_obs,
                **{name: frozen.get(key) for key, name in DETACHED.items()})
    names = ["v", "i"] + (["r"] if row.refractory else [])
    outputs = {"out": scan["out"], **{name: scan[name] for name in names}}
    used = {key: detached[key] for key in keys} if replay else dict(frozen)
    if not replay and reset_is_spikes:
        used["reset_spike"] = scan["out"].detach()
    return outputs, {name: scan[f"{name}_final"] for name in names}, {key: used[key] for key in keys}


# Per-neuron flags in the order leak, reset, threshold, alpha, a, b, k.  Joint
# branches: the refractory clamp with an observed membrane and observed spikes
# (variants 1, 5) and without (variant 3); computed or replayed injections,
# also under the clamp (variants 1 against 2, 4, 5); the reset recorded apart
# or being the output spike train (RECORD_RESET, variants 1, 3 against 0, 4);
# LI's readout, whose g_out joins g_v (variant 2); the membrane starting at the
# state, the leak or the reset (V0_FROM 0, 1, 2).  SAVE_SEPARATE: half storage.
COMPILE_VARIANTS = _launch.CompileVariants(
    # a, b, k are computed on the host in float32 whatever the storage.
    float32_pointers=frozenset({"a", "b", "k", "v_keep", "i_keep", "r_keep", "g_a", "g_b", "g_leak", "g_reset",
                                "g_theta", "g_k"}),
    variants=(
        _launch.variant(torch.float32, "OUT V I V_FINAL I_FINAL", LEAK_PER_NEURON=True, RESET_PER_NEURON=False,
                        THETA_PER_NEURON=True, ALPHA_PER_NEURON=False, A_PER_NEURON=False, B_PER_NEURON=True,
                        K_PER_NEURON=False, LEAK=True, SPIKING=True, REFRACTORY=False, OBS_V=False, OBS_Z=False,
                        REPLAY=False, STRICT=True, SMOOTH=False, KIND=0, V0_FROM=1, RECORD_RESET=False,
                        SAVE_SEPARATE=False),
        _launch.variant(torch.float16, "OUT I R I_FINAL R_FINAL", LEAK_PER_NEURON=False, RESET_PER_NEURON=True,
                        THETA_PER_NEURON=False, ALPHA_PER_NEURON=True, A_PER_NEURON=True, B_PER_NEURON=False,
                        K_PER_NEURON=True, LEAK=True, SPIKING=True, REFRACTORY=True, OBS_V=True, OBS_Z=True,
                        REPLAY=False, STRICT=False, SMOOTH=False, KIND=1, V0_FROM=0, RECORD_RESET=True,
                        SAVE_SEPARATE=True),
        # LI: no spikes, so no surrogate (KIND -1).
        _launch.variant(torch.bfloat16, "OUT V V_FINAL", LEAK_PER_NEURON=True, RESET_PER_NEURON=False,
                        THETA_PER_NEURON=False, ALPHA_PER_NEURON=False, A_PER_NEURON=True, B_PER_NEURON=False,
                        K_PER_NEURON=False, LEAK=True, SPIKING=False, REFRACTORY=False, OBS_V=True, OBS_Z=False,
                        REPLAY=True, STRICT=True, SMOOTH=False, KIND=-1, V0_FROM=1, RECORD_RESET=True,
                        SAVE_SEPARATE=True),
        _launch.variant(torch.bfloat16, "V I V_FINAL R_FINAL", LEAK_PER_NEURON=False, RESET_PER_NEURON=False,
                        THETA_PER_NEURON=False, ALPHA_PER_NEURON=False, A_PER_NEURON=False, B_PER_NEURON=False,
                        K_PER_NEURON=False, LEAK=False, SPIKING=True, REFRACTORY=True, OBS_V=False, OBS_Z=False,
                        REPLAY=True, STRICT=True, SMOOTH=True, KIND=2, V0_FROM=2, RECORD_RESET=True,
                        SAVE_SEPARATE=True),
        _launch.variant(torch.float16, "OUT I I_FINAL", LEAK_PER_NEURON=False, RESET_PER_NEURON=True,
                        THETA_PER_NEURON=True, ALPHA_PER_NEURON=True, A_PER_NEURON=False, B_PER_NEURON=True,
                        K_PER_NEURON=False, LEAK=False, SPIKING=True, REFRACTORY=False, OBS_V=False, OBS_Z=True,
                        REPLAY=True, STRICT=True, SMOOTH=False, KIND=3, V0_FROM=2, RECORD_RESET=False,
                        SAVE_SEPARATE=True),
        _launch.variant(torch.float32, "OUT V I R V_FINAL I_FINAL R_FINAL", LEAK_PER_NEURON=True,
                        RESET_PER_NEURON=True, THETA_PER_NEURON=True, ALPHA_PER_NEURON=True, A_PER_NEURON=True,
                        B_PER_NEURON=True, K_PER_NEURON=True, LEAK=True, SPIKING=True, REFRACTORY=True, OBS_V=True,
                        OBS_Z=True, REPLAY=True, STRICT=False, SMOOTH=True, KIND=4, V0_FROM=1, RECORD_RESET=True,
                        SAVE_SEPARATE=False),
    ),
)
