"""The section-9 correspondence: which continuous node each registry model stands for.

A discrete model with step ``dt`` reads ``x[k]`` as a pulse at t_k = k dt, and its
step k records the state at t_k just after that pulse.  Per model:

(1) tether.LIF, tether.PLIF: LIF with tau = -dt / ln(decay) (0 < decay < 1),
    r = 1, v_leak = v_reset = 0, v_threshold = threshold, hard reset; a pulse
    raises v by r q / tau = x[k], so q = tau x[k].  Relation: exact.
(2) rnnbuilder.NoReset: LI with tau = tau_steps dt (beta = exp(-1/tau_steps) per
    step), then Threshold at 1 (strict); q = tau x[k].  Exact.
(3) rnnbuilder.LIF: LIF as (2) with v_threshold = 1 and a subtractive reset.  Exact.
(4) qualia.IFSRL, qualia.ATIF: IF, r = 1, v_threshold = threshold, subtractive
    reset; q = x[k].  Exact.
    (3) and (4) are exact while every reset leaves v below v_threshold.  A pulse
    that lifts v to 2 v_threshold or more fires once in the discrete step, which
    carries the rest to the next step (where, with a leak, it may have decayed
    below threshold), and in the exact neuron once per v_threshold at that
    instant.  SPEC.md section 9 states "exact" without this condition; the
    section-9 measurements draw pulses that stay below it.
    (3) is also not exact where a pulse lifts v exactly onto threshold 1:
    rnnbuilder's H(u) = [u > 0] is strict, so the discrete step does not fire
    there, while the continuous LIF fires on reaching threshold (and resets);
    SPEC.md section 9 does not state this exception either.  (tether's and
    qualia's ">=" fire at equality, as the continuous nodes do, and (2) is exact
    there: its Threshold node is strict, as rnnbuilder's H.)  ``converge`` keeps
    every membrane at least ``convergence.MARGIN`` (relative) away from threshold
    at each pulse, so its measurements never meet the equality.
(5) hxtorch.cuba_lif, cuba_li: CubaLIF / CubaLI with r = 1, v_leak = leak,
    v_threshold = threshold, v_reset = reset, w_in = tau_syn, so that a pulse
    raises I by w_in q / tau_syn = q = x[k]; v starts at leak.  Explicit Euler:
    first order in dt.
(6) hxtorch.cuba_iaf: CubaIF with the parameters of (5), v starts at reset.  First order.
(7) hxtorch.cuba_refractory_lif, cuba_refractory_iaf: (5), (6) with
    tau_ref = refractory_time.  First order.
Every other registry model has no continuous counterpart, nor has a configuration
that the continuous node refuses: a spiking hxtorch model with leak or reset at or
above threshold (it starts at leak, resets to reset, and fires on reaching threshold
from below), tether.LIF / PLIF and qualia's models with threshold <= 0 (they start,
and tether's reset, at 0).  ``counterpart`` refuses these, naming the registry parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .. import arguments, registry

MAPPED = (
    "tether.LIF",
    "tether.PLIF",
    "rnnbuilder.NoReset",
    "rnnbuilder.LIF",
    "qualia.IFSRL",
    "qualia.ATIF",
    "hxtorch.cuba_lif",
    "hxtorch.cuba_li",
    "hxtorch.cuba_iaf",
    "hxtorch.cuba_refractory_lif",
    "hxtorch.cuba_refractory_iaf",
)


@dataclass(frozen=True)
class Counterpart:
    """The continuous node of a registry model at one ``dt``.

    ``node``, ``params`` (NIR names, ready for ``simulate``), ``state`` (the
    initial state, for ``simulate(..., state=)``): the continuous model.
    ``input_scale``: the pulse weight of a unit discrete input, ``q = input_scale * x[k]``
    (a scalar or per-neuron array).  ``relation``: "exact" or "euler" (first
    order).  ``threshold``: for rnnbuilder.NoReset, the level of the Threshold
    node applied to the LI membrane (strict ``>``), else None.  ``dt``: the step.
    ``recorded``: "pre" where the model records the membrane before its reset,
    "post" otherwise.
    """

    model: str
    node: str
    params: Dict[str, object]
    state: Dict[str, object]
    input_scale: object
    relation: str
    dt: float
    recorded: str
    threshold: Optional[float] = None


# counterpart takes no allow_nonfinite: a non-finite parameter's message must not suggest it.
_NAMES = arguments.Names(allow_nonfinite=False)


def _width(given):
    """N: the length of the per-neuron arrays among ``given`` (1 when every value is a scalar or (1,))."""
    lengths = []
    for value in given.values():
        try:
            shape = np.shape(value)
        except ValueError:  # a ragged sequence: arguments.check_params names it
            continue
        if len(shape) == 1 and shape[0] != 1:
            lengths.append(shape[0])
    return max(lengths, default=1)


def _filled(row, params):
    """The registry's parameters by its rules (names, shapes, finite values, domains), defaults filled in."""
    given = arguments.mapping("params", params, "parameter name -> value")
    return arguments.check_params(row, given, _width(given), arguments.NumpyArrays(np.float64),
                                  allow_nonfinite=False, names=_NAMES)


