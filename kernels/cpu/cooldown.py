"""Fused CPU scans of rnnbuilder's Cooldown neuron, SPEC.md section 3.

Per lane, the spike read from the membrane the step starts from (m[-1] the
initial state), then the membrane integrates the exponentiated input:

    (1) u[t] = sgn (m[t-1] - 1);   s[t] = H(u[t])   (F(u) for the smooth twin)
    (2) m[t] = beta m[t-1] + c exp(x[t])

with beta = exp(-1/tau), c = 1 - beta (computed by torch, so autograd carries
their gradients to tau), sgn = +1 on the first N//2 units of the last axis and
-1 on the rest.  Reverse scan, G the gradient reaching m[t]:

    (3) G += dL/dm_rec[t];   dx[t] = G c exp(x[t]);   dbeta += G m[t-1];   dc += G exp(x[t])
    (4) G = beta G + dL/ds[t] f(u[t]) sgn            (the gradient reaching m[t-1])

Layout.  A tile runs the time loop inside (lif.py), one row slice x[t, tile]
at a time: first exp of the row into a scratch row, then the rest of (1)-(4),
whose body is branch-free (flags become selects), so the compiler vectorizes it.

exp.  A libm call per element keeps a loop scalar (4.7 ns per element here,
more than the rest of the scan).  In float32, exp(x) is therefore evaluated in
float64 with operations that vectorize, and rounded once to float32:

    (5) k = round(x / ln 2),   r = x - k ln 2   (ln 2 = hi + lo, k hi exact, |r| <= ln 2 / 2)
    (6) exp(x) = 2^k sum_{n=0}^{12} r^n / n!    (the remainder term is below 2e-16 relative)

with round(y) = (y + 1.5 2^52) - 1.5 2^52 and 2^k assembled from its exponent
bits; x is clamped to [-110, 89] first (exp(-110) rounds to 0 and exp(89) to
inf in float32), and a NaN stays NaN.  The float64 error is far below float32's
half ulp, so the result is the correctly rounded exp(x) but where exp(x) lies
within about 1e-16 of a rounding midpoint.  In float64 the row is computed with
libm's exp.  Forward and backward use the same row function, so they see the
same exp(x).

Saved: x (an input) and the membrane sequence (an output).  No fastmath (see lif.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from snnref.leak import decay_of
from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit
from ._stream import drain, put
from .surrogates import SIGMOID, derivatives, kind, step

LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
LOG2_E = 1 / math.log(2)
# Adding and subtracting 1.5 2^52 rounds a float64 of magnitude below 2^51 to
# an integer, which then sits in the low bits of the sum's significand.
ROUNDER = 1.5 * 2.0**52
ROUNDER_BITS = int(np.float64(ROUNDER).view(np.int64))
EXPONENT_BIAS = 1023
SIGNIFICAND_BITS = 52
# exp(-110) and exp(89), rounded to float32: 0 and inf.
LOWEST = -110.0
HIGHEST = 89.0
# 1 / n! of eq. (6), n = 0 .. 12.
INVERSE_FACTORIALS = tuple(1.0 / math.factorial(n) for n in range(13))
(F0, F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12) = INVERSE_FACTORIALS


@njit(cache=True, error_model="numpy")
def _clamped(value):
    """x in float64, clamped to [LOWEST, HIGHEST] (a NaN stays NaN)."""
    wide = np.float64(value)
    wide = LOWEST if wide < LOWEST else wide
    return HIGHEST if wide > HIGHEST else wide


@njit(cache=True, error_model="numpy")
def exp_row(x, e, rounded, powers):
    """e[i] = exp(x[i]) over one row slice: eqs. (5)-(6) in float32 (passes that
    vectorize, through the float64 scratch rows ``rounded`` and ``powers``),
    libm's exp in float64."""
    if e.itemsize == 8:
        for i in range(e.shape[0]):
            e[i] = math.exp(x[i])
        return
    for i in range(e.shape[0]):
        rounded[i] = _clamped(x[i]) * LOG2_E + ROUNDER  # (5)
    # 2^k: k + 1023 in the exponent field of a float64.
    rounded_bits = rounded.view(np.int64)
    power_bits = powers.view(np.int64)
    for i in range(e.shape[0]):
        power_bits[i] = (rounded_bits[i] - ROUNDER_BITS + EXPONENT_BIAS) << SIGNIFICAND_BITS
    for i in range(e.shape[0]):
        k = rounded[i] - ROUNDER
        r = (_clamped(x[i]) - k * LN2_HI) - k * LN2_LO  # (5)
        # Estrin's scheme: a short dependency chain lets consecutive vectors overlap.
        r2 = r * r
        r4 = r2 * r2
        low = (F0 + F1 * r) + r2 * (F2 + F3 * r)
        middle = (F4 + F5 * r) + r2 * (F6 + F7 * r)
        high = (F8 + F9 * r) + r2 * (F10 + F11 * r) + r4 * F12
        series = low + r4 * (middle + r4 * high)
        value = series * powers[i]  # (6)
        e[i] = x[i] if x[i] != x[i] else value


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, m0, beta, gain, sign, scale, spikes, m_rec, m_final, strict, smooth, surrogate, c, streaming,
                   tile, first_tile, last_tile):
    """Eqs. (1)-(2) over tiles [first_tile, last_tile).
    With ``streaming`` (a constant: compiled once per value) the rows of the
    branch-free lane loops are written with streaming stores (``_stream``);
    the smooth twin's spikes stay plain."""
    steps, count = x.shape
    one = c[0]
    zero = one - one
    inclusive = not strict
    e = np.empty(tile, dtype=x.dtype)
    rounded = np.empty(tile)
    powers = np.empty(tile)
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        width = stop - start
        m = m_final[start:stop]
        for i in range(width):
            m[i] = m0[start + i]
        decay = beta[start:stop]
        gains = gain[start:stop]
        signs = sign[start:stop]
        scales = scale[start:stop]
        grown = e[:width]
        for t in range(steps):
            exp_row(x[t, start:stop], grown, rounded, powers)
            fired = spikes[t, start:stop]
            kept = m_rec[t, start:stop]
            if smooth:
                for i in range(width):
                    fired[i] = step(signs[i] * (m[i] - one), scales[i], surrogate, strict, smooth, c)  # (1)
            else:
                for i in range(width):
                    u = signs[i] * (m[i] - one)  # (1)
                    s = one if (u > 0) | (inclusive & (u == 0)) else zero
                    put(fired, i, s, streaming)
            for i in range(width):
                after = decay[i] * m[i] + gains[i] * grown[i]  # (2)
                put(kept, i, after, streaming)
                m[i] = after
        drain(streaming)


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(x, m0, beta, gain, sign, scale, m_rec, g_spikes, g_m_rec, g_m_final,
                    g_x, g_m0, g_beta, g_gain, has_g_spikes, has_g_m_rec, has_g_m_final, surrogate, c, streaming, tile,
                    first_tile, last_tile):
    """Eqs. (3)-(4) over tiles [first_tile, last_tile).
    With ``streaming`` (a constant: compiled once per value) dx's rows are
    written with streaming stores (``_stream``)."""
    steps, count = x.shape
    one = c[0]
    zero = one - one
    # An absent cotangent is a row of zeros: the body stays free of flags.
    absent = np.zeros(tile, dtype=x.dtype)
    e = np.empty(tile, dtype=x.dtype)
    rounded = np.empty(tile)
    powers = np.empty(tile)
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        stop = min(start + tile, count)
        width = stop - start
        # carry is G through the scan; it ends as the initial state's gradient.
        carry = g_m0[start:stop]
        for i in range(width):
            carry[i] = g_m_final[start + i] if has_g_m_final else zero
        d_beta = g_beta[start:stop]
        d_gain = g_gain[start:stop]
        for i in range(width):
            d_beta[i] = 0.0
            d_gain[i] = 0.0
        decay = beta[start:stop]
        gains = gain[start:stop]
        signs = sign[start:stop]
        scales = scale[start:stop]
        grown = e[:width]
        for t in range(steps - 1, -1, -1):
            exp_row(x[t, start:stop], grown, rounded, powers)
            before = m_rec[t - 1, start:stop] if t > 0 else m0[start:stop]
            g_s_row = g_spikes[t % g_spikes.shape[0], start:stop] if has_g_spikes else absent[:width]
            g_rec_row = g_m_rec[t % g_m_rec.shape[0], start:stop] if has_g_m_rec else absent[:width]
            g_x_row = g_x[t, start:stop]
            for i in range(width):
                g_m = carry[i] + g_rec_row[i]  # (3)
                m_before = before[i]
                dx = g_m * gains[i] * grown[i]
                put(g_x_row, i, dx, streaming)
                d_beta[i] += g_m * m_before
                d_gain[i] += g_m * grown[i]
                f, _ = derivatives(signs[i] * (m_before - one), scales[i], surrogate, c)
                carry[i] = decay[i] * g_m + g_s_row[i] * f * signs[i]  # (4)
        drain(streaming)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m0, beta, gain, sign, scale, config):
        # A strided x is copied here, once, and the backward reads the copy (held between the passes:
        # one sequence more in memory there, where the backward used to copy x again).
        x = _launch.contiguous(x)
        strict, smooth, surrogate = config
        step_shape = x.shape[1:]
        lanes = [_launch.per_lane(value, step_shape) for value in (m0, beta, gain, sign, scale)]
        spikes, m_rec = (_launch.empty(x.shape, x.dtype) for _ in range(2))
        m_final = _launch.empty_lanes(step_shape, x.dtype)
        rows = [_launch.sequence(s) for s in (spikes, m_rec)]
        _launch.run_tiles(forward_scan, _launch.lane_count(x), _launch.sequence(x), *lanes, *rows,
                          _launch.lanes(m_final), strict, smooth, surrogate, _launch.constants(x.dtype),
                          streamed=rows)
        ctx.save_for_backward(x, m_rec, beta, gain)
        ctx.lanes, ctx.config = lanes, config
        ctx.set_materialize_grads(False)
        return spikes, m_rec, m_final

    @staticmethod
    @first_order("cooldown", "cpu")
    def backward(ctx, g_spikes, g_m_rec, g_m_final):
        x, m_rec, beta, gain = ctx.saved_tensors
        dtype, count = x.dtype, _launch.lane_count(m_rec)
        cotangents = [_launch.cotangent(g, dtype) for g in (g_spikes, g_m_rec)]
        cotangents.append(_launch.optional(g_m_final, dtype, rank=1))
        g_x = _launch.empty(x.shape, dtype)
        g_m0 = _launch.empty_lanes(x.shape[1:], dtype)
        sums = [_launch.lane_sums(count, dtype) for _ in range(2)]
        g_x_rows = _launch.sequence(g_x)
        # Streamed only where the lane loop vectorizes: sigmoid's exp keeps it scalar.
        _launch.run_tiles(backward_scan, count, _launch.sequence(x), *ctx.lanes, _launch.sequence(m_rec),
                          *(view for view, _ in cotangents), g_x_rows, _launch.lanes(g_m0), *sums,
                          *(present for _, present in cotangents), ctx.config[2], _launch.constants(dtype),
                          streamed=[g_x_rows] if ctx.config[2] != SIGMOID else [])
        neurons = x.shape[-1]
        wants = ctx.needs_input_grad
        g_beta = _launch.reduce_lanes(sums[0], beta, neurons) if wants[2] else None
        g_gain = _launch.reduce_lanes(sums[1], gain, neurons) if wants[3] else None
        # rnnbuilder's gradient_factor is spike_linear's fixed scale: no gradient.
        return g_x, g_m0, g_beta, g_gain, None, None, None


