"""Fused CPU scans of tether's SpikingSelfAttention, SPEC.md sections 2 and 8.

Input x of shape (T, B, N, D).  Three LIF branches b in (q, k, v), each driven
by a bias-free linear map z_b = x W_b^T (a torch matmul over all steps, left
to autograd, as is the output projection).  Per lane, from the post-reset
membranes p_b and the context S of the previous step (the initial state at t = 0):

    (1) v_b = lam_b p_b + z_b[t];   s_b = H(v_b - theta_b)   (F for the smooth twin)
    (2) p_b = v_b (1 - r_b),   r_b = sg(s_b) (or the replayed r_b); 0 where r_b = 1 (SPEC.md section 2:
        v+ = 0 if s, so that a membrane that overflowed to inf resets to 0, not to inf * 0 = NaN)
    (3) S[t] = S[t-1] + s_k s_v;   o[t] = s_q S[t];   out = o W_proj^T + b_proj

Reverse scan, G_S the gradient reaching S[t] and G_b the one reaching p_b:

    (4) G_S += dL/dS_rec[t] + dL/do[t] s_q
    (5) g_q = dL/do[t] S[t];   g_k = G_S s_v;   g_v = G_S s_k
    (6) per branch, u = v_b - theta_b:  g = G_b (1 - r_b) + dL/dv_b,rec[t] + g_b f(u)
        dtheta_b -= g_b f(u);  dscale_b += g_b dF/dscale(u);  dz_b[t] = g
        dlam_b += g p_b[t-1];  G_b = lam_b g
    (S[t] carries S[t-1] unchanged, so G_S passes to the previous step as is.)

The branches are stacked on a leading axis of 3.  Saved: the three pre-reset
membranes and the context sequence (outputs); the spikes and p_b[t-1] are
rebuilt from them with the forward's own operations, so bitwise.

Each kernel has a general loop and, for the common case (H, no replayed
spikes; in the backward also a surrogate other than sigmoid), a tile loop on
row slices whose body is branch-free (the flags become selects, an absent
cotangent a row of zeros), which the compiler vectorizes; both compute the
same roundings.  No fastmath (see lif.py).
"""

from __future__ import annotations

import numpy as np
import torch

from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._stream import drain, put
from .surrogates import SIGMOID, algebraic_derivatives, derivatives, kind, kind_flags, step

BRANCHES = ("q", "k", "v")
Q, K, V = 0, 1, 2


@njit(cache=True, error_model="numpy")
def _forward_tile(z, lam, theta, out, context, context_final, v_rec, v_final, spikes, start, stop, strict, c,
                  streaming):
    """Eqs. (1)-(3) over one tile with H and no replay, on row slices.
    With ``streaming`` (a constant: compiled once per value) the rows of v, S
    and o are written with streaming stores (``_stream``); the spikes' stay
    plain, as the step's context loop reads them."""
    one = c[0]
    zero = one - one
    inclusive = not strict
    total = context_final[start:stop]
    for t in range(z.shape[1]):
        for b in range(z.shape[0]):
            drive = z[b, t, start:stop]
            p = v_final[b, start:stop]
            leak = lam[b, start:stop]
            threshold = theta[b, start:stop]
            kept = v_rec[b, t, start:stop]
            fired = spikes[b, t, start:stop]
            for i in range(p.shape[0]):
                v = leak[i] * p[i] + drive[i]  # (1)
                u = v - threshold[i]
                s = one if (u > 0) | (inclusive & (u == 0)) else zero
                # (2); s is 0 or 1 here: v (1 - s) is v, or 0 where it fires.
                p[i] = zero if s == one else v
                put(kept, i, v, streaming)
                fired[i] = s
        s_q = spikes[Q, t, start:stop]
        s_k = spikes[K, t, start:stop]
        s_v = spikes[V, t, start:stop]
        kept_context = context[t, start:stop]
        o = out[t, start:stop]
        for i in range(total.shape[0]):
            summed = total[i] + s_k[i] * s_v[i]  # (3)
            total[i] = summed
            put(kept_context, i, summed, streaming)
            put(o, i, s_q[i] * summed, streaming)
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(z, v0, s0, lam, theta, scale, replayed, out, context, context_final, v_rec, v_final, spikes,
                 strict, smooth, replay, surrogate, c, streaming, tile, first_tile, last_tile):
    branches, steps, count = z.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            context_final[j] = s0[j]
            for b in range(branches):
                v_final[b, j] = v0[b, j]
        if not smooth and not replay:
            _forward_tile(z, lam, theta, out, context, context_final, v_rec, v_final, spikes, start, stop, strict,
                          c, streaming)
            continue
        for t in range(steps):
            for j in range(start, stop):
                for b in range(branches):
                    v = lam[b, j] * v_final[b, j] + z[b, t, j]  # (1)
                    s = step(v - theta[b, j], scale[b, j], surrogate, strict, smooth, c)
                    r = replayed[b, t, j] if replay else s
                    v_final[b, j] = zero if r == one else v * (one - r)  # (2)
                    v_rec[b, t, j] = v
                    spikes[b, t, j] = s
                total = context_final[j] + spikes[K, t, j] * spikes[V, t, j]  # (3)
                context_final[j] = total
                context[t, j] = total
                out[t, j] = spikes[Q, t, j] * total


