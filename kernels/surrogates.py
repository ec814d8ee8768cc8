"""The surrogate device functions (``common.device_function``, each a
``@triton.jit``) for every registry surrogate, chosen by a compile-time id.

``derivatives(u, a, KIND)`` returns ``(f, dF)`` in float32: the bump used in
the backward and the gradient of a trainable scale (0 where the scale is
fixed).  ``primitive(u, a, KIND)`` returns F, the smooth twin's forward step.
They are apart so that each scan computes only what it uses: the interpreter
(CI, ``snnref verify``) runs every operation written, arctan's primitive
alone about 35 a step, where a GPU's compiler drops what is unused.

``KIND`` is the registry row's fixed ``kernel_id`` (``kind_id``); an id
without a branch returns NaN, so a surrogate added to the registry without a
branch here fails the kernel tests instead of computing something else.  At
u = +-inf (a membrane that overflowed) each form gives its limit: arctan's and
sigmoid's dF multiply u by a factor that is 0 there, and u is taken as 0.
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
def _fast_ratio(u, a):
    # u / (1 + a|u|) as sign(u) / (1/|u| + a): finite for every u (|u| is
    # floored at 1e-30 only to keep 1/0 out; the ratio is then below 1e-30 anyway).
    q = 1.0 / (1.0 / tl.maximum(tl.abs(u), 1e-30) + a)
    return tl.where(u > 0, q, tl.where(u < 0, -q, 0.0))


@device_function
def derivatives(u, a, KIND: tl.constexpr):
    """(f, dF): the bump F'(u) the backward uses, and dF/da (0 where the scale is fixed)."""
    if KIND == 0:  # arctan
        w = PI * a * u
        d = 1.0 + w * w
        f = a / d
        dF = _finite_or_zero(u) / d
    elif KIND == 1:  # sigmoid
        # e = exp(-|au|) <= 1 never overflows; sigma(au) (1 - sigma(au)) as
        # e / (1 + e)^2 does not cancel to 0 where sigma(au) rounds to 1.
        e = tl.exp(-tl.abs(a * u))
        bump = e / ((1.0 + e) * (1.0 + e))
        f = a * bump
        dF = _finite_or_zero(u) * bump
    elif KIND == 2:  # fast_sigmoid
        d = 1.0 + a * tl.abs(u)
        f = 1.0 / (d * d)
        # -u|u| / (1 + a|u|)^2 from the bounded ratio: -1/a^2 at u = +inf.
        ratio = _fast_ratio(u, a)
        dF = -ratio * tl.abs(ratio)
    elif KIND == 3:  # superspike: fast_sigmoid's bump with a fixed scale
        d = 1.0 + a * tl.abs(u)
        f = 1.0 / (d * d)
        dF = tl.zeros_like(u)
    elif KIND == 4:  # spike_linear
        f = a * tl.maximum(1.0 - tl.abs(u), 0.0)
        dF = tl.zeros_like(u)
    else:
        f = u * float("nan")
        dF = f
    return f, dF


@device_function
def primitive(u, a, KIND: tl.constexpr):
    """F(u): the smooth twin's forward step."""
    if KIND == 0:  # arctan
        # Named, not written into the call: the interpreter's direct call
        # (common.device_function) took PI * a * u there as a foreign tensor.
        w = PI * a * u
        F = _atan(w) / PI + 0.5
    elif KIND == 1:  # sigmoid
        e = tl.exp(-tl.abs(a * u))
        F = tl.where(a * u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    elif KIND == 2 or KIND == 3:  # fast_sigmoid, superspike
        F = 0.5 + _fast_ratio(u, a)
    elif KIND == 4:  # spike_linear
        c = tl.minimum(tl.maximum(u, -1.0), 1.0)
        F = a * (c - c * tl.abs(c) / 2)
    else:
        F = u * float("nan")
    return F
