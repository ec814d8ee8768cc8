"""Hypothesis properties of every registry model (snnref.testing._properties).

Each test is parametrized over the registry rows it applies to, so every model
is exercised by construction; hypothesis draws only shapes, parameters and
seeds within the model (``snnref.testing.strategies.cases(model)``), a few
examples per model (fixtures/examples.py), and a failure prints a small example
that reproduces it."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fixtures.examples import per_model
from snnref import registry, spec
from snnref.testing import _checks as checks, _properties as properties, strategies

MODELS = sorted(registry.MODELS)
SPIKING = [k for k in MODELS if registry.MODELS[k].out in properties.SPIKING_OUTPUTS]
HARD_RESET = [k for k in SPIKING if registry.MODELS[k].reset.kind is registry.ResetKind.TO_VALUE]
LINEAR = [k for k in MODELS if properties.has_linear_response(registry.MODELS[k])]
INJECTING = [k for k in MODELS if registry.MODELS[k].inject]
REFRACTORY = [k for k in MODELS if registry.MODELS[k].refractory]


def cases(key, min_steps=1, inject=True):
    return strategies.cases(key, min_steps=min_steps, max_neurons=5, inject=inject)


@pytest.mark.parametrize("key", MODELS)
@per_model()
@given(data=st.data())
def test_split_run_equals_one_run(key, data):
    case = data.draw(cases(key, min_steps=2), label="case")
    properties.split_run(case, data.draw(st.integers(1, case.x.shape[0] - 1), label="cut"))


@pytest.mark.parametrize("key", MODELS)
@per_model()
@given(data=st.data())
def test_each_batch_row_equals_running_it_alone(key, data):
    properties.batch_rows(data.draw(cases(key), label="case"))


@pytest.mark.parametrize("key", SPIKING)
@per_model()
@given(data=st.data())
def test_spikes_are_exactly_zero_or_one(key, data):
    properties.binary_spikes(data.draw(cases(key), label="case"))


@pytest.mark.parametrize("key", HARD_RESET)
@per_model()
@given(data=st.data())
def test_hard_reset_after_every_spike(key, data):
    properties.hard_reset(data.draw(cases(key, inject=False), label="case"))


@pytest.mark.parametrize("key", LINEAR)
@per_model()
@given(data=st.data())
def test_linear_dynamics_equal_lfilter(key, data):
    case = data.draw(cases(key, inject=False), label="case")
    below_threshold = data.draw(st.booleans(), label="below threshold")
    if below_threshold or properties.needs_spike_free(registry.MODELS[key]):
        case = properties.spike_free(case)
    properties.linear_response(case)


@pytest.mark.parametrize("key", INJECTING)
@per_model()
@given(data=st.data())
def test_injected_traces_come_back_exactly_and_truncate_time(key, data):
    row = registry.MODELS[key]
    case = data.draw(cases(key, inject=False), label="case")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="trace seed"))
    names = data.draw(st.sets(st.sampled_from(row.inject), min_size=1), label="injected")
    shape = case.x.shape[1:]
    inject = {}
    for name in sorted(names):
        steps = data.draw(st.integers(1, case.x.shape[0] + 3), label=f"T_{name}")
        if name == "spikes":
            inject[name] = (rng.random((steps,) + shape) < 0.4).astype(float)
        else:
            inject[name] = rng.normal(0.7, 0.6, (steps,) + shape)
    properties.injection(case, inject)


@pytest.mark.parametrize("key", [k for k in SPIKING if registry.MODELS[k].out != "projection"])
@per_model()
@given(data=st.data())
def test_teacher_forcing_with_its_own_spikes_reproduces_the_run(key, data):
    properties.teacher_forcing(data.draw(cases(key), label="case"))


@pytest.mark.parametrize("key", REFRACTORY)
@per_model()
@given(ratio=st.floats(0.2, 6.0), neurons=st.integers(1, 3))
def test_refractory_clamp_lasts_ceil_refractory_time_over_dt(key, ratio, neurons):
    properties.refractory_clamp(key, ratio, neurons)


@pytest.mark.parametrize("key", MODELS)
def test_a_single_time_step_keeps_every_property(key):
    # T = 1 is a boundary of every scan (no step before, no step after): each
    # model gets it on a fixed case, not by chance.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(1), steps=1, batch=3, neurons=2, per_neuron=True,
                              inject=bool(row.inject))
    properties.batch_rows(case)
    if key in SPIKING:
        properties.binary_spikes(case)
    if key in LINEAR:
        properties.linear_response(properties.spike_free(case))


# Found by mutation testing: the properties have teeth (each passed a planted bug before).
def _planted(monkeypatch, change):
    """spec.simulate with ``change(x, trace)`` applied to every trace it returns."""
    honest = spec.simulate

    def planted(model, x, *args, **kwargs):
        trace = honest(model, x, *args, **kwargs)
        change(np.asarray(x), trace)
        return trace

    monkeypatch.setattr(spec, "simulate", planted)


def test_batch_rows_fails_on_a_bug_of_the_last_batch_row(monkeypatch):
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=5, batch=3, neurons=2)

    def last_row_off(x, trace):
        if x.shape[1] > 1:  # in a batch, never alone
            trace.outputs["v"] = trace.outputs["v"].copy()
            trace.outputs["v"][:, -1] += 1e-3

    _planted(monkeypatch, last_row_off)
    with pytest.raises(AssertionError, match="batch row 2"):
        properties.batch_rows(case)


def test_split_run_fails_on_a_bug_of_a_long_runs_final_state(monkeypatch):
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=8, batch=1, neurons=3)

    def long_final_off(x, trace):
        if x.shape[0] > 4:  # a run longer than one tile of 4 steps
            trace.final_state["v"] = trace.final_state["v"] + 1e-3

    _planted(monkeypatch, long_final_off)
    with pytest.raises(AssertionError, match="final v, cut at 4"):
        properties.split_run(case, 4)


def test_a_scaled_spike_output_with_a_threshold_of_0_keeps_every_spike_property():
    # Found by an outside user: ATIF's out = z theta is 0 at theta = 0 (in its domain) whether it fired or
    # not, and out / theta made NaN spikes: binary_spikes and teacher_forcing failed on a correct spec.
    case = checks.random_case("qualia.ATIF", np.random.default_rng(2), steps=6, batch=2, neurons=3)
    case.params["threshold"] = np.array(0.0)
    fired = properties.run(case).distance >= 0
    assert fired.any() and not fired.all()
    properties.binary_spikes(case)
    properties.teacher_forcing(case)


@pytest.mark.parametrize("key", ["tether.LIF", "rnnbuilder.LIF"])
def test_teacher_forcing_holds_on_the_threshold_itself(key):
    """Membrane exactly on the threshold at step 0: tether fires (>=), rnnbuilder
    does not (>); the check must read each row's test, not the other one."""
    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(0), steps=3, batch=1, neurons=2, random_state=False)
    threshold = float(np.asarray(case.params.get("threshold", 1.0)).reshape(-1)[0])
    x = case.x.copy()
    x[0] = threshold  # from v = 0: the first step's membrane is x[0] (times the input gain, 1 here)
    case.x = x
    trace = properties.run(case)
    assert np.any(trace.distance[0] == 0), (key, trace.distance[0])
    fired = trace.outputs["out"][0] != 0
    assert bool(np.all(fired)) == (row.spike_test == ">=")
    properties.teacher_forcing(case)
