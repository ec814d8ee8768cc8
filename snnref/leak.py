"""The membrane's leak factor, computed by torch for every production path.

The torch ops, the Triton kernels and the fused CPU scans all receive the
leak lam as a tensor computed here, so autograd carries its gradient to the
parameter the caller holds (SPEC.md sections 2-4, dt = 1):

    (1) lam = decay                 tether LIF, PLIF (``Leak.DECAY``)
    (2) lam = exp(-1 / tau)         rnnbuilder LIF, NoReset (``Leak.TAU``)
    (3) no leak (lam = 1)           qualia IFSRL, ATIF (``Leak.NONE``)

and hxtorch's Euler factors a = dt / tau_mem, b = dt / tau_syn and the
refractory count k = refractory_time / dt (section 5) as ``quotient``s.

The reference (``snnref/spec``) derives lam on its own, in float64 NumPy.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch

from .registry import Leak


def decay_of(tau: torch.Tensor) -> torch.Tensor:
    """Eq. (2): the per-step decay of a time constant ``tau`` in steps.

    Below a tau whose lam underflows to 0, its derivative lam / tau^2 is 0 too,
    but autograd's chain forms 1 / tau^2, which overflows (tau = 1e-20 in
    float32), and inf * 0 is NaN.  Such a tau is raised to ``vanishing``, minus the
    reciprocal of twice the logarithm of the dtype's smallest subnormal: lam is
    0 there as well, 1 / vanishing^2 is finite (4.3e4 in float32), and its
    derivative is exactly 0.  Above it nothing changes, bit for bit.
    """
    info = torch.finfo(tau.dtype)
    vanishing = -0.5 / math.log(info.tiny * info.eps)
    return torch.exp(-1 / tau.clamp(min=vanishing))


def leak_factor(row, params: Mapping[str, torch.Tensor], dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
    """lam of eqs. (1)-(3) for a LIF-family row, or None for no leak; computed
    in ``dtype`` (default: the parameter's own)."""
    kind = row.options.leak
    if kind is Leak.NONE:
        return None
    source = params["decay"] if kind is Leak.DECAY else params["tau"]
    if dtype is not None:
        source = source.to(dtype)
    return source if kind is Leak.DECAY else decay_of(source)


class _Quotient(torch.autograd.Function):
    """q = n / d, its gradients g / d and -(g q) / d: torch's own backward of a
    division forms -g ((n / d) / d), and (n / d) / d overflows before g multiplies
    it (dt / tau_mem^2 at tau_mem = 1e-38 in float32): inf where the gradient is
    finite, and 0 * inf = NaN where it is 0."""

    @staticmethod
    def forward(numerator, denominator):
        return numerator / denominator

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1], output)

    @staticmethod
    def backward(ctx, grad):
        denominator, quotient = ctx.saved_tensors
        return grad / denominator, -(grad * quotient) / denominator


def quotient(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, with a backward that divides by the denominator
    once at a time (``_Quotient``); its ops are differentiable again."""
    if not (torch.is_grad_enabled() and (numerator.requires_grad or denominator.requires_grad)):
        # No gradient to take: the same value without a Function's cost (about 25 us a call).
        return numerator / denominator
    return _Quotient.apply(numerator, denominator)
