"""Fused CPU scans of the LIF family (tether LIF/PLIF, rnnbuilder LIF/NoReset,
qualia IFSRL/ATIF), SPEC.md sections 2-4.

Per lane, with leak lam (1 for the qualia IF models), threshold theta and p[-1]
the initial state:

    (1) v[t] = lam p[t-1] + x[t]
    (2) u[t] = v[t] - theta;   s[t] = H(u[t])   (F(u[t]) for the smooth twin)
    (3) p[t] = v[t] (1 - r[t])   hard reset to 0, r = sg(s) (or the replayed r); 0 where r = 1
             | v[t] - theta s[t]   subtractive reset (not detached)
             | v[t] - theta r[t]   subtractive reset, the spike detached
             | v[t]                 no reset
    recorded: v[t] (tether, pre-reset) or p[t]; final state p[T-1].

Reverse scan, G the gradient reaching p[t] (the final-state cotangent at the end):

    (4) G += dL/dp_rec[t];   g_s = dL/ds[t]
    (5) hard: g_v = G (1 - r);   subtractive: g_v = G, g_s -= theta G, dtheta -= s G;
        subtractive, detached: g_v = G, dtheta -= r G;   none: g_v = G
    (6) g_v += dL/dv_rec[t] + g_s f(u);   dtheta -= g_s f(u);   dscale += g_s dF/dscale(u)
    (7) dx[t] = g_v;   dlam += g_v p[t-1];   G = lam g_v (g_v without a leak)
    initial-state gradient: G after step 0.

Each kernel has a general loop and, for the common case (H, no replayed
spikes), a tile loop on row slices whose body is branch-free (the flags become
selects, or constants where the backward is compiled per reset, record and
whether the surrogate is sigmoid: ``tile_backward_scan``), which the compiler
vectorizes; both compute the same roundings.
Nothing is saved beyond the outputs: the backward rebuilds v[t] and p[t-1]
from the recorded sequence (pre-reset v: p[t-1] by (3) from v[t-1]; post-reset
p: v[t] by (1) from p[t-1] and x[t]) with the forward's own operations, so
bitwise: every spike decision in the backward is the forward's.

No fastmath: contraction (fma) could round (1) differently in the two kernels
and flip a recomputed spike, and the lane loops vectorize without it (no
reduction crosses lanes).

The scans ask for 512-bit vectors (``_vector_width``).  tether.LIF forward +
backward, N = 2^20, T = 100, float32, the kernels alone with reused outputs,
256-bit against 512-bit in alternating processes: 2.63-2.66 against 2.16-2.24
ns per neuron-step on one thread, 1.35-1.37 against 1.14-1.22 on two; whole
calls with fresh outputs 3.27-3.30 against 2.76-2.83 and 1.75-2.00 against
1.50-1.53.  Results bitwise equal.  (hxtorch.cuba_lif's scans gained 3-8% in
the kernels and lost 6-8% in whole calls with fresh outputs; they stay at
LLVM's width.)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

from snnref.leak import leak_factor
from snnref.registry import Output, Record, ResetKind
from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._parameters import lane_value, tile_values
from ._stream import drain, put
from ._vector_width import wide_vectors
from .surrogates import (SIGMOID, TRAINABLE_SCALE, algebraic_derivatives, derivative_row, derivatives, kind,
                         kind_flags, step)

ZERO, SUBTRACT, NONE, SUBTRACT_DETACHED = 0, 1, 2, 3


def _reset_code(row):
    """The registry row's ``Reset`` as the scans' code."""
    kind = row.reset.kind
    if kind is ResetKind.TO_VALUE and row.reset.detached and row.reset.to == 0:
        return ZERO
    if kind is ResetKind.SUBTRACT:
        return SUBTRACT_DETACHED if row.reset.detached else SUBTRACT
    if kind is ResetKind.NONE:
        return NONE
    raise ValueError(f"reset: the lif family resets to 0 with the spike detached; {row.key} asks for {row.reset}")


@njit(cache=True, error_model="numpy")
def _post_reset(v, s, r, theta, reset, one):
    """Eq. (3).  The hard reset is 0 where r is 1 (SPEC.md section 2: v+ = 0 if s): a
    membrane that overflowed to inf and spiked resets to 0, where inf * 0 is NaN."""
    if reset == ZERO:
        return one - one if r == one else v * (one - r)
    if reset == SUBTRACT:
        return v - theta * s
    if reset == SUBTRACT_DETACHED:
        return v - theta * r
    return v


@njit(cache=True, error_model="numpy")
def _forward_tile(x, lam, theta, spikes, recorded, final, start, stop, reset, record_pre, strict, c, streaming):
    """Eqs. (1)-(3) over one tile with H (no smooth twin, no replay): the body is
    branch-free on row slices (invariant flags become selects), so it vectorizes.
    With ``streaming`` (a constant: compiled once per value) the rows are written
    with streaming stores (``_stream``)."""
    wide_vectors()
    one = c[0]
    zero = one - one
    p = final[start:stop]
    leak = tile_values(lam, start, stop)
    threshold = tile_values(theta, start, stop)
    hard = reset == ZERO
    # Without replay r = s: the detached subtraction has the same value.
    soft = (reset == SUBTRACT) | (reset == SUBTRACT_DETACHED)
    inclusive = not strict
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        fired = spikes[t, start:stop]
        kept = recorded[t, start:stop]
        for i in range(p.shape[0]):
            v = lane_value(leak, i) * p[i] + drive[i]  # (1)
            u = v - lane_value(threshold, i)  # (2)
            fires = (u > 0) | (inclusive & (u == 0))
            s = one if fires else zero
            # (3); s is 0 or 1 here: the hard reset's v (1 - s) is v, or 0 where it fires.
            after = (zero if fires else v) if hard else (v - lane_value(threshold, i) * s if soft else v)
            put(fired, i, s, streaming)
            put(kept, i, v if record_pre else after, streaming)
            p[i] = after
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, v0, lam, theta, scale, replayed, spikes, recorded, final,
                 leak, reset, record_pre, strict, smooth, replay, surrogate, c, streaming, tile, first_tile, last_tile):
    wide_vectors()
    steps, count = x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            final[j] = v0[j]
        if not smooth and not replay:
            # Without a leak lam is 1 in every lane, and 1 * p + x == p + x exactly.
            _forward_tile(x, lam, theta, spikes, recorded, final, start, stop, reset, record_pre, strict, c, streaming)
            continue
        for t in range(steps):
            for j in range(start, stop):
                theta_j = lane_value(theta, j)
                v = lane_value(lam, j) * final[j] + x[t, j] if leak else final[j] + x[t, j]  # (1)
                s = step(v - theta_j, lane_value(scale, j), surrogate, strict, smooth, c)  # (2)
                r = replayed[t, j] if replay else s
                p = _post_reset(v, s, r, theta_j, reset, one)  # (3)
                spikes[t, j] = s
                recorded[t, j] = v if record_pre else p
                final[j] = p


@njit(cache=True, error_model="numpy", inline="always")
def _rebuilt(now, before, drive, leak, theta, first, record_pre, hard, soft, inclusive, one):
    """(u[t], p[t-1]) of one lane, rebuilt as the forward computed them from
    the recorded value now (v[t] or p[t]) and the one before (v[t-1], p[t-1] or
    the initial state): pre-reset v gives p[t-1] by eq. (3) from v[t-1];
    post-reset p gives v[t] by eq. (1) from p[t-1] and x[t] (drive).  Scalars
    only, inlined into the caller's IR: the tile loop holds several copies,
    and a copy left a call keeps the loop scalar."""
    zero = one - one
    if record_pre:
        v = now
        u_before = before - theta
        s_before = one if (u_before > 0) | (inclusive & (u_before == 0)) else zero
        hard_reset = zero if s_before == one else before
        reset_before = hard_reset if hard else (before - theta * s_before if soft else before)
        p_before = before if first else reset_before
    else:
        p_before = before
        v = leak * p_before + drive
    return v - theta, p_before


@njit(cache=True, error_model="numpy", inline="always")
def _lane_back(now, before, drive, first, g_s, g_rec, slope, slope_by_scale, G, d_lam, d_theta, d_scale, leak,
               threshold, scale, record_pre, hard, soft, through_spike, inclusive, kinds, c, want_scale, sigmoid):
    """Eqs. (4)-(7) for one lane and step with H (no smooth twin, no replay),
    branch-free once compiled (the reset, record and sigmoid flags are
    constants of ``tile_backward_scan``, the others become selects): from G and the
    lane's three sums after step t + 1 to (dx[t], G, sums) after step
    t.  g_rec is the recorded value's cotangent, which enters (4) or (6) by
    ``record_pre``; slope and slope_by_scale are sigmoid's terms, read only
    where the surrogate is sigmoid (``sigmoid``, a constant).
    The scale's sum only where its gradient is asked for (``want_scale``):
    its division and (then float64) sum were 13% of the loop (tether.LIF, arctan),
    and most calls do not train the surrogate's scale."""
    one = c[0]
    zero = one - one
    u, p_before = _rebuilt(now, before, drive, leak, threshold, first, record_pre, hard, soft, inclusive, one)
    f, dF = algebraic_derivatives(u, scale, kinds, c)
    s = one if (u > 0) | (inclusive & (u == 0)) else zero
    g_p = G if record_pre else G + g_rec  # (4)
    g_v = g_p * (one - s) if hard else g_p  # (5)
    if through_spike:
        g_s = g_s - threshold * g_p
    if soft:
        d_theta -= s * g_p
    g_v += g_rec if record_pre else zero  # (6)
    g_u = g_s * (f + slope) if sigmoid else g_s * f
    g_v += g_u
    d_theta -= g_u
    if want_scale:
        d_scale += g_s * (dF + slope_by_scale) if sigmoid else g_s * dF
    d_lam += g_v * p_before  # (7)
    return g_v, leak * g_v, d_lam, d_theta, d_scale


