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
    if registry.MODELS[key].out.spiking:
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
    # The values as numbers (NumPy 2 wrote "impl np.float64(0.61...)"; found in nir check's output).
    with pytest.raises(AssertionError, match=r"v: max \|impl - ref64\|.*exceeds the budget.*at index \([\d, ]+\): "
                                             r"impl -?\d\.\d+(e-?\d+)?, ref64 -?\d"):
        tolerance.assert_within_budget("v", mutant.outputs["v"], ref64.outputs["v"], ref32.outputs["v"], np.float32)
    assert tolerance.worst_fraction(mutant.outputs["v"], ref64.outputs["v"], ref32.outputs["v"], np.float32) > 1


def test_worst_fraction_of_a_nan_is_infinite_and_shapes_must_agree():
    # Found by an outside user: a NaN gave nan (and "nan > 1" is False, so a loop failing on > 1 passed
    # it); a single number against a (3,) reference was broadcast and passed; a tensor with a graph
    # raised torch's own error.
    import torch

    reference = np.array([0.5, -1.0, 2.0])
    assert tolerance.worst_fraction(np.array([np.nan, -1.0, 2.0]), reference, reference, np.float32) == np.inf
    assert tolerance.worst_fraction(np.array([0.5, np.inf, 2.0]), reference, reference, np.float32) == np.inf
    with pytest.raises(ValueError, match=r"^impl: shape \(\) differs from the reference's \(3,\)$"):
        tolerance.worst_fraction(np.array(0.5), reference, reference, np.float32)
    with pytest.raises(ValueError, match=r"^impl: shape \(3, 1\) differs from the reference's \(3,\)$"):
        tolerance.worst_fraction(reference[:, None], reference, reference, np.float32)
    tracked = torch.tensor(reference, requires_grad=True)
    assert tolerance.worst_fraction(tracked * 1, reference, reference, np.float64) == 0


def test_float64_budget_is_near_machine_precision():
    reference = np.linspace(-2, 2, 50)
    nudged = reference + 1e-12
    assert tolerance.worst_fraction(reference, reference, reference, np.float64) == 0
    with pytest.raises(AssertionError):
        tolerance.assert_within_budget("q", nudged, reference, reference, np.float64)


# The table's entries, written out: a change to any of them changes every check, and
# SPEC.md section 7 says nothing but the table ever widens a budget, so it must show as
# an edit of this test too (doubling float32's k or float64's c passed every other test).
# (k, c, eps, c_sum, the long sums' eps: half storage accumulates in float32).
DOCUMENTED = {"float32": (4.0, 8.0, 2.0**-23, 2.0, 2.0**-23), "float64": (4 * 2.0**-29, 64.0, 2.0**-52, 2.0, 2.0**-52),
              "float16": (4.0, 2.0, 2.0**-10, 2.0, 2.0**-23), "bfloat16": (4.0, 2.0, 2.0**-7, 2.0, 2.0**-23)}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_budget_is_the_documented_table_applied_by_section_7_s_formula(name):
    k, c, eps, c_sum, sum_eps = DOCUMENTED[name]
    ref64 = np.array([0.5, -3.0, 1.25])
    # Dyadic offsets: max|ref32 - ref64| is 3 * 2^-21 exactly.
    ref32 = ref64 + np.array([2.0**-22, -3 * 2.0**-21, 0.0])
    # k max|ref32 - ref64| + c eps max(1, max|ref64|) + c_sum eps32 sqrt(n) A, by hand.
    expected = k * 3 * 2.0**-21 + c * eps * 3.0 + c_sum * sum_eps * 10.0 * 7.0
    allowed = tolerance.budget(ref64, ref32, name, long_sum=(7.0, 100))
    assert allowed == pytest.approx(expected, rel=1e-12, abs=0)
    # Without the long sum: an error just over the budget fails, one just under it passes.
    allowed = tolerance.budget(ref64, ref32, name)
    assert allowed == pytest.approx(k * 3 * 2.0**-21 + c * eps * 3.0, rel=1e-12, abs=0)
    with pytest.raises(AssertionError, match="exceeds the budget"):
        tolerance.assert_within_budget("q", ref64 + np.array([0.0, allowed * 1.01, 0.0]), ref64, ref32, name)
    tolerance.assert_within_budget("q", ref64 + np.array([0.0, allowed * 0.99, 0.0]), ref64, ref32, name)
    # The long sum's term in the checks too (found by an outside user: they took no long_sum).  An error
    # between the two budgets passes with it and fails without it.
    between = ref64 + np.array([0.0, (allowed + expected) / 2, 0.0])
    tolerance.assert_within_budget("q", between, ref64, ref32, name, long_sum=(7.0, 100))
    with pytest.raises(AssertionError, match="exceeds the budget"):
        tolerance.assert_within_budget("q", between, ref64, ref32, name)
    assert tolerance.worst_fraction(between, ref64, ref32, name, long_sum=(7.0, 100)) < 1 < \
        tolerance.worst_fraction(between, ref64, ref32, name)