def check_input(row, x, params):
    """Reject an x whose exp overflows in x's dtype (called before the run)."""
    x = x.detach()
    # One reduction clears almost every input: below ln(max) - 1 exp(x) is
    # finite.  Only a larger maximum (or a NaN, for which the comparison is
    # false) pays for the elementwise test, which allocates four temporaries.
    if x.numel() == 0 or bool(x.max() < math.log(torch.finfo(x.dtype).max) - 1):
        return
    overflow = torch.isfinite(x) & torch.isinf(torch.exp(x))
    if bool(overflow.any()):
        raise ValueError(
            f"x: {row.key} integrates exp(x), which overflows in {x.dtype} for x = {float(x[overflow].max())!r}; "
            f"exp(x) must stay below {torch.finfo(x.dtype).max!r}"
        )


def signs(x):
    """sgn of eq. (1): +1 on the first N//2 units of the last axis, -1 on the rest."""
    n = x.shape[-1]
    return torch.where(torch.arange(n) < n // 2, 1.0, -1.0).to(x.dtype)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    beta = decay_of(params["tau"])
    config = (row.spike_test == ">", bool(smooth), kind(surrogate))
    spikes, m_rec, m_final = _Scan.apply(x, state["m"], beta, 1 - beta, signs(x), params["gradient_factor"], config)
    return {"out": spikes, "m": m_rec}, {"m": m_final}, {}
