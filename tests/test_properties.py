"""Hypothesis properties of every registry model (snnref.properties).

Cases are drawn from the registry rows by ``snnref.checks.random_case`` from a
hypothesis-chosen model, shape and seed, so a failure prints a small example
that reproduces it."""

import numpy as np
from hypothesis import given, strategies as st

from snnref import properties, registry
from snnref.testing import strategies

MODELS = sorted(registry.MODELS)
SPIKING = [k for k in MODELS if registry.MODELS[k].out in properties.SPIKING_OUTPUTS]
HARD_RESET = [k for k in SPIKING if registry.MODELS[k].reset in ("zero", "to_reset")]
LINEAR = [k for k in MODELS if registry.MODELS[k].family in properties.LINEAR]
INJECTING = [k for k in MODELS if registry.MODELS[k].inject]
REFRACTORY = [k for k in MODELS if registry.MODELS[k].refractory]


def cases(keys=MODELS, min_steps=1, inject=True):
    return strategies.cases(models=keys, min_steps=min_steps, max_neurons=5, inject=inject)


@given(cases(min_steps=2), st.data())
def test_split_run_equals_one_run(case, data):
    properties.split_run(case, data.draw(st.integers(1, case.x.shape[0] - 1), label="cut"))


@given(cases())
def test_each_batch_row_equals_running_it_alone(case):
    properties.batch_rows(case)


@given(cases(keys=SPIKING))
def test_spikes_are_exactly_zero_or_one(case):
    properties.binary_spikes(case)


@given(cases(keys=HARD_RESET, inject=False))
def test_hard_reset_after_every_spike(case):
    properties.hard_reset(case)


def test_every_linear_family_is_a_registry_family():
    assert set(properties.LINEAR) <= {row.family for row in registry.MODELS.values()}


@given(cases(keys=LINEAR, inject=False), st.booleans())
def test_linear_dynamics_equal_lfilter(case, below_threshold):
    row = registry.MODELS[case.model]
    if below_threshold or properties.needs_spike_free(row):
        case = properties.spike_free(case)
    properties.linear_response(case)


@given(cases(keys=INJECTING, inject=False), st.data())
def test_injected_traces_come_back_exactly_and_truncate_time(case, data):
    row = registry.MODELS[case.model]
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


@given(cases(keys=[k for k in SPIKING if registry.MODELS[k].out != "projection"]))
def test_teacher_forcing_with_its_own_spikes_reproduces_the_run(case):
    properties.teacher_forcing(case)


@given(st.sampled_from(REFRACTORY), st.floats(0.2, 6.0), st.integers(1, 3))
def test_refractory_clamp_lasts_ceil_refractory_time_over_dt(key, ratio, neurons):
    properties.refractory_clamp(key, ratio, neurons)