@njit(cache=True, error_model="numpy")
def _step_rows(t, x, v0, recorded, g_spikes, g_recorded, absent, has_g_spikes, has_g_recorded, record_pre, start,
               stop):
    """The rows of one tile that step t of the backward reads: the recorded
    value now and the one before (the initial state at step 0), the drive
    x[t] (the recorded v when v is recorded before the reset), and the two
    cotangents (``absent``, zeros, where there is none)."""
    now = recorded[t, start:stop]
    before = v0[start:stop] if t == 0 else recorded[t - 1, start:stop]
    drive = now if record_pre else x[t, start:stop]
    g_s = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent
    g_rec = g_recorded[t % g_recorded.shape[0], start:stop] if has_g_recorded else absent
    return now, before, drive, g_s, g_rec


@njit(cache=True, error_model="numpy")
def _sigmoid_terms(now, before, drive, first, leak, threshold, scales, distance, slope, slope_by_scale, record_pre,
                   hard, soft, inclusive, surrogate, c):
    """Sigmoid's f and dF/dscale for one step's row of lanes, into ``slope``
    and ``slope_by_scale``: the distances rebuilt first (into ``distance``),
    then ``derivative_row``, so that exp stays out of the tile loop."""
    for i in range(distance.shape[0]):
        distance[i], _ = _rebuilt(now[i], before[i], drive[i], lane_value(leak, i), lane_value(threshold, i), first,
                                  record_pre, hard, soft, inclusive, c[0])
    derivative_row(distance, scales, slope, slope_by_scale, surrogate, c)


