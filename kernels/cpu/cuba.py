"""Fused CPU scans of the CUBA family (hxtorch cuba_lif, cuba_refractory_lif,
cuba_li, cuba_iaf, cuba_refractory_iaf): forward Euler, SPEC.md section 5.

With a = dt/tau_mem, b = dt/tau_syn, k = refractory_time/dt (torch computes
them, so autograd carries their gradients to tau_mem, tau_syn, refractory_time
and dt), per lane and step t from the state v, i, r of step t - 1 (the
initial state at t = 0):

    (1) base = leak - v + i  (IAF: i);   w = inj(v_obs[t], v + a base)     the old current
    (2) i' = (1 - b) i + x[t]
    (3) u = w - threshold;   z1 = inj(z_obs[t], H(u))   H(u) = [u > 0]; F(u) for the smooth twin
    (4) v1 = (1 - e) w + e reset,  e = sg(z1)            (v1 = w when the membrane is observed)
  refractory models, with the mask m = sg([r > 0]) and the carry c = sg(relu(r - m)):
    (5) v' = inj(v_obs[t], (1 - m) v1 + m reset);   z = inj(z_obs[t], (1 - m) z1)
    (6) r' = (1 - z) c + z k
  otherwise v' = v1 and z = z1.  The leaky integrator (LI) stops at v' = w, no spikes.

inj(o, w) is o in value with the gradient of w: the offset o - w is a
stop-gradient.  Outputs: z (LI: v'), and the recorded v', i' (and r').  Every
stop-gradient value is kept per step under the spec's key for replay (the
smooth twin's ``detached``): ``reset_spike`` e, ``refractory_mask`` m,
``refractory_carry`` c, the offsets ``inject_v``, ``inject_spikes`` of (1), (3)
and ``inject_v_refractory``, ``inject_spikes_refractory`` of (5).  Where e is
the spike output itself (no clamp, no observed membrane) it is not stored
twice: the spikes are returned under ``reset_spike``.

Reverse scan, G_v and G_i the gradients reaching v' and i' (the final-state
cotangents at the end):

    (7)  G_v += dL/dv_rec[t];  G_i += dL/di_rec[t];  g_z = dL/dz[t]
    (8)  refractory: g_r = dL/dr_rec[t] (+ the final r's cotangent at t = T-1);
         g_z += g_r (k - c);  dk += g_r z;  dreset += m G_v;  G_v = (1 - m) G_v;  g_z = (1 - m) g_z
    (9)  unless observed: dreset += e G_v;  G_v = (1 - e) G_v
    (10) g_u = g_z f(u);  G_v += g_u;  dthreshold -= g_u
    (11) da += G_v base;  dx[t] = G_i;  db -= G_i i
    (12) G_i = (1 - b) G_i + a G_v;  leak models: dleak += a G_v, G_v = (1 - a) G_v
    initial-state gradients: G_v, G_i after step 0; the initial r acts only
    through the mask and gets none.

Without observation, smooth twin or replay (and, in the backward, with an
algebraic surrogate) every model runs a tile loop on row slices whose body is
branch-free, which the compiler vectorizes: ``_forward_tile`` and
``_backward_tile`` (cuba_lif, cuba_iaf; the backward compiled per leak and
recorded cotangents, ``tile_backward_scan``), ``_refractory_tile`` and
``_refractory_backward_tile``, ``_integrator_tile`` and
``_integrator_backward_tile`` (cuba_li).  They compute the general loop's
roundings, bitwise (tests/test_cpu_cuba_paths.py replays through it).  The
general loop calls ``_advance`` per lane and step and stays scalar (about 40
ns per neuron-step of the forward here): it runs only the rare cases.
Saved: the recorded sequences (outputs); the backward rebuilds every step's
w, u, spikes, mask and carry from the previous step's recorded state with the
forward's operations (bitwise), or reads the replayed stop-gradient values.
No fastmath (see lif.py).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

from snnref import registry
from snnref.leak import quotient
from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._parameters import lane_value, single_valued, tile_values
from ._stream import drain, put
from .surrogates import SIGMOID, algebraic_derivatives, derivatives, kind, kind_flags, step

# Slots of the stop-gradient values, in the spec's key names.
KEYS = ("reset_spike", "refractory_mask", "refractory_carry", "inject_v", "inject_v_refractory",
        "inject_spikes", "inject_spikes_refractory")
RESET_SPIKE, MASK, CARRY, INJECT_V, INJECT_V_REFRACTORY, INJECT_SPIKES, INJECT_SPIKES_REFRACTORY = range(7)


# The general loop's helpers, called per lane and step with the arrays they may
# read or write, are compiled without numba's reference counting (they allocate
# nothing): its atomic increments and decrements on every call cost about
# 60 ns per neuron-step of the forward with an observed membrane (118 -> 42 here).
@njit(cache=True, error_model="numpy", _nrt=False)
def _held(stops, slots, key, t, j, replay, computed):
    """A stop-gradient value: replayed, or computed (and stored when kept)."""
    slot = slots[key]
    if replay:
        return stops[slot, t, j]
    if slot >= 0:
        stops[slot, t, j] = computed
    return computed


@njit(cache=True, error_model="numpy", _nrt=False)
def _inject(stops, slots, key, t, j, replay, observed, model):
    """inj(observed, model): the observation in value; its offset is the stop-gradient kept."""
    slot = slots[key]
    if replay:
        return model + stops[slot, t, j]
    if slot >= 0:
        stops[slot, t, j] = observed - model
    return observed


@njit(cache=True, error_model="numpy", _nrt=False)
def _advance(t, j, v, i, r, a, leak, reset, theta, k, scale, v_obs, z_obs, stops, slots,
             leaky, spiking, refractory, observe_v, observe_z, replay, strict, smooth, surrogate, c):
    """Eqs. (1) and (3)-(6) of one lane: (base, u, e, m, carry, z, v', r')."""
    one = c[0]
    zero = one - one
    base = lane_value(leak, j) - v + i if leaky else i  # (1)
    w = v + lane_value(a, j) * base
    if observe_v:
        w = _inject(stops, slots, INJECT_V, t, j, replay, v_obs[t, j], w)
    if not spiking:
        return base, zero, zero, zero, zero, zero, w, r
    u = w - lane_value(theta, j)  # (3)
    z = step(u, lane_value(scale, j), surrogate, strict, smooth, c)
    if observe_z:
        z = _inject(stops, slots, INJECT_SPIKES, t, j, replay, z_obs[t, j], z)
    e = zero
    v_new = w
    if not observe_v:  # (4)
        e = _held(stops, slots, RESET_SPIKE, t, j, replay, z)
        v_new = (one - e) * w + e * lane_value(reset, j)
    m = zero
    carry = zero
    if refractory:  # (5)
        m = _held(stops, slots, MASK, t, j, replay, one if r > 0 else zero)
        carry = _held(stops, slots, CARRY, t, j, replay, max(zero, r - m))
        v_new = (one - m) * v_new + m * lane_value(reset, j)
        z = (one - m) * z
        if observe_v:
            v_new = _inject(stops, slots, INJECT_V_REFRACTORY, t, j, replay, v_obs[t, j], v_new)
        if observe_z:
            z = _inject(stops, slots, INJECT_SPIKES_REFRACTORY, t, j, replay, z_obs[t, j], z)
        r = (one - z) * carry + z * lane_value(k, j)  # (6)
    return base, u, e, m, carry, z, v_new, r


@njit(cache=True, error_model="numpy")
def _forward_tile(x, a, b, leak, reset, theta, spikes, v_rec, i_rec, v_final, i_final, start, stop, leaky, strict,
                  c, streaming):
    """Eqs. (1)-(4) over one tile for a spiking model without clamp, observation,
    smooth twin or replay: e = z, on row slices with a branch-free body (vectorized).
    With ``streaming`` (a constant: compiled once per value) the rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    zero = one - one
    v_state = v_final[start:stop]
    i_state = i_final[start:stop]
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    after = tile_values(reset, start, stop)
    threshold = tile_values(theta, start, stop)
    inclusive = not strict
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        fired = spikes[t, start:stop]
        membrane = v_rec[t, start:stop]
        current = i_rec[t, start:stop]
        for j in range(v_state.shape[0]):
            v = v_state[j]
            i = i_state[j]
            base = lane_value(rest, j) - v + i if leaky else i  # (1)
            w = v + lane_value(rate_v, j) * base
            u = w - lane_value(threshold, j)  # (3)
            z = one if (u > 0) | (inclusive & (u == 0)) else zero
            v_new = (one - z) * w + z * lane_value(after, j)  # (4)
            i_new = (one - lane_value(rate_i, j)) * i + drive[j]  # (2)
            put(fired, j, z, streaming)
            put(membrane, j, v_new, streaming)
            put(current, j, i_new, streaming)
            v_state[j] = v_new
            i_state[j] = i_new
    drain(streaming)


