"""Surrogate gradients for the torch path, written from SPEC.md section 1.

Each key maps to ``f(u, a)`` (the bump used in backward), ``F(u, a)`` (its
primitive: the smooth twin's forward step) and ``dF(u, a)`` (the gradient of a
trainable scale; None where the scale is fixed).  IEEE infinities stand in for
the limits: every form below stays finite for finite ``u`` (a quotient whose
denominator overflows to inf is 0, never inf * 0), and gives its limit at
``u = +-inf`` (a membrane that overflowed), as the spec's forms do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch


def _arctan_f(u, a):
    w = math.pi * a * u
    return a / (1 + w * w)


def _arctan_F(u, a):
    return torch.atan(math.pi * a * u) / math.pi + 0.5


def _finite_or_zero(u):
    """u, with 0 at u = +-inf: dF/da multiplies u by a factor that is 0 there
    (inf * 0 and inf / inf are NaN), and its limit is 0."""
    return torch.where(u.isinf(), 0.0, u)


def _arctan_dF(u, a):
    w = math.pi * a * u
    return _finite_or_zero(u) / (1 + w * w)


def _sigmoid_bump(u, a):
    """sigma(au) (1 - sigma(au)) as e / (1 + e)^2 with e = exp(-|au|) <= 1: no
    overflow, and no 1 - sigma that rounds to 0 where sigma rounds to 1 (in
    float32 from au = 17 on, where the bump is still 4e-8)."""
    e = torch.exp(-(a * u).abs())
    return e / ((1 + e) * (1 + e))


def _sigmoid_f(u, a):
    return a * _sigmoid_bump(u, a)


def _sigmoid_F(u, a):
    return torch.sigmoid(a * u)


def _sigmoid_dF(u, a):
    return _finite_or_zero(u) * _sigmoid_bump(u, a)


def _fast_f(u, a):
    d = 1 + a * u.abs()
    return 1 / (d * d)


def _fast_F(u, a):
    # u / (1 + a|u|) written as sign(u) / (1/|u| + a): finite for every u.
    return 0.5 + torch.sign(u) / (1 / u.abs() + a)


def _fast_dF(u, a):
    q = 1 / (1 / u.abs() + a)
    return -torch.sign(u) * q * q


def _linear_f(u, g):
    return g * torch.clamp(1 - u.abs(), min=0)


def _linear_F(u, g):
    c = torch.clamp(u, -1, 1)
    return g * (c - c * c.abs() / 2)


def _arctan_both(u, a):
    w = math.pi * a * u
    d = 1 + w * w
    return a / d, _finite_or_zero(u) / d


def _sigmoid_both(u, a):
    bump = _sigmoid_bump(u, a)
    return a * bump, _finite_or_zero(u) * bump


def _fast_both(u, a):
    return _fast_f(u, a), _fast_dF(u, a)


@dataclass(frozen=True)
class Surrogate:
    f: Callable
    F: Callable
    dF: Optional[Callable]
    # f and dF together, sharing their common subexpression (the backward's hot path).
    both: Optional[Callable] = None


SURROGATES = {
    "arctan": Surrogate(_arctan_f, _arctan_F, _arctan_dF, _arctan_both),
    "sigmoid": Surrogate(_sigmoid_f, _sigmoid_F, _sigmoid_dF, _sigmoid_both),
    "fast_sigmoid": Surrogate(_fast_f, _fast_F, _fast_dF, _fast_both),
    "superspike": Surrogate(_fast_f, _fast_F, None),
    "spike_linear": Surrogate(_linear_f, _linear_F, None),
}


class Step:
    """The forward step of one run (H, or F for the smooth twin) and its derivatives."""

    def __init__(self, key: str, scale, strict: bool, smooth: bool):
        self.math = SURROGATES[key]
        self.key = key
        self.scale = scale
        self.strict = strict
        self.smooth = smooth

    def __call__(self, u):
        if self.smooth:
            return self.math.F(u, self.scale)
        return (u > 0 if self.strict else u >= 0).to(u.dtype)

    def with_scale(self, scale):
        return Step(self.key, scale, self.strict, self.smooth)

    def grad(self, u):
        return self.math.f(u, self.scale)

    def scale_grad(self, u):
        return self.math.dF(u, self.scale)

    def grads(self, u):
        """(f(u), dF/dscale(u)) in one evaluation; the scale must be trainable."""
        return self.math.both(u, self.scale)

    @property
    def scale_trainable(self) -> bool:
        return self.math.dF is not None
