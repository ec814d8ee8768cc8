"""The argument rules of every entry point, written once: what is valid, and the message when it is not.

``snnref.spec.simulate`` (NumPy), ``snnref.simulate`` (torch) and the seed
layers (``snnref.compat``) check their arguments here.  Names, shapes and
domains come from the registry row; every message names the argument and what
was expected.  This module imports NumPy and the registry only, so the
reference can use it; torch enters through an ``Arrays`` object that the
caller passes in.

An ``Arrays`` object describes one array library to the rules:

    convert(label, value)  the value as an array of the run's kind, or a
                           TypeError naming ``label`` (wrong type, dtype, device)
    full(shape, value)     a constant array
    finite(array)          whether every element is finite (a cheap reduction)
    broadcast(array, shape)  the array broadcast to ``shape``, None if it does not fit
    plain(array)           the values without an autograd graph
    cast(array)            the array in the run's dtype
    check_scale(label, array)  extra limits of a positive or non-negative
                           parameter in the run's storage (half precision)

``NumpyArrays`` is the reference's; ``snnref.backend.TorchArrays`` the torch
one.  The value rules below use only comparisons, ``.all()``, ``.min()``,
``.item()``, ``.shape``, ``.reshape`` and ``.tolist()``, which both libraries
share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from . import registry

# --------------------------------------------------------------------------- names and containers


@dataclass(frozen=True)
class Names:
    """How an entry point's messages name ``simulate``'s arguments.

    ``snnref.simulate`` names them as its own signature does (``x``,
    ``params['decay']``, ``state['v']``, ``inject['spikes']``).  A layer built on
    it passes its own (the seed layers: ``x_seq``, ``v_init``, ``input``, a
    module's attribute), so that an error names what its caller passed.
    ``params``, ``state`` and ``inject`` map a registry name to its label;
    a parameter not in ``params`` is labelled by ``param_format``, the others
    keep simulate's labels.  ``allow_nonfinite`` says whether the entry point
    takes that option, which a non-finite value's message then suggests.
    """

    x: str = "x"
    params: Mapping = field(default_factory=dict)
    param_format: str = "params[{!r}]"
    state: Mapping = field(default_factory=dict)
    inject: Mapping = field(default_factory=dict)
    allow_nonfinite: bool = True

    def of_param(self, name):
        return self.params.get(name, self.param_format.format(name))

    def of_state(self, name):
        return self.state.get(name, f"state[{name!r}]")

    def of_inject(self, name):
        return self.inject.get(name, f"inject[{name!r}]")


SIMULATE = Names()


def mapping(name, value, what):
    """``value`` as a dict (None is empty); anything else is a TypeError naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict of {what}, got {type(value).__name__}")
    return value


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


def check_count(name, value, least=1):
    """A count (neurons, features, heads, time steps): an integer >= ``least``, as an int."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < least:
        wanted = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"{name}: expected {wanted}, got {value!r}")
    return int(value)


def check_choice(name, value, valid):
    """``value`` must be one of the strings ``valid``."""
    if not isinstance(value, str) or value not in valid:
        listed = " or ".join(map(repr, valid))
        only = "the only valid value is" if len(valid) == 1 else "expected one of"
        raise ValueError(f"{name}: unknown value {value!r}; {only} {listed}")
    return value


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
        names = [param.name for param in row.params]
        if surrogate.scale not in names:
            raise ValueError(f"surrogate: the custom surrogate {surrogate.key!r} takes its scale from "
                             f"{surrogate.scale!r}, which {row.key} does not have; its parameters: {', '.join(names)}")
        return surrogate
    registry.surrogate(surrogate)
    if surrogate not in row.surrogates:
        accepted = ", ".join(row.surrogates) or "none (the model does not spike)"
        raise ValueError(f"surrogate: {row.key} does not accept {surrogate!r}; it accepts: {accepted}")
    return surrogate


# --------------------------------------------------------------------------- types and dtypes


def real_array(name, value):
    """``value`` as a NumPy array of a real (floating, integer or boolean) dtype."""
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected a real numeric array ({error})") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
        or array.dtype == np.bool_
    ):
        raise TypeError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return array


def is_boolean(value):
    """Whether ``value`` is True/False, a boolean array or a (nested) list holding one."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, (list, tuple)):
        return any(is_boolean(item) for item in value)
    return getattr(value, "dtype", None) == np.bool_


def check_flags(**flags):
    """Each keyword flag is True or False: a string such as "no" would be truthy."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {value!r}")


def numpy_dtype(dtype):
    """The reference's computing dtype: numpy.float32 or numpy.float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.type not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dtype!r}")
    return resolved.type


def check_type(name, value, expected_type, described, note=""):
    """``value`` must be an instance of ``expected_type`` (``described`` in the message, then ``note``)."""
    if not isinstance(value, expected_type):
        raise TypeError(f"{name}: expected {described}, got {type(value).__name__}{note}")


def check_dtype(name, dtype, accepted, whose=None):
    """``dtype`` must be among ``accepted``; ``whose`` names the rule's owner ("backend 'torch'")."""
    if dtype not in accepted:
        names = " or ".join(str(d) for d in accepted)
        rule = f"{whose} expects" if whose else "expected"
        raise TypeError(f"{name}: {rule} dtype {names}, got {dtype}")


def check_like(label, given, expected, reference):
    """An array's dtype and device (``given``, ``expected``: "dtype on device") must be ``reference``'s."""
    if given != expected:
        raise TypeError(f"{label}: expected {expected} like {reference}, got {given}")


def not_a_number_error(label, value, reason=None):
    because = f" ({reason})" if reason else ""
    return TypeError(f"{label}: expected a number or tensor, got {type(value).__name__}{because}")


# --------------------------------------------------------------------------- shapes


def check_x_shape(row, shape, label="x"):
    shape = tuple(shape)
    if row.input_rank is not None and len(shape) != row.input_rank:
        raise ValueError(f"{label}: {row.key} expects rank {row.input_rank} (T, B, N, D), got shape {shape}")
    if len(shape) < 2:
        raise ValueError(f"{label}: expected a time-major array of shape (T, ..., N), got shape {shape}")
    if 0 in shape:
        empty = shape.index(0)
        # Name the empty axis: an empty batch is not an empty time or neuron axis.
        last_is_neurons = row.input_rank is None and empty == len(shape) - 1
        axis = "time step" if empty == 0 else "neuron" if last_is_neurons else f"element along axis {empty}"
        raise ValueError(f"{label}: expected at least one {axis} (every axis non-empty), got shape {shape}")


def check_nonempty(name, shape, min_dim=0):
    """A tensor argument of the seed layers: at least one element, rank >= ``min_dim``."""
    shape = tuple(shape)
    if len(shape) < min_dim or 0 in shape:
        rank = f" of rank >= {min_dim}" if min_dim else ""
        raise ValueError(f"{name}: expected a non-empty tensor{rank}, got shape {shape}")


def check_shape_among(name, shape, shapes):
    if tuple(shape) not in shapes:
        raise ValueError(f"{name}: expected shape {' or '.join(map(str, shapes))}, got {tuple(shape)}")


def expected_shape(param, n):
    if param.shape == registry.MATRIX:
        return f"({n}, {n})"
    if param.shape == registry.VECTOR:
        return f"({n},)"
    return f"a scalar, (1,) or ({n},) (per neuron)"


def default_shape(param, n):
    return {registry.PER_NEURON: (n,), registry.SHAPE_ONE: (1,)}.get(param.shape, ())


def require_default(row, param, n, label):
    if param.default is None:
        raise ValueError(f"{label}: required by {row.key}, expected {expected_shape(param, n)}")


def check_param_shape(param, shape, n, label):
    shape = tuple(shape)
    if param.shape == registry.MATRIX:
        fits = shape == (n, n)
    elif param.shape == registry.VECTOR:
        fits = shape == (n,)
    else:
        fits = shape in ((), (1,), (n,))
    if not fits:
        # N is x's last axis: a per-channel (C, 1, 1) for a (T, B, C, H, W) input is no per-neuron shape.
        raise ValueError(f"{label}: expected {expected_shape(param, n)} for N={n} (x's last axis), got shape "
                         f"{shape}")


def check_inject_shape(label, shape, x_shape):
    shape, x_shape = tuple(shape), tuple(x_shape)
    if len(shape) != len(x_shape) or shape[1:] != x_shape[1:] or shape[0] < 1:
        raise ValueError(f"{label}: expected shape (T_hw, {', '.join(map(str, x_shape[1:]))}) "
                         f"with T_hw >= 1, got {shape}")


def broadcast_error(name, shape, given):
    return ValueError(f"{name}: expected a shape that broadcasts to {tuple(shape)}, got {tuple(given)}")


def detached_shape_error(key, shape, given):
    return ValueError(f"detached[{key!r}]: expected shape {tuple(shape)} (one value per step and neuron), "
                      f"got {tuple(given)}")


# --------------------------------------------------------------------------- values


def nonfinite_error(name, opt_in=True):
    """``opt_in``: the entry point takes ``allow_nonfinite`` (the seed layers do not)."""
    hint = " (pass allow_nonfinite=True to compute with them anyway)" if opt_in else ""
    return ValueError(f"{name}: expected finite values, found NaN or inf{hint}")


def no_gradient_error(label, row, param):
    return ValueError(f"{label}: requires_grad=True, but {row.key} has no gradient with respect to "
                      f"{param.name}: {param.fixed_because}; pass it without requires_grad")


# The NumPy type whose shortest repr reads back a value of a narrow float dtype
# (NumPy has no bfloat16: float32's digits read back each of its values too).
_NARROW = {"float32": np.float32, "float16": np.float16, "bfloat16": np.float32}


def written(values):
    """``values.tolist()`` for a message, a float32 or half value in the fewest
    digits its own dtype reads back: tau_syn=-1e-6 as -1e-06 (in float64's
    digits -9.999999974752427e-07, a value the caller never wrote)."""
    listed = values.tolist()
    narrow = _NARROW.get(str(values.dtype).removeprefix("torch."))
    if narrow is None:
        return listed

    def shortest(item):
        if isinstance(item, list):
            return [shortest(element) for element in item]
        return float(str(narrow(item)))

    return shortest(listed)


def check_narrowed(label, given, held):
    """Called where ``held`` (a value as the run holds it, in x's dtype) was refused: where
    the value ``given`` was finite and nonzero, and the run's dtype made it inf or 0,
    the message says so.  Without this, 1e39 in a float32 run read "found NaN or inf" with
    advice to pass allow_nonfinite, and a scale of 1e-300 "expected values > 0, got 0.0",
    numbers the caller never wrote.  A tensor given is held in its own dtype (one of
    another dtype is refused before), so only numbers and arrays are compared."""
    if hasattr(given, "detach"):
        return
    try:
        wide = np.asarray(given, dtype=np.float64)
    except (TypeError, ValueError):
        return
    # A torch tensor (the torch path's, on any device, in any float dtype) or a NumPy array.
    narrow = held.detach().double().cpu().numpy() if hasattr(held, "detach") else np.asarray(held, np.float64)
    if wide.shape != narrow.shape:
        return
    dtype = str(held.dtype).removeprefix("torch.")
    lost = narrowing(wide, narrow, dtype)
    if lost is not None:
        raise ValueError(f"{label}: {lost}, the dtype this run computes in; pass a value that {dtype} holds, or "
                         "run in float64")


def narrowing(given, held, dtype_name):
    """What storing the values ``given`` as ``held`` (both read as float64) in the dtype
    ``dtype_name`` lost, as "<value> overflows float32" or "<value> underflows to 0 in
    float32" for the first finite value made inf or nonzero value made 0; else None."""
    wide, narrow = np.asarray(given, dtype=np.float64), np.asarray(held, dtype=np.float64)
    finite = np.isfinite(wide)
    for lost, what in ((finite & ~np.isfinite(narrow), f"overflows {dtype_name}"),
                       (finite & (wide != 0) & (narrow == 0), f"underflows to 0 in {dtype_name}")):
        if lost.any():
            return f"{float(wide[lost].flat[0])!r} {what}"
    return None


def check_finite_values(name, values, finite):
    """A seed layer's parameter (which has no ``allow_nonfinite``): ``finite`` is the caller's reduction."""
    if not finite:
        raise ValueError(f"{name}: expected finite values, got {written(values)}")


def check_domain(param, values, label):
    """``values`` (gradient-free) inside ``param``'s registry domain."""
    count = math.prod(values.shape)
    if count == 0 or param.domain not in (registry.POSITIVE, registry.NONNEGATIVE):
        return
    # A single value is compared as a Python number: the array comparison and
    # its reduction took 4 us per parameter on every call of simulate.
    least = values.item() if count == 1 else values.min()
    if param.domain == registry.POSITIVE and not least > 0:
        raise ValueError(f"{label}: expected values > 0, got {written(values)}")
    if param.domain == registry.NONNEGATIVE and not least >= 0:
        raise ValueError(f"{label}: expected values >= 0, got {written(values)}")


def check_spikes(label, values, noun="observed spikes"):
    """Spikes (observed, or replayed) are exactly 0 or 1."""
    strays = values[(values != 0) & (values != 1)].reshape(-1)
    if len(strays):
        raise ValueError(f"{label}: expected {noun} of exactly 0 or 1, got {strays[0].item()!r}")


def below_normal_error(label, values, dtype, tiny):
    return ValueError(f"{label}: {written(values)} is below {dtype}'s normal range ({tiny:.3g}); "
                      "store the model in torch.float32 or torch.bfloat16")


# --------------------------------------------------------------------------- the entry points' arguments


def _converted(arrays, label, value, allow_nonfinite, names=SIMULATE):
    array = arrays.convert(label, value)
    if not allow_nonfinite and not arrays.finite(array):
        check_narrowed(label, value, array)
        raise nonfinite_error(label, names.allow_nonfinite)
    return array


def check_x(row, x, arrays, allow_nonfinite, names=SIMULATE):
    """``x``: time-major (T, ..., N), finite unless ``allow_nonfinite``; in the run's dtype."""
    given, x = x, arrays.convert(names.x, x)
    check_x_shape(row, x.shape, names.x)
    if not allow_nonfinite and not arrays.finite(x):
        check_narrowed(names.x, given, x)
        raise nonfinite_error(names.x, names.allow_nonfinite)
    return arrays.cast(x)


def check_params(row, params, n, arrays, allow_nonfinite, names=SIMULATE):
    """Every parameter of ``row`` by name (registry defaults filled in), for N = ``n`` neurons."""
    params = mapping("params", params, "parameter name -> value")
    check_param_names(row, params)
    checked = {}
    for param in row.params:
        label = names.of_param(param.name)
        if param.name in params:
            # No parameter is a flag: NumPy and torch read True as 1, so a flag
            # given in a parameter's place ran silently.
            if is_boolean(params[param.name]):
                raise TypeError(f"{label}: expected a number, got a boolean ({params[param.name]!r})")
            value = arrays.convert(label, params[param.name])
        else:
            require_default(row, param, n, label)
            value = arrays.full(default_shape(param, n), param.default)
        check_param_shape(param, value.shape, n, label)
        # A tensor asking for a gradient that does not exist is refused, not left at None.
        if not param.differentiable and getattr(value, "requires_grad", False):
            raise no_gradient_error(label, row, param)
        given = params.get(param.name)
        if not allow_nonfinite and not arrays.finite(value):
            check_narrowed(label, given, value)
            raise nonfinite_error(label, names.allow_nonfinite)
        try:
            check_domain(param, arrays.plain(value), label)
        except ValueError:
            check_narrowed(label, given, value)
            raise
        if param.domain != registry.REAL:
            arrays.check_scale(label, value)
        checked[param.name] = arrays.cast(value)
    return checked


def check_state(row, state, params, shape, arrays, allow_nonfinite, names=SIMULATE):
    """Every initial state variable broadcast to ``shape`` (x.shape[1:]), and the shape each was given in."""
    state = mapping("state", state, "state variable -> array")
    check_state_names(row, state)
    full, given_shapes = {}, {}
    for var in row.state:
        label = names.of_state(var.name)
        if var.name in state:
            # A flag in a state's place ran as 1.0, as a parameter's did.
            if is_boolean(state[var.name]):
                raise TypeError(f"{label}: expected a number or array, got a boolean ({state[var.name]!r})")
            value = _converted(arrays, label, state[var.name], allow_nonfinite, names)
            given_shapes[var.name] = tuple(value.shape)
        elif isinstance(var.initial, str):
            # hxtorch starts the membrane at a parameter: its gradient then
            # collects the initial-state path, as the seed's does.
            value = params[var.initial]
            given_shapes[var.name] = tuple(shape)
        else:
            value = arrays.full((), float(var.initial))
            given_shapes[var.name] = tuple(shape)
        broadcast = arrays.broadcast(value, tuple(shape))
        if broadcast is None:
            raise broadcast_error(label, shape, value.shape)
        full[var.name] = broadcast
    return full, given_shapes


def check_inject(row, inject, x_shape, arrays, allow_nonfinite, names=SIMULATE):
    """The hardware observations (gradient-free) cut to the common length, and that length of time."""
    if inject is None:
        return {}, x_shape[0]
    inject = mapping("inject", inject, "observation name -> array")
    check_inject_names(row, inject)
    checked = {}
    for name, value in inject.items():
        if value is None:
            continue
        label = names.of_inject(name)
        array = arrays.convert(label, value)
        check_inject_shape(label, array.shape, x_shape)
        if not allow_nonfinite and not arrays.finite(array):
            check_narrowed(label, value, array)
            raise nonfinite_error(label, names.allow_nonfinite)
        array = arrays.plain(array)
        if name == "spikes":
            check_spikes(label, array)
        checked[name] = array
    steps = min([x_shape[0]] + [a.shape[0] for a in checked.values()])
    return {k: arrays.cast(a[:steps]) for k, a in checked.items()}, steps


def check_detached(detached, x_shape, arrays, allow_nonfinite, smooth, recorded, model):
    """A previous run's stop-gradient values (``Trace.detached``), each of x's shape and
    each among ``recorded`` (what a run of ``model`` with these injections records: a
    typo, another model's values or another injection's would be ignored).  Outside the
    smooth twin a replayed reset spike is the model's own, 0 or 1: a smooth twin's
    fractional one would give a trace that is neither the model nor its twin."""
    if detached is None:
        return None
    detached = mapping("detached", detached, "stop-gradient values (the dict Trace.detached)")
    unknown = [key for key in detached if key not in recorded]
    if unknown:
        raise ValueError(f"detached: {', '.join(map(repr, unknown))}: no stop-gradient value of this run (a {model} "
                         f"run with these injections records: {', '.join(recorded) or 'none'})")
    checked = {}
    for key, value in detached.items():
        label = f"detached[{key!r}]"
        array = _converted(arrays, label, value, allow_nonfinite)
        # Every stop-gradient value is recorded per step and per neuron.
        if tuple(array.shape) != tuple(x_shape):
            raise detached_shape_error(key, x_shape, array.shape)
        if not smooth and key.endswith("spike"):
            check_spikes(label, arrays.plain(array), "the model's own spikes (the smooth twin's take smooth=True)")
        checked[key] = arrays.cast(arrays.plain(array))
    return checked


class NumpyArrays:
    """The reference's arrays: any real array-like in, ``dtype`` (float32 or float64) out."""

    def __init__(self, dtype):
        self.dtype = numpy_dtype(dtype)

    def convert(self, label, value):
        array = real_array(label, value)
        if np.issubdtype(array.dtype, np.floating) and array.dtype.itemsize > np.dtype(self.dtype).itemsize:
            # Checked as the run holds it, as the torch path checks its tensors: in
            # float32 a time constant of 1e-300 is 0 and an input of 1e300 is inf,
            # which the checks refuse, where the run gave NaN silently.
            with np.errstate(over="ignore", under="ignore"):
                return array.astype(self.dtype)
        return array

    def full(self, shape, value):
        return np.full(shape, value)

    def finite(self, array):
        return bool(np.all(np.isfinite(array)))

    def broadcast(self, array, shape):
        try:
            return np.array(np.broadcast_to(array, shape), dtype=self.dtype)
        except ValueError:
            return None

    def plain(self, array):
        return array

    def cast(self, array):
        return np.array(array, dtype=self.dtype)

    def check_scale(self, label, array):
        """float32 and float64 hold every scale a model uses."""