@njit(cache=True, error_model="numpy")
def _backward_tile(x, v0, lam, theta, scale, recorded, g_spikes, g_recorded, g_x, g_v0, g_lam, g_theta, g_scale,
                   has_g_spikes, has_g_recorded, start, stop, reset, record_pre, strict, surrogate, want_scale, c,
                   sigmoid, streaming):
    """Eqs. (4)-(7) over one tile with H (no smooth twin, no replay), two steps
    per pass over the lanes (t and t - 1; step 0 alone when T is odd), in a
    branch-free loop that vectorizes.  G and the sums stay in registers across
    the pair: one step per pass loaded and stored them (56 bytes per lane and
    step) in L2, where a tile's lane arrays live (they outgrow L1), and that
    bounded the loop: about 1.45 -> 1.1 ns per neuron-step, tether.LIF at
    N = 2^20.  Each step computes what one step per pass computed, in the
    same order, so the results are the same bits.
    The algebraic surrogates are computed in the loop; sigmoid's exp would
    make it scalar, so for sigmoid (``sigmoid``) a pass before it fills the
    rows ``slope`` and ``slope_by_scale`` of each step (``derivative_row``)
    and ``algebraic_derivatives`` gives 0 for it: f + 0 is f exactly.  An
    absent cotangent is a row of zeros.  With ``streaming`` (a constant) dx's
    rows are written with streaming stores (``_stream``)."""
    wide_vectors()
    one = c[0]
    zero = one - one
    width = stop - start
    absent = np.zeros(width, dtype=g_x.dtype)
    distance = np.empty(width, dtype=g_x.dtype)
    # Row 0 for step t, row 1 for step t - 1.
    slope = np.zeros((2, width), dtype=g_x.dtype)
    slope_by_scale = np.zeros((2, width), dtype=g_x.dtype)
    leak = tile_values(lam, start, stop)
    threshold = tile_values(theta, start, stop)
    scales = tile_values(scale, start, stop)
    carry = g_v0[start:stop]
    d_lam = g_lam[start:stop]
    d_theta = g_theta[start:stop]
    d_scale = g_scale[start:stop]
    hard = reset == ZERO
    # Without replay r = s; only a differentiated subtraction passes G to s.
    soft = (reset == SUBTRACT) | (reset == SUBTRACT_DETACHED)
    through_spike = reset == SUBTRACT
    inclusive = not strict
    kinds = kind_flags(surrogate)
    # The constants as values: read from the array c inside the loop, they
    # are one more address the vectorizer must check against every store.
    constants = (c[0], c[1])
    for later in range(g_x.shape[0] - 1, -1, -2):
        paired = later > 0
        # the pair's earlier step (the later one again when step 0 is alone)
        earlier = later - 1 if paired else later
        now_a, before_a, drive_a, g_s_a, g_rec_a = _step_rows(later, x, v0, recorded, g_spikes, g_recorded, absent,
                                                              has_g_spikes, has_g_recorded, record_pre, start, stop)
        now_b, before_b, drive_b, g_s_b, g_rec_b = _step_rows(earlier, x, v0, recorded, g_spikes, g_recorded, absent,
                                                              has_g_spikes, has_g_recorded, record_pre, start, stop)
        first_a, first_b = later == 0, earlier == 0
        g_x_a, g_x_b = g_x[later, start:stop], g_x[earlier, start:stop]
        if sigmoid:
            _sigmoid_terms(now_a, before_a, drive_a, first_a, leak, threshold, scales, distance, slope[0],
                           slope_by_scale[0], record_pre, hard, soft, inclusive, surrogate, c)
            _sigmoid_terms(now_b, before_b, drive_b, first_b, leak, threshold, scales, distance, slope[1],
                           slope_by_scale[1], record_pre, hard, soft, inclusive, surrogate, c)
        slope_a, slope_b = slope[0], slope[1]
        by_scale_a, by_scale_b = slope_by_scale[0], slope_by_scale[1]
        if paired:
            for i in range(width):
                lam_i, theta_i, scale_i = lane_value(leak, i), lane_value(threshold, i), lane_value(scales, i)
                dx_a, G, sum_lam, sum_theta, sum_scale = _lane_back(
                    now_a[i], before_a[i], drive_a[i], first_a, g_s_a[i], g_rec_a[i], slope_a[i], by_scale_a[i],
                    carry[i], d_lam[i], d_theta[i], d_scale[i], lam_i, theta_i, scale_i,
                    record_pre, hard, soft, through_spike, inclusive, kinds, constants, want_scale, sigmoid)
                dx_b, carry[i], d_lam[i], d_theta[i], d_scale[i] = _lane_back(
                    now_b[i], before_b[i], drive_b[i], first_b, g_s_b[i], g_rec_b[i], slope_b[i], by_scale_b[i],
                    G, sum_lam, sum_theta, sum_scale, lam_i, theta_i, scale_i,
                    record_pre, hard, soft, through_spike, inclusive, kinds, constants, want_scale, sigmoid)
                put(g_x_a, i, dx_a, streaming)
                put(g_x_b, i, dx_b, streaming)
        else:
            for i in range(width):
                dx_a, carry[i], d_lam[i], d_theta[i], d_scale[i] = _lane_back(
                    now_a[i], before_a[i], drive_a[i], first_a, g_s_a[i], g_rec_a[i], slope_a[i], by_scale_a[i],
                    carry[i], d_lam[i], d_theta[i], d_scale[i], lane_value(leak, i), lane_value(threshold, i),
                    lane_value(scales, i), record_pre, hard, soft, through_spike, inclusive, kinds,
                    constants, want_scale, sigmoid)
                put(g_x_a, i, dx_a, streaming)
    drain(streaming)


