"""Fused CPU scans of tether's ALIF (adaptive threshold), SPEC.md section 2.

Per lane, from the post-reset membrane p[t-1] and the adaptation a[t] before
this step's update (p[-1], a[0] the initial state):

    (1) v[t] = lam_v p[t-1] + x[t]
    (2) u[t] = v[t] - (theta + beta a[t]);   s[t] = H(u[t])   (F(u) for the smooth twin)
    (3) p[t] = v[t] (1 - r[t]),   r = sg(s) (or the replayed r); 0 where r = 1 (SPEC.md section 2:
        v+ = 0 if s, so that a membrane that overflowed to inf resets to 0, not to inf * 0 = NaN)
    (4) a[t+1] = lam_a a[t] + s[t]              (differentiated: s carries its surrogate gradient)
    recorded: v[t] and a[t]; final state p[T-1], a[T].

Reverse scan, G_p and G_a the gradients reaching p[t] and a[t+1] (the final
cotangents at the end):

    (5) g_s = dL/ds[t] + G_a;   g_u = g_s f(u[t])
    (6) g_v = G_p (1 - r[t]) + dL/dv_rec[t] + g_u
    (7) dtheta -= g_u;  dbeta -= g_u a[t];  dscale += g_s dF/dscale(u[t]);  dlam_a += G_a a[t]
    (8) G_a = lam_a G_a - beta g_u + dL/da_rec[t]
    (9) dx[t] = g_v;  dlam_v += g_v p[t-1];  G_p = lam_v g_v
    initial-state gradients: G_p and G_a after step 0.  (7) gives dlam_a the term
    G_a(T) a[T-1] of a final-adaptation cotangent and no term for a[0]'s origin.

Saved: nothing but the two recorded sequences (outputs); p[t-1] and the spikes
are rebuilt from them with the forward's operations.  No fastmath (see lif.py).

Each kernel has a general loop and, for the common case (H, no replayed
spikes; in the backward also a surrogate other than sigmoid), a tile loop on
row slices whose body is branch-free (an absent cotangent is a row of zeros,
invariant flags become selects), which the compiler vectorizes; both compute
the same roundings, so every spike the backward rebuilds is the forward's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._parameters import lane_value, tile_values
from ._stream import drain, put
from .surrogates import SIGMOID, algebraic_derivatives, derivatives, kind, kind_flags, step


@njit(cache=True, error_model="numpy")
def _forward_tile(x, lam_v, lam_a, theta, beta, spikes, v_rec, a_rec, v_final, a_final, start, stop, strict, c,
                  streaming):
    """Eqs. (1)-(4) over one tile with H (no smooth twin, no replay): r = s,
    and the body is branch-free on row slices, so it vectorizes.
    With ``streaming`` (a constant: compiled once per value) the rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    zero = one - one
    p = v_final[start:stop]
    adaptation = a_final[start:stop]
    leak_v = tile_values(lam_v, start, stop)
    leak_a = tile_values(lam_a, start, stop)
    threshold = tile_values(theta, start, stop)
    weight = tile_values(beta, start, stop)
    inclusive = not strict
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        fired = spikes[t, start:stop]
        kept_v = v_rec[t, start:stop]
        kept_a = a_rec[t, start:stop]
        for i in range(p.shape[0]):
            a = adaptation[i]
            v = lane_value(leak_v, i) * p[i] + drive[i]  # (1)
            u = v - (lane_value(threshold, i) + lane_value(weight, i) * a)  # (2)
            s = one if (u > 0) | (inclusive & (u == 0)) else zero
            put(fired, i, s, streaming)
            put(kept_v, i, v, streaming)
            put(kept_a, i, a, streaming)
            # (3); s is 0 or 1 here: v (1 - s) is v, or 0 where it fires.
            p[i] = zero if s == one else v
            adaptation[i] = lane_value(leak_a, i) * a + s  # (4)
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, v0, a0, lam_v, lam_a, theta, beta, scale, replayed,
                 spikes, v_rec, a_rec, v_final, a_final, strict, smooth, replay, surrogate, c, streaming, tile,
                 first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            v_final[j] = v0[j]
            a_final[j] = a0[j]
        if not smooth and not replay:
            _forward_tile(x, lam_v, lam_a, theta, beta, spikes, v_rec, a_rec, v_final, a_final, start, stop,
                          strict, c, streaming)
            continue
        for t in range(steps):
            for j in range(start, stop):
                a = a_final[j]
                v = lane_value(lam_v, j) * v_final[j] + x[t, j]  # (1)
                u = v - (lane_value(theta, j) + lane_value(beta, j) * a)
                s = step(u, lane_value(scale, j), surrogate, strict, smooth, c)  # (2)
                r = replayed[t, j] if replay else s
                spikes[t, j] = s
                v_rec[t, j] = v
                a_rec[t, j] = a
                v_final[j] = zero if r == one else v * (one - r)  # (3)
                a_final[j] = lane_value(lam_a, j) * a + s  # (4)