@njit(cache=True, error_model="numpy")
def _refractory_tile(x, a, b, leak, reset, theta, k, stops, slots, spikes, v_rec, i_rec, r_rec, v_final, i_final,
                     r_final, start, stop, leaky, strict, c, streaming):
    """Eqs. (1)-(6) over one tile for a refractory model without observation,
    smooth twin or replay, on row slices with a branch-free body (vectorized).
    Stores e, m and c, the run's stop-gradient values, in their slots.
    With ``streaming`` (a constant: compiled once per value) the rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    zero = one - one
    v_state = v_final[start:stop]
    i_state = i_final[start:stop]
    r_state = r_final[start:stop]
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    after = tile_values(reset, start, stop)
    threshold = tile_values(theta, start, stop)
    dead_steps = tile_values(k, start, stop)
    inclusive = not strict
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        fired = spikes[t, start:stop]
        membrane = v_rec[t, start:stop]
        current = i_rec[t, start:stop]
        remaining = r_rec[t, start:stop]
        reset_row = stops[slots[RESET_SPIKE], t, start:stop]
        mask_row = stops[slots[MASK], t, start:stop]
        carry_row = stops[slots[CARRY], t, start:stop]
        for j in range(v_state.shape[0]):
            v = v_state[j]
            i = i_state[j]
            r = r_state[j]
            base = lane_value(rest, j) - v + i if leaky else i  # (1)
            w = v + lane_value(rate_v, j) * base
            u = w - lane_value(threshold, j)  # (3)
            e = one if (u > 0) | (inclusive & (u == 0)) else zero
            v_reset = (one - e) * w + e * lane_value(after, j)  # (4)
            m = one if r > 0 else zero  # (5)
            carry = max(zero, r - m)
            v_new = (one - m) * v_reset + m * lane_value(after, j)
            z = (one - m) * e
            r_new = (one - z) * carry + z * lane_value(dead_steps, j)  # (6)
            i_new = (one - lane_value(rate_i, j)) * i + drive[j]  # (2)
            put(reset_row, j, e, streaming)
            put(mask_row, j, m, streaming)
            put(carry_row, j, carry, streaming)
            put(fired, j, z, streaming)
            put(membrane, j, v_new, streaming)
            put(current, j, i_new, streaming)
            put(remaining, j, r_new, streaming)
            v_state[j] = v_new
            i_state[j] = i_new
            r_state[j] = r_new
    drain(streaming)


@njit(cache=True, error_model="numpy")
def _integrator_tile(x, a, b, leak, v_rec, i_rec, v_final, i_final, start, stop, c, streaming):
    """Eqs. (1) and (2) over one tile of the leaky integrator (v' = w), on row
    slices (vectorized).
    With ``streaming`` (a constant: compiled once per value) the rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    v_state = v_final[start:stop]
    i_state = i_final[start:stop]
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    for t in range(x.shape[0]):
        drive = x[t, start:stop]
        membrane = v_rec[t, start:stop]
        current = i_rec[t, start:stop]
        for j in range(v_state.shape[0]):
            v = v_state[j]
            i = i_state[j]
            v_new = v + lane_value(rate_v, j) * (lane_value(rest, j) - v + i)  # (1)
            i_new = (one - lane_value(rate_i, j)) * i + drive[j]  # (2)
            put(membrane, j, v_new, streaming)
            put(current, j, i_new, streaming)
            v_state[j] = v_new
            i_state[j] = i_new
    drain(streaming)


@njit(cache=True, error_model="numpy", inline="always")
def _lane_back(v, i, g_z, g_v_rec, g_i_rec, G_v, G_i, d_a, d_b, d_leak, d_reset, d_theta, rate_v, rate_i, rest,
               threshold, scale, leaky, inclusive, kinds, c, has_g_v_rec, has_g_i_rec):
    """Eqs. (7) and (9)-(12) for one lane and step of ``_forward_tile``'s case,
    from the state before the step (v, i) and the lane's G_v, G_i and five
    sums after step t + 1 to (dx[t], G_v, G_i, sums) after step t.  A
    recorded state's cotangent is added only where there is one.
    Scalars only and branch-free, inlined into the caller's IR (a copy left a
    call keeps a loop scalar)."""
    one = c[0]
    zero = one - one
    base = rest - v + i if leaky else i
    u = v + rate_v * base - threshold
    z = one if (u > 0) | (inclusive & (u == 0)) else zero
    g_v = G_v + g_v_rec if has_g_v_rec else G_v  # (7)
    g_i = G_i + g_i_rec if has_g_i_rec else G_i
    d_reset += z * g_v  # (9)
    g_v = (one - z) * g_v
    f, _ = algebraic_derivatives(u, scale, kinds, c)  # (10)
    g_u = g_z * f
    g_v += g_u
    d_theta -= g_u
    d_a += g_v * base  # (11)
    d_b -= g_i * i
    G_i = (one - rate_i) * g_i + rate_v * g_v  # (12)
    d_leak += rate_v * g_v if leaky else zero
    G_v = (one - rate_v) * g_v if leaky else g_v
    return g_i, G_v, G_i, d_a, d_b, d_leak, d_reset, d_theta


@njit(cache=True, error_model="numpy")
def _step_rows(t, v0, i0, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec, g_x, absent, has_g_spikes, has_g_v_rec,
               has_g_i_rec, start, stop):
    """The rows of one tile that step t of the backward reads (the state before
    it, the initial state at step 0, and the three cotangents, ``absent``
    zeros where there is none) and the row of dx it writes."""
    v_before = v0[start:stop] if t == 0 else v_rec[t - 1, start:stop]
    i_before = i0[start:stop] if t == 0 else i_rec[t - 1, start:stop]
    g_z = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent
    g_v = g_v_rec[t % g_v_rec.shape[0], start:stop] if has_g_v_rec else absent
    g_i = g_i_rec[t % g_i_rec.shape[0], start:stop] if has_g_i_rec else absent
    return v_before, i_before, g_z, g_v, g_i, g_x[t, start:stop]


@njit(cache=True, error_model="numpy")
def _one_step(rows, carry_v, carry_i, d_a, d_b, d_leak, d_reset, d_theta, rate_v, rate_i, rest, threshold, scales,
              leaky, inclusive, kinds, c, has_g_v_rec, has_g_i_rec):
    """One step of the backward over a tile's lanes (``rows`` from ``_step_rows``)."""
    v, i, g_z, g_v, g_i, g_x = rows
    for j in range(carry_v.shape[0]):
        g_x[j], carry_v[j], carry_i[j], d_a[j], d_b[j], d_leak[j], d_reset[j], d_theta[j] = _lane_back(
            v[j], i[j], g_z[j], g_v[j], g_i[j], carry_v[j], carry_i[j], d_a[j], d_b[j], d_leak[j], d_reset[j],
            d_theta[j], lane_value(rate_v, j), lane_value(rate_i, j), lane_value(rest, j),
            lane_value(threshold, j), lane_value(scales, j), leaky, inclusive, kinds, c, has_g_v_rec, has_g_i_rec)


@njit(cache=True, error_model="numpy")
def _backward_tile(v0, i0, a, b, leak, reset, theta, scale, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec,
                   g_x, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, has_g_spikes, has_g_v_rec, has_g_i_rec,
                   start, stop, leaky, strict, surrogate, c, streaming):
    """Eqs. (7) and (9)-(12) over one tile, the case of ``_forward_tile``; an
    absent spike cotangent is a row of zeros, an absent recorded state's is
    not read.  With single-valued parameters two
    steps per pass over the lanes (t and t - 1; step 0 alone when T is odd):
    G_v, G_i and the five sums stay in registers across the pair, as in
    lif.py's backward tile (hxtorch.cuba_lif at N = 2^20, one thread, whole
    forward+backward 2.62 -> 2.40 ns per neuron-step).  With per-lane
    parameters, five more arrays in the pair's loop are more address pairs than
    LLVM's vectorizer checks at run time, and it stays scalar (5.96 against
    3.37): one step per pass.  Each step computes the same bits either way.
    With ``streaming`` (a constant) the pairs' rows of dx are written with
    streaming stores (``_stream``); the single steps' stay plain."""
    kinds = kind_flags(surrogate)
    # The constants as values: read from the array c inside the loop, they
    # are one more address the vectorizer must check against every store.
    constants = (c[0], c[1])
    absent = np.zeros(stop - start, dtype=g_x.dtype)
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    threshold = tile_values(theta, start, stop)
    scales = tile_values(scale, start, stop)
    carry_v = g_v0[start:stop]
    carry_i = g_i0[start:stop]
    d_a = g_a[start:stop]
    d_b = g_b[start:stop]
    d_leak = g_leak[start:stop]
    d_reset = g_reset[start:stop]
    d_theta = g_theta[start:stop]
    inclusive = not strict
    for later in range(g_x.shape[0] - 1, -1, -2):
        paired = later > 0
        # the pair's earlier step (the later one again when step 0 is alone)
        earlier = later - 1 if paired else later
        rows_a = _step_rows(later, v0, i0, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec, g_x, absent, has_g_spikes,
                            has_g_v_rec, has_g_i_rec, start, stop)
        rows_b = _step_rows(earlier, v0, i0, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec, g_x, absent, has_g_spikes,
                            has_g_v_rec, has_g_i_rec, start, stop)
        if not (paired and single_valued(a)):
            _one_step(rows_a, carry_v, carry_i, d_a, d_b, d_leak, d_reset, d_theta, rate_v, rate_i, rest, threshold,
                      scales, leaky, inclusive, kinds, constants, has_g_v_rec, has_g_i_rec)
            if paired:
                _one_step(rows_b, carry_v, carry_i, d_a, d_b, d_leak, d_reset, d_theta, rate_v, rate_i, rest,
                          threshold, scales, leaky, inclusive, kinds, constants, has_g_v_rec, has_g_i_rec)
            continue
        v_a, i_a, g_z_a, g_v_a, g_i_a, g_x_a = rows_a
        v_b, i_b, g_z_b, g_v_b, g_i_b, g_x_b = rows_b
        for j in range(carry_v.shape[0]):
            rate_v_j, rate_i_j, rest_j = lane_value(rate_v, j), lane_value(rate_i, j), lane_value(rest, j)
            threshold_j, scale_j = lane_value(threshold, j), lane_value(scales, j)
            dx_a, G_v, G_i, sum_a, sum_b, sum_leak, sum_reset, sum_theta = _lane_back(
                v_a[j], i_a[j], g_z_a[j], g_v_a[j], g_i_a[j], carry_v[j], carry_i[j], d_a[j], d_b[j], d_leak[j],
                d_reset[j], d_theta[j], rate_v_j, rate_i_j, rest_j, threshold_j, scale_j, leaky, inclusive, kinds,
                constants, has_g_v_rec, has_g_i_rec)
            dx_b, carry_v[j], carry_i[j], d_a[j], d_b[j], d_leak[j], d_reset[j], d_theta[j] = _lane_back(
                v_b[j], i_b[j], g_z_b[j], g_v_b[j], g_i_b[j], G_v, G_i, sum_a, sum_b, sum_leak, sum_reset,
                sum_theta, rate_v_j, rate_i_j, rest_j, threshold_j, scale_j, leaky, inclusive, kinds, constants,
                has_g_v_rec, has_g_i_rec)
            put(g_x_a, j, dx_a, streaming)
            put(g_x_b, j, dx_b, streaming)
    drain(streaming)


@njit(cache=True, error_model="numpy")
def _refractory_chain(v, i, r, g_v, g_z, g_r, rate_v, rest, threshold, dead_steps, scale, leaky, inclusive, kinds,
                      c):
    """Eqs. (8)-(10) of one lane and step of ``_refractory_tile``'s case, from
    the previous step's state and G_v, g_z (eq. 7) and g_r: (base, e, m, z,
    G_v after the clamp, G_v after eq. 10, g_u).  Only scalars: it inlines."""
    one = c[0]
    zero = one - one
    base = rest - v + i if leaky else i  # (1)
    u = v + rate_v * base - threshold  # (3)
    e = one if (u > 0) | (inclusive & (u == 0)) else zero
    m = one if r > 0 else zero  # (5)
    carry = max(zero, r - m)
    z = (one - m) * e
    open_gate = one - m  # (8)
    g_clamped = open_gate * g_v
    g_z = open_gate * (g_z + g_r * (dead_steps - carry))
    g_u = g_z * algebraic_derivatives(u, scale, kinds, c)[0]  # (10)
    return base, e, m, z, g_clamped, (one - e) * g_clamped + g_u, g_u


@njit(cache=True, error_model="numpy")
def _refractory_backward_tile(v0, i0, r0, a, b, leak, theta, k, scale, v_rec, i_rec, r_rec, g_spikes, g_v_rec,
                              g_i_rec, g_r_rec, g_r_final, g_x, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k,
                              has_g_spikes, has_g_v_rec, has_g_i_rec, has_g_r_rec, has_g_r_final, start, stop, leaky,
                              strict, surrogate, c, streaming):
    """Eqs. (7)-(12) over one tile, the case of ``_refractory_tile`` with an
    algebraic surrogate (sigmoid's exp would keep the loop scalar); e, m and c
    are rebuilt from the previous step's recorded state as the forward
    computed them.  An absent cotangent is a row of zeros.

    Each step runs two lane loops over the same chain (``_refractory_chain``):
    the first accumulates dreset, dthreshold and dk, the second the rest and the
    carried G_v, G_i.  One loop with all of them addresses so many rows that
    the compiler gives up proving they do not overlap and leaves it scalar;
    the second pass reads rows the first left in cache.  With ``streaming``
    (a constant: compiled once per value) dx's rows are written with streaming
    stores (``_stream``)."""
    one = c[0]
    zero = one - one
    kinds = kind_flags(surrogate)
    absent = np.zeros(stop - start, dtype=g_x.dtype)
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    threshold = tile_values(theta, start, stop)
    dead_steps = tile_values(k, start, stop)
    scales = tile_values(scale, start, stop)
    carry_v = g_v0[start:stop]
    carry_i = g_i0[start:stop]
    d_a = g_a[start:stop]
    d_b = g_b[start:stop]
    d_leak = g_leak[start:stop]
    d_reset = g_reset[start:stop]
    d_theta = g_theta[start:stop]
    d_k = g_k[start:stop]
    inclusive = not strict
    last = g_x.shape[0] - 1
    for t in range(last, -1, -1):
        v_before = v0[start:stop] if t == 0 else v_rec[t - 1, start:stop]
        i_before = i0[start:stop] if t == 0 else i_rec[t - 1, start:stop]
        r_before = r0[start:stop] if t == 0 else r_rec[t - 1, start:stop]
        g_z_row = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent
        g_v_row = g_v_rec[t % g_v_rec.shape[0], start:stop] if has_g_v_rec else absent
        g_i_row = g_i_rec[t % g_i_rec.shape[0], start:stop] if has_g_i_rec else absent
        g_r_row = g_r_rec[t % g_r_rec.shape[0], start:stop] if has_g_r_rec else absent
        # The final r's cotangent reaches the last step's r' only.
        g_r_end = g_r_final[start:stop] if t == last and has_g_r_final else absent
        g_x_row = g_x[t, start:stop]
        for j in range(carry_v.shape[0]):
            g_v = carry_v[j] + g_v_row[j]  # (7)
            g_r = g_r_row[j] + g_r_end[j]
            _, e, m, z, g_clamped, _, g_u = _refractory_chain(
                v_before[j], i_before[j], r_before[j], g_v, g_z_row[j], g_r, lane_value(rate_v, j),
                lane_value(rest, j), lane_value(threshold, j), lane_value(dead_steps, j), lane_value(scales, j),
                leaky, inclusive, kinds, c)
            d_k[j] += g_r * z  # (8)
            d_reset[j] += m * g_v
            d_reset[j] += e * g_clamped  # (9)
            d_theta[j] -= g_u  # (10)
        for j in range(carry_v.shape[0]):
            i = i_before[j]
            g_i = carry_i[j] + g_i_row[j]  # (7)
            base, _, _, _, _, g_v, _ = _refractory_chain(
                v_before[j], i, r_before[j], carry_v[j] + g_v_row[j], g_z_row[j], g_r_row[j] + g_r_end[j],
                lane_value(rate_v, j), lane_value(rest, j), lane_value(threshold, j), lane_value(dead_steps, j),
                lane_value(scales, j), leaky, inclusive, kinds, c)
            d_a[j] += g_v * base  # (11)
            put(g_x_row, j, g_i, streaming)
            d_b[j] -= g_i * i
            carry_i[j] = (one - lane_value(rate_i, j)) * g_i + lane_value(rate_v, j) * g_v  # (12)
            d_leak[j] += lane_value(rate_v, j) * g_v if leaky else zero
            carry_v[j] = (one - lane_value(rate_v, j)) * g_v if leaky else g_v
    drain(streaming)


@njit(cache=True, error_model="numpy")
def _integrator_backward_tile(v0, i0, a, b, leak, v_rec, i_rec, g_v_rec, g_i_rec, g_x, g_v0, g_i0, g_a, g_b, g_leak,
                              has_g_v_rec, has_g_i_rec, start, stop, c, streaming):
    """Eqs. (7), (11) and (12) over one tile of the leaky integrator, on row
    slices (vectorized); an absent cotangent is a row of zeros.  With
    ``streaming`` (a constant: compiled once per value) dx's rows are written
    with streaming stores (``_stream``)."""
    one = c[0]
    absent = np.zeros(stop - start, dtype=g_x.dtype)
    rate_v = tile_values(a, start, stop)
    rate_i = tile_values(b, start, stop)
    rest = tile_values(leak, start, stop)
    carry_v = g_v0[start:stop]
    carry_i = g_i0[start:stop]
    d_a = g_a[start:stop]
    d_b = g_b[start:stop]
    d_leak = g_leak[start:stop]
    for t in range(g_x.shape[0] - 1, -1, -1):
        v_before = v0[start:stop] if t == 0 else v_rec[t - 1, start:stop]
        i_before = i0[start:stop] if t == 0 else i_rec[t - 1, start:stop]
        g_v_row = g_v_rec[t % g_v_rec.shape[0], start:stop] if has_g_v_rec else absent
        g_i_row = g_i_rec[t % g_i_rec.shape[0], start:stop] if has_g_i_rec else absent
        g_x_row = g_x[t, start:stop]
        for j in range(carry_v.shape[0]):
            i = i_before[j]
            g_v = carry_v[j] + g_v_row[j]  # (7)
            g_i = carry_i[j] + g_i_row[j]
            d_a[j] += g_v * (lane_value(rest, j) - v_before[j] + i)  # (11)
            put(g_x_row, j, g_i, streaming)
            d_b[j] -= g_i * i
            carry_i[j] = (one - lane_value(rate_i, j)) * g_i + lane_value(rate_v, j) * g_v  # (12)
            d_leak[j] += lane_value(rate_v, j) * g_v
            carry_v[j] = (one - lane_value(rate_v, j)) * g_v
    drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, v0, i0, r0, a, b, leak, reset, theta, k, scale, v_obs, z_obs, stops, slots,
                 spikes, v_rec, i_rec, r_rec, v_final, i_final, r_final,
                 leaky, spiking, refractory, observe_v, observe_z, replay, strict, smooth, surrogate, c, streaming,
                 tile, first_tile, last_tile):
    steps, count = x.shape
    one = c[0]
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        for j in range(start, stop):
            v_final[j] = v0[j]
            i_final[j] = i0[j]
            r_final[j] = r0[j]
        if spiking and not refractory and not observe_v and not observe_z and not smooth and not replay:
            _forward_tile(x, a, b, leak, reset, theta, spikes, v_rec, i_rec, v_final, i_final, start, stop,
                          leaky, strict, c, streaming)
            continue
        # The refractory tile stores e, m and c: a run of these models keeps all three.
        if spiking and refractory and not observe_v and not observe_z and not smooth and not replay \
                and slots[RESET_SPIKE] >= 0 and slots[MASK] >= 0 and slots[CARRY] >= 0:
            _refractory_tile(x, a, b, leak, reset, theta, k, stops, slots, spikes, v_rec, i_rec, r_rec, v_final,
                             i_final, r_final, start, stop, leaky, strict, c, streaming)
            continue
        if not spiking and leaky and not observe_v and not replay:
            _integrator_tile(x, a, b, leak, v_rec, i_rec, v_final, i_final, start, stop, c, streaming)
            continue
        for t in range(steps):
            for j in range(start, stop):
                i = i_final[j]
                _, _, _, _, _, z, v, r = _advance(
                    t, j, v_final[j], i, r_final[j], a, leak, reset, theta, k, scale, v_obs, z_obs, stops, slots,
                    leaky, spiking, refractory, observe_v, observe_z, replay, strict, smooth, surrogate, c)
                i = (one - lane_value(b, j)) * i + x[t, j]  # (2)
                v_rec[t, j] = v
                i_rec[t, j] = i
                v_final[j] = v
                i_final[j] = i
                if spiking:
                    spikes[t, j] = z
                if refractory:
                    r_rec[t, j] = r
                    r_final[j] = r


