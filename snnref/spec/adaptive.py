"""The Adaptive family: rnnbuilder.Adaptive (Bellec et al. 2018 adaptive threshold).

Membrane ``m`` and threshold increment ``r`` (both start at 0 unless given).
The threshold is A = 1 + r; the spike compares the membrane *before* this step's
update with it, measured in units of A; the reset subtracts A and the spike
raises r.  ``beta = exp(-1/tau)``, ``beta_thr = exp(-1/tau_thr)``; rnnbuilder
fixes tau, tau_thr, gamma and gradient_factor, but the first three have
gradients (15)-(16), which the reverse loop reports.  Nothing is detached: gradients flow
through A (hence r) in the normalisation and in the reset.  Per step t, with
m[-1], r[-1] the initial state:

(1) A[t] = 1 + r[t-1]
(2) u[t] = (m[t-1] - A[t]) / A[t]
(3) s[t] = H(u[t])                 H strict (u > 0); smooth twin: F(u[t])
(4) m[t] = beta m[t-1] + x[t] - s[t] A[t]
(5) r[t] = beta_thr r[t-1] + gamma s[t]
(6) out[t] = s[t]

Recorded: m[t] (after the reset) and r[t]; the final state is m[T-1], r[T-1].

Reverse loop (adjoints written ``g``), from g m[T-1], g r[T-1] = cotangents of
the final state:

(7)  g m[t] += cot_m[t];  g r[t] += cot_r[t]
(8)  g s[t]  = cot_out[t] - A[t] g m[t] + gamma g r[t]
(9)  g u[t]  = g s[t] f(u[t])
(10) g x[t]  = g m[t]
(11) g A[t]  = -s[t] g m[t] - g u[t] m[t-1] / A[t]^2        (du/dA = -m[t-1]/A^2)
(12) g m[t-1] = beta g m[t] + g u[t] / A[t]                  (du/dm = 1/A)
(13) g r[t-1] = beta_thr g r[t] + g A[t]
(14) "state.m" = g m[-1];  "state.r" = g r[-1]
(15) g beta += g m[t] m[t-1];  g beta_thr += g r[t] r[t-1];  g gamma += g r[t] s[t]
     (with g m[t], g r[t] of (7), before (12)-(13))
(16) g tau = g beta beta / tau^2;  g tau_thr = g beta_thr beta_thr / tau_thr^2
"""

from __future__ import annotations

import numpy as np

from ..registry import SOFT_RESET
from .lif import decay_of
from .sums import Sums

# (4) subtracts the threshold A, differentiated: the family contract's resets (snnref/families.py).
RESETS = (SOFT_RESET,)


def forward(row, x, params, state, spike, inject, detached):
    beta = decay_of(params["tau"])
    beta_thr = decay_of(params["tau_thr"])
    gamma = params["gamma"]
    m_seq = np.empty_like(x)
    r_seq = np.empty_like(x)
    m_prev = np.empty_like(x)
    r_prev = np.empty_like(x)
    big_a = np.empty_like(x)
    u = np.empty_like(x)
    s = np.empty_like(x)
    m, r = state["m"], state["r"]
    for t in range(x.shape[0]):
        m_prev[t], r_prev[t] = m, r
        big_a[t] = 1 + r
        # The spike reads the previous membrane, in units of the current threshold.
        u[t] = (m - big_a[t]) / big_a[t]
        s[t] = spike(u[t])
        m = beta * m + x[t] - s[t] * big_a[t]
        r = beta_thr * r + gamma * s[t]
        m_seq[t] = m
        r_seq[t] = r
    outputs = {"out": s.copy(), "m": m_seq, "r": r_seq}
    tape = {"m_prev": m_prev, "r_prev": r_prev, "A": big_a, "u": u, "s": s}
    return outputs, {"m": m.copy(), "r": r.copy()}, {}, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    beta = decay_of(params["tau"])
    beta_thr = decay_of(params["tau_thr"])
    gamma = params["gamma"]
    g_x = np.zeros_like(x)
    # (15): the parameter gradients, with the size of what they sum (spec/sums.py).
    sums = Sums({name: x.shape[1:] for name in ("beta", "beta_thr", "gamma")}, x.dtype)
    g_m = cot["final.m"].copy()
    g_r = cot["final.r"].copy()
    for t in reversed(range(x.shape[0])):
        big_a, s, m_prev = tape["A"][t], tape["s"][t], tape["m_prev"][t]
        g_m = g_m + cot["m"][t]
        g_r = g_r + cot["r"][t]
        sums.add("beta", g_m * m_prev)
        sums.add("beta_thr", g_r * tape["r_prev"][t])
        sums.add("gamma", g_r * s)
        # The spike feeds the output, the reset (-A s) and the adaptation (+gamma s).
        g_s = cot["out"][t] - big_a * g_m + gamma * g_r
        g_u = g_s * spike.grad(tape["u"][t])
        g_x[t] = g_m
        # A enters the reset and the normalised distance u = m[t-1] / A - 1.
        g_a = -s * g_m - g_u * m_prev / (big_a * big_a)
        g_m = beta * g_m + g_u / big_a
        g_r = beta_thr * g_r + g_a
    grads = {"x": g_x, "state.m": g_m, "state.r": g_r, "gamma": sums.total["gamma"]}
    magnitudes = {"gamma": sums.magnitude["gamma"]}
    # (16) scales each sum by |beta / tau^2|, divided by tau twice: where tau^2 underflows to 0,
    # beta is 0 too, and the derivative is 0, not 0/0.
    for name, factor_of in (("tau", "beta"), ("tau_thr", "beta_thr")):
        factor = decay_of(params[name]) / params[name] / params[name]
        grads[name] = sums.total[factor_of] * factor
        magnitudes[name] = sums.magnitude[factor_of] * np.abs(factor)
    grads["magnitudes"] = magnitudes
    return grads


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): given the spikes, (5) is
    a first-order filter of gamma s, and (4) one of x - s A with A from (1)."""
    r = first_order(decay_of(params["tau_thr"]), params["gamma"] * spikes, state["r"])
    threshold = 1 + np.concatenate([state["r"][None], r[:-1]])
    return {"m": first_order(decay_of(params["tau"]), x - spikes * threshold, state["m"]), "r": r}


def linear_given_spikes(row):
    """The reset subtracts A (1) and the spike raises r (5): both are drive given the spikes."""
    return True