def _step(dt):
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a finite step > 0, got {dt!r}")
    return float(dt)


def _refuse(key, name, value, level, level_name, why, above=True):
    """Refuse ``params[name]`` at or above ``level`` (``above=False``: at or below), per neuron:
    the continuous neuron has no such configuration, and ``simulate`` would refuse it in NIR names."""
    value, level = np.broadcast_arrays(np.asarray(value, dtype=np.float64), np.asarray(level, dtype=np.float64))
    bad = value >= level if above else value <= level
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ValueError(f"{key}: params[{name!r}] = {float(value.flat[k])!r} is at or {'above' if above else 'below'} "
                         f"{level_name} {float(level.flat[k])!r}: no continuous counterpart ({why})")


def counterpart(model, params=None, dt=None) -> Counterpart:
    """The section-9 counterpart of registry ``model`` with ``params`` (registry
    names; defaults filled in) at step ``dt`` (physical time per step: default 1
    for the dimensionless models, ``params["dt"]`` for hxtorch's)."""
    row = registry.model(model)
    if row.key not in MAPPED:
        raise ValueError(f"model: {row.key} has no continuous counterpart (SPEC.md section 9); "
                         f"the models that have one: {', '.join(MAPPED)}")
    full = _filled(row, params)
    if row.family == "cuba":
        step = float(full["dt"])
        if dt is not None and _step(dt) != step:
            raise ValueError(f"dt: {row.key} takes its step from params['dt'] ({step!r}); got dt={dt!r}")
        if row.options.spiking:
            # (5)-(7): the counterpart starts at leak (reset) and fires on reaching threshold from below.
            if row.options.leak:
                _refuse(row.key, "leak", full["leak"], full["threshold"], "threshold",
                        "expected leak < threshold: the membrane starts at leak, and a spike is threshold "
                        "reached from below")
            _refuse(row.key, "reset", full["reset"], full["threshold"], "threshold",
                    "expected reset < threshold: a hard reset at or above threshold would fire without end")
        nir = {"tau_syn": full["tau_syn"], "tau_mem": full["tau_mem"], "r": 1.0, "w_in": full["tau_syn"]}
        if row.options.leak:
            nir["v_leak"] = full["leak"]
        if row.options.spiking:
            nir.update(v_threshold=full["threshold"], v_reset=full["reset"])
        if row.refractory:
            nir["tau_ref"] = full["refractory_time"]
        node = {True: "CubaLIF", False: "CubaIF"}[row.options.leak] if row.options.spiking else "CubaLI"
        start = full["leak"] if row.options.leak else full["reset"]
        return Counterpart(row.key, node, nir, {"v": start, "i": 0.0}, 1.0, "euler", step, "post")
    step = 1.0 if dt is None else _step(dt)
    if row.key in ("tether.LIF", "tether.PLIF"):
        decay = full["decay"]
        if np.any((decay <= 0) | (decay >= 1)):
            raise ValueError(f"params['decay']: the LIF counterpart needs 0 < decay < 1 "
                             f"(decay = exp(-dt/tau)), got {decay!r}")
        _refuse(row.key, "threshold", full["threshold"], 0.0, "the reset", "expected threshold > 0: the membrane "
                "starts at 0 and resets to 0, which must be below threshold", above=False)
        tau = -step / np.log(decay)
        nir = {"tau": tau, "r": 1.0, "v_leak": 0.0, "v_threshold": full["threshold"], "v_reset": 0.0}
        return Counterpart(row.key, "LIF", nir, {"v": 0.0}, tau, "exact", step, "pre")
    if row.key.startswith("rnnbuilder."):
        tau = full["tau"] * step
        if row.key == "rnnbuilder.NoReset":
            return Counterpart(row.key, "LI", {"tau": tau, "r": 1.0, "v_leak": 0.0}, {"v": 0.0}, tau,
                               "exact", step, "post", threshold=1.0)
        nir = {"tau": tau, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0, "reset": "subtract"}
        return Counterpart(row.key, "LIF", nir, {"v": 0.0}, tau, "exact", step, "post")
    _refuse(row.key, "threshold", full["threshold"], 0.0, "the initial membrane", "expected threshold > 0: the "
            "membrane starts at 0, below threshold, and a subtractive reset by a threshold <= 0 fires without end",
            above=False)
    nir = {"r": 1.0, "v_threshold": full["threshold"], "v_reset": 0.0, "reset": "subtract"}
    return Counterpart(row.key, "IF", nir, {"v": 0.0}, 1.0, "exact", step, "post")