@njit(cache=True, error_model="numpy")
def _start_tile(g_final, g_v0, g_lam, g_theta, g_scale, has_g_final, start, stop, one):
    """A tile's lanes before its reverse scan: G from the final state's
    cotangent (0 without one), the three sums at 0."""
    for j in range(start, stop):
        # g_v0 carries G, the gradient reaching p[t], through the scan.
        g_v0[j] = g_final[j] if has_g_final else one - one
        g_lam[j] = 0.0
        g_theta[j] = 0.0
        g_scale[j] = 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(x, v0, lam, theta, scale, replayed, recorded, g_spikes, g_recorded, g_final,
                  g_x, g_v0, g_lam, g_theta, g_scale,
                  has_g_spikes, has_g_recorded, has_g_final,
                  leak, reset, record_pre, strict, smooth, replay, surrogate, c, tile, first_tile, last_tile):
    """Eqs. (4)-(7) for any step function, the smooth twin's or H with spikes
    replayed for the reset: a lane and step at a time, with branches."""
    steps, count = g_x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        _start_tile(g_final, g_v0, g_lam, g_theta, g_scale, has_g_final, start, stop, one)
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                lam_j, theta_j, scale_j = lane_value(lam, j), lane_value(theta, j), lane_value(scale, j)
                # v[t] and p[t-1], rebuilt as the forward computed them.
                if record_pre:
                    v = recorded[t, j]
                    if t > 0:
                        v_before = recorded[t - 1, j]
                        s_before = step(v_before - theta_j, scale_j, surrogate, strict, smooth, c)
                        r_before = replayed[t - 1, j] if replay else s_before
                        p_before = _post_reset(v_before, s_before, r_before, theta_j, reset, one)
                    else:
                        p_before = v0[j]
                else:
                    p_before = recorded[t - 1, j] if t > 0 else v0[j]
                    v = lam_j * p_before + x[t, j] if leak else p_before + x[t, j]
                u = v - theta_j
                s = step(u, scale_j, surrogate, strict, smooth, c)
                r = replayed[t, j] if replay else s
                g_p = g_v0[j]
                if has_g_recorded and not record_pre:
                    g_p += g_recorded[t % g_recorded.shape[0], j]  # (4)
                g_s = g_spikes[t % g_spikes.shape[0], j] if has_g_spikes else one - one
                if reset == ZERO:  # (5)
                    g_v = g_p * (one - r)
                elif reset == SUBTRACT:
                    g_v = g_p
                    g_s -= theta_j * g_p
                    g_theta[j] -= s * g_p
                elif reset == SUBTRACT_DETACHED:
                    g_v = g_p
                    g_theta[j] -= r * g_p
                else:
                    g_v = g_p
                if has_g_recorded and record_pre:
                    g_v += g_recorded[t % g_recorded.shape[0], j]
                f, dF = derivatives(u, scale_j, surrogate, c)  # (6)
                g_u = g_s * f
                g_v += g_u
                g_theta[j] -= g_u
                g_scale[j] += g_s * dF
                g_x[t, j] = g_v  # (7)
                g_lam[j] += g_v * p_before
                g_v0[j] = lam_j * g_v if leak else g_v


