"""snnref.testing: the budget assertion, the strategies and assert_conforms with adapters."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fixtures import impl_mutants, outside_lif
from fixtures.examples import per_model
import snnref
from snnref import functional, registry, testing
from snnref.testing import adapters, strategies


def test_assert_close_passes_within_the_budget():
    ref64 = np.linspace(0, 1, 12).reshape(4, 3)
    ref32 = ref64.astype(np.float32)
    testing.assert_close("v", ref32, ref64, ref32, np.float32, model="tether.LIF")


def test_assert_close_takes_the_long_sum_term_of_a_parameter_gradient():
    """SPEC.md section 7's third term, c_sum eps32 sqrt(n) A (c_sum = 2): a
    threshold gradient of 20 summed from n = 1000 contributions of total size
    A = 1000 may be off by 2 * 2^-23 * sqrt(1000) * 1000 = 7.5e-3; without the
    term its budget is 8 eps32 * 20 = 1.9e-5, and a correct float32 run of a
    long case failed there."""
    ref = np.asarray(20.0)
    impl = ref + 6e-5
    with pytest.raises(testing.ConformanceError, match="grad:threshold: max error 6.000e-05 over the budget"):
        testing.assert_close("grad:threshold", impl, ref, ref, np.float32, model="tether.LIF")
    testing.assert_close("grad:threshold", impl, ref, ref, np.float32, model="tether.LIF", long_sum=(1000.0, 1000))
    with pytest.raises(testing.ConformanceError):
        testing.assert_close("grad:threshold", ref + 8e-3, ref, ref, np.float32, long_sum=(1000.0, 1000))


def test_assert_close_reports_model_quantity_step_and_neuron():
    ref64 = np.zeros((5, 2, 3))
    impl = ref64.copy()
    impl[3, 1, 2] = 1e-3
    with pytest.raises(testing.ConformanceError,
                       match=r"tether.LIF v: max error 1.000e-03 .* first failure at time step 3, neuron \(1, 2\)"):
        testing.assert_close("v", impl, ref64, ref64, np.float32, model="tether.LIF")
    with pytest.raises(testing.ConformanceError, match=r"decay: .* first failure at its only element"):
        testing.assert_close("decay", np.float64(1.0), np.float64(0.0), np.float64(0.0), np.float32)


@pytest.mark.parametrize("ref32,long_sum,message", [
    (None, None, "ref32: expected an array of the reference's values, got None"),
    (np.array([0.0, np.nan, 0.0]), None, "ref32: expected finite values"),
    (np.zeros(1), None, r"ref32: shape \(1,\), expected ref64's \(3,\)"),
    (np.zeros(3), (np.nan, 100), r"long_sum: expected \(A, n\)"),
])
def test_assert_close_refuses_a_reference_that_gives_no_budget(ref32, long_sum, message):
    # Each of these made the budget NaN or infinite, which passed an error of 0.5.
    with pytest.raises(ValueError, match=message):
        testing.assert_close("grad:decay", np.full(3, 0.5), np.zeros(3), ref32, np.float32, long_sum=long_sum)
    with pytest.raises(ValueError, match="ref64: expected finite values"):
        testing.assert_close("v", np.full(3, 0.5), np.array([0.0, np.inf, 0.0]), np.zeros(3), np.float32)


@pytest.mark.parametrize("dtype", ["int32", None, "float8"])
def test_assert_close_names_a_dtype_it_has_no_budget_for(dtype):
    with pytest.raises(ValueError, match=r"dtype: expected one of float32, float64, float16, bfloat16"):
        testing.assert_close("v", np.zeros(3), np.zeros(3), np.zeros(3), dtype)


def test_assert_close_takes_tensors_and_every_spelling_of_a_dtype():
    impl = torch.zeros(4, 3, requires_grad=True)
    for dtype in (np.float32, "float32", torch.float32, "bfloat16", torch.bfloat16):
        testing.assert_close("v", impl, np.zeros((4, 3)), np.zeros((4, 3)), dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_budget_checks_take_a_half_precision_tensor(dtype):
    """NumPy has no bfloat16: a bfloat16 implementation's output, passed as it
    is, raised TypeError ("Got unsupported ScalarType BFloat16"), and
    assert_within_budget refused any tensor on the autograd graph."""
    ref64 = np.linspace(0, 1, 12).reshape(4, 3)
    ref32 = ref64.astype(np.float32)
    impl = torch.tensor(ref64, dtype=dtype, requires_grad=True)
    testing.assert_close("v", impl, ref64, torch.tensor(ref32), dtype)
    testing.tolerance.assert_within_budget("v", impl, ref64, torch.tensor(ref32), dtype)
    wrong = (impl + 0.25).to(dtype)
    over = r"v: max error 2.5\d*e-01 over the budget .* first failure at time step 0"
    with pytest.raises(testing.ConformanceError, match=over):
        testing.assert_close("v", wrong, ref64, ref32, dtype)
    assert testing.tolerance.worst_fraction(wrong, ref64, ref32, dtype) > 1
    with pytest.raises(AssertionError, match="v: max"):
        testing.tolerance.assert_within_budget("v", wrong, ref64, ref32, dtype)


def test_assert_close_reports_a_final_state_by_index_not_by_time_step():
    impl = np.zeros((2, 5))
    impl[1, 3] = 1e-3
    # The values as numbers, not NumPy 2's reprs ("impl np.float64(0.001)").
    with pytest.raises(testing.ConformanceError, match=r"first failure at index \(1, 3\) \(impl 0.001, spec 0.0\)"):
        testing.assert_close("final.v", impl, np.zeros((2, 5)), np.zeros((2, 5)), np.float32)


def test_assert_close_refuses_a_ref32_whose_spikes_flipped_and_catches_a_late_reset_with_a_forced_one():
    # Found by an outside user: float32 flips a spike that float64 fires at 1 + 1e-12 over threshold (hxtorch
    # fires on >), the unforced ref32 then runs on another trajectory, and a simulator that reset one
    # step late passed assert_close on "out" and "v" with thousands of wrong spikes.
    key, params = "hxtorch.cuba_lif", dict(leak=0.0, reset=0.0, threshold=1.0, tau_syn=5e-6, tau_mem=2e-6)
    x = np.full((40, 1, 4), 0.3)
    x[0, 0, 0] = 2 * (1 + 1e-12)
    ref64 = snnref.spec.simulate(key, x, params)
    ref32 = snnref.spec.simulate(key, x.astype(np.float32), params, dtype=np.float32)
    flips = np.argwhere(ref32.outputs["out"] != ref64.outputs["out"])
    assert flips.size, "the case no longer flips a spike in float32"
    step, *neuron = (int(i) for i in flips[0])
    with pytest.raises(ValueError, match=rf"^ref32: its spikes differ from ref64's \({len(flips)}, the first at time "
                                         rf"step {step}, neuron \({neuron[0]}, {neuron[1]}\)\)"):
        testing.assert_close("out", ref64.outputs["out"], ref64.outputs["out"], ref32.outputs["out"], "float32",
                             model=key)
    forced = snnref.spec.simulate(key, x.astype(np.float32), params, dtype=np.float32,
                                  force_spikes=ref64.outputs["out"])
    # A membrane reset one step late: the spike's step keeps its value above threshold.
    late = ref64.outputs["v"].copy()
    fired = np.argwhere(ref64.outputs["out"] == 1)
    assert fired.size
    t, b, n = (int(i) for i in fired[-1])
    late[t, b, n] = 1.5
    for quantity, impl in (("out", ref64.outputs["out"]), ("v", ref64.outputs["v"])):
        testing.assert_close(quantity, impl, ref64.outputs[quantity], forced.outputs[quantity], "float32", model=key)
    with pytest.raises(testing.ConformanceError, match=rf"v: max error .* first failure at time step {t}"):
        testing.assert_close("v", late, ref64.outputs["v"], forced.outputs["v"], "float32", model=key)


def test_assert_conforms_takes_a_numpy_dtype_a_kind_by_name_and_refuses_no_examples():
    worst = testing.assert_conforms(outside_lif.correct, "tether.LIF", dtype=np.float32, kinds="random", examples=1)
    assert 0 <= worst <= 1
    with pytest.raises(ValueError, match="examples: expected an integer >= 1, got -1"):
        testing.assert_conforms(outside_lif.correct, "tether.LIF", examples=-1)
    # Found by an outside user: "no" was truthy, and the goldens ran.
    with pytest.raises(TypeError, match="^golden: expected True or False, got 'no'$"):
        testing.assert_conforms(outside_lif.correct, "tether.LIF", golden="no")


def test_strategies_without_hypothesis_names_the_extra():
    # Found by an outside user: a plain install met "No module named 'hypothesis'" and no more.
    code = ("import sys\n"
            "sys.modules['hypothesis'] = None\n"
            "try:\n"
            "    import snnref.testing.strategies\n"
            "except ModuleNotFoundError as error:\n"
            "    print(error.name, '|', error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == ("hypothesis | snnref.testing.strategies needs hypothesis: "
                                   "pip install 'snnref[test]'"), done.stdout + done.stderr


def test_strategies_is_an_attribute_of_the_package():
    import snnref.testing as package

    assert package.strategies is strategies


@pytest.mark.parametrize("key", sorted(registry.MODELS))
@per_model()
@given(data=st.data())
def test_strategies_draw_valid_cases_for_every_model(key, data):
    case = data.draw(strategies.cases(key), label="case")
    row = registry.model(key)
    assert case.model == key
    assert case.x.shape[0] >= 1 and case.surrogate in (row.surrogates or (None,))
    assert set(case.params) == {p.name for p in row.params}



@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items() if row.inject))
def test_a_case_with_injection_observes_every_trace_the_model_accepts(key):
    # Found by mutation testing: with the membrane trace left out, hxtorch.cuba_li's injected cases
    # injected nothing and every "inject" gradient test of it ran without injection.
    from snnref.testing import _checks

    case = _checks.random_case(key, np.random.default_rng(0), steps=4, batch=2, neurons=3, inject=True)
    assert set(case.inject) == set(registry.model(key).inject)
    for name, trace in case.inject.items():
        assert trace.shape == case.x.shape and np.all(np.isfinite(trace))
        if name == "spikes":
            assert set(np.unique(trace)) <= {0.0, 1.0}

@pytest.mark.parametrize("key", ["tether.LIF", "tether.PLIF"])
def test_tether_functional_conforms_through_its_adapter(key):
    fn = functional.lif if key == "tether.LIF" else functional.plif
    assert testing.assert_conforms(adapters.tether_functional(fn), key, examples=5) <= 1


@pytest.mark.parametrize("key", adapters.HXTORCH_MODELS)
def test_hxtorch_functional_conforms_through_its_adapter(key):
    name = key.split(".")[1] + "_integration"
    assert testing.assert_conforms(adapters.hxtorch_functional(getattr(functional, name)), key, examples=4) <= 1


@pytest.mark.parametrize("adapter,model,narrowed", [
    (adapters.tether_functional, "tether.LIF", {"per_neuron": False}),
    (adapters.hxtorch_functional, "hxtorch.cuba_lif", {"takes_state": False}),
])
def test_a_seed_adapter_keeps_what_the_function_declares_and_narrows_it_by_the_signature(adapter, model, narrowed):
    def seed_function(*args, **kwargs):
        raise AssertionError("not called")

    row = registry.model(model)
    seed_function.surrogates = (row.default_surrogate,)
    seed_function.dtypes = ("float32",)
    seed_function.fixed_parameters = row.differentiable[:1]
    seed_function.gradients = False
    # Declared, but what the seed's signature cannot pass stays narrowed.
    seed_function.per_neuron = True
    seed_function.takes_state = True
    contract = testing.Implementation.of(adapter(seed_function), model)
    assert (contract.surrogates, contract.dtypes, contract.fixed, contract.gradients) == (
        (row.default_surrogate,), ("float32",), tuple(row.differentiable[:1]), False)
    assert all(getattr(contract, name) == value for name, value in narrowed.items())


@pytest.mark.parametrize("name", ["b1", "b6", "time_index"])
def test_assert_conforms_rejects_a_planted_mutant(name):
    mutant, model = impl_mutants.CASES[name]
    with pytest.raises(testing.ConformanceError, match=model):
        testing.assert_conforms(getattr(impl_mutants, name), model, examples=5, golden=False)


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_a_drawn_case_prints_as_the_call_that_draws_it_again(key):
    """A failing example must print what reproduces it: the printed call,
    evaluated, gives the same arrays bit for bit."""
    import snnref.testing.strategies  # noqa: F401  (the name the printed call uses)
    from hypothesis import find

    drawn = find(strategies.cases(key), lambda case: case.x.shape[0] > 2)
    again = eval(repr(drawn), {"snnref": __import__("snnref")})
    assert repr(drawn).startswith(f"snnref.testing.strategies.case({key!r}, seed=")
    for part in ("x", "params", "state", "cotangents", "inject"):
        first, second = getattr(drawn, part), getattr(again, part)
        if isinstance(first, dict):
            assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
        else:
            assert np.array_equal(first, second) if first is not None else second is None


def test_a_hypothesis_failure_names_the_call_that_reproduces_it():
    from hypothesis import given, settings

    @settings(max_examples=3, database=None, derandomize=True)
    @given(strategies.cases("tether.LIF"))
    def fails(case):
        assert case.x.size < 0

    with pytest.raises(AssertionError) as failed:
        fails()
    notes = "\n".join(getattr(failed.value, "__notes__", []))
    assert "case=snnref.testing.strategies.case('tether.LIF', seed=" in notes, notes


# Found by mutation testing: each of these passed a planted bug before.
@settings(max_examples=25, database=None, deadline=None)
@given(strategies.cases("hxtorch.cuba_lif", initial_state=False, per_neuron=False, inject=False))
def test_the_narrowing_options_of_cases_hold_on_every_draw(case):
    row = registry.model(case.model)
    assert case.state == {} and case.inject is None
    for param in row.params:
        if param.shape == registry.SCALAR:
            assert np.ndim(case.params[param.name]) == 0, param.name


def test_the_printed_call_draws_the_case_again_for_every_combination_of_flags():
    # The existing test checks hypothesis' minimal example only, where every flag is False.
    for per_neuron in (False, True):
        for random_state in (False, True):
            for inject in (False, True):
                drawn = strategies.case("hxtorch.cuba_lif", seed=5, steps=3, batch=2, neurons=2, surrogate="superspike",
                                        per_neuron=per_neuron, random_state=random_state, inject=inject)
                again = eval(repr(drawn), {"snnref": snnref})
                for part in ("x", "params", "state", "cotangents", "inject"):
                    first, second = getattr(drawn, part), getattr(again, part)
                    if isinstance(first, dict):
                        assert first.keys() == second.keys(), (repr(drawn), part)
                        assert all(np.array_equal(first[k], second[k]) for k in first), (repr(drawn), part)
                    else:
                        assert (second is None) if first is None else np.array_equal(first, second), part


@pytest.mark.parametrize("arguments,message", [
    # Found by outside library authors.  [] drew from max_neurons without a word.
    (dict(neuron_counts=[]), "neuron_counts: expected a non-empty list of neuron counts, got []"),
    # The rest failed at the first draw: "surrogate: unknown name 'a'" (the string's letters), and
    # hypothesis's "Cannot have max_value=0 < min_value=1" or x's own shape error, none naming its argument.
    (dict(surrogates="arctan"), "surrogates: expected a non-empty sequence of surrogate keys, got 'arctan'"),
    (dict(surrogates=()), "surrogates: expected a non-empty sequence of surrogate keys, got ()"),
    (dict(surrogates=("arctan", "spike_linear")), "surrogates: tether.LIF does not accept 'spike_linear'"),
    (dict(max_steps=0), "max_steps: expected a positive integer, got 0"),
    (dict(min_steps=0, max_steps=0), "min_steps: expected a positive integer, got 0"),
    (dict(min_steps=5, max_steps=3), "max_steps: expected an integer >= 5, got 3"),
    (dict(max_batch=0), "max_batch: expected a positive integer, got 0"),
    (dict(max_neurons=0), "max_neurons: expected a positive integer, got 0"),
    (dict(neuron_counts=[4, 0]), "neuron_counts: expected a positive integer, got 0"),
])
def test_the_strategy_refuses_a_bad_argument_by_name_before_any_draw(arguments, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        strategies.cases("tether.LIF", **arguments)


def test_the_package_registers_the_suites_hypothesis_profiles():
    """A user's suite got "Profile 'thorough' is not registered": the profiles lived in this
    repository's conftest.py only."""
    from hypothesis import settings

    strategies.register_profiles()
    ci, thorough = settings.get_profile("snnref-ci"), settings.get_profile("snnref-thorough")
    assert (ci.max_examples, ci.derandomize, ci.deadline, ci.print_blob) == (20, True, None, True)
    assert (thorough.max_examples, thorough.derandomize, thorough.print_blob) == (500, False, True)
    # This suite runs under the same settings.
    assert settings.get_profile("ci").max_examples == ci.max_examples