@njit(cache=True, error_model="numpy")
def _backward_tile(v0, lam, theta, scale, context, v_rec, g_out, g_context, g_v_rec, g_z, g_v0, g_s0, g_lam, g_theta,
                   g_scale, has_g_out, has_g_context, has_g_v_rec, start, stop, strict, surrogate, c, streaming):
    """Eqs. (4)-(6) over one tile with H, no replay and an algebraic surrogate
    (sigmoid's exp would keep the loop scalar), on row slices: first the
    context's gradient and each branch's spike gradient (5) into a scratch row per
    branch, then each branch's membrane scan (6).  With ``streaming`` (a
    constant: compiled once per value) the rows of dz are written with
    streaming stores (``_stream``)."""
    one = c[0]
    zero = one - one
    kinds = kind_flags(surrogate)
    inclusive = not strict
    width = stop - start
    absent = np.zeros(width, dtype=g_z.dtype)
    g_spike = np.empty((3, width), dtype=g_z.dtype)
    carry_context = g_s0[start:stop]
    for t in range(g_z.shape[1] - 1, -1, -1):
        first = t == 0
        g_o_row = g_out[t % g_out.shape[0], start:stop] if has_g_out else absent
        g_context_row = g_context[t % g_context.shape[0], start:stop] if has_g_context else absent
        context_row = context[t, start:stop]
        v_q = v_rec[Q, t, start:stop]
        v_k = v_rec[K, t, start:stop]
        v_v = v_rec[V, t, start:stop]
        theta_q = theta[Q, start:stop]
        theta_k = theta[K, start:stop]
        theta_v = theta[V, start:stop]
        for i in range(width):
            u_q = v_q[i] - theta_q[i]
            u_k = v_k[i] - theta_k[i]
            u_v = v_v[i] - theta_v[i]
            s_q = one if (u_q > 0) | (inclusive & (u_q == 0)) else zero
            s_k = one if (u_k > 0) | (inclusive & (u_k == 0)) else zero
            s_v = one if (u_v > 0) | (inclusive & (u_v == 0)) else zero
            g_o = g_o_row[i]
            g_total = carry_context[i] + g_context_row[i] + g_o * s_q  # (4)
            carry_context[i] = g_total
            g_spike[Q, i] = g_o * context_row[i]  # (5)
            g_spike[K, i] = g_total * s_v
            g_spike[V, i] = g_total * s_k
        for b in range(g_z.shape[0]):
            now = v_rec[b, t, start:stop]
            before = v0[b, start:stop] if first else v_rec[b, t - 1, start:stop]
            threshold = theta[b, start:stop]
            scales = scale[b, start:stop]
            leak = lam[b, start:stop]
            carry = g_v0[b, start:stop]
            g_rec_row = g_v_rec[b, t, start:stop] if has_g_v_rec[b] else absent
            g_s_row = g_spike[b]
            g_z_row = g_z[b, t, start:stop]
            d_lam = g_lam[b, start:stop]
            d_theta = g_theta[b, start:stop]
            d_scale = g_scale[b, start:stop]
            for i in range(width):
                g_s = g_s_row[i]
                u = now[i] - threshold[i]  # (6)
                s = one if (u > 0) | (inclusive & (u == 0)) else zero
                f, dF = algebraic_derivatives(u, scales[i], kinds, c)
                g_u = g_s * f
                g_b = carry[i] * (one - s) + g_rec_row[i] + g_u
                d_theta[i] -= g_u
                d_scale[i] += g_s * dF
                put(g_z_row, i, g_b, streaming)
                # p_b[t-1], rebuilt as the forward computed it (the initial state at t = 0).
                u_before = before[i] - threshold[i]
                s_before = one if (u_before > 0) | (inclusive & (u_before == 0)) else zero
                reset_before = zero if s_before == one else before[i]
                p_before = before[i] if first else reset_before
                d_lam[i] += g_b * p_before
                carry[i] = leak[i] * g_b
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(v0, lam, theta, scale, replayed, context, v_rec, g_out, g_context, g_context_final,
                  g_v_rec, g_v_final, g_z, g_v0, g_s0, g_lam, g_theta, g_scale,
                  has_g_out, has_g_context, has_g_context_final, has_g_v_rec, has_g_v_final,
                  strict, smooth, replay, surrogate, c, streaming, tile, first_tile, last_tile):
    branches, steps, count = g_z.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            # g_s0 and g_v0 carry G_S and G_b through the scan.
            g_s0[j] = g_context_final[j] if has_g_context_final else zero
            for b in range(branches):
                g_v0[b, j] = g_v_final[b, j] if has_g_v_final[b] else zero
                g_lam[b, j] = 0.0
                g_theta[b, j] = 0.0
                g_scale[b, j] = 0.0
        if not smooth and not replay and surrogate != SIGMOID:
            _backward_tile(v0, lam, theta, scale, context, v_rec, g_out, g_context, g_v_rec, g_z, g_v0, g_s0,
                           g_lam, g_theta, g_scale, has_g_out, has_g_context, has_g_v_rec, start, stop, strict,
                           surrogate, c, streaming)
            continue
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                s_q = step(v_rec[Q, t, j] - theta[Q, j], scale[Q, j], surrogate, strict, smooth, c)
                s_k = step(v_rec[K, t, j] - theta[K, j], scale[K, j], surrogate, strict, smooth, c)
                s_v = step(v_rec[V, t, j] - theta[V, j], scale[V, j], surrogate, strict, smooth, c)
                g_o = g_out[t % g_out.shape[0], j] if has_g_out else zero
                g_total = g_s0[j] + (g_context[t % g_context.shape[0], j] if has_g_context else zero) + g_o * s_q  # (4)
                g_s0[j] = g_total
                for b in range(branches):
                    if b == Q:  # (5)
                        g_s = g_o * context[t, j]
                    elif b == K:
                        g_s = g_total * s_v
                    else:
                        g_s = g_total * s_k
                    u = v_rec[b, t, j] - theta[b, j]  # (6)
                    s = step(u, scale[b, j], surrogate, strict, smooth, c)
                    r = replayed[b, t, j] if replay else s
                    f, dF = derivatives(u, scale[b, j], surrogate, c)
                    g_u = g_s * f
                    g = g_v0[b, j] * (one - r) + (g_v_rec[b, t, j] if has_g_v_rec[b] else zero) + g_u
                    g_theta[b, j] -= g_u
                    g_scale[b, j] += g_s * dF
                    g_z[b, t, j] = g
                    if t > 0:
                        v_before = v_rec[b, t - 1, j]
                        s_before = step(v_before - theta[b, j], scale[b, j], surrogate, strict, smooth, c)
                        r_before = replayed[b, t - 1, j] if replay else s_before
                        p_before = zero if r_before == one else v_before * (one - r_before)
                    else:
                        p_before = v0[b, j]
                    g_lam[b, j] += g * p_before
                    g_v0[b, j] = lam[b, j] * g


