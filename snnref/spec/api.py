"""``simulate`` and ``vjp``: the public entry points of the executable spec.

This module owns everything that is the same for every model: looking up the
registry row, checking and casting the arguments (so that a bad input is
reported by name before any computation), filling defaults, reducing gradients
back to the shape the caller gave, and the spike function ``H`` / ``F``.  The
model families (``spec/<family>.py``) receive clean arrays and implement the
update equations and their hand-written reverse loops.

Stop-gradient quantities (a detached reset spike, the offset that injects a
hardware observation) are returned in ``Trace.detached``.  Passing them back
through ``simulate(..., detached=...)`` holds them fixed, which turns the smooth
twin into an ordinary differentiable function of ``x``, the parameters and the
initial state: the function whose exact derivative ``vjp(..., smooth=True)``
computes, so finite differences can check it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .. import arguments, registry
from . import surrogates as _surrogates

_DTYPES = (np.float32, np.float64)


@dataclass(frozen=True)
class Trace:
    """What one run produced.

    ``outputs["out"]`` is the model's main output and ``outputs[var]`` the per-step
    sequence of each state variable, time-major.  ``final_state[var]`` is the state
    after the last step.  ``detached`` holds the values of the stop-gradient
    quantities, for replay through ``simulate(..., detached=...)``.  ``distance``
    is the distance to threshold ``u`` of every spike decision, laid out like the
    spikes (None for a model without one decision per neuron-step): it tells
    how close to threshold each decision was.
    """

    model: str
    surrogate: Optional[str]
    outputs: Dict[str, np.ndarray]
    final_state: Dict[str, np.ndarray]
    detached: Dict[str, np.ndarray]
    distance: Optional[np.ndarray] = None


class SpikeFunction:
    """The forward step of one model run and its derivatives.

    Forward: ``H(u)`` (``u >= 0`` or ``u > 0`` as the model defines it), or the
    surrogate's primitive ``F(u)`` for the smooth twin.  ``grad(u)`` is the
    surrogate derivative ``f(u)`` used in both modes; ``scale_grad(u)`` is
    ``dF/dscale``, the gradient of a trainable scale.

    Every decision's ``u`` is recorded in call order.  With ``forced`` (a spike
    train, flattened in call order) the step returns those spikes instead of
    deciding: teacher forcing.
    """

    def __init__(self, math, scale, strict: bool, smooth: bool, forced=None):
        self.math = math
        self.scale = scale
        self.strict = strict
        self.smooth = smooth
        self.forced = forced
        self.consumed = 0
        self.distances = []

    def __call__(self, u):
        self.distances.append(np.array(u, copy=True))
        if self.forced is not None:
            taken = self.forced[self.consumed:self.consumed + u.size]
            self.consumed += u.size
            return taken.reshape(u.shape).astype(u.dtype)
        if self.smooth:
            return self.math.F(u, self.scale)
        fired = u > 0 if self.strict else u >= 0
        return fired.astype(u.dtype)

    def distance(self, shape):
        """The recorded decisions laid out as ``shape``, or None if they do not fit it."""
        flat = [d.reshape(-1) for d in self.distances]
        total = sum(d.size for d in flat)
        return np.concatenate(flat).reshape(shape) if flat and total == int(np.prod(shape)) else None

    def with_scale(self, scale):
        """The same step with another scale (models with one surrogate per stage)."""
        return SpikeFunction(self.math, scale, self.strict, self.smooth, self.forced)

    def grad(self, u):
        return self.math.f(u, self.scale)

    def scale_grad(self, u):
        return self.math.dF(u, self.scale)


def _family(row):
    return importlib.import_module(f"{__package__}.{row.family}")


def _check_dtype(dtype):
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.type not in _DTYPES:
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dtype!r}")
    return resolved.type


def _real_array(name, value):
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


def _check_finite(name, array, allow_nonfinite):
    if not allow_nonfinite and not np.all(np.isfinite(array)):
        raise arguments.nonfinite_error(name)


def _check_x(row, x, dtype, allow_nonfinite):
    x = _real_array("x", x)
    arguments.check_x_shape(row, x.shape)
    _check_finite("x", x, allow_nonfinite)
    return np.array(x, dtype=dtype)


def _check_params(row, params, n, dtype, allow_nonfinite):
    params = arguments.mapping("params", params, "parameter name -> value")
    arguments.check_param_names(row, params)
    checked = {}
    for param in row.params:
        label = f"params[{param.name!r}]"
        if param.name in params:
            array = _real_array(label, params[param.name])
        else:
            arguments.require_default(row, param, n)
            array = np.full(arguments.default_shape(param, n), param.default)
        arguments.check_param_shape(param, array.shape, n)
        _check_finite(label, array, allow_nonfinite)
        arguments.check_domain(param, array)
        checked[param.name] = np.array(array, dtype=dtype)
    return checked


def _check_state(row, state, params, shape, dtype, allow_nonfinite):
    state = arguments.mapping("state", state, "state variable -> array")
    arguments.check_state_names(row, state)
    full, given_shapes = {}, {}
    for var in row.state:
        label = f"state[{var.name!r}]"
        if var.name in state:
            value = _real_array(label, state[var.name])
            _check_finite(label, value, allow_nonfinite)
            given_shapes[var.name] = value.shape
        elif isinstance(var.initial, str):
            value = params[var.initial]
            given_shapes[var.name] = shape
        else:
            value = np.asarray(var.initial)
            given_shapes[var.name] = shape
        try:
            full[var.name] = np.array(np.broadcast_to(value, shape), dtype=dtype)
        except ValueError:
            raise arguments.broadcast_error(label, shape, value.shape) from None
    return full, given_shapes


def _check_inject(row, inject, x, dtype, allow_nonfinite):
    if inject is None:
        return {}, x.shape[0]
    inject = arguments.mapping("inject", inject, "observation name -> array")
    arguments.check_inject_names(row, inject)
    checked = {}
    for name, value in inject.items():
        if value is None:
            continue
        label = f"inject[{name!r}]"
        array = _real_array(label, value)
        arguments.check_inject_shape(name, array.shape, x.shape)
        _check_finite(label, array, allow_nonfinite)
        if name == "spikes" and not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{label}: expected observed spikes of exactly 0 or 1, "
                             f"got {array[(array != 0) & (array != 1)].reshape(-1)[0]!r}")
        checked[name] = array
    steps = min([x.shape[0]] + [a.shape[0] for a in checked.values()])
    return {k: np.array(a[:steps], dtype=dtype) for k, a in checked.items()}, steps


def _check_detached(detached, x):
    if detached is None:
        return None
    detached = arguments.mapping("detached", detached, "stop-gradient values (the dict Trace.detached)")
    checked = {}
    for key, value in detached.items():
        array = _real_array(f"detached[{key!r}]", value)
        # Every stop-gradient value is recorded per step and per neuron.
        if array.shape != x.shape:
            raise arguments.detached_shape_error(key, x.shape, array.shape)
        checked[key] = np.array(array, dtype=x.dtype)
    return checked


@dataclass
class _Run:
    row: registry.Model
    surrogate: Optional[str]
    x: np.ndarray
    params: Dict[str, np.ndarray]
    state: Dict[str, np.ndarray]
    state_shapes: Dict[str, tuple]
    inject: Dict[str, np.ndarray]
    spike: Optional[SpikeFunction]
    smooth: bool


def _check_forced(row, forced, x, smooth):
    if forced is None:
        return None
    if row.out not in ("spikes", "spikes*threshold"):
        raise ValueError(f"force_spikes: {row.key} has no spike output to force")
    if smooth:
        raise ValueError("force_spikes: teacher forcing replaces H, which the smooth twin does not use")
    array = _real_array("force_spikes", forced)
    if array.shape != x.shape:
        raise ValueError(f"force_spikes: expected the spike train's shape {x.shape}, got {array.shape}")
    _check_finite("force_spikes", array, False)
    return np.array(array, dtype=x.dtype).reshape(-1)


def _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes=None):
    row = registry.model(model)
    dtype = _check_dtype(dtype)
    surrogate = arguments.check_surrogate(row, surrogate)
    x = _check_x(row, x, dtype, allow_nonfinite)
    n = x.shape[-1]
    params = _check_params(row, params, n, dtype, allow_nonfinite)
    full_state, state_shapes = _check_state(row, state, params, x.shape[1:], dtype, allow_nonfinite)
    inject, steps = _check_inject(row, inject, x, dtype, allow_nonfinite)
    # Model-specific input limits (e.g. exp(x) must not overflow).
    check_input = getattr(_family(row), "check_input", None)
    if check_input is not None:
        check_input(row, x, params)
    spike = None
    if surrogate is not None:
        # None when the model names one scale per stage (options["scale_params"]).
        custom = isinstance(surrogate, _surrogates.Custom)
        scale = params.get(surrogate.scale if custom else registry.surrogate(surrogate).scale)
        forced = _check_forced(row, force_spikes, x[:steps], smooth)
        spike = SpikeFunction(_surrogates.get(surrogate), scale, row.spike_test == ">", bool(smooth), forced)
    elif force_spikes is not None:
        raise ValueError(f"force_spikes: {row.key} has no spike output to force")
    return _Run(row, surrogate, x[:steps], params, full_state, state_shapes, inject, spike, bool(smooth))


def simulate(
    model,
    x,
    params=None,
    state=None,
    *,
    surrogate=None,
    smooth=False,
    inject=None,
    dtype=np.float64,
    detached=None,
    force_spikes=None,
    allow_nonfinite=False,
) -> Trace:
    """Run ``model`` (a registry key) on the time-major input ``x`` of shape (T, ..., N).

    ``params``: name -> scalar or per-neuron array (defaults from the registry).
    ``state``: name -> initial value broadcastable to x.shape[1:].
    ``surrogate``: a registry surrogate key the model accepts (default: its own).
    ``smooth``: replace the forward step by the surrogate's primitive.
    ``inject``: hardware observations for the hxtorch models, ``{"spikes", "v"}``,
    each (T_hw, ...); time is truncated to the shortest trace.
    ``dtype``: numpy.float64 (the reference) or numpy.float32.
    ``detached``: a previous run's ``Trace.detached``, to hold the stop-gradient
    values fixed (finite differences of the smooth twin).
    ``force_spikes``: teacher forcing: a spike train of x's shape used in place of
    the model's own decisions (``Trace.distance`` still records each ``u``).
    """
    run = _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes)
    frozen = _check_detached(detached, run.x)
    try:
        outputs, final, used, _ = _family(run.row).forward(
            run.row, run.x, run.params, run.state, run.spike, run.inject, frozen
        )
    except KeyError as missing:
        if frozen is None:
            raise
        raise ValueError(f"detached: expected the Trace.detached of a run of the same model, "
                         f"surrogate and injection; it lacks {missing}") from None
    distance = None if run.spike is None else run.spike.distance(run.x.shape)
    return Trace(run.row.key, run.surrogate, outputs, final, used, distance)


def reduce_to(gradient, shape):
    """Sum a broadcast gradient back to the shape its argument was given in."""
    gradient = np.asarray(gradient)
    extra = gradient.ndim - len(shape)
    if extra > 0:
        gradient = gradient.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and gradient.shape[i] != 1)
    if axes:
        gradient = gradient.sum(axis=axes, keepdims=True)
    return np.broadcast_to(gradient, shape).copy()


def _check_cotangents(cotangents, outputs, final, dtype):
    cotangents = arguments.mapping("cotangents", cotangents, "quantity -> cotangent, keyed like Trace.outputs "
                                   "and 'final.<var>'")
    targets = dict(outputs)
    targets.update({f"final.{k}": v for k, v in final.items()})
    for key in cotangents:
        if key not in targets:
            raise ValueError(f"cotangents: unknown key {key!r}; expected among: {', '.join(targets)}")
    full = {}
    for key, target in targets.items():
        if key in cotangents and cotangents[key] is not None:
            label = f"cotangents[{key!r}]"
            value = _real_array(label, cotangents[key])
            _check_finite(label, value, False)
            try:
                full[key] = np.array(np.broadcast_to(value, target.shape), dtype=dtype)
            except ValueError:
                raise ValueError(f"{label}: expected shape {target.shape}, got {value.shape}") from None
        else:
            full[key] = np.zeros(target.shape, dtype=dtype)
    return full


def _sum_size(magnitude, shape, x_shape, depth=0):
    """(A, n) of one parameter's gradient: the reduced sum of |contributions| and
    how many contributions (time steps x lanes) meet in one of its elements, plus
    ``depth``, the roundings inside one contribution where the family reports them
    (an adjoint that is itself a long sum)."""
    total = reduce_to(magnitude, shape)
    steps, lanes = x_shape[0], int(np.prod(x_shape[1:]))
    elements = max(1, int(np.prod(shape))) if len(shape) < 2 else 1
    # A weight matrix (D, D) sums one contribution per step and row of x; a
    # scalar or per-neuron parameter one per step and lane it covers.
    per_step = lanes // x_shape[-1] if len(shape) >= 2 else max(1, lanes // elements)
    return float(np.max(total, initial=0.0)), int(steps * per_step + depth)


def _adjoint_sum_size(magnitude, terms, shape):
    """(A, n) of the gradient of ``x`` or of an initial state reported by a
    family: its magnitude summed back to the shape the caller gave (``reduce_to``,
    which adds the broadcast lanes: one more addition each) and the family's
    count of roundings ``terms``."""
    total = reduce_to(magnitude, shape)
    merged = int(np.prod(np.shape(magnitude))) // max(1, int(np.prod(shape)))
    return float(np.max(total, initial=0.0)), int(terms + merged - 1)


def vjp(
    model,
    x,
    params,
    state,
    cotangents,
    *,
    surrogate=None,
    smooth=False,
    inject=None,
    dtype=np.float64,
    force_spikes=None,
    allow_nonfinite=False,
    magnitudes=None,
) -> dict:
    """Surrogate-gradient BPTT: the hand-written reverse loop of ``model``.

    ``cotangents`` maps any subset of ``Trace.outputs`` keys and ``"final.<var>"``
    to arrays of the matching shape.  Returns ``"x"`` (shape of ``x``; zero beyond
    a truncated T), every trainable parameter by name (in the shape it was given)
    and ``"state.<var>"`` for every initial state variable.  With ``smooth=True``
    this is the exact gradient of the smooth twin with its stop-gradient values
    held fixed.  ``force_spikes``: the gradient along a teacher-forced trajectory.
    ``magnitudes``: a dict to fill with ``name -> (A, n)`` for every trainable
    parameter's gradient, a sum over time and lanes (``snnref.spec.sums``): ``A``
    the largest, over the gradient's elements, sum of its contributions' absolute
    values and ``n`` the number of contributions to one element (steps times the
    lanes summed into it, plus the roundings inside one contribution where the
    family reports them in ``sum_terms``), SPEC.md section 7's third budget term.  Also under
    ``"x"`` and ``"state.<var>"`` for a family whose reverse loop reports those
    gradients as long sums (``magnitudes`` and ``sum_terms`` of its result:
    tether.SpikingSelfAttention, whose ``x`` and initial-state gradients sum
    over features and later time steps); ``n`` is then the family's count of
    the roundings a contribution meets.
    """
    run = _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes)
    family = _family(run.row)
    outputs, final, _, tape = family.forward(run.row, run.x, run.params, run.state, run.spike, run.inject, None)
    cot = _check_cotangents(cotangents, outputs, final, run.x.dtype)
    raw = family.backward(run.row, run.x, run.params, run.state, run.spike, run.inject, tape, cot)
    sizes = raw.pop("magnitudes", {})
    terms = raw.pop("sum_terms", {})
    full_x = np.zeros(np.shape(x), dtype=run.x.dtype)
    full_x[: run.x.shape[0]] = raw["x"]
    grads = {"x": full_x}
    if magnitudes is not None and "x" in terms:
        magnitudes["x"] = _adjoint_sum_size(sizes["x"], terms["x"], run.x.shape)
    for name in run.row.trainable:
        grads[name] = reduce_to(raw[name], run.params[name].shape)
        if magnitudes is not None and name in sizes:
            magnitudes[name] = _sum_size(sizes[name], run.params[name].shape, run.x.shape, terms.get(name, 0))
    for var in run.row.state_names:
        grads[f"state.{var}"] = reduce_to(raw[f"state.{var}"], run.state_shapes[var])
        if magnitudes is not None and f"state.{var}" in terms:
            magnitudes[f"state.{var}"] = _adjoint_sum_size(
                sizes[f"state.{var}"], terms[f"state.{var}"], run.state_shapes[var])
    return grads
