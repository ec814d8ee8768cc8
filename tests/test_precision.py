"""The spec runs in float32 as well, and the tolerance policy (SPEC.md section 7)
built on it accepts the float32 reference and rejects planted errors."""

import zlib

import numpy as np
import pytest

from snnref import checks, registry, spec, tolerance

MODELS = sorted(registry.MODELS)


def case_for(key):
    return checks.random_case(key, np.random.default_rng(zlib.crc32(key.encode())))


def both_precisions(case, **kwargs):
    return [spec.simulate(case.model, case.x, case.params, case.state, surrogate=case.surrogate,
                          inject=case.inject, dtype=dtype, **kwargs) for dtype in (np.float64, np.float32)]


@pytest.mark.parametrize("key", MODELS)
def test_float32_runs_in_float32(key):
    case = case_for(key)
    ref64, ref32 = both_precisions(case)
    grads32 = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents,
                       surrogate=case.surrogate, inject=case.inject, dtype=np.float32)
    grads64 = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents,
                       surrogate=case.surrogate, inject=case.inject)
    for value in [*ref32.outputs.values(), *ref32.final_state.values(), *grads32.values()]:
        assert value.dtype == np.float32
    # Computed in float32, not in float64 and rounded at the end: the input
    # gradient (continuous for every model) differs from float64 rounded.
    rounded = grads64["x"].astype(np.float32)
    assert not np.array_equal(grads32["x"], rounded)


@pytest.mark.parametrize("key", MODELS)
def test_float32_reference_error_is_small_where_spikes_agree(key):
    case = case_for(key)
    ref64, ref32 = both_precisions(case)
    if registry.MODELS[key].out in ("spikes", "spikes*threshold"):
        # Near-threshold flips are judged by teacher forcing in the backends'
        # checks; this case's seed is one without flips, which is asserted.
        np.testing.assert_array_equal(ref32.outputs["out"] != 0, ref64.outputs["out"] != 0)
    for name, value in ref64.outputs.items():
        scale = max(1.0, float(np.max(np.abs(value))))
        steps = value.shape[0]
        # Rounding errors of a stable recurrence grow at most linearly in T.
        bound = 8 * steps * np.finfo(np.float32).eps * scale
        assert np.max(np.abs(ref32.outputs[name] - value)) <= bound, name


@pytest.mark.parametrize("key", MODELS)
def test_budget_accepts_the_float32_reference(key):
    case = case_for(key)
    ref64, ref32 = both_precisions(case)
    for name in ref64.outputs:
        tolerance.assert_within_budget(name, ref32.outputs[name], ref64.outputs[name],
                                       ref32.outputs[name], np.float32)


def test_budget_rejects_a_decay_off_by_1e_3():
    case = case_for("tether.LIF")
    ref64, ref32 = both_precisions(case)
    params = dict(case.params, decay=case.params["decay"] * (1 + 1e-3))
    mutant = spec.simulate(case.model, case.x, params, case.state)
    with pytest.raises(AssertionError, match=r"v: max \|impl - ref64\|.*exceeds the budget.*at index"):
        tolerance.assert_within_budget("v", mutant.outputs["v"], ref64.outputs["v"], ref32.outputs["v"], np.float32)
    assert tolerance.worst_fraction(mutant.outputs["v"], ref64.outputs["v"], ref32.outputs["v"], np.float32) > 1


def test_float64_budget_is_near_machine_precision():
    reference = np.linspace(-2, 2, 50)
    nudged = reference + 1e-12
    assert tolerance.worst_fraction(reference, reference, reference, np.float64) == 0
    with pytest.raises(AssertionError):
        tolerance.assert_within_budget("q", nudged, reference, reference, np.float64)


def test_budget_reports_nan_as_failure():
    reference = np.zeros(3)
    with pytest.raises(AssertionError, match="q"):
        tolerance.assert_within_budget("q", np.array([0.0, np.nan, 0.0]), reference, reference, np.float32)


def test_every_budget_has_a_reason():
    for name, rule in tolerance.POLICY.items():
        assert rule.reason and rule.k >= 0 and rule.c > 0, name