@njit(cache=True, error_model="numpy")
def _backward_tile(v0, lam_v, lam_a, theta, beta, scale, v_rec, a_rec, g_spikes, g_v_rec, g_a_rec,
                   g_x, g_v0, g_a0, g_lam_v, g_lam_a, g_theta, g_beta, g_scale,
                   has_g_spikes, has_g_v_rec, has_g_a_rec, start, stop, strict, surrogate, c, streaming):
    """Eqs. (5)-(9) over one tile with H (no smooth twin, no replay) and an
    algebraic surrogate (sigmoid's exp would keep the loop scalar), on row
    slices with a branch-free body; an absent cotangent is a row of zeros.
    With ``streaming`` (a constant: compiled once per value) dx's rows are
    written with streaming stores (``_stream``), by the second lane loop,
    which reads dx: the first keeps it in the scratch row ``staged`` (a
    streamed row read back would come from memory)."""
    one = c[0]
    zero = one - one
    kinds = kind_flags(surrogate)
    absent = np.zeros(stop - start, dtype=g_x.dtype)
    staged = np.empty(stop - start if streaming else 0, dtype=g_x.dtype)
    initial = v0[start:stop]
    leak_v = tile_values(lam_v, start, stop)
    leak_a = tile_values(lam_a, start, stop)
    threshold = tile_values(theta, start, stop)
    weight = tile_values(beta, start, stop)
    scales = tile_values(scale, start, stop)
    carry_v = g_v0[start:stop]
    carry_a = g_a0[start:stop]
    d_lam_v = g_lam_v[start:stop]
    d_lam_a = g_lam_a[start:stop]
    d_theta = g_theta[start:stop]
    d_beta = g_beta[start:stop]
    d_scale = g_scale[start:stop]
    inclusive = not strict
    for t in range(g_x.shape[0] - 1, -1, -1):
        first = t == 0
        v_now = v_rec[t, start:stop]
        a_now = a_rec[t, start:stop]
        # At t = 0, p[t-1] is the initial state; the rebuilt reset below is unused.
        v_before = initial if first else v_rec[t - 1, start:stop]
        a_before = a_now if first else a_rec[t - 1, start:stop]
        g_s_row = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent
        g_v_rec_row = g_v_rec[t % g_v_rec.shape[0], start:stop] if has_g_v_rec else absent
        g_a_rec_row = g_a_rec[t % g_a_rec.shape[0], start:stop] if has_g_a_rec else absent
        g_x_row = g_x[t, start:stop]
        # Two lane loops: one loop over all these rows needed more runtime
        # alias checks than LLVM allows, and it stayed scalar.
        for i in range(carry_v.shape[0]):
            # s[t], rebuilt as the forward computed it (2).
            a = a_now[i]
            u = v_now[i] - (lane_value(threshold, i) + lane_value(weight, i) * a)
            s = one if (u > 0) | (inclusive & (u == 0)) else zero
            g_a = carry_a[i]
            f, dF = algebraic_derivatives(u, lane_value(scales, i), kinds, c)
            g_s = g_s_row[i] + g_a  # (5)
            g_u = g_s * f
            g_v = carry_v[i] * (one - s) + g_v_rec_row[i] + g_u  # (6)
            d_theta[i] -= g_u  # (7)
            d_beta[i] -= g_u * a
            d_scale[i] += g_s * dF
            d_lam_a[i] += g_a * a
            carry_a[i] = lane_value(leak_a, i) * g_a - lane_value(weight, i) * g_u + g_a_rec_row[i]  # (8)
            if streaming:
                staged[i] = g_v  # (9)
            else:
                g_x_row[i] = g_v  # (9)
            carry_v[i] = lane_value(leak_v, i) * g_v
        for i in range(carry_v.shape[0]):
            # p[t-1], rebuilt as the forward computed it (2), (3).
            u_before = v_before[i] - (lane_value(threshold, i) + lane_value(weight, i) * a_before[i])
            s_before = one if (u_before > 0) | (inclusive & (u_before == 0)) else zero
            p_before = v_before[i] if first else (zero if s_before == one else v_before[i])
            dx = staged[i] if streaming else g_x_row[i]
            d_lam_v[i] += dx * p_before  # (9)
            if streaming:
                put(g_x_row, i, dx, streaming)
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(v0, lam_v, lam_a, theta, beta, scale, replayed, v_rec, a_rec,
                  g_spikes, g_v_rec, g_a_rec, g_v_final, g_a_final,
                  g_x, g_v0, g_a0, g_lam_v, g_lam_a, g_theta, g_beta, g_scale,
                  has_g_spikes, has_g_v_rec, has_g_a_rec, has_g_v_final, has_g_a_final,
                  strict, smooth, replay, surrogate, c, streaming, tile, first_tile, last_tile):
    steps, count = g_x.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            # g_v0 and g_a0 carry G_p and G_a through the scan.
            g_v0[j] = g_v_final[j] if has_g_v_final else zero
            g_a0[j] = g_a_final[j] if has_g_a_final else zero
            g_lam_v[j] = 0.0
            g_lam_a[j] = 0.0
            g_theta[j] = 0.0
            g_beta[j] = 0.0
            g_scale[j] = 0.0
        if not smooth and not replay and surrogate != SIGMOID:
            _backward_tile(v0, lam_v, lam_a, theta, beta, scale, v_rec, a_rec, g_spikes, g_v_rec, g_a_rec,
                           g_x, g_v0, g_a0, g_lam_v, g_lam_a, g_theta, g_beta, g_scale,
                           has_g_spikes, has_g_v_rec, has_g_a_rec, start, stop, strict, surrogate, c, streaming)
            continue
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                a = a_rec[t, j]
                u = v_rec[t, j] - (lane_value(theta, j) + lane_value(beta, j) * a)
                s = step(u, lane_value(scale, j), surrogate, strict, smooth, c)
                r = replayed[t, j] if replay else s
                if t > 0:
                    u_before = v_rec[t - 1, j] - (lane_value(theta, j) + lane_value(beta, j) * a_rec[t - 1, j])
                    s_before = step(u_before, lane_value(scale, j), surrogate, strict, smooth, c)
                    r_before = replayed[t - 1, j] if replay else s_before
                    p_before = zero if r_before == one else v_rec[t - 1, j] * (one - r_before)
                else:
                    p_before = v0[j]
                g_a = g_a0[j]
                f, dF = derivatives(u, lane_value(scale, j), surrogate, c)
                g_s = (g_spikes[t % g_spikes.shape[0], j] if has_g_spikes else zero) + g_a  # (5)
                g_u = g_s * f
                g_v = g_v0[j] * (one - r) + (g_v_rec[t % g_v_rec.shape[0], j] if has_g_v_rec else zero) + g_u  # (6)
                g_theta[j] -= g_u  # (7)
                g_beta[j] -= g_u * a
                g_scale[j] += g_s * dF
                g_lam_a[j] += g_a * a
                g_a_recorded = g_a_rec[t % g_a_rec.shape[0], j] if has_g_a_rec else zero
                g_a0[j] = lane_value(lam_a, j) * g_a - lane_value(beta, j) * g_u + g_a_recorded  # (8)
                g_x[t, j] = g_v  # (9)
                g_lam_v[j] += g_v * p_before
                g_v0[j] = lane_value(lam_v, j) * g_v