# Inlined: called as a function from ``tile_backward_scan``'s closure, it held
# cuba_lif's backward kernel at 0.64-0.68 against 0.62-0.65 ns per
# neuron-step inlined (alternating processes; lif.py's, at 0.53 either way).
@njit(cache=True, error_model="numpy", inline="always")
def _start_tile(g_v_final, g_i_final, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k, has_g_v_final,
                has_g_i_final, start, stop, zero):
    """A tile's lanes before its reverse scan: G_v and G_i from the final
    state's cotangents (0 without one), the six sums at 0."""
    for j in range(start, stop):
        # g_v0 and g_i0 carry G_v and G_i through the scan.
        g_v0[j] = g_v_final[j] if has_g_v_final else zero
        g_i0[j] = g_i_final[j] if has_g_i_final else zero
        g_a[j] = 0.0
        g_b[j] = 0.0
        g_leak[j] = 0.0
        g_reset[j] = 0.0
        g_theta[j] = 0.0
        g_k[j] = 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(v0, i0, r0, a, b, leak, reset, theta, k, scale, v_obs, z_obs, stops, slots,
                  v_rec, i_rec, r_rec, g_spikes, g_v_rec, g_i_rec, g_r_rec, g_v_final, g_i_final, g_r_final,
                  g_x, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k,
                  has_g_spikes, has_g_v_rec, has_g_i_rec, has_g_r_rec, has_g_v_final, has_g_i_final,
                  has_g_r_final, leaky, spiking, refractory, observe_v, observe_z, replay, strict, smooth,
                  surrogate, c, streaming, tile, first_tile, last_tile):
    """Eqs. (7)-(12) for every case but ``tile_backward_scan``'s: the
    refractory and integrator tile loops, else the general loop, a lane and
    step at a time."""
    steps, count = g_x.shape
    one = c[0]
    zero = one - one
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        _start_tile(g_v_final, g_i_final, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k, has_g_v_final,
                    has_g_i_final, start, stop, zero)
        if spiking and refractory and not observe_v and not observe_z and not smooth and not replay \
                and surrogate != SIGMOID:
            _refractory_backward_tile(v0, i0, r0, a, b, leak, theta, k, scale, v_rec, i_rec, r_rec, g_spikes,
                                      g_v_rec, g_i_rec, g_r_rec, g_r_final, g_x, g_v0, g_i0, g_a, g_b, g_leak,
                                      g_reset, g_theta, g_k, has_g_spikes, has_g_v_rec, has_g_i_rec, has_g_r_rec,
                                      has_g_r_final, start, stop, leaky, strict, surrogate, c, streaming)
            continue
        if not spiking and leaky and not observe_v and not replay:
            _integrator_backward_tile(v0, i0, a, b, leak, v_rec, i_rec, g_v_rec, g_i_rec, g_x, g_v0, g_i0, g_a,
                                      g_b, g_leak, has_g_v_rec, has_g_i_rec, start, stop, c, streaming)
            continue
        for t in range(steps - 1, -1, -1):
            for j in range(start, stop):
                v_before = v_rec[t - 1, j] if t > 0 else v0[j]
                i_before = i_rec[t - 1, j] if t > 0 else i0[j]
                r_before = (r_rec[t - 1, j] if t > 0 else r0[j]) if refractory else zero
                base, u, e, m, carry, z, _, _ = _advance(
                    t, j, v_before, i_before, r_before, a, leak, reset, theta, k, scale, v_obs, z_obs, stops,
                    slots, leaky, spiking, refractory, observe_v, observe_z, replay, strict, smooth, surrogate, c)
                g_v = g_v0[j] + g_v_rec[t % g_v_rec.shape[0], j] if has_g_v_rec else g_v0[j]  # (7)
                g_i = g_i0[j] + g_i_rec[t % g_i_rec.shape[0], j] if has_g_i_rec else g_i0[j]
                g_z = g_spikes[t % g_spikes.shape[0], j] if has_g_spikes else zero
                if refractory:  # (8)
                    g_r = g_r_rec[t % g_r_rec.shape[0], j] if has_g_r_rec else zero
                    if t == steps - 1 and has_g_r_final:
                        g_r += g_r_final[j]
                    g_z += g_r * (lane_value(k, j) - carry)
                    g_k[j] += g_r * z
                    g_reset[j] += m * g_v
                    g_v = (one - m) * g_v
                    g_z = (one - m) * g_z
                if spiking and not observe_v:  # (9)
                    g_reset[j] += e * g_v
                    g_v = (one - e) * g_v
                if spiking:  # (10)
                    f, _ = derivatives(u, lane_value(scale, j), surrogate, c)
                    g_u = g_z * f
                    g_v += g_u
                    g_theta[j] -= g_u
                g_a[j] += g_v * base  # (11)
                g_x[t, j] = g_i
                g_b[j] -= g_i * i_before
                g_i0[j] = (one - lane_value(b, j)) * g_i + lane_value(a, j) * g_v  # (12)
                if leaky:
                    g_leak[j] += lane_value(a, j) * g_v
                    g_v = (one - lane_value(a, j)) * g_v
                g_v0[j] = g_v


