"""Checks that prove the spec right, shared by the tests and ``snnref verify``.

NumPy only.  ``random_case`` draws a valid problem for any registry model from
its row (parameter ranges, state ranges, input drive); ``gradient_check``
compares ``vjp(..., smooth=True)`` with Richardson-extrapolated central
differences of the smooth twin's scalar loss ``<cotangents, outputs>`` in random
directions of ``x``, of every differentiable parameter (trainable or not) and of
every initial state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .. import registry, spec


@dataclass
class Case:
    model: str
    surrogate: Optional[str]
    x: np.ndarray
    params: Dict[str, np.ndarray]
    state: Dict[str, np.ndarray]
    cotangents: Dict[str, np.ndarray]
    inject: Optional[Dict[str, np.ndarray]] = None
    label: str = field(default="")
    # The call that draws this case again (``snnref.testing.strategies.case``), shown as its
    # repr: a failing example prints as a line to paste, not as arrays rounded to 8 digits.
    # Not an init field, so a case made from it by ``dataclasses.replace`` does not claim it.
    recipe: str = field(default="", init=False, compare=False)

    def __repr__(self):
        if self.recipe:
            return self.recipe
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in
                          ("model", "surrogate", "x", "params", "state", "cotangents", "inject", "label"))
        return f"Case({shown})"

    def _repr_pretty_(self, printer, cycle):
        # Hypothesis (and IPython) print a dataclass field by field unless it says how.
        printer.text(repr(self))


def _draw_param(param, rng, n, per_neuron):
    low, high = param.sample
    if param.shape == registry.MATRIX:
        return rng.uniform(low, high, (n, n))
    if param.shape == registry.VECTOR:
        return rng.uniform(low, high, (n,))
    if param.shape == registry.SHAPE_ONE:
        return rng.uniform(low, high, (1,))
    if per_neuron or param.shape == registry.PER_NEURON:
        return rng.uniform(low, high, (n,))
    return np.asarray(rng.uniform(low, high))


def random_inject(row, rng, steps, shape):
    """Hardware observations for every trace the model accepts."""
    traces = {}
    if "spikes" in row.inject:
        traces["spikes"] = (rng.random((steps,) + shape) < 0.3).astype(float)
    if "v" in row.inject:
        traces["v"] = rng.normal(0.5, 0.5, (steps,) + shape)
    return traces


def random_case(
    model,
    rng,
    *,
    steps=8,
    batch=2,
    neurons=3,
    surrogate=None,
    per_neuron=False,
    random_state=True,
    inject=False,
):
    """A random valid problem for ``model``, cotangents on every output and final state."""
    row = registry.model(model)
    surrogate = surrogate or row.default_surrogate
    shape = (batch, neurons) if row.input_rank is None else (batch, 2, neurons)
    mean, spread = row.input_sample
    x = rng.normal(mean, spread, (steps,) + shape)
    params = {p.name: _draw_param(p, rng, neurons, per_neuron) for p in row.params}
    state = {}
    if random_state:
        state = {var.name: rng.uniform(*var.sample, shape) for var in row.state}
    traces = random_inject(row, rng, steps, shape) if inject else None
    trace = spec.simulate(row.key, x, params, state, surrogate=surrogate, inject=traces)
    cotangents = {k: rng.normal(size=v.shape) for k, v in trace.outputs.items()}
    cotangents.update({f"final.{k}": rng.normal(size=v.shape) for k, v in trace.final_state.items()})
    return Case(row.key, surrogate, x, params, state, cotangents, traces)


def loss(trace, cotangents, absolute=False):
    """The scalar <cotangents, outputs> whose gradient ``vjp`` returns
    (``absolute``: the sum of |cotangent * output|, its size without cancellation)."""
    total = 0.0
    for key, cot in cotangents.items():
        value = trace.final_state[key[len("final."):]] if key.startswith("final.") else trace.outputs[key]
        product = cot * value
        total += float(np.sum(np.abs(product) if absolute else product))
    return total


def _richardson(phi, h):
    """d/dh phi at 0 from central differences at h, h/2, h/4, extrapolated twice."""
    d = [(phi(h / k) - phi(-h / k)) / (2 * h / k) for k in (1, 2, 4)]
    r1 = (4 * d[1] - d[0]) / 3
    r2 = (4 * d[2] - d[1]) / 3
    return (16 * r2 - r1) / 15


@dataclass
class GradientReport:
    model: str
    surrogate: Optional[str]
    errors: Dict[str, float]  # argument group -> worst relative error

    @property
    def worst(self):
        return worst_of(0.0, *self.errors.values())


def worst_of(*errors):
    """The largest error, NaN where any is NaN (``max`` keeps whichever comes first)."""
    return math.nan if any(math.isnan(error) for error in errors) else max(errors)


def _groups(row):
    """Each differentiable argument: (gradient key, argument kind, name, typical scale)."""
    groups = [("x", "x", None, 1.0)]
    for name in row.differentiable:
        low, high = row.param(name).sample
        groups.append((name, "params", name, max(abs(low), abs(high))))
    for var in row.state:
        groups.append((f"state.{var.name}", "state", var.name, 1.0))
    return groups


# Step sizes tried in turn, in units of the direction.  spike_linear's F and the
# fast sigmoid's are only once differentiable (F'' jumps at u = 0 and |u| = 1):
# a step that reaches such a kink biases Richardson extrapolation by O(h).  A
# wrong gradient is wrong by the same amount at every step size, while a kink
# is reached only by steps at least as long as the distance to it, so the best
# agreement over three steps two decades apart is the honest measure.
STEPS = (1e-3, 1e-4, 1e-5)
# The floor of the error's denominator, as a fraction of the loss's size.
FLOOR = 1e-4


def gradient_check(case: Case, *, directions=2, seed=0, steps=STEPS) -> GradientReport:
    """Relative error of ``vjp(smooth=True)`` against finite differences, per argument.

    The error of one direction ``d`` is ``|fd - <g, d>| / sum |g * d|``: the
    denominator is the size of the directional derivative without cancellation,
    so a wrong gradient cannot hide behind a small projection.
    """
    row = registry.model(case.model)
    rng = np.random.default_rng(seed)
    state = {var.name: np.broadcast_to(case.state.get(var.name, 0.0), case.x.shape[1:]).copy()
             for var in row.state}
    for var in row.state:
        if var.name not in case.state and isinstance(var.initial, str):
            state[var.name] = np.broadcast_to(case.params[var.initial], case.x.shape[1:]).copy()
    base = spec.simulate(case.model, case.x, case.params, state, surrogate=case.surrogate,
                         smooth=True, inject=case.inject)
    grads = spec.vjp(case.model, case.x, case.params, state, case.cotangents,
                     surrogate=case.surrogate, smooth=True, inject=case.inject)
    args = {"x": case.x, "params": case.params, "state": state}
    # A gradient that nearly cancels (a scalar parameter summed over time and
    # neurons) has no meaningful relative error: measure it against a small
    # fraction of the loss's size without cancellation instead.  A direction of
    # typical scale moves the loss by about that size, and finite differences
    # are accurate to about 1e-10 of it.
    floor = FLOOR * max(1.0, loss(base, case.cotangents, absolute=True))
    errors = {}
    for label, kind, name, scale in _groups(row):
        value = args[kind] if name is None else args[kind][name]
        gradient = grads[label]
        worst = 0.0
        for _ in range(directions):
            direction = rng.normal(size=np.shape(value)) * scale

            def phi(h):
                moved = {k: dict(v) if isinstance(v, dict) else v for k, v in args.items()}
                if name is None:
                    moved[kind] = value + h * direction
                else:
                    moved[kind][name] = value + h * direction
                trace = spec.simulate(case.model, moved["x"], moved["params"], moved["state"],
                                      surrogate=case.surrogate, smooth=True, inject=case.inject,
                                      detached=base.detached)
                return loss(trace, case.cotangents)

            analytic = float(np.sum(gradient * direction))
            size = max(float(np.sum(np.abs(gradient * direction))), floor)
            error = min(abs(_richardson(phi, step) - analytic) / size for step in steps)
            worst = max(worst, error)
        errors[label] = worst
    return GradientReport(case.model, case.surrogate, errors)