def test_budget_reports_nan_as_failure():
    reference = np.zeros(3)
    with pytest.raises(AssertionError, match="q"):
        tolerance.assert_within_budget("q", np.array([0.0, np.nan, 0.0]), reference, reference, np.float32)


def test_every_budget_has_a_reason():
    for name, rule in tolerance.POLICY.items():
        assert rule.reason and rule.k >= 0 and rule.c > 0, name


# --- The third term of SPEC.md section 7: long sums, with A reported by the reverse loops.


@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items() if row.differentiable))
def test_the_reverse_loops_report_the_size_of_every_parameter_sum(key):
    case = checks.random_case(key, np.random.default_rng(5), steps=9, batch=2, neurons=4, per_neuron=False,
                              inject=bool(registry.MODELS[key].inject))
    sizes = {}
    grads = spec.vjp(key, case.x, case.params, case.state, case.cotangents, surrogate=case.surrogate,
                     inject=case.inject, magnitudes=sizes)
    # The long sums of x and the initial state (attention's) are checked in tests/test_long_sums.py.
    sizes = {k: v for k, v in sizes.items() if k != "x" and not k.startswith("state.")}
    assert set(sizes) == set(registry.MODELS[key].differentiable)
    for name, (magnitude, terms) in sizes.items():
        # |sum| <= sum of |terms| (equality only without cancellation), and A > 0 for a live gradient.
        assert np.max(np.abs(grads[name])) <= magnitude * (1 + 1e-12), name
        if np.any(grads[name]):
            assert magnitude > 0
        # n: steps x the lanes that meet in one element (a (D, D) weight: one per step and row of x).
        lanes = int(np.prod(case.x.shape[1:]))
        matrix = registry.MODELS[key].param(name).shape == registry.MATRIX
        flat = 9 * (lanes // case.x.shape[-1] if matrix else lanes // np.size(case.params[name]))
        if key == "tether.SpikingSelfAttention" and name[:2] in ("q_", "k_", "v_"):
            # Plus the adjoint chain's roundings inside each contribution (spec/attention.py (21)-(22)).
            assert terms == flat + 4 * (9 + 1) + 2 * case.x.shape[-1], name
        else:
            assert terms == flat, name


def test_a_is_the_sum_of_the_per_lane_contributions():
    # One step, one batch row: each lane adds exactly one term to a scalar decay's
    # gradient, and the per-neuron run returns those terms one by one.
    rng = np.random.default_rng(2)
    case = checks.random_case("tether.LIF", rng, steps=1, batch=1, neurons=6)
    scalar, per_neuron = {}, dict(case.params, decay=np.full(6, float(case.params["decay"])))
    spec.vjp("tether.LIF", case.x, case.params, case.state, case.cotangents, magnitudes=scalar)
    terms = spec.vjp("tether.LIF", case.x, per_neuron, case.state, case.cotangents)["decay"]
    assert scalar["decay"][0] == pytest.approx(np.sum(np.abs(terms)), rel=1e-12)
    assert scalar["decay"][1] == 6


def test_the_long_sum_term_widens_only_what_it_is_given():
    rule = tolerance.POLICY["float32"]
    assert all(row.c_sum > 0 for row in tolerance.POLICY.values())
    assert "c_sum" in tolerance.LONG_SUM_REASON and "random cases" in tolerance.LONG_SUM_REASON
    base = tolerance.budget(np.ones(3), np.ones(3), np.float32)
    wider = tolerance.budget(np.ones(3), np.ones(3), np.float32, long_sum=(50.0, 400))
    assert wider - base == pytest.approx(rule.c_sum * rule.eps * 20 * 50.0)
    # Half storage accumulates in float32: its long sums use eps32, not the storage eps.
    half = tolerance.POLICY["float16"]
    assert tolerance.budget(np.ones(3), np.ones(3), "float16", long_sum=(1.0, 1)) - \
        tolerance.budget(np.ones(3), np.ones(3), "float16") == pytest.approx(half.c_sum * rule.eps)
