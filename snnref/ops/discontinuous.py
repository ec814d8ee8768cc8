"""Torch path of rnnbuilder's Discontinuous neuron: stateless, elementwise

    s = H(x - theta);   dx = dL/ds f(x - theta);   dtheta = -sum dL/ds f(x - theta)

One autograd Function; it saves only references to its inputs (x, theta).
"""

from __future__ import annotations

import torch

from .surrogates import Step


class _Fire(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, scale, step):
        ctx.save_for_backward(x, theta, scale)
        ctx.step = step
        return step.with_scale(scale)(x - theta)

    @staticmethod
    def backward(ctx, g_spikes):
        x, theta, scale = ctx.saved_tensors
        g_x = g_spikes * ctx.step.with_scale(scale).grad(x - theta)
        # gradient_factor is spike_linear's fixed scale: no gradient.
        return g_x, (-g_x).sum_to_size(theta.shape), None, None


def run(row, x, params, state, surrogate, inject, smooth, detached):
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    return {"out": _Fire.apply(x, params["threshold"], params["gradient_factor"], step)}, {}, {}