def _stacked_lanes(values, step_shape):
    return torch.stack([v.detach().expand(step_shape) for v in values]).reshape(len(values), -1).numpy()


class _Scan(torch.autograd.Function):
    """Inputs: the stacked branch inputs z (3, T, ...), S0, the per-branch v0,
    lam, theta, scale (each a tuple of three), the replayed spikes, the config."""

    @staticmethod
    def forward(ctx, z, s0, v0_q, v0_k, v0_v, lam_q, lam_k, lam_v, theta_q, theta_k, theta_v,
                scale_q, scale_k, scale_v, replayed, config):
        strict, smooth, replay, surrogate = config
        shape, step_shape, dtype = z.shape[1:], z.shape[2:], z.dtype
        lanes = {name: _stacked_lanes(values, step_shape) for name, values in
                 (("v0", (v0_q, v0_k, v0_v)), ("lam", (lam_q, lam_k, lam_v)),
                  ("theta", (theta_q, theta_k, theta_v)), ("scale", (scale_q, scale_k, scale_v)))}
        held = replayed.detach().contiguous().numpy().reshape(3, shape[0], -1) if replay \
            else _launch.placeholder(dtype, 3)
        out, context = (_launch.empty(shape, dtype) for _ in range(2))
        context_final = _launch.empty_lanes(step_shape, dtype)
        v_rec, spikes = (_launch.empty((3,) + tuple(shape), dtype) for _ in range(2))
        v_final = _launch.empty_lanes((3,) + tuple(step_shape), dtype)
        count = context_final.numel()
        out_rows, context_rows = _launch.sequence(out), _launch.sequence(context)
        v_rec_rows = v_rec.numpy().reshape(3, shape[0], count)
        # The tile loop streams o, S and v (the branches' rows as one (3 T, M) array).
        _launch.run_tiles(forward_scan, count, _launch.contiguous(z).numpy().reshape(3, shape[0], count), lanes["v0"],
                          _launch.per_lane(s0, step_shape), lanes["lam"], lanes["theta"], lanes["scale"], held,
                          out_rows, context_rows, _launch.lanes(context_final), v_rec_rows,
                          v_final.numpy().reshape(3, count), spikes.numpy().reshape(3, shape[0], count), strict,
                          smooth, replay, surrogate, _launch.constants(dtype),
                          streamed=[out_rows, context_rows, v_rec_rows.reshape(3 * shape[0], count)])
        ctx.save_for_backward(context, v_rec, lam_q, lam_k, lam_v, theta_q, theta_k, theta_v,
                              scale_q, scale_k, scale_v)
        ctx.lanes, ctx.held, ctx.config = lanes, held, config
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(spikes)
        return out, context, context_final, v_rec, v_final, spikes

    @staticmethod
    @first_order("attention", "cpu")
    def backward(ctx, g_out, g_context, g_context_final, g_v_rec, g_v_final, _):
        context, v_rec, *parameters = ctx.saved_tensors
        strict, smooth, replay, surrogate = ctx.config
        dtype, steps, count = context.dtype, context.shape[0], _launch.lane_count(context)
        views = [_launch.cotangent(g, dtype) for g in (g_out, g_context)]
        views.append(_launch.optional(g_context_final, dtype, rank=1))
        # The stacked branch cotangents: absent ones are zeros (cheap: only the
        # attention model stacks, and its branches are small).
        present_v_rec = g_v_rec is not None
        g_v_rec = _launch.contiguous(g_v_rec).numpy().reshape(3, steps, count) if present_v_rec \
            else _launch.placeholder(dtype, 3)
        present_v_final = g_v_final is not None
        g_v_final = _launch.contiguous(g_v_final).numpy().reshape(3, count) if present_v_final \
            else _launch.placeholder(dtype, 2)
        g_z = _launch.empty(v_rec.shape, dtype)
        g_v0 = _launch.empty_lanes((3,) + tuple(v_rec.shape[2:]), dtype)
        g_s0 = _launch.empty_lanes(context.shape[1:], dtype)
        sums = [_launch.lane_sums(3 * count, dtype).reshape(3, count) for _ in range(3)]
        flags = [present for _, present in views]
        g_z_rows = g_z.numpy().reshape(3, steps, count)
        _launch.run_tiles(backward_scan, count, ctx.lanes["v0"], ctx.lanes["lam"], ctx.lanes["theta"],
                          ctx.lanes["scale"], ctx.held, _launch.sequence(context),
                          v_rec.numpy().reshape(3, steps, count), *(view for view, _ in views), g_v_rec, g_v_final,
                          g_z_rows, g_v0.numpy().reshape(3, count), _launch.lanes(g_s0),
                          *sums, flags[0], flags[1], flags[2], (present_v_rec,) * 3, (present_v_final,) * 3, strict,
                          smooth, replay, surrogate, _launch.constants(dtype),
                          streamed=[g_z_rows.reshape(3 * steps, count)])
        neurons = context.shape[-1]
        wants = ctx.needs_input_grad[5:14]
        grads = [_launch.reduce_lanes(sums[kind_index][b], like, neurons) if want else None
                 for (kind_index, b), like, want in zip(
                     [(i, b) for i in range(3) for b in range(3)], parameters, wants)]
        return (g_z, g_s0, g_v0[0], g_v0[1], g_v0[2], *grads, None, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    replay = detached is not None
    # torch's Linear convention, one batched matmul over every step per branch.
    z = torch.stack([x @ params[f"{b}_weight"].T for b in BRANCHES])
    replayed = torch.stack([detached[f"{b}_reset_spike"] for b in BRANCHES]) if replay else None
    config = (row.spike_test == ">", bool(smooth), replay, kind(surrogate))
    out, context, context_final, v_rec, v_final, spikes = _Scan.apply(
        z, state["context"], *(state[f"{b}_v"] for b in BRANCHES),
        *(params[f"{b}_{name}"] for name in ("decay", "threshold", "alpha") for b in BRANCHES),
        replayed, config,
    )
    outputs = {"out": out @ params["proj_weight"].T + params["proj_bias"], "context": context}
    final = {"context": context_final}
    used = {}
    for i, b in enumerate(BRANCHES):
        outputs[f"{b}_v"] = v_rec[i]
        final[f"{b}_v"] = v_final[i]
        used[f"{b}_reset_spike"] = detached[f"{b}_reset_spike"] if replay else spikes[i]
    return outputs, final, used
