"""The Discontinuous family: rnnbuilder.Discontinuous, a spike function without memory.

Stateless and elementwise; the output has the shape of the input.  The
threshold ``theta`` (parameter ``threshold``) and ``gradient_factor`` are fixed
by rnnbuilder; theta has the gradient (5), which the reverse pass reports.
Per element of x:

(1) u = x - theta
(2) s = H(u)                       H strict (u > 0); smooth twin: F(u)
(3) out = s

There are no state variables: no recorded sequence and an empty final state.

Reverse (adjoints written ``g``):

(4) g x = cot_out f(u)
(5) g theta = -sum over the elements theta covers of g x
"""

from __future__ import annotations

from ..registry import NO_RESET

# No state, nothing to reset: the family contract's resets (snnref/families.py).
RESETS = (NO_RESET,)


def forward(row, x, params, state, spike, inject, detached):
    # No state couples the steps, so every step is computed at once.
    u = x - params["threshold"]
    return {"out": spike(u)}, {}, {}, {"u": u}


def backward(row, x, params, state, spike, inject, tape, cot):
    g_x = cot["out"] * spike.grad(tape["u"])
    # (5), summed to theta's shape by vjp; the size of the sum is its |terms|.
    return {"x": g_x, "threshold": -g_x, "magnitudes": {"threshold": abs(g_x)}}