@functools.lru_cache(maxsize=None)
def tile_backward_scan(reset, record_pre, sigmoid):
    """Eqs. (4)-(7) with H and no replay (``_backward_tile``), compiled for
    one reset, one record and whether the surrogate is sigmoid (and, like
    every scan, per kind of store: ``_stream.StoreKind``).  numba types a
    closure's variables as literals (and its cache keys a closure by their
    values); passed on, they make numba compile ``_backward_tile`` once per
    set of values, with them as constants, so LLVM drops the branches of the
    other resets and records from the tile loop, and for the algebraic
    surrogates the loads and additions of sigmoid's rows.
    As loop-invariant arguments, reset and record cost: tether.LIF's
    backward alone, N = 2^20, T = 100, float32, one thread, alternating
    processes, 0.61-0.68 ns per neuron-step against 0.56-0.61 (N = 8192,
    T = 20, in cache: 0.61-0.69 against 0.52-0.53); the sigmoid flag then
    took it from 0.536-0.552 to 0.521-0.525 (arctan).  Results bitwise equal.
    Each triple is one more compilation per signature (about 3 s: the tile
    loop 2.4, this closure 0.7; inlined into it, 3.8 together).  The spike
    test, which surrogate and the scale gradient as constants too gained at
    most 0.03 ns more, so they stay arguments."""

    @njit(nogil=True, cache=True, error_model="numpy")
    def scan(x, v0, lam, theta, scale, recorded, g_spikes, g_recorded, g_final, g_x, g_v0, g_lam, g_theta, g_scale,
             has_g_spikes, has_g_recorded, has_g_final, strict, surrogate, want_scale, c, streaming, tile, first_tile,
             last_tile):
        count = g_x.shape[1]
        for tile_index in range(first_tile, last_tile):
            start = tile_index * tile
            stop = min(start + tile, count)
            _start_tile(g_final, g_v0, g_lam, g_theta, g_scale, has_g_final, start, stop, c[0])
            _backward_tile(x, v0, lam, theta, scale, recorded, g_spikes, g_recorded, g_x, g_v0, g_lam, g_theta,
                           g_scale, has_g_spikes, has_g_recorded, start, stop, reset, record_pre, strict, surrogate,
                           want_scale, c, sigmoid, streaming)

    return scan


