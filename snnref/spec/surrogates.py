"""Surrogate gradients: derivative ``f``, primitive ``F`` and ``dF/dscale``.

A surrogate replaces the derivative of the forward step ``H(u)`` (``u`` is the
distance to threshold) by a smooth bump ``f(u; a)``.  Its primitive ``F`` with
``F' = f`` defines the *smooth twin* of a model (``H`` replaced by ``F``), and
``dF/da`` is what a trainable scale ``a`` receives per spike.

(1) arctan        f = a / (1 + (pi a u)^2)        F = atan(pi a u)/pi + 1/2
                  dF/da = u / (1 + (pi a u)^2)
(2) sigmoid       f = a s(au) (1 - s(au))         F = s(au),  s = logistic
                  dF/da = u s(au) (1 - s(au))
(3) fast_sigmoid  f = 1 / (1 + a|u|)^2            F = 1/2 + u / (1 + a|u|)
                  dF/da = -u|u| / (1 + a|u|)^2
(4) superspike    f, F as fast_sigmoid; the scale is not trainable (no dF/da)
(5) spike_linear  f = g max(0, 1 - |u|)           F = g (u - u|u|/2) on |u| <= 1,
                  F = +-g/2 beyond; the scale g (gradient_factor) is fixed

Every function is evaluated without overflow for any finite ``u``: where the
textbook form would square or multiply a huge number, the code switches to
the equivalent form in ``r = 1/|u|`` (or clips an argument whose exponential
already underflows to zero).  Both branches are computed on substituted safe
values so that the branch not taken cannot raise a warning either.  At
``u = +-inf`` (a float32 membrane that overflowed) each gives its limit: f = 0,
F = 0 or 1 (+-g/2), dF/da = 0 (arctan, sigmoid) or -+1/a^2 (fast_sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

# exp(-EXP_CUTOFF) underflows to exactly 0 in float32 and float64 alike, so
# clipping an exponent's argument there changes no result.
EXP_CUTOFF = 800.0


def _split(u, limit, fill=1):
    """Masks and safe substitutes for the |u| <= limit and |u| > limit branches: ``fill`` stands
    for u in the large branch's formula where the small branch is taken."""
    small = np.abs(u) <= limit
    u_small = np.where(small, u, 0)
    u_large = np.where(small, fill, u)
    return small, u_small, u_large


def _arctan_split(u, a):
    """``_split`` at arctan's limit 1/(pi a), the large branch's r = (1/pi)/(a u) computed at
    u = limit (r = 1) where unused: at u = 1, r r overflowed for a below about 2.4e-155."""
    limit = _limit(1 / np.pi, a)
    return _split(u, limit, np.where(np.isfinite(limit), limit, 1))


def _limit(numerator, scale):
    # A subnormal scale would overflow the quotient; inf is then the right
    # limit (every finite u is in the small branch), so ignore that overflow.
    with np.errstate(over="ignore"):
        return numerator / scale


def arctan_f(u, a):
    small, us, ul = _arctan_split(u, a)
    w = np.pi * a * us
    r = (1 / np.pi) / a / ul
    return np.where(small, a / (1 + w * w), a * (r * r) / (1 + r * r))


def arctan_F(u, a):
    small, us, ul = _arctan_split(u, a)
    w = np.pi * a * us
    r = (1 / np.pi) / a / ul
    # atan(w) = sign(w) pi/2 - atan(1/w) for |w| > 1.
    large = 0.5 + 0.5 * np.sign(ul) - np.arctan(r) / np.pi
    return np.where(small, np.arctan(w) / np.pi + 0.5, large)


def arctan_dF(u, a):
    small, us, ul = _arctan_split(u, a)
    w = np.pi * a * us
    r = (1 / np.pi) / a / ul
    # u / (1 + w^2) with u = r^-1 / (pi a): (1 / (pi a)) r / (1 + r^2).
    return np.where(small, us / (1 + w * w), ((1 / np.pi) / a) * r / (1 + r * r))


def _exp_neg_abs(u, a):
    """exp(-a|u|) with the product a|u| clipped where the result is already 0."""
    return np.exp(-np.minimum(np.abs(u), _limit(EXP_CUTOFF, a)) * a)


