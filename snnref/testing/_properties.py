"""Forward properties every registry model must have, shared by the hypothesis
tests and ``snnref verify``.  Each check raises AssertionError with what broke.

- ``split_run``: T1 steps then T2 steps from the final state equal T1 + T2 at once.
- ``batch_rows``: each batch row equals running that row alone.
- ``binary_spikes``: spikes are exactly 0 or 1 (0 or theta for ATIF).
- ``hard_reset``: after every spike the membrane is exactly at its reset value.
- ``linear_response``: where a model is linear (between spikes, or given its
  spikes), its trajectory equals ``scipy.signal.lfilter`` of its drive; a
  subtractive reset is part of the drive, so this also proves that reset rule.
  Each family states its linear form in its spec module (``linear_response``,
  ``linear_given_spikes``: ``snnref.families``), so a new linear family is
  checked without an edit here.
- ``injection``: injected hardware traces come back exactly and truncate T.
- ``refractory_clamp``: clamped for exactly ceil(refractory_time / dt) steps.
- ``teacher_forcing``: forcing a run with its own spikes reproduces it, and
  the recorded distances to threshold agree with the spike decisions.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .. import families, registry, spec

SPIKING_OUTPUTS = tuple(kind for kind in registry.Output if kind.spiking)


def run(case, x=None, state=None, inject=None):
    return spec.simulate(case.model, case.x if x is None else x, case.params,
                         case.state if state is None else state, surrogate=case.surrogate,
                         inject=case.inject if inject is None else inject)


def _slice_inject(case, index):
    return {k: v[index] for k, v in case.inject.items()} if case.inject else None


def split_run(case, cut):
    whole = run(case)
    head = run(case, x=case.x[:cut], inject=_slice_inject(case, slice(None, cut)))
    tail = run(case, x=case.x[cut:], state=head.final_state, inject=_slice_inject(case, slice(cut, None)))
    for key in whole.outputs:
        joined = np.concatenate([head.outputs[key], tail.outputs[key]])
        np.testing.assert_array_equal(whole.outputs[key], joined, err_msg=f"{case.model} {key}, cut at {cut}")
    for key in whole.final_state:
        np.testing.assert_array_equal(whole.final_state[key], tail.final_state[key],
                                      err_msg=f"{case.model} final {key}, cut at {cut}")


def batch_rows(case):
    whole = run(case)
    for b in range(case.x.shape[1]):
        rows = (slice(None), slice(b, b + 1))
        state = {k: v[b:b + 1] for k, v in case.state.items()}
        alone = run(case, x=case.x[rows], state=state, inject=_slice_inject(case, rows))
        for key in whole.outputs:
            np.testing.assert_array_equal(whole.outputs[key][rows], alone.outputs[key],
                                          err_msg=f"{case.model} {key}, batch row {b}")


def _spikes(row, case, trace):
    """The spike train: ``out``, or for spikes scaled by the threshold ``out / threshold``, and where
    the threshold is 0 (an output of 0 whether it fired or not) the model's own decisions."""
    out = trace.outputs["out"]
    if row.out is not registry.Output.SCALED_SPIKES:
        return out
    threshold = np.broadcast_to(case.params["threshold"], out.shape)
    decided = (trace.distance > 0) if row.spike_test == ">" else (trace.distance >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(threshold != 0, out / threshold, decided.astype(out.dtype))


def binary_spikes(case):
    row = registry.model(case.model)
    spikes = _spikes(row, case, run(case))
    bad = ~((spikes == 0) | (spikes == 1))
    assert not np.any(bad), f"{case.model}: non-binary spikes {spikes[bad][:5]}"


def hard_reset(case):
    """Step by step: where a step fired, the membrane after it is the reset value."""
    row = registry.model(case.model)
    membrane = row.state_names[0]
    assert not (case.inject and "v" in case.inject), "an injected membrane replaces the reset"
    state = case.state
    for t in range(case.x.shape[0]):
        trace = run(case, x=case.x[t:t + 1], state=state, inject=_slice_inject(case, slice(t, t + 1)))
        fired = _spikes(row, case, trace)[0] == 1
        after = trace.final_state[membrane]
        to = row.reset.to
        target = np.broadcast_to(case.params[to], after.shape)[fired] if isinstance(to, str) else to
        np.testing.assert_array_equal(after[fired], target, err_msg=f"{case.model} reset at step {t}")
        state = trace.final_state


def _with_initial_state(case):
    """The case with every initial state explicit, as the model starts when none
    is given (a registry number, or the parameter it names: hxtorch's leak)."""
    row = registry.model(case.model)
    shape = case.x.shape[1:]
    state = {}
    for var in row.state:
        if var.name in case.state:
            value = case.state[var.name]
        elif isinstance(var.initial, str):
            value = case.params[var.initial]
        else:
            value = var.initial
        state[var.name] = np.broadcast_to(np.asarray(value, dtype=float), shape).copy()
    return replace(case, state=state)


def first_order(pole, drive, initial):
    """y[t] = pole y[t-1] + drive[t] from y[-1] = initial, by lfilter, per neuron."""
    # Imported here: scipy.signal takes 0.7 s to import, a fifth of the start of
    # every process that runs the gate (the plugin's, snnref verify's workers).
    from scipy.signal import lfilter

    pole = np.broadcast_to(pole, drive.shape[1:]).reshape(-1)
    flat_drive = drive.reshape(len(drive), -1)
    flat_initial = np.broadcast_to(initial, drive.shape[1:]).reshape(-1)
    out = np.empty_like(flat_drive)
    for j in range(pole.size):
        out[:, j] = lfilter([1.0], [1.0, -pole[j]], flat_drive[:, j], zi=[pole[j] * flat_initial[j]])[0]
    return out.reshape(drive.shape)


def has_linear_response(row):
    """Whether the family of ``row`` states its linear form (``linear_response``
    of its spec module, ``snnref.families``)."""
    return families.provides(row, "spec", "linear_response")


def needs_spike_free(row):
    """Whether the linear form holds only below threshold (the family's
    ``linear_given_spikes``, False where it does not say)."""
    given_spikes = families.attribute(row, "spec", "linear_given_spikes")
    return not (given_spikes is not None and given_spikes(row))


def spike_free(case):
    """The same case driven below threshold: non-positive input, state and leak."""
    state = {k: (np.abs(v) if k == "a" else np.zeros_like(v) if k == "r" else -np.abs(v))
             for k, v in _with_initial_state(case).state.items()}
    params = dict(case.params)
    if "leak" in params:
        params["leak"] = -np.abs(params["leak"])
    return replace(case, x=-np.abs(case.x), state=state, params=params, inject=None)


def linear_response(case):
    row = registry.model(case.model)
    case = _with_initial_state(case)
    trace = run(case)
    spikes = _spikes(row, case, trace) if row.out.spiking else None
    if needs_spike_free(row) and spikes is not None:
        assert not np.any(spikes), f"{case.model}: the spike-free drive spiked"
    linear_response = families.attribute(row, "spec", "linear_response")
    for var, expected in linear_response(row, case.params, case.x, case.state, spikes, first_order).items():
        np.testing.assert_allclose(trace.outputs[var], expected, rtol=1e-12, atol=1e-12,
                                   err_msg=f"{case.model} {var} against lfilter")


def injection(case, inject):
    trace = run(case, inject=inject)
    steps = min([case.x.shape[0]] + [len(v) for v in inject.values()])
    for key, value in trace.outputs.items():
        assert value.shape[0] == steps, f"{case.model} {key}: {value.shape[0]} steps, expected {steps}"
    if "v" in inject:
        np.testing.assert_array_equal(trace.outputs["v"], inject["v"][:steps], err_msg="injected v")
    if "spikes" in inject:
        np.testing.assert_array_equal(trace.outputs["out"], inject["spikes"][:steps], err_msg="injected spikes")


def refractory_clamp(key, ratio, neurons=1, steps=40):
    """A drive strong enough to fire whenever allowed: spikes every clamp + 1 steps."""
    dt = 1e-6
    refractory_time = ratio * dt
    clamp = math.ceil(refractory_time / dt)
    reset = 0.25
    x = np.full((steps, 1, neurons), 50.0)
    trace = spec.simulate(key, x, {"refractory_time": refractory_time, "dt": dt, "reset": reset})
    times = np.flatnonzero(trace.outputs["out"][:, 0, 0])
    assert len(times) >= 3, f"{key}: the strong drive fired only {len(times)} times"
    np.testing.assert_array_equal(np.diff(times), clamp + 1, err_msg=f"{key}: spacing for clamp {clamp}")
    for t in times:
        np.testing.assert_array_equal(trace.outputs["v"][t + 1:t + 1 + clamp, 0, 0], reset,
                                      err_msg=f"{key}: membrane during the clamp after step {t}")


def teacher_forcing(case):
    row = registry.model(case.model)
    trace = run(case)
    spikes = _spikes(row, case, trace)
    forced = spec.simulate(case.model, case.x, case.params, case.state, surrogate=case.surrogate,
                           inject=case.inject, force_spikes=spikes)
    for key in trace.outputs:
        np.testing.assert_array_equal(forced.outputs[key], trace.outputs[key], err_msg=f"{case.model} {key}")
    np.testing.assert_array_equal(forced.distance, trace.distance, err_msg=f"{case.model} distance")
    decided = trace.distance > 0 if row.spike_test == ">" else trace.distance >= 0
    if row.refractory or (case.inject and "spikes" in case.inject):
        # A refractory clamp or an injected spike train overrides the decision:
        # only where the output is the model's own decision must they agree.
        return
    np.testing.assert_array_equal(spikes, decided.astype(spikes.dtype), err_msg=f"{case.model} decisions")