@functools.lru_cache(maxsize=None)
def tile_backward_scan(leaky, has_g_v_rec, has_g_i_rec):
    """Eqs. (7) and (9)-(12) in ``_backward_tile``'s case (``Config.plain``),
    compiled for one leak and for whether the recorded v and i have
    cotangents: numba types a closure's variables as literals and compiles
    ``_backward_tile`` per set of values with them as constants (see
    lif.tile_backward_scan), so an absent cotangent's row is neither read nor
    added.  hxtorch.cuba_lif's backward kernel, gradients through the spikes
    only, N = 2^20, T = 100, float32, one thread, alternating processes:
    0.675-0.699 -> 0.624-0.646 ns per neuron-step; results bitwise equal."""

    @njit(nogil=True, cache=True, error_model="numpy")
    def scan(v0, i0, a, b, leak, reset, theta, scale, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec, g_v_final, g_i_final,
             g_x, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k, has_g_spikes, has_g_v_final, has_g_i_final,
             strict, surrogate, c, streaming, tile, first_tile, last_tile):
        count = g_x.shape[1]
        for tile_index in range(first_tile, last_tile):
            start = tile_index * tile
            stop = min(start + tile, count)
            _start_tile(g_v_final, g_i_final, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, g_k, has_g_v_final,
                        has_g_i_final, start, stop, c[0] - c[0])
            _backward_tile(v0, i0, a, b, leak, reset, theta, scale, v_rec, i_rec, g_spikes, g_v_rec, g_i_rec,
                           g_x, g_v0, g_i0, g_a, g_b, g_leak, g_reset, g_theta, has_g_spikes, has_g_v_rec,
                           has_g_i_rec, start, stop, leaky, strict, surrogate, c, streaming)

    return scan


