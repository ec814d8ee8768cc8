"""Surrogate gradients and forward steps for the fused CPU scans (SPEC.md section 1).

For a distance to threshold u and scale a (alpha, or gamma for spike_linear):

    (1) arctan        f = a / d,            F = atan(w)/pi + 1/2,     dF/da = u / d,   w = pi a u, d = 1 + w^2
    (2) sigmoid       f = a e / (1 + e)^2,  F = sigma(a u),           dF/da = u e / (1 + e)^2,   e = exp(-|a u|)
    (3) fast_sigmoid  f = 1 / (1 + a|u|)^2, F = 1/2 + sgn(u) q,  dF/da = -sgn(u) q^2,
                      q = 1 / (1/|u| + a)  (= |u| / (1 + a|u|), finite for every u)
    (4) superspike    f and F as fast_sigmoid; the scale has no gradient
    (5) spike_linear  f = a max(0, 1 - |u|), F = a (c - c|c|/2), c = clamp(u, -1, 1); no scale gradient

and the forward step H(u) = [u > 0] (strict models) or [u >= 0], or F(u) for
the smooth twin.  Every form stays finite for finite u: e = exp(-|a u|) never
overflows, and a denominator that overflows to inf gives 0, never inf * 0.
At u = +-inf (a float32 membrane that overflowed) dF/da multiplies u by a
factor that is 0 there: u is taken as 0, which gives its limit 0, not NaN.
``KINDS`` maps the registry's keys to each row's fixed ``kernel_id``, the
numbers the branches below test; an unknown number gives NaN.

Compiled with ``error_model="numpy"``: IEEE division (1/0 = inf, 0/0 = NaN)
instead of Python's ZeroDivisionError, which the forms above rely on.
``c`` is the kernel's constants array (``_launch.constants``): c[0] = 1 and
c[1] = pi in the compute dtype, so float32 arithmetic stays float32.
"""

from __future__ import annotations

import math

from ._cache_lock import njit
from ._parameters import lane_value

from snnref import registry

KINDS = {key: row.kernel_id for key, row in registry.SURROGATES.items()}
SIGMOID = KINDS["sigmoid"]
# The kinds with dF/dscale: the scans return a scale gradient for these only.
TRAINABLE_SCALE = frozenset(row.kernel_id for row in registry.SURROGATES.values() if row.trainable_scale)
# No kind: the CUBA leaky integrator has no spikes.
NONE = -1


def kind(key) -> int:
    return NONE if key is None else KINDS[key]


@njit(cache=True, error_model="numpy")
def kind_flags(kind):
    """The flags ``algebraic_derivatives`` branches on, for one kind: a scan
    computes them once, before its lane loops.  Branches on a loop-invariant
    integer become one switch, which LLVM's vectorizer refuses; branches on
    separate flags it if-converts, so a loop that holds two copies of a step
    (``lif``'s pair of steps) still vectorizes."""
    return (kind == 0, kind == 2 or kind == 3, kind == 2, kind == 4, kind == SIGMOID)


@njit(cache=True, error_model="numpy", inline="always")
def algebraic_derivatives(u, a, kinds, c):
    """(f(u), dF/da(u)) of eqs. (1) and (3)-(5), the kinds without a
    transcendental function, for ``kinds = kind_flags(kind)``: a loop that
    calls only these vectorizes.  For sigmoid, (0, 0): a scan adds the terms
    ``derivative_row`` computed for it in a separate pass.  Inlined into the
    caller's IR (``inline="always"``), so that every copy in a loop body is
    if-converted there rather than left a call."""
    arctan, fast, fast_trainable, linear, sigmoid = kinds
    one = c[0]
    zero = one - one
    if arctan:
        w = c[1] * a * u
        d = one + w * w
        f, dF = a / d, (zero if math.isinf(u) else u) / d
    elif fast:
        d = one + a * abs(u)
        f, dF = one / (d * d), zero
        if fast_trainable:
            q = one / (one / abs(u) + a)
            dF = -(one if u >= 0 else -one) * q * q
    elif linear:
        f, dF = a * max(zero, one - abs(u)), zero
    elif sigmoid:
        f, dF = zero, zero
    else:
        f, dF = zero / zero, zero / zero
    return f, dF


@njit(cache=True, error_model="numpy")
def derivatives(u, a, kind, c):
    """(f(u), dF/da(u)) of eqs. (1)-(5); dF/da is 0 where the scale is fixed."""
    if kind == SIGMOID:
        one = c[0]
        e = math.exp(-abs(a * u))
        d = one + e
        bump = e / (d * d)
        return a * bump, (one - one if math.isinf(u) else u) * bump
    return algebraic_derivatives(u, a, kind_flags(kind), c)


@njit(cache=True, error_model="numpy")
def derivative_row(u, a, f, dF_da, kind, c):
    """f and dF/da of eqs. (1)-(5) for a row of distances u with scales a, into
    the rows f and dF_da.  A scan computes a row of distances first and calls
    this, so that its own loops stay branch-free.  Sigmoid gets its own loop:
    its exp is a scalar call, and in a shared loop it kept the algebraic kinds
    scalar too."""
    if kind == SIGMOID:
        for i in range(u.shape[0]):
            f[i], dF_da[i] = derivatives(u[i], lane_value(a, i), kind, c)
        return
    kinds = kind_flags(kind)
    for i in range(u.shape[0]):
        f[i], dF_da[i] = algebraic_derivatives(u[i], lane_value(a, i), kinds, c)


@njit(cache=True, error_model="numpy")
def primitive(u, a, kind, c):
    """F(u) of eqs. (1)-(5): the smooth twin's forward step."""
    one = c[0]
    half = one / (one + one)
    if kind == 0:
        return math.atan(c[1] * a * u) / c[1] + half
    if kind == 1:
        e = math.exp(-abs(a * u))
        return one / (one + e) if u >= 0 else e / (one + e)
    if kind == 2 or kind == 3:
        return half + (one if u >= 0 else -one) / (one / abs(u) + a)
    if kind == 4:
        clamped = min(one, max(-one, u))
        return a * (clamped - clamped * abs(clamped) * half)
    return (one - one) / (one - one)


@njit(cache=True, error_model="numpy")
def step(u, a, kind, strict, smooth, c):
    """The forward step: H(u) ([u > 0] if strict else [u >= 0]), or F(u) when smooth."""
    one = c[0]
    if smooth:
        return primitive(u, a, kind, c)
    if strict:
        return one if u > 0 else one - one
    return one if u >= 0 else one - one