def sigmoid_f(u, a):
    e = _exp_neg_abs(u, a)
    return a * e / ((1 + e) * (1 + e))


def sigmoid_F(u, a):
    e = _exp_neg_abs(u, a)
    # Both forms divide by 1 + e <= 2, so neither can overflow.
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_dF(u, a):
    e = _exp_neg_abs(u, a)
    # e is 0 at u = +-inf, where u e would be inf * 0 = NaN; the limit is 0.
    return np.where(np.isinf(u), 0, u) * e / ((1 + e) * (1 + e))


def fast_sigmoid_f(u, a):
    small, us, ul = _split(u, _limit(1.0, a))
    d = 1 + a * np.abs(us)
    r = 1 / np.abs(ul)
    q = r / (r + a)
    return np.where(small, 1 / (d * d), q * q)


def fast_sigmoid_F(u, a):
    small, us, ul = _split(u, _limit(1.0, a))
    d = 1 + a * np.abs(us)
    # u / (1 + a|u|) = sign(u) / (1/|u| + a).
    large = 0.5 + np.sign(ul) / (1 / np.abs(ul) + a)
    return np.where(small, 0.5 + us / d, large)


def fast_sigmoid_dF(u, a):
    small, us, ul = _split(u, _limit(1.0, a))
    d = 1 + a * np.abs(us)
    q = 1 / (1 / np.abs(ul) + a)
    return np.where(small, -us * np.abs(us) / (d * d), -np.sign(ul) * q * q)


def spike_linear_f(u, g):
    return g * np.maximum(0, 1 - np.abs(u))


def spike_linear_F(u, g):
    inside = np.clip(u, -1, 1)
    return g * (inside - inside * np.abs(inside) / 2)


@dataclass(frozen=True)
class SurrogateMath:
    """The three functions of one surrogate; ``dF`` is None when the scale is fixed."""

    f: Callable
    F: Callable
    dF: Optional[Callable]


IMPLEMENTATIONS = {
    "arctan": SurrogateMath(arctan_f, arctan_F, arctan_dF),
    "sigmoid": SurrogateMath(sigmoid_f, sigmoid_F, sigmoid_dF),
    "fast_sigmoid": SurrogateMath(fast_sigmoid_f, fast_sigmoid_F, fast_sigmoid_dF),
    "superspike": SurrogateMath(fast_sigmoid_f, fast_sigmoid_F, None),
    "spike_linear": SurrogateMath(spike_linear_f, spike_linear_F, None),
}


@dataclass(frozen=True)
class Custom:
    """A surrogate that is not in the registry: a library's own, declared by its
    three functions ``f(u, a)``, ``F(u, a)`` and ``dF(u, a)`` (None: the scale is
    fixed) on NumPy arrays.  ``scale`` names the model parameter that holds
    ``a``.  ``f = dF/du`` (and ``dF = dF/da``) is proven (``prove``) before the spec
    first uses it, once per surrogate and scale range (``proven``)."""

    key: str
    f: Callable
    F: Callable
    dF: Optional[Callable] = None
    scale: str = "alpha"


def get(key) -> SurrogateMath:
    """The math of surrogate ``key`` (or of a ``Custom`` one); an unknown key lists the valid ones."""
    if isinstance(key, Custom):
        return SurrogateMath(key.f, key.F, key.dF)
    try:
        return IMPLEMENTATIONS[key]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(IMPLEMENTATIONS))
        raise ValueError(f"surrogate: unknown name {key!r}; expected one of: {valid}") from None


class SurrogateError(ValueError):
    """A custom surrogate whose functions disagree: the message names the function."""


# A custom surrogate's proof (``prove``): the bound on F's rise against f's integral per unit of u,
# relative to max(1, max|f|), over this grid of u (the quadrature is exact to about 1e-13).
PROOF_BOUND = 1e-6
PROOF_GRID = np.concatenate([np.linspace(-4.0, 4.0, 161), [-30.0, -1e-3, 1e-3, 30.0]])


def _grid(scale):
    """The points where ``f = dF/du`` is proven at ``scale``: ``PROOF_GRID`` and, for a
    scale above 1, the same grid divided by it.  A surrogate whose width is 1 / scale (arctan
    and the sigmoids at hxtorch's 50) is narrower than the fixed grid's steps of 0.05, where an
    f 1.5 times too large on 0.01 < |u| < 0.04 passed."""
    points = np.unique(PROOF_GRID if scale <= 1 else np.concatenate([PROOF_GRID, PROOF_GRID / scale]))
    # Two points of the grids a rounding apart would make an interval whose F rises by a rounding.
    return points[np.concatenate([[True], np.diff(points) > 1e-6])]