class Config(NamedTuple):
    leaky: bool
    spiking: bool
    refractory: bool
    observe_v: bool
    observe_z: bool
    replay: bool
    strict: bool
    smooth: bool
    surrogate: int

    @property
    def plain(self):
        """Whether the backward is ``tile_backward_scan``'s case: spikes, no
        refractoriness, observation, smooth twin or replay, an algebraic surrogate."""
        return (self.spiking and not self.refractory and not self.observe_v and not self.observe_z
                and not self.smooth and not self.replay and self.surrogate != SIGMOID)

    @property
    def spikes_are_reset(self):
        """Whether e of eq. (4) is the spike output itself (no clamp follows)."""
        return self.spiking and not self.observe_v and not self.refractory

    def stored_keys(self, keys):
        """Of the run's stop-gradient ``keys``, those the forward stores: all of
        them when replaying, else all but a reset spike that the spike output
        already holds."""
        if self.replay or not self.spikes_are_reset:
            return list(keys)
        return [key for key in keys if key != "reset_spike"]


def _slots(keys):
    slots = np.full(len(KEYS), -1, dtype=np.int64)
    for position, key in enumerate(keys):
        slots[KEYS.index(key)] = position
    return slots


PARAMETERS = ("a", "b", "leak", "reset", "threshold", "k")


