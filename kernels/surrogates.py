"""One surrogate device function (``common.device_function``, a ``@triton.jit``)
for every registry surrogate, chosen by a compile-time id.

``surrogate(u, a, KIND)`` returns ``(f, F, dF)`` in float32: the bump used in the
backward, its primitive (the smooth twin's forward step) and the gradient of a
trainable scale (0 where the scale is fixed).  ``KIND`` is the registry row's
fixed ``kernel_id`` (``kind_id``); an id without a branch
returns NaN, so a surrogate added to the registry without a branch here fails
the kernel tests instead of computing something else.  At u = +-inf (a
membrane that overflowed) dF multiplies u by a factor that is 0 there: u is
taken as 0, which gives the limit 0, not NaN.
"""

from __future__ import annotations

import triton.language as tl

from snnref import registry

from .common import device_function

# A tl.constexpr: the GPU compiler refuses plain module globals in kernels.
PI = tl.constexpr(3.141592653589793)


def kind_id(key: str) -> int:
    """The compile-time id of registry surrogate ``key``."""
    return registry.surrogate(key).kernel_id


@device_function
def _atan(x):
    # atan(x) = sign(x) pi/2 - atan(1/|x|) beyond 1, then one half-angle step
    # atan(y) = 2 atan(y / (1 + sqrt(1 + y^2))) brings |y| below tan(pi/8) = 0.414,
    # where the odd Taylor series to y^15 is exact to float32 rounding.
    ax = tl.abs(x)
    big = ax > 1.0
    y = tl.where(big, 1.0 / tl.maximum(ax, 1e-30), ax)
    y = y / (1.0 + tl.sqrt(1.0 + y * y))
    y2 = y * y
    series = y * (1.0 + y2 * (-1.0 / 3 + y2 * (1.0 / 5 + y2 * (-1.0 / 7 + y2 * (
        1.0 / 9 + y2 * (-1.0 / 11 + y2 * (1.0 / 13 + y2 * (-1.0 / 15))))))))
    reduced = 2.0 * series
    result = tl.where(big, PI / 2 - reduced, reduced)
    return tl.where(x < 0, -result, result)


@device_function
def _finite_or_zero(u):
    return tl.where(tl.abs(u) == float("inf"), 0.0, u)


@device_function
def _fast(u, a):
    d = 1.0 + a * tl.abs(u)
    # u / (1 + a|u|) as sign(u) / (1/|u| + a): finite for every u (|u| is
    # floored at 1e-30 only to keep 1/0 out; q is then below 1e-30 anyway).
    q = 1.0 / (1.0 / tl.maximum(tl.abs(u), 1e-30) + a)
    sign = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
    return 1.0 / (d * d), 0.5 + sign * q, -sign * q * q


@device_function
def surrogate(u, a, KIND: tl.constexpr):
    if KIND == 0:  # arctan
        w = PI * a * u
        d = 1.0 + w * w
        f = a / d
        F = _atan(w) / PI + 0.5
        dF = _finite_or_zero(u) / d
    elif KIND == 1:  # sigmoid
        # e = exp(-|au|) <= 1 never overflows; sigma(au) (1 - sigma(au)) as
        # e / (1 + e)^2 does not cancel to 0 where sigma(au) rounds to 1.
        e = tl.exp(-tl.abs(a * u))
        bump = e / ((1.0 + e) * (1.0 + e))
        f = a * bump
        F = tl.where(a * u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        dF = _finite_or_zero(u) * bump
    elif KIND == 2:  # fast_sigmoid
        f, F, dF = _fast(u, a)
    elif KIND == 3:  # superspike: fast_sigmoid's bump with a fixed scale
        f, F, dF = _fast(u, a)
        dF = tl.zeros_like(u)
    elif KIND == 4:  # spike_linear
        f = a * tl.maximum(1.0 - tl.abs(u), 0.0)
        c = tl.minimum(tl.maximum(u, -1.0), 1.0)
        F = a * (c - c * tl.abs(c) / 2)
        dF = tl.zeros_like(u)
    else:
        f = u * float("nan")
        F = f
        dF = f
    return f, F, dF
