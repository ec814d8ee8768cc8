"""``simulate`` and ``vjp``: the public entry points of the executable spec.

This module owns everything that is the same for every model: looking up the
registry row, checking and casting the arguments by the rules of
``snnref.arguments`` (so that a bad input is reported by name before any
computation), filling defaults, reducing gradients
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

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .. import arguments, families, registry
from ..trace import ArraysByName, Trace
from . import surrogates as _surrogates


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
    return families.module(row.family, "spec")


def _check_finite(name, array):
    if not np.all(np.isfinite(array)):
        raise arguments.nonfinite_error(name)


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
    if not row.out.spiking:
        raise ValueError(f"force_spikes: {row.key} has no spike output to force")
    if smooth:
        raise ValueError("force_spikes: teacher forcing replaces H, which the smooth twin does not use")
    array = arguments.real_array("force_spikes", forced)
    if array.shape != x.shape:
        raise ValueError(f"force_spikes: expected the spike train's shape {x.shape}, got {array.shape}")
    # Spikes to force: allow_nonfinite (for the run's own values) does not make a NaN one.
    if not np.all(np.isfinite(array)):
        raise arguments.nonfinite_error("force_spikes", opt_in=False)
    return np.array(array, dtype=x.dtype).reshape(-1)


def _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes=None,
             names=arguments.SIMULATE):
    row = registry.model(model)
    families.check_reset(row)
    arguments.check_flags(smooth=smooth, allow_nonfinite=allow_nonfinite)
    arrays = arguments.NumpyArrays(dtype)
    surrogate = arguments.check_surrogate(row, surrogate)
    x = arguments.check_x(row, x, arrays, allow_nonfinite, names)
    n = x.shape[-1]
    params = arguments.check_params(row, params, n, arrays, allow_nonfinite, names)
    full_state, state_shapes = arguments.check_state(row, state, params, x.shape[1:], arrays, allow_nonfinite,
                                                     names)
    inject, steps = arguments.check_inject(row, inject, x.shape, arrays, allow_nonfinite, names)
    # Model-specific input limits (e.g. exp(x) must not overflow).
    check_input = getattr(_family(row), "check_input", None)
    if check_input is not None:
        check_input(row, x, params)
    spike = None
    if surrogate is not None:
        # None when the model names one scale per stage (AttentionOptions.scale_params).
        custom = isinstance(surrogate, _surrogates.Custom)
        if custom:
            # Over the scales the model's cases draw, as a contract proves it (once per surrogate).
            _surrogates.proven(surrogate, row.param(surrogate.scale).sample, f"surrogate {surrogate.key!r}")
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
    the model's own decisions (``Trace.distance`` still records each ``u``).  Its
    values are used as given, 0 and 1 or not: the gate forces an
    implementation's spike counts (a multi-spike neuron's 2) to show whether
    only its spikes differ.
    ``allow_nonfinite``: compute with NaN or inf in x, the parameters, the
    states and the observations instead of refusing them by name.
    """
    run = _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes)
    frozen = arguments.check_detached(detached, run.x.shape, arguments.NumpyArrays(run.x.dtype), allow_nonfinite,
                                      smooth, registry.detached_keys(run.row, run.inject), run.row.key)
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


def _check_cotangents(cotangents, outputs, final, dtype, allow_nonfinite):
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
            value = arguments.real_array(label, cotangents[key])
            if not allow_nonfinite:
                _check_finite(label, value)
                # Checked as the run holds it too: 1e40 is inf in float32, and the gradients were NaN silently.
                with np.errstate(over="ignore"):
                    held = np.array(value, dtype=dtype)
                if not np.all(np.isfinite(held)):
                    arguments.check_narrowed(label, value, held)
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
    a truncated T), every differentiable parameter by name, trainable or not
    (``registry.Model.differentiable``; in the shape it was given)
    and ``"state.<var>"`` for every initial state variable.  With ``smooth=True``
    this is the exact gradient of the smooth twin with its stop-gradient values
    held fixed.  ``force_spikes``: the gradient along a teacher-forced trajectory.
    ``magnitudes``: a dict to fill with ``name -> (A, n)`` for every differentiable
    parameter's gradient, a sum over time and lanes (``snnref.spec.sums``): ``A``
    the largest, over the gradient's elements, sum of its contributions' absolute
    values and ``n`` the number of contributions to one element (steps times the
    lanes summed into it, plus the roundings inside one contribution where the
    family reports them in ``sum_terms``), SPEC.md section 7's third budget term.  Also under
    ``"x"`` and ``"state.<var>"`` for a family whose reverse loop reports those
    gradients as long sums (``magnitudes`` and ``sum_terms`` of its result:
    tether.SpikingSelfAttention, whose ``x`` and initial-state gradients sum
    over features and later time steps); ``n`` is then the family's count of
    the roundings a contribution meets.  ``params``, ``state``, ``surrogate``,
    ``smooth``, ``inject``, ``dtype`` and ``allow_nonfinite`` are ``simulate``'s
    (the cotangents are held to ``allow_nonfinite`` too).
    """
    if magnitudes is not None:
        arguments.check_type("magnitudes", magnitudes, dict, "a dict to fill (or None)")
    run = _prepare(model, x, params, state, surrogate, smooth, inject, dtype, allow_nonfinite, force_spikes)
    family = _family(run.row)
    outputs, final, _, tape = family.forward(run.row, run.x, run.params, run.state, run.spike, run.inject, None)
    cot = _check_cotangents(cotangents, outputs, final, run.x.dtype, allow_nonfinite)
    raw = family.backward(run.row, run.x, run.params, run.state, run.spike, run.inject, tape, cot)
    sizes = raw.pop("magnitudes", {})
    terms = raw.pop("sum_terms", {})
    full_x = np.zeros(np.shape(x), dtype=run.x.dtype)
    full_x[: run.x.shape[0]] = raw["x"]
    grads = {"x": full_x}
    if magnitudes is not None and "x" in terms:
        magnitudes["x"] = _adjoint_sum_size(sizes["x"], terms["x"], run.x.shape)
    for name in run.row.differentiable:
        grads[name] = reduce_to(raw[name], run.params[name].shape)
        if magnitudes is not None and name in sizes:
            magnitudes[name] = _sum_size(sizes[name], run.params[name].shape, run.x.shape, terms.get(name, 0))
    for var in run.row.state_names:
        grads[f"state.{var}"] = reduce_to(raw[f"state.{var}"], run.state_shapes[var])
        if magnitudes is not None and f"state.{var}" in terms:
            magnitudes[f"state.{var}"] = _adjoint_sum_size(
                sizes[f"state.{var}"], terms[f"state.{var}"], run.state_shapes[var])
    return ArraysByName(grads, f"gradients of this {run.row.key} vjp")
