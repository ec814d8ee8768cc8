"""vjp(smooth=True) equals finite differences of the smooth twin, for every model,
every accepted surrogate, scalar and per-neuron parameters, with and without
hardware injection: in random directions of x, of every trainable parameter and
of every initial state, to a relative error below 1e-6 in float64."""

import zlib

import numpy as np
import pytest

from snnref import checks, registry

# The bound: relative error below 1e-6 in float64.  The finite
# differences themselves are good to about 1e-10 here.
FD_BOUND = 1e-6


def cases():
    for key, row in sorted(registry.MODELS.items()):
        for surrogate in row.surrogates or (None,):
            for per_neuron in (False, True):
                for inject in (False, True) if row.inject else (False,):
                    yield pytest.param(key, surrogate, per_neuron, inject,
                                       id=f"{key}-{surrogate}-{'per_neuron' if per_neuron else 'scalar'}"
                                          f"{'-inject' if inject else ''}")


@pytest.mark.parametrize("key,surrogate,per_neuron,inject", list(cases()))
def test_vjp_equals_finite_differences(key, surrogate, per_neuron, inject):
    seed = zlib.crc32(f"{key}{surrogate}{per_neuron}{inject}".encode())
    rng = np.random.default_rng(seed)
    case = checks.random_case(key, rng, surrogate=surrogate, per_neuron=per_neuron, inject=inject)
    report = checks.gradient_check(case, seed=seed)
    assert set(report.errors) == {"x", *registry.model(key).trainable,
                                  *(f"state.{v}" for v in registry.model(key).state_names)}
    bad = {k: v for k, v in report.errors.items() if not v < FD_BOUND}
    assert not bad, f"{key} ({surrogate}): relative error over {FD_BOUND}: {bad}"


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_gradient_check_catches_a_wrong_gradient(key, plant_backward):
    """The check can fail: scale the x-gradient of the hand-written backward by 1.001."""

    def skewed(grads, params, state, tape, cot):
        grads["x"] = grads["x"] * 1.001

    plant_backward(key, skewed)
    case = checks.random_case(key, np.random.default_rng(7))
    assert checks.gradient_check(case).errors["x"] > FD_BOUND
