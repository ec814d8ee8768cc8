"""The adaptive LIF family: tether ALIF.

A membrane ``v`` and an adaptation ``a`` per neuron; the firing threshold rises
by ``beta`` for every unit of adaptation, and each spike adds one unit of
adaptation that then decays.  Per step t, with ``a[t]`` the adaptation before
this step's update (a[0] and v+[-1] are the initial state):

(1) v[t]     = decay_v * v+[t-1] + x[t]
(2) theta[t] = threshold + beta * a[t]
(3) u[t]     = v[t] - theta[t]
(4) s[t]     = H(u[t])  (u >= 0)           (smooth twin: F(u[t]), arctan)
(5) v+[t]    = v[t] * (1 - sg(s[t]))       detached hard reset to 0 (0 where sg(s[t]) = 1: lif.reset_to_zero)
(6) a[t+1]   = decay_a * a[t] + s[t]       differentiated: the spike feeds a
(7) out[t]   = s[t]

``sg`` is a stop-gradient: the detached spike is recorded in ``reset_spike``
and replayed from ``detached`` when given.  Recorded sequences: v[t]
(pre-reset) and a[t] (before the step's update); the final state is v+[T-1]
and a[T].

Reverse loop (adjoints written ``g``), from g v+[T-1] = cotangent of the final
v and g a[T] = cotangent of the final a:

(8)  g s[t]   = cot_out[t] + g a[t+1]                         (from 6, 7)
(9)  g decay_a += g a[t+1] * a[t]                             (from 6)
(10) g v[t]   = g v+[t] (1 - sg(s[t])) + cot_v[t] + g s[t] f(u[t])
(11) g x[t] = g v[t];  g v+[t-1] = decay_v g v[t];  g decay_v += g v[t] v+[t-1]
(12) g threshold -= g s[t] f(u[t]);  g beta -= g s[t] f(u[t]) a[t]
(13) g a[t] = decay_a g a[t+1] - beta g s[t] f(u[t]) + cot_a[t]
(14) g alpha += g s[t] dF/dalpha(u[t])

The initial state receives g v+[-1] and g a[0].  By (9) the gradient of
``decay_a`` is the sum over t = 1..T of g a[t] * a[t-1], the final state a[T]
included and no term for the initial a[0].
"""

from __future__ import annotations

import numpy as np

from ..registry import HARD_RESET
from .lif import reset_to_zero
from .sums import Sums

# (5): the family contract's resets (snnref/families.py).
RESETS = (HARD_RESET,)


def forward(row, x, params, state, spike, inject, detached):
    decay_v, decay_a = params["decay_v"], params["decay_a"]
    threshold, beta = params["threshold"], params["beta"]
    v_pre = np.empty_like(x)
    v_prev = np.empty_like(x)
    a_seq = np.empty_like(x)
    u = np.empty_like(x)
    s = np.empty_like(x)
    reset_spike = np.empty_like(x)
    v_plus, a = state["v"], state["a"]
    for t in range(x.shape[0]):
        v_prev[t] = v_plus
        a_seq[t] = a
        v = decay_v * v_plus + x[t]
        u[t] = v - (threshold + beta * a)
        s[t] = spike(u[t])
        reset_spike[t] = s[t] if detached is None else detached["reset_spike"][t]
        v_plus = reset_to_zero(v, reset_spike[t])
        a = decay_a * a + s[t]
        v_pre[t] = v
    outputs = {"out": s.copy(), "v": v_pre, "a": a_seq}
    final = {"v": v_plus.copy(), "a": a.copy()}
    tape = {"v_prev": v_prev, "a": a_seq, "u": u, "reset_spike": reset_spike}
    return outputs, final, {"reset_spike": reset_spike}, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    decay_v, decay_a, beta = params["decay_v"], params["decay_a"], params["beta"]
    g_x = np.zeros_like(x)
    # The parameter gradients, with the size of what they sum (spec/sums.py).
    sums = Sums({name: x.shape[1:] for name in ("decay_v", "decay_a", "threshold", "beta", "alpha")}, x.dtype)
    # Adjoints of v+[t] and a[t+1], entering at t = T-1 from the final state.
    g_plus = cot["final.v"].copy()
    g_a_next = cot["final.a"].copy()
    for t in reversed(range(x.shape[0])):
        u, a = tape["u"][t], tape["a"][t]
        # (8)-(9): the spike reaches the output and the next adaptation.
        g_s = cot["out"][t] + g_a_next
        sums.add("decay_a", g_a_next * a)
        g_u = g_s * spike.grad(u)
        sums.add("alpha", g_s * spike.scale_grad(u))
        # (10): the detached reset passes only the (1 - s) factor.
        g_v = g_plus * (1 - tape["reset_spike"][t]) + cot["v"][t] + g_u
        # (12)-(13): u = v - threshold - beta a.
        sums.add("threshold", -g_u)
        sums.add("beta", -(g_u * a))
        g_a_next = decay_a * g_a_next - beta * g_u + cot["a"][t]
        # (11)
        g_x[t] = g_v
        sums.add("decay_v", g_v * tape["v_prev"][t])
        g_plus = decay_v * g_v
    return {
        "x": g_x,
        "state.v": g_plus,
        "state.a": g_a_next,
        **sums.total,
        "magnitudes": sums.magnitude,
    }


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): between spikes (1) is
    v[t] = decay_v v[t-1] + x[t]; given the spikes, (6) is a[t+1] = decay_a a[t]
    + s[t], recorded before the update (a[0], then a[1..T-1])."""
    a_after = first_order(params["decay_a"], spikes, state["a"])
    return {"v": first_order(params["decay_v"], x, state["v"]),
            "a": np.concatenate([state["a"][None], a_after[:-1]])}