class Config(NamedTuple):
    leak: bool
    reset: int
    record_pre: bool
    strict: bool
    smooth: bool
    replay: bool
    surrogate: int


class _Scan(torch.autograd.Function):
    """Inputs (x, v0, lam, theta, scale, replayed, config); lam is None without a leak."""

    @staticmethod
    def forward(ctx, x, v0, lam, theta, scale, replayed, config):
        # A strided x is copied here, once, and the backward reads the copy (held between the passes:
        # one sequence more in memory there, where the backward used to copy x again).
        x = _launch.contiguous(x)
        step_shape = x.shape[1:]
        xs = _launch.sequence(x)
        lanes = {"v0": _launch.per_lane(v0, step_shape)}
        lanes["lam"], lanes["theta"], lanes["scale"] = _launch.parameters(
            (lam if lam is not None else torch.ones((), dtype=x.dtype), theta, scale), step_shape)
        held, _ = _launch.optional(replayed, x.dtype)
        spikes = _launch.empty(x.shape, x.dtype)
        recorded = _launch.empty(x.shape, x.dtype)
        final = _launch.empty_lanes(step_shape, x.dtype)
        spike_rows, recorded_rows = _launch.sequence(spikes), _launch.sequence(recorded)
        _launch.run_tiles(forward_scan, _launch.lane_count(x), xs, lanes["v0"], lanes["lam"], lanes["theta"],
                          lanes["scale"], held, spike_rows, recorded_rows, _launch.lanes(final), config.leak,
                          config.reset, config.record_pre, config.strict, config.smooth, config.replay,
                          config.surrogate, _launch.constants(x.dtype), streamed=[spike_rows, recorded_rows])
        # Saved: x only where the backward rebuilds v from it (the input itself,
        # or its one copy), the recorded sequence (an output) and M-sized lanes.
        ctx.save_for_backward(x if not config.record_pre else None, recorded, lam, theta, scale)
        ctx.lanes, ctx.held, ctx.config = lanes, held, config
        ctx.set_materialize_grads(False)
        return spikes, recorded, final

    @staticmethod
    @first_order("lif", "cpu")
    def backward(ctx, g_spikes, g_recorded, g_final):
        x, recorded, lam, theta, scale = ctx.saved_tensors
        config, lanes = ctx.config, ctx.lanes
        dtype, count = recorded.dtype, _launch.lane_count(recorded)
        xs = _launch.sequence(x) if x is not None else _launch.placeholder(dtype, 2)
        g_spikes, has_g_spikes = _launch.cotangent(g_spikes, dtype)
        g_rec, has_g_rec = _launch.cotangent(g_recorded, dtype)
        g_fin, has_g_fin = _launch.optional(g_final, dtype, rank=1)
        g_x = _launch.empty(recorded.shape, dtype)
        g_v0 = _launch.empty_lanes(recorded.shape[1:], dtype)
        sums = [_launch.lane_sums(count, dtype) for _ in range(3)]
        # The scale's gradient exists for the trainable surrogate kinds only.
        want_scale = ctx.needs_input_grad[4] and config.surrogate in TRAINABLE_SCALE
        if config.smooth or config.replay:
            _launch.run_tiles(backward_scan, count, xs, lanes["v0"], lanes["lam"], lanes["theta"], lanes["scale"],
                              ctx.held, _launch.sequence(recorded), g_spikes, g_rec, g_fin, _launch.sequence(g_x),
                              _launch.lanes(g_v0), *sums, has_g_spikes, has_g_rec, has_g_fin, config.leak, config.reset,
                              config.record_pre, config.strict, config.smooth, config.replay, config.surrogate,
                              _launch.constants(dtype))
        else:
            g_x_rows = _launch.sequence(g_x)
            scan = tile_backward_scan(config.reset, config.record_pre, config.surrogate == SIGMOID)
            _launch.run_tiles(scan, count, xs, lanes["v0"], lanes["lam"], lanes["theta"], lanes["scale"],
                              _launch.sequence(recorded), g_spikes, g_rec, g_fin, g_x_rows,
                              _launch.lanes(g_v0), *sums, has_g_spikes, has_g_rec, has_g_fin, config.strict,
                              config.surrogate, want_scale, _launch.constants(dtype), streamed=[g_x_rows])
        neurons = recorded.shape[-1]
        wants = (*ctx.needs_input_grad[2:4], want_scale)
        grads = [_launch.reduce_lanes(total, like, neurons) if like is not None and want else None
                 for total, like, want in zip(sums, (lam, theta, scale), wants)]
        return g_x, g_v0, *grads, None, None


def run(row, x, params, state, surrogate, inject, smooth, detached):
    theta = params.get("threshold", torch.ones((), dtype=x.dtype))
    scale = params["alpha"] if "alpha" in params else params["gradient_factor"]
    var = row.state_names[0]
    replay = detached is not None and row.reset.detached
    replayed = detached["reset_spike"] if replay else None
    lam = leak_factor(row, params)
    config = Config(lam is not None, _reset_code(row), row.options.record is Record.PRE, row.spike_test == ">",
                    bool(smooth), replay, kind(surrogate))
    spikes, recorded, final = _Scan.apply(x, state[var], lam, theta, scale, replayed, config)
    out = spikes * theta if row.out is Output.SCALED_SPIKES else spikes
    used = {}
    if row.reset.detached:
        used["reset_spike"] = replayed if replay else spikes.detach()
    return {"out": out, var: recorded}, {var: final}, used
