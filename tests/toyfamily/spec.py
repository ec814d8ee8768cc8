"""The toy family's reference (equations in tests/toyfamily/__init__.py).

Reverse loop (adjoints written ``g``), from g v[T-1] = cotangent of the final v:

(3) g v[t] += cot_out[t] + cot_v[t]
(4) g x[t] = g v[t];  g decay += g v[t] v[t-1];  g v[t-1] = decay g v[t]
"""

import numpy as np

from snnref.registry import NO_RESET

# No spikes, nothing to reset (the family contract, snnref/families.py).
RESETS = (NO_RESET,)


def forward(row, x, params, state, spike, inject, detached):
    decay = params["decay"]
    v = np.empty_like(x)
    previous = state["v"]
    for t in range(x.shape[0]):
        previous = v[t] = decay * previous + x[t]  # (1)
    return {"out": v, "v": v}, {"v": v[-1].copy()}, {}, {"v": v}


def backward(row, x, params, state, spike, inject, tape, cot):
    decay, v = params["decay"], tape["v"]
    g_x = np.empty_like(x)
    g_decay = np.zeros_like(x[0])
    g_v = cot["final.v"].copy()
    for t in reversed(range(x.shape[0])):
        g_v = g_v + cot["out"][t] + cot["v"][t]  # (3)
        g_x[t] = g_v
        g_decay += g_v * (v[t - 1] if t else state["v"])  # (4)
        g_v = decay * g_v
    return {"x": g_x, "decay": g_decay, "state.v": g_v}


def linear_response(row, params, x, state, spikes, first_order):
    """(1) is itself a first-order filter of x."""
    return {"v": first_order(params["decay"], x, state["v"])}


def linear_given_spikes(row):
    """No spikes, no reset: linear on every run."""
    return True