class Config(NamedTuple):
    strict: bool
    smooth: bool
    replay: bool
    surrogate: int


PARAMETERS = ("lam_v", "lam_a", "theta", "beta", "scale")


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, a0, lam_v, lam_a, theta, beta, scale, replayed, config):
        step_shape = x.shape[1:]
        lanes = [_launch.per_lane(value, step_shape) for value in (v0, a0)]
        lanes += _launch.parameters((lam_v, lam_a, theta, beta, scale), step_shape)
        held, _ = _launch.optional(replayed, x.dtype)
        spikes, v_rec, a_rec = (_launch.empty(x.shape, x.dtype) for _ in range(3))
        v_final, a_final = (_launch.empty_lanes(step_shape, x.dtype) for _ in range(2))
        rows = [_launch.sequence(s) for s in (spikes, v_rec, a_rec)]
        _launch.run_tiles(forward_scan, _launch.lane_count(x), _launch.sequence(x), *lanes, held, *rows,
                          _launch.lanes(v_final), _launch.lanes(a_final), config.strict, config.smooth, config.replay,
                          config.surrogate, _launch.constants(x.dtype), streamed=rows)
        ctx.save_for_backward(v_rec, a_rec, lam_v, lam_a, theta, beta, scale)
        ctx.lanes, ctx.held, ctx.config = lanes, held, config
        ctx.set_materialize_grads(False)
        return spikes, v_rec, a_rec, v_final, a_final

    @staticmethod
    @first_order("alif", "cpu")
    def backward(ctx, g_spikes, g_v_rec, g_a_rec, g_v_final, g_a_final):
        v_rec, a_rec, *parameters = ctx.saved_tensors
        dtype, count = v_rec.dtype, _launch.lane_count(v_rec)
        cotangents = [_launch.cotangent(g, dtype) for g in (g_spikes, g_v_rec, g_a_rec)]
        cotangents += [_launch.optional(g, dtype, rank=1) for g in (g_v_final, g_a_final)]
        g_x = _launch.empty(v_rec.shape, dtype)
        g_v0, g_a0 = (_launch.empty_lanes(v_rec.shape[1:], dtype) for _ in range(2))
        sums = [_launch.lane_sums(count, dtype) for _ in PARAMETERS]
        config = ctx.config
        g_x_rows = _launch.sequence(g_x)
        _launch.run_tiles(backward_scan, count, ctx.lanes[0], *ctx.lanes[2:], ctx.held, _launch.sequence(v_rec),
                          _launch.sequence(a_rec), *(view for view, _ in cotangents), g_x_rows,
                          _launch.lanes(g_v0), _launch.lanes(g_a0), *sums, *(present for _, present in cotangents),
                          config.strict, config.smooth, config.replay, config.surrogate, _launch.constants(dtype),
                          streamed=[g_x_rows])
        neurons = v_rec.shape[-1]
        grads = [_launch.reduce_lanes(total, like, neurons) if want else None
                 for total, like, want in zip(sums, parameters, ctx.needs_input_grad[3:8])]
        return (g_x, g_v0, g_a0, *grads, None, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    replay = detached is not None
    replayed = detached["reset_spike"] if replay else None
    config = Config(row.spike_test == ">", bool(smooth), replay, kind(surrogate))
    spikes, v_rec, a_rec, v_final, a_final = _Scan.apply(
        x, state["v"], state["a"], params["decay_v"], params["decay_a"], params["threshold"],
        params["beta"], params["alpha"], replayed, config,
    )
    used = {"reset_spike": replayed if replay else spikes.detach()}
    return {"out": spikes, "v": v_rec, "a": a_rec}, {"v": v_final, "a": a_final}, used
