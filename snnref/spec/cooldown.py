"""The Cooldown family: rnnbuilder.Cooldown.

A NoReset membrane ``m`` that integrates the exponential of its input, and a
spike decided from the membrane *before* this step's update.  Half of the units
fire above the threshold 1 and half below it: the sign ``sgn`` is +1 for the
first ``N // 2`` units of the last axis and -1 for the others (so those fire at
t = 0 from the initial m = 0).  The axes between time and the last are batch
axes (``simulate``'s layout (T, ..., N)); rnnbuilder flattens its features into
one axis F first (SPEC.md section 3), and so does
``snnref.compat.rnnbuilder.Cooldown``: x of shape (T, B, C, N) is (T, B, C N)
there, with sgn over C N units.
``beta = exp(-1/tau)``; nothing is reset and nothing is detached.  Per step t,
with m[-1] the initial state:

(1) u[t] = sgn * (m[t-1] - 1)
(2) s[t] = H(u[t])                 H strict (u > 0); smooth twin: F(u[t])
(3) m[t] = beta m[t-1] + (1 - beta) exp(x[t])
(4) out[t] = s[t]

The recorded sequence is m[t] (after the step); the final state is m[T-1].
``check_input`` rejects an x whose exp overflows in the run's dtype.

Reverse loop (adjoints written ``g``), from g m[T-1] = cotangent of the final state:

(5) g m[t]   += cot_m[t]
(6) g x[t]    = g m[t] (1 - beta) exp(x[t])
(7) g m[t-1]  = beta g m[t] + cot_out[t] f(u[t]) sgn
(8) "state.m" = g m[-1]
(9) g beta += g m[t] (m[t-1] - exp(x[t]));  g tau = g beta beta / tau^2
    (with g m[t] of (5), before (7))

No parameter is trainable (rnnbuilder fixes tau and gradient_factor), but tau
has the gradient (9), which the reverse loop reports.
"""

from __future__ import annotations

import numpy as np

from ..registry import NO_RESET
from .lif import decay_of
from .sums import Sums

# Nothing is reset: the family contract's resets (snnref/families.py).
RESETS = (NO_RESET,)


def _largest_input(dtype):
    """The largest x of ``dtype`` whose exp(x) is still finite in ``dtype``."""
    limit = dtype.type(np.log(np.finfo(dtype).max))
    # log(max) rounded to the dtype may land just above the true limit.
    with np.errstate(over="ignore"):
        while not np.isfinite(np.exp(limit)):
            limit = np.nextafter(limit, dtype.type(0))
    return limit


def check_input(row, x, params):
    limit = _largest_input(x.dtype)
    # An inf in x only gets here with allow_nonfinite=True: it was asked for.
    too_large = np.isfinite(x) & (x > limit)
    if np.any(too_large):
        raise ValueError(
            f"x: {row.key} integrates exp(x), which overflows in {x.dtype.name} for "
            f"x = {float(x[too_large].max())!r}; the maximum allowed is {float(limit)!r}"
        )


def _sign(n, dtype):
    """+1 for the first n // 2 units (fire above 1), -1 for the rest (fire below 1)."""
    sgn = np.full((n,), -1, dtype=dtype)
    sgn[: n // 2] = 1
    return sgn


def forward(row, x, params, state, spike, inject, detached):
    beta = decay_of(params["tau"])
    sgn = _sign(x.shape[-1], x.dtype)
    m_seq = np.empty_like(x)
    m_prev = np.empty_like(x)
    u = np.empty_like(x)
    s = np.empty_like(x)
    m = state["m"]
    for t in range(x.shape[0]):
        m_prev[t] = m
        # The spike reads the membrane left by the previous step.
        u[t] = sgn * (m - 1)
        s[t] = spike(u[t])
        m = beta * m + (1 - beta) * np.exp(x[t])
        m_seq[t] = m
    outputs = {"out": s.copy(), "m": m_seq}
    tape = {"u": u, "m_prev": m_prev}
    return outputs, {"m": m.copy()}, {}, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    beta = decay_of(params["tau"])
    sgn = _sign(x.shape[-1], x.dtype)
    g_x = np.zeros_like(x)
    sums = Sums({"beta": x.shape[1:]}, x.dtype)
    g_m = cot["final.m"].copy()
    for t in reversed(range(x.shape[0])):
        g_m = g_m + cot["m"][t]
        g_x[t] = g_m * (1 - beta) * np.exp(x[t])
        # (9)
        sums.add("beta", g_m * (tape["m_prev"][t] - np.exp(x[t])))
        # m[t-1] reaches the loss through the decay and through this step's spike.
        g_m = beta * g_m + cot["out"][t] * spike.grad(tape["u"][t]) * sgn
    # beta / tau^2 of (9), divided by tau twice: where tau^2 underflows to 0, beta is 0 too.
    factor = beta / params["tau"] / params["tau"]
    return {"x": g_x, "state.m": g_m, "tau": sums.total["beta"] * factor,
            "magnitudes": {"tau": sums.magnitude["beta"] * np.abs(factor)}}


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): (3) is a first-order
    filter of (1 - beta) exp(x), whatever the spikes."""
    beta = decay_of(params["tau"])
    return {"m": first_order(beta, (1 - beta) * np.exp(x), state["m"])}


def linear_given_spikes(row):
    """Nothing is reset: (3) never sees the spikes."""
    return True
