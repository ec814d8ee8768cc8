"""The Discontinuous family: rnnbuilder.Discontinuous, a spike function without memory.

Stateless and elementwise; the output has the shape of the input.  The
threshold ``theta`` (parameter ``threshold``) and ``gradient_factor`` are fixed.
Per element of x:

(1) u = x - theta
(2) s = H(u)                       H strict (u > 0); smooth twin: F(u)
(3) out = s

There are no state variables: no recorded sequence and an empty final state.

Reverse (adjoints written ``g``):

(4) g x = cot_out f(u)
"""

from __future__ import annotations


def forward(row, x, params, state, spike, inject, detached):
    # No state couples the steps, so every step is computed at once.
    u = x - params["threshold"]
    return {"out": spike(u)}, {}, {}, {"u": u}


def backward(row, x, params, state, spike, inject, tape, cot):
    return {"x": cot["out"] * spike.grad(tape["u"])}