class _Scan(torch.autograd.Function):
    """Inputs (x, v0, i0, r0, a, b, leak, reset, threshold, k, scale, v_obs,
    z_obs, held, record, keys, config); absent ones are None.  ``held`` is the
    stacked replayed values; ``record`` a dict the forward fills with its own;
    ``keys`` the run's stop-gradient keys (``registry.detached_keys``)."""

    @staticmethod
    def forward(ctx, x, v0, i0, r0, a, b, leak, reset, threshold, k, scale, v_obs, z_obs, held, record, keys,
                config):
        step_shape, dtype = x.shape[1:], x.dtype
        zero = torch.zeros((), dtype=dtype)
        states = [_launch.per_lane(value if value is not None else zero, step_shape) for value in (v0, i0, r0)]
        lanes = states + _launch.parameters([value if value is not None else zero
                                             for value in (a, b, leak, reset, threshold, k, scale)], step_shape)
        observations = [_launch.optional(o, dtype)[0] for o in (v_obs, z_obs)]
        keys = config.stored_keys(keys)
        slots = _slots(keys)
        if config.replay:
            stops = held
        else:
            stops_tensor = _launch.empty((len(keys),) + tuple(x.shape), dtype)
            record.update({key: stops_tensor[position] for position, key in enumerate(keys)})
            stops = stops_tensor.numpy().reshape(len(keys), x.shape[0], _launch.lane_count(x))

        def sequence(present):
            return _launch.empty(x.shape, dtype) if present else None

        spikes, v_rec, i_rec, r_rec = (sequence(p) for p in (config.spiking, True, True, config.refractory))
        finals = [_launch.empty_lanes(step_shape, dtype) for _ in range(3)]
        rows = [_launch.sequence(s) if s is not None else _launch.placeholder(dtype, 2)
                for s in (spikes, v_rec, i_rec, r_rec)]
        # The tile loops write every sequence there is, and the refractory one e, m and c.
        written = [r for r, s in zip(rows, (spikes, v_rec, i_rec, r_rec)) if s is not None]
        _launch.run_tiles(forward_scan, _launch.lane_count(x), _launch.sequence(x), *lanes, *observations, stops, slots,
                          *rows, *(_launch.lanes(f) for f in finals), *config, _launch.constants(dtype),
                          streamed=written + ([stops] if config.refractory and not config.replay else []))
        ctx.save_for_backward(v_rec, i_rec, r_rec, a, b, leak, reset, threshold, k)
        ctx.lanes, ctx.observations, ctx.stops, ctx.slots, ctx.config = lanes, observations, stops, slots, config
        ctx.set_materialize_grads(False)
        sequences = [s for s in (spikes, v_rec, i_rec, r_rec) if s is not None]
        return tuple(sequences + finals[:3 if config.refractory else 2])

    @staticmethod
    @first_order("cuba", "cpu")
    def backward(ctx, *grads):
        v_rec, i_rec, r_rec, *parameters = ctx.saved_tensors
        config = ctx.config
        dtype, count = v_rec.dtype, _launch.lane_count(v_rec)
        names = [n for n, on in (("z", config.spiking), ("v", True), ("i", True), ("r", config.refractory)) if on]
        g_seq = dict(zip(names, grads))
        g_final = dict(zip([n for n in names if n != "z"], grads[len(names):]))
        sequences = [_launch.cotangent(g_seq.get(n), dtype) for n in ("z", "v", "i", "r")]
        finals = [_launch.optional(g_final.get(n), dtype, rank=1) for n in ("v", "i", "r")]
        g_x = _launch.empty(v_rec.shape, dtype)
        g_v0, g_i0 = (_launch.empty_lanes(v_rec.shape[1:], dtype) for _ in range(2))
        sums = [_launch.lane_sums(count, dtype) for _ in PARAMETERS]
        recorded = [_launch.sequence(s) if s is not None else _launch.placeholder(dtype, 2)
                    for s in (v_rec, i_rec, r_rec)]
        g_x_rows, g_v0_lanes, g_i0_lanes = _launch.sequence(g_x), _launch.lanes(g_v0), _launch.lanes(g_i0)
        if config.plain:
            v0, i0, _, a, b, leak, reset, threshold, _, scale = ctx.lanes
            (g_z, has_g_z), (g_v, has_g_v), (g_i, has_g_i), _ = sequences
            (g_v_final, has_g_v_final), (g_i_final, has_g_i_final), _ = finals
            scan = tile_backward_scan(config.leaky, has_g_v, has_g_i)
            _launch.run_tiles(scan, count, v0, i0, a, b, leak, reset, threshold, scale, *recorded[:2], g_z, g_v, g_i,
                              g_v_final, g_i_final, g_x_rows, g_v0_lanes, g_i0_lanes, *sums, has_g_z, has_g_v_final,
                              has_g_i_final, config.strict, config.surrogate, _launch.constants(dtype),
                              streamed=[g_x_rows])
        else:
            # Without replay the backward recomputes the stop-gradient values and stores none of them.
            slots = ctx.slots if config.replay else _slots([])
            _launch.run_tiles(backward_scan, count, *ctx.lanes, *ctx.observations, ctx.stops, slots, *recorded,
                              *(view for view, _ in sequences + finals), g_x_rows, g_v0_lanes, g_i0_lanes, *sums,
                              *(present for _, present in sequences + finals), *config, _launch.constants(dtype),
                              streamed=[g_x_rows])
        neurons = v_rec.shape[-1]
        grads = [_launch.reduce_lanes(total, like, neurons) if like is not None and want else None
                 for total, like, want in zip(sums, parameters, ctx.needs_input_grad[4:10])]
        r0_grad = torch.zeros(v_rec.shape[1:], dtype=dtype) if ctx.needs_input_grad[3] else None
        return (g_x, g_v0, g_i0, r0_grad, *grads, None, None, None, None, None, None, None)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    spiking = row.options.spiking
    dt = params["dt"]
    a = quotient(dt, params["tau_mem"])
    b = quotient(dt, params["tau_syn"])
    k = quotient(params["refractory_time"], dt) if row.refractory else None
    v_obs, z_obs = inject.get("v"), inject.get("spikes")
    keys = registry.detached_keys(row, inject)
    # Replaying no stop-gradient values (cuba_li without observation) is the plain run.
    replay = detached is not None and bool(keys)
    config = Config(row.options.leak, spiking, row.refractory, v_obs is not None, z_obs is not None,
                    replay, row.spike_test == ">", bool(smooth), kind(surrogate if spiking else None))
    held = None
    if config.replay:
        missing = [key for key in keys if key not in detached]
        if missing:
            raise ValueError(f"detached: {row.key} with these observations needs {', '.join(missing)}")
        held = torch.stack([detached[key] for key in keys]).contiguous().numpy()
        held = held.reshape(len(keys), x.shape[0], _launch.lane_count(x))
    record = {}
    scale = params["alpha"] if spiking else None
    results = _Scan.apply(
        x, state["v"], state["i"], state.get("r"), a, b, params.get("leak"), params.get("reset"),
        params.get("threshold"), k, scale, v_obs, z_obs, held, record, keys, config,
    )
    names = ["v", "i"] + (["r"] if row.refractory else [])
    if spiking:
        out, *results = results
    sequences, finals = results[:len(names)], results[len(names):]
    outputs = dict(zip(names, sequences))
    outputs["out"] = out if spiking else outputs["v"]
    if config.replay:
        return outputs, dict(zip(names, finals)), {key: detached[key] for key in keys}
    if config.spikes_are_reset:
        record = {"reset_spike": out.detach(), **record}
    return outputs, dict(zip(names, finals)), {key: record[key] for key in keys}