def _integrals(function, lower, upper):
    """The integral of the scalar ``function`` over each [lower[k], upper[k]], by adaptive
    Gauss-Kronrod quadrature (scipy's quad): exact to about 1e-13 where the integrand has a
    kink, a triangle surrogate's, where a difference quotient of its primitive missed by
    4e-5 of the peak and a correct surrogate was refused."""
    from scipy.integrate import quad

    return np.array([quad(function, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0] for a, b in zip(lower, upper)])


def _at(function, *arguments):
    """One value of a surrogate's array function at scalar arguments (the first as an array of one)."""
    return float(np.asarray(function(np.array([arguments[0]]), *arguments[1:]), dtype=np.float64)[0])


def _values(surrogate, name, u, scale, label):
    """The surrogate's function ``name`` on the grid ``u``: finite, of u's shape."""
    values = np.asarray(getattr(surrogate, name)(u, scale), dtype=np.float64)
    if values.shape != u.shape or not np.all(np.isfinite(values)):
        raise SurrogateError(f"{label}.{name}: expected finite values of u's shape")
    return values


def prove(surrogate: Custom, scale_range, label) -> None:
    """``f = dF/du`` and ``dF = dF/da`` at three scales in ``scale_range``: the rise of F
    between neighbouring points of ``_grid`` against the integral of f over them, and the
    change of F over a small interval of scales against the integral of dF, each per unit of
    the interval and relative to max(1, max |f|) (max |dF|); raises SurrogateError (a ValueError) whose
    message starts with ``label``."""
    for scale in np.linspace(scale_range[0], scale_range[1], 3):
        u = _grid(scale)
        try:
            f, primitive = _values(surrogate, "f", u, scale, label), _values(surrogate, "F", u, scale, label)
            integrals = _integrals(lambda point: _at(surrogate.f, point, scale), u[:-1], u[1:])
        except SurrogateError:
            raise
        except Exception as error:
            raise SurrogateError(f"{label}: f or F fails on arrays ({error})") from None
        error = float(np.max(np.abs(np.diff(primitive) - integrals) / np.diff(u))) / max(1.0, float(np.max(np.abs(f))))
        if not error < PROOF_BOUND:
            raise SurrogateError(f"{label}: f is not dF/du (F's rise and f's integral "
                                 f"differ by {error:.1e} per unit of u, relative to max(1, max|f|), at scale "
                                 f"{scale:g}; bound {PROOF_BOUND:g})")
        if surrogate.dF is not None:
            step = 1e-3 * scale
            try:
                dF = _values(surrogate, "dF", u, scale, label)
                rise = (_values(surrogate, "F", u, scale + step, label)
                        - _values(surrogate, "F", u, scale - step, label))
                integrals = np.array([_integrals(lambda a: _at(surrogate.dF, point, a), [scale - step],
                                                 [scale + step])[0] for point in u])
            except SurrogateError:
                raise
            except Exception as error:
                raise SurrogateError(f"{label}: dF or F fails on arrays ({error})") from None
            error = float(np.max(np.abs(rise - integrals))) / (2 * step) / max(1.0, float(np.max(np.abs(dF))))
            if not error < PROOF_BOUND:
                raise SurrogateError(f"{label}: dF is not dF/dscale (F's change over the "
                                     f"scales around {scale:g} and dF's integral differ by {error:.1e}, relative "
                                     f"to max(1, max|dF|))")


# (surrogate, low, high) of every proof passed in this process.
_PROVEN = set()


def proven(surrogate: Custom, scale_range, label) -> None:
    """``prove``, once per surrogate and scale range: the spec asks before every run with a
    custom surrogate (called directly, an inconsistent f gave a wrong smooth-twin gradient
    without a word; only a contract proved it)."""
    key = (surrogate, float(scale_range[0]), float(scale_range[1]))
    if key not in _PROVEN:
        prove(surrogate, scale_range, label)
        _PROVEN.add(key)