def test_the_strategies_and_the_contract_read_flags_as_flags():
    # Found by an outside user: "no" was read as True (the case's repr said per_neuron=True), a
    # seed of "a" failed inside NumPy, and NumPy's False was refused by the contract alone.
    with pytest.raises(TypeError, match="^per_neuron: expected True or False, got 'no'$"):
        strategies.case("tether.LIF", seed=1, steps=2, batch=1, neurons=2, surrogate=None, per_neuron="no",
                        random_state=False, inject=False)
    with pytest.raises(ValueError, match="^seed: expected an integer >= 0, got 'a'$"):
        strategies.case("tether.LIF", seed="a", steps=2, batch=1, neurons=2, surrogate=None, per_neuron=False,
                        random_state=False, inject=False)
    with pytest.raises(TypeError, match="^inject: expected True or False, got 'no'$"):
        strategies.cases("tether.LIF", inject="no")
    assert testing.Implementation(outside_lif.correct, "tether.LIF", takes_state=np.False_).takes_state is False


@pytest.mark.parametrize("call,error,message", [
    (lambda r: testing.assert_close("v", "abc", r, r, "float32"), TypeError,
     "^impl: expected numbers \\(an array, a tensor or a number\\), got str$"),
    (lambda r: testing.tolerance.worst_fraction(None, r, r, "float32"), TypeError, "^impl: expected numbers"),
    (lambda r: testing.assert_close("v", torch.ones(3, device="meta"), r, r, "float32"), ValueError,
     "^impl: a tensor on the 'meta' device holds no values to compare"),
    (lambda r: testing.tolerance.budget(r, r, "float32", long_sum="no"), ValueError,
     "^long_sum: expected \\(A, n\\) with A >= 0 and n >= 1, both finite, got 'no'$"),
])
def test_the_budget_checks_name_what_they_cannot_read(call, error, message):
    # Found by an outside user: None read as NaN, a string failed inside NumPy, a meta tensor inside
    # torch, and long_sum="no" inside math.
    with pytest.raises(error, match=message):
        call(np.ones(3))


def test_assert_conforms_and_the_adapters_name_what_they_cannot_take():
    # Found by an outside user: inside pathlib ("expected str, bytes or os.PathLike object, not int"),
    # and only when the gate called the wrapped function ("'int' object is not callable").
    with pytest.raises(TypeError, match=r"^golden_dir: expected a directory path \(str or os.PathLike\), got int$"):
        testing.assert_conforms(outside_lif.correct, "tether.LIF", golden_dir=3)
    for adapter in (adapters.tether_functional, adapters.hxtorch_functional):
        with pytest.raises(TypeError, match="^fn: expected the seed function to wrap, got int$"):
            adapter(3)


def test_the_package_docstring_names_every_attribute_a_function_may_declare():
    """Found by an outside user: ``gradients`` worked but the list left it out."""
    from snnref import testing
    from snnref.testing import contract

    for attribute, field_name in contract.DECLARED.items():
        assert f"``{attribute}``" in testing.__doc__, attribute
        assert f"{field_name}=..." in testing.__doc__, field_name
