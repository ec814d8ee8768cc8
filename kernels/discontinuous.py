"""Triton kernels of rnnbuilder's Discontinuous neuron: a spike function without memory.

Stateless and elementwise (storage float32, float16 or bfloat16, arithmetic in
float32); the output keeps the input's shape:

    s = H(x - theta) strict (smooth twin: F(x - theta))
    dx = dL/ds f(x - theta);  dtheta = -sum dL/ds f(x - theta)

One forward pass and one backward pass over the input, each program owning a
block of neurons for every time step, as the scans of the other families do:
that keeps theta's gradient a per-neuron float32 partial sum, reduced by torch
in a fixed order (no atomics).  theta and gradient_factor are fixed in
rnnbuilder; a theta that requires grad gets its gradient all the same, as on
the torch path.  Nothing is saved for the backward beyond a reference to x
(0 bytes per neuron-step): u is recomputed from it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _launch
from ._jit import load_param, spike
from .surrogates import derivatives, kind_id


@triton.jit
def _forward(x_ptr, theta_ptr, scale_ptr, spikes_ptr, T, M, N,
             THETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
             SMOOTH: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (1)-(3) of ``snnref/spec/discontinuous.py``, elementwise."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    # Element offsets in int64: T * M may pass 2^31.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        s = spike(x - theta, a, KIND, True, SMOOTH)
        tl.store(spikes_ptr + at, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        at += M


@triton.jit
def _backward(x_ptr, theta_ptr, scale_ptr, g_spikes_ptr, g_x_ptr, g_theta_ptr, T, M, N,
              THETA_PER_NEURON: tl.constexpr, SCALE_PER_NEURON: tl.constexpr,
              KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Eqs. (4)-(5) of ``snnref/spec/discontinuous.py`` (theta per lane; ``_launch`` reduces)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    theta = load_param(theta_ptr, offs, mask, N, THETA_PER_NEURON)
    a = load_param(scale_ptr, offs, mask, N, SCALE_PER_NEURON)
    g_theta = tl.full([BLOCK], 0.0, tl.float32)
    # No state couples the steps, so they are visited in storage order.
    at = offs.to(tl.int64)
    for t in range(T):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # Only the bump is needed: the step's value does not enter the backward.
        f = derivatives(x - theta, a, KIND)[0]
        g_x = tl.load(g_spikes_ptr + at, mask=mask, other=0.0).to(tl.float32) * f
        tl.store(g_x_ptr + at, g_x.to(g_x_ptr.dtype.element_ty), mask=mask)
        g_theta -= g_x
        at += M
    tl.store(g_theta_ptr + offs, g_theta, mask=mask)


# gradient_factor (scale) is spike_linear's fixed scale: the backward sums no gradient for it.
SCAN = _launch.Scan(forward=_forward, backward=_backward, tensors=("x",), params=("theta", "scale"),
                    outputs=(_launch.Output("spikes"),))


def run(row, x, params, state, surrogate_key, inject, smooth, detached):
    from snnref import registry

    scale = params[registry.surrogate(surrogate_key).scale]
    scan = SCAN(dict(smooth=smooth, kind=kind_id(surrogate_key)), x=x, theta=params["threshold"], scale=scale)
    return {"out": scan["spikes"]}, {}, {}


COMPILE_VARIANTS = _launch.CompileVariants(
    float32_pointers=frozenset({"g_theta"}),
    variants=(
        _launch.variant(torch.float32, THETA_PER_NEURON=True, SCALE_PER_NEURON=False, SMOOTH=False, KIND=4),
        _launch.variant(torch.float16, THETA_PER_NEURON=False, SCALE_PER_NEURON=True, SMOOTH=True, KIND=0),
        _launch.variant(torch.bfloat16, THETA_PER_NEURON=True, SCALE_PER_NEURON=True, SMOOTH=False, KIND=2),
    ),
)
