"""Argument rules shared by ``snnref.spec.simulate`` and ``snnref.simulate``.

Names, shapes and domains come from the registry row; every message names the
argument and what was expected.  Nothing here depends on NumPy or torch: the
value checks take any array with ``.all()`` and ``.tolist()``.
"""

from __future__ import annotations

from typing import Mapping

from . import registry


def mapping(name, value, what):
    """``value`` as a dict (None is empty); anything else is a TypeError naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict of {what}, got {type(value).__name__}")
    return value


def check_x_shape(row, shape):
    shape = tuple(shape)
    if row.input_rank is not None and len(shape) != row.input_rank:
        raise ValueError(f"x: {row.key} expects rank {row.input_rank} (T, B, N, D), got shape {shape}")
    if len(shape) < 2:
        raise ValueError(f"x: expected a time-major array of shape (T, ..., N), got shape {shape}")
    if 0 in shape:
        raise ValueError(f"x: expected at least one time step and one neuron, got shape {shape}")


def nonfinite_error(name):
    return ValueError(f"{name}: expected finite values, found NaN or inf "
                      "(pass allow_nonfinite=True to compute with them anyway)")


def check_param_names(row, params):
    valid = [p.name for p in row.params]
    for name in params:
        if name not in valid:
            raise ValueError(f"params: {row.key} has no parameter {name!r}; expected among: {', '.join(valid)}")


def check_state_names(row, state):
    for name in state:
        if name not in row.state_names:
            raise ValueError(
                f"state: {row.key} has no state variable {name!r}; expected among: "
                f"{', '.join(row.state_names) or '(none: the model is stateless)'}"
            )


def check_inject_names(row, inject):
    if inject and not row.inject:
        raise ValueError(f"inject: {row.key} takes no hardware observations (only the hxtorch models do)")
    for name in inject:
        if name not in row.inject:
            raise ValueError(f"inject: {row.key} accepts {', '.join(map(repr, row.inject))}, got {name!r}")


def expected_shape(param, n):
    if param.shape == registry.MATRIX:
        return f"({n}, {n})"
    if param.shape == registry.VECTOR:
        return f"({n},)"
    return f"a scalar, (1,) or ({n},) (per neuron)"


def default_shape(param, n):
    return {registry.PER_NEURON: (n,), registry.SHAPE_ONE: (1,)}.get(param.shape, ())


def require_default(row, param, n):
    if param.default is None:
        raise ValueError(f"params[{param.name!r}]: required by {row.key}, expected {expected_shape(param, n)}")


def check_param_shape(param, shape, n):
    shape = tuple(shape)
    if param.shape == registry.MATRIX:
        fits = shape == (n, n)
    elif param.shape == registry.VECTOR:
        fits = shape == (n,)
    else:
        fits = shape in ((), (1,), (n,))
    if not fits:
        raise ValueError(f"params[{param.name!r}]: expected {expected_shape(param, n)} for N={n}, got shape {shape}")


def check_domain(param, values):
    label = f"params[{param.name!r}]"
    if param.domain == registry.POSITIVE and not bool((values > 0).all()):
        raise ValueError(f"{label}: expected values > 0, got {values.tolist()}")
    if param.domain == registry.NONNEGATIVE and not bool((values >= 0).all()):
        raise ValueError(f"{label}: expected values >= 0, got {values.tolist()}")


def check_inject_shape(name, shape, x_shape):
    shape, x_shape = tuple(shape), tuple(x_shape)
    if len(shape) != len(x_shape) or shape[1:] != x_shape[1:] or shape[0] < 1:
        raise ValueError(f"inject[{name!r}]: expected shape (T_hw, {', '.join(map(str, x_shape[1:]))}) "
                         f"with T_hw >= 1, got {shape}")


def check_surrogate(row, surrogate):
    """The surrogate key a run uses: the model's default when None."""
    if surrogate is None:
        surrogate = row.default_surrogate
    if surrogate is None:
        return None
    if hasattr(surrogate, "F") and hasattr(surrogate, "scale"):
        # A declared custom surrogate (snnref.spec.surrogates.Custom): any spiking model takes one.
        if not row.surrogates:
            raise ValueError(f"surrogate: {row.key} does not spike, so it takes no surrogate")
        return surrogate
    registry.surrogate(surrogate)
    if surrogate not in row.surrogates:
        accepted = ", ".join(row.surrogates) or "none (the model does not spike)"
        raise ValueError(f"surrogate: {row.key} does not accept {surrogate!r}; it accepts: {accepted}")
    return surrogate


def broadcast_error(name, shape, given):
    return ValueError(f"{name}: expected a shape that broadcasts to {tuple(shape)}, got {tuple(given)}")


def detached_shape_error(key, shape, given):
    return ValueError(f"detached[{key!r}]: expected shape {tuple(shape)} (one value per step and neuron), "
                      f"got {tuple(given)}")
