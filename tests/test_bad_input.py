"""Bad input gets a ValueError or TypeError naming the argument and what was expected."""

import re

import numpy as np
import pytest
import scipy.special

from snnref import checks, registry, spec
from snnref.spec import surrogates

X = np.full((4, 2, 3), 0.5)


def raises(error, match, *args, **kwargs):
    with pytest.raises(error, match=match):
        spec.simulate(*args, **kwargs)


def test_unknown_model_lists_the_valid_ones():
    raises(ValueError, r"model: unknown name 'tether.lif'.*tether\.LIF.*hxtorch\.cuba_li", "tether.lif", X)


@pytest.mark.parametrize("name,meant", [("LIF", "'tether.LIF' or 'rnnbuilder.LIF'"),
                                       ("lif", "'tether.LIF' or 'rnnbuilder.LIF'"),
                                       ("cuba_lif", "'hxtorch.cuba_lif'")])
def test_a_key_without_its_library_names_the_rows_it_may_mean(name, meant):
    # Found by an outside user: "LIF" listed every key and suggested none.
    raises(ValueError, rf"model: unknown name {name!r}; .*\(did you mean {re.escape(meant)}\?\)$", name, X)


def test_unknown_surrogate_lists_the_valid_ones():
    raises(ValueError, r"surrogate: unknown name 'super_spike'.*superspike", "hxtorch.cuba_lif", X,
           surrogate="super_spike")


def test_surrogate_the_model_does_not_accept():
    raises(ValueError, r"surrogate: rnnbuilder.LIF does not accept 'arctan'; it accepts: spike_linear",
           "rnnbuilder.LIF", X, surrogate="arctan")
    raises(ValueError, r"surrogate: hxtorch.cuba_li does not accept", "hxtorch.cuba_li", X, surrogate="superspike")


# Found by mutation testing: a declared custom surrogate was taken by a model that does not spike
# (and silently unused) with this check removed; registry keys had their own test, custom ones none.
def test_a_custom_surrogate_on_a_model_that_does_not_spike():
    custom = surrogates.Custom("mine", f=lambda u, a: np.ones_like(u), F=lambda u, a: u)
    raises(ValueError, r"surrogate: hxtorch.cuba_li does not spike, so it takes no surrogate",
           "hxtorch.cuba_li", X, surrogate=custom)


@pytest.mark.parametrize("x,match", [
    (np.zeros(4), r"x: expected a time-major array of shape \(T, ..., N\)"),
    (np.zeros((0, 3)), r"x: expected at least one time step \(every axis non-empty\), got shape \(0, 3\)"),
    (np.zeros((4, 0)), r"x: expected at least one neuron \(every axis non-empty\)"),
    # A batch axis used to be reported as "at least one time step and one neuron".
    (np.zeros((4, 0, 3)), r"x: expected at least one element along axis 1 \(every axis non-empty\)"),
])
def test_wrong_rank_or_empty_input(x, match):
    raises(ValueError, match, "tether.LIF", x)


def test_attention_needs_rank_four():
    raises(ValueError, r"x: tether.SpikingSelfAttention expects rank 4", "tether.SpikingSelfAttention", X)
    # Found by mutation testing: its last axis is the features D, not the neurons; it was called the
    # neuron axis with the rank condition removed.
    raises(ValueError, r"^x: expected at least one element along axis 3 \(every axis non-empty\)",
           "tether.SpikingSelfAttention", np.zeros((2, 1, 1, 0)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_unless_opted_in(bad):
    x = X.copy()
    x[2, 1, 0] = bad
    raises(ValueError, "x: expected finite values", "tether.LIF", x)
    trace = spec.simulate("tether.LIF", x, allow_nonfinite=True)
    assert not np.all(np.isfinite(trace.outputs["v"]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_cotangents_only_when_opted_in_and_never_a_non_finite_forced_spike():
    # Found by an outside user: the message said "pass allow_nonfinite=True", which did nothing.
    cotangent = {"out": np.full(X.shape, np.nan)}
    with pytest.raises(ValueError, match=r"^cotangents\['out'\]: expected finite values, found NaN or inf \(pass "):
        spec.vjp("tether.LIF", X, None, None, cotangent)
    assert np.isnan(spec.vjp("tether.LIF", X, None, None, cotangent, allow_nonfinite=True)["x"]).all()
    with pytest.raises(ValueError, match=r"^force_spikes: expected finite values, found NaN or inf$"):
        spec.simulate("tether.LIF", X, force_spikes=np.full(X.shape, np.nan), allow_nonfinite=True)


def test_a_custom_surrogate_whose_scale_the_model_lacks_is_refused_by_name():
    # Found by an outside user: a TypeError from inside the surrogate's own f (its scale was None).
    gauss = spec.surrogates.Custom("gauss", lambda u, a: a * np.exp(-(a * u) ** 2) / np.sqrt(np.pi),
                                   lambda u, a: 0.5 * (1 + scipy.special.erf(a * u)))
    raises(ValueError, r"surrogate: the custom surrogate 'gauss' takes its scale from 'alpha', which rnnbuilder.LIF "
           r"does not have; its parameters: tau, gradient_factor", "rnnbuilder.LIF", X, surrogate=gauss)


def test_a_float32_run_checks_its_inputs_as_float32_holds_them():
    # 1e300 is inf and 1e-300 is 0 in float32: the run gave NaN without a word.
    # Named as what the dtype did to them (it read "found NaN or inf" and "got 0.0": numbers never written).
    raises(ValueError, r"^x: 5e\+299 overflows float32, the dtype this run computes in; pass a value that float32 "
           r"holds, or run in float64$", "tether.LIF", X * 1e300, dtype=np.float32)
    raises(ValueError, r"^params\['tau_mem'\]: 1e-300 underflows to 0 in float32", "hxtorch.cuba_lif", X,
           {"tau_mem": 1e-300}, dtype=np.float32)
    # An input that underflows is only small: no refusal.
    assert spec.simulate("tether.LIF", X * 1e-300, dtype=np.float32).outputs["out"].sum() == 0
    # float64 holds the input: the same call runs there.
    assert np.all(np.isfinite(spec.simulate("tether.LIF", X * 1e300).outputs["v"]))


def test_non_numeric_input():
    raises(TypeError, "x: expected a real numeric array", "tether.LIF", np.array([["a"]]))
    raises(TypeError, "x: expected a real numeric array", "tether.LIF", X.astype(complex))


def test_dtype_must_be_float32_or_float64():
    raises(TypeError, "dtype: expected numpy.float32 or numpy.float64", "tether.LIF", X, dtype=np.float16)
    raises(TypeError, "dtype: expected numpy.float32 or numpy.float64", "tether.LIF", X, dtype="int64")


def test_non_broadcastable_per_neuron_parameter():
    raises(ValueError, r"params\['decay'\]: expected a scalar, \(1,\) or \(3,\) \(per neuron\) for N=3 \(x's last axis\), "
           r"got shape \(2,\)",
           "tether.PLIF", X, {"decay": np.ones(2)})
    raises(ValueError, r"params\['threshold'\]: .* got shape \(2, 3\)", "tether.LIF", X, {"threshold": np.ones((2, 3))})


def test_unknown_and_missing_parameters():
    raises(ValueError, r"params: tether.LIF has no parameter 'tau'; expected among: decay, threshold, alpha",
           "tether.LIF", X, {"tau": 2.0})
    x = np.zeros((2, 1, 1, 2))
    raises(ValueError, r"params\['q_weight'\]: required by tether.SpikingSelfAttention, expected \(2, 2\)",
           "tether.SpikingSelfAttention", x)


# Found by mutation testing: a proj_bias of shape (1,) was broadcast over the features with the
# attention's exact (D,) shape loosened; no other test gave a weight or bias of the wrong shape.
def test_attention_weights_and_bias_take_exactly_their_shapes():
    x = np.zeros((2, 1, 1, 2))
    weights = {n: np.eye(2) for n in ("q_weight", "k_weight", "v_weight", "proj_weight")}
    raises(ValueError, r"params\['proj_bias'\]: expected \(2,\) for N=2 \(x's last axis\), got shape \(1,\)",
           "tether.SpikingSelfAttention", x, {**weights, "proj_bias": np.zeros(1)})
    raises(ValueError, r"params\['q_weight'\]: expected \(2, 2\) for N=2 \(x's last axis\), got shape \(2,\)",
           "tether.SpikingSelfAttention", x, {**weights, "q_weight": np.ones(2), "proj_bias": np.zeros(2)})


@pytest.mark.parametrize("model,name,value", [
    ("hxtorch.cuba_lif", "tau_mem", 0.0),
    ("hxtorch.cuba_lif", "tau_syn", -1e-5),
    ("hxtorch.cuba_lif", "dt", 0.0),
    ("hxtorch.cuba_refractory_lif", "refractory_time", -1e-6),
    ("rnnbuilder.LIF", "tau", 0.0),
    ("rnnbuilder.Adaptive", "tau_thr", -5.0),
    ("tether.LIF", "alpha", 0.0),
])
def test_time_constants_and_scales_must_be_positive(model, name, value):
    raises(ValueError, rf"params\['{name}'\]: expected values >= 0|params\['{name}'\]: expected values > 0",
           model, X, {name: value})


# Found by mutation testing: each passed a planted bug before (the domain read from the first
# element only; a NaN non-negative parameter taken under allow_nonfinite, where a positive one is refused).
def test_the_domain_holds_for_every_element_and_for_nan():
    raises(ValueError, r"params\['tau_mem'\]: expected values > 0, got \[1e-05, -1e-05, 1e-05\]",
           "hxtorch.cuba_lif", X, {"tau_mem": np.array([1e-5, -1e-5, 1e-5])})
    raises(ValueError, r"params\['refractory_time'\]: expected values >= 0, got nan",
           "hxtorch.cuba_refractory_lif", X, {"refractory_time": np.nan}, allow_nonfinite=True)


def test_non_finite_parameter():
    raises(ValueError, r"params\['decay'\]: expected finite values", "tether.LIF", X, {"decay": np.nan})


@pytest.mark.parametrize("value", [True, np.bool_(False), np.array([True, False, True])])
def test_a_boolean_parameter_is_refused(value):
    raises(TypeError, r"params\['decay'\]: expected a number, got a boolean", "tether.PLIF", X, {"decay": value})


def test_state_errors():
    raises(ValueError, r"state: tether.LIF has no state variable 'm'; expected among: v", "tether.LIF", X, None, {"m": 0})
    raises(ValueError, r"state\['v'\]: expected a shape that broadcasts to \(2, 3\), got \(4,\)",
           "tether.LIF", X, None, {"v": np.zeros(4)})
    raises(ValueError, r"state: rnnbuilder.Discontinuous has no state variable 'm'.*stateless",
           "rnnbuilder.Discontinuous", X, None, {"m": 0})
    raises(TypeError, "state: expected a dict", "tether.LIF", X, None, [0.0])


def test_inject_errors():
    raises(ValueError, r"inject: tether.LIF takes no hardware observations", "tether.LIF", X, inject={"v": X})
    raises(ValueError, r"inject: hxtorch.cuba_li accepts 'v', got 'spikes'", "hxtorch.cuba_li", X, inject={"spikes": X})
    raises(ValueError, r"inject\['v'\]: expected shape \(T_hw, 2, 3\) with T_hw >= 1, got \(4, 3, 2\)",
           "hxtorch.cuba_lif", X, inject={"v": np.zeros((4, 3, 2))})
    raises(ValueError, r"inject\['spikes'\]: expected finite values", "hxtorch.cuba_lif", X,
           inject={"spikes": np.full((4, 2, 3), np.nan)})


def test_cotangent_errors():
    with pytest.raises(ValueError, match=r"cotangents: unknown key 'spikes'; expected among: out, v, final.v"):
        spec.vjp("tether.LIF", X, None, None, {"spikes": X})
    with pytest.raises(ValueError, match=r"cotangents\['final.v'\]: expected shape \(2, 3\), got \(4, 2, 3\)"):
        spec.vjp("tether.LIF", X, None, None, {"final.v": X})


def test_cooldown_rejects_input_whose_exponential_overflows():
    x = X.copy()
    x[0, 0, 0] = 800.0
    with pytest.raises(ValueError, match="x"):
        spec.simulate("rnnbuilder.Cooldown", x)
    with pytest.raises(ValueError, match="x"):
        spec.simulate("rnnbuilder.Cooldown", np.full((2, 1, 2), 100.0), dtype=np.float32)


def test_detached_values_must_come_from_a_matching_run():
    trace = spec.simulate("tether.LIF", X, smooth=True)
    replay = spec.simulate("tether.LIF", X, smooth=True, detached=trace.detached)
    np.testing.assert_array_equal(replay.outputs["out"], trace.outputs["out"])
    with pytest.raises(ValueError, match=r"detached\['reset_spike'\]: expected shape \(3, 2, 3\)"):
        spec.simulate("tether.LIF", X[:3], smooth=True, detached=trace.detached)
    with pytest.raises(ValueError, match=r"detached: expected the Trace.detached .* lacks 'reset_spike'"):
        spec.simulate("tether.LIF", X, smooth=True, detached={})
    with pytest.raises(TypeError, match=r"detached: expected a dict of stop-gradient values \(the dict Trace.detached\)"):
        spec.simulate("tether.LIF", X, detached=[1])
    # Found by an outside user: a key the run does not record was ignored (a typo, another model's
    # values, a replay of a run with injected spikes on a run without).
    with pytest.raises(ValueError, match=r"^detached: 'reset_spikes': no stop-gradient value of this run \(a "
                                         r"tether.LIF run with these injections records: reset_spike\)$"):
        spec.simulate("tether.LIF", X, smooth=True,
                      detached={**trace.detached, "reset_spikes": trace.detached["reset_spike"]})
    injected = spec.simulate("hxtorch.cuba_lif", X, smooth=True, inject={"spikes": np.zeros(X.shape)}).detached
    with pytest.raises(ValueError, match=r"^detached: 'inject_spikes': no stop-gradient value"):
        spec.simulate("hxtorch.cuba_lif", X, smooth=True, detached=injected)


def test_force_spikes_errors():
    with pytest.raises(ValueError, match=r"force_spikes: expected the spike train's shape \(4, 2, 3\), got \(3, 2, 3\)"):
        spec.simulate("tether.LIF", X, force_spikes=np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="force_spikes: hxtorch.cuba_li has no spike output"):
        spec.simulate("hxtorch.cuba_li", X, force_spikes=np.zeros_like(X))
    with pytest.raises(ValueError, match="force_spikes: tether.SpikingSelfAttention has no spike output"):
        spec.simulate("tether.SpikingSelfAttention", np.zeros((2, 1, 1, 2)), {
            n: np.eye(2) for n in ("q_weight", "k_weight", "v_weight", "proj_weight")} | {"proj_bias": np.zeros(2)},
            force_spikes=np.zeros((2, 1, 1, 2)))
    with pytest.raises(ValueError, match="force_spikes: teacher forcing replaces H"):
        spec.simulate("tether.LIF", X, smooth=True, force_spikes=np.zeros_like(X))


def test_a_smooth_twin_s_detached_values_are_refused_by_the_model():
    # In the model a replayed fractional reset spike gave a trace that was neither the model nor its twin;
    # the model's own (0 or 1) replay it exactly.
    x = X * 4
    held = spec.simulate("tether.LIF", x, smooth=True).detached
    with pytest.raises(ValueError, match=r"detached\['reset_spike'\]: expected the model's own spikes \(the smooth "
                                         r"twin's take smooth=True\) of exactly 0 or 1"):
        spec.simulate("tether.LIF", x, detached=held)
    own = spec.simulate("tether.LIF", x)
    replayed = spec.simulate("tether.LIF", x, detached=own.detached)
    np.testing.assert_array_equal(replayed.outputs["v"], own.outputs["v"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_detached_values_unless_opted_in():
    trace = spec.simulate("tether.LIF", X, smooth=True)
    poisoned = {key: np.full_like(value, np.nan) for key, value in trace.detached.items()}
    with pytest.raises(ValueError, match=r"detached\['reset_spike'\]: expected finite values"):
        spec.simulate("tether.LIF", X, smooth=True, detached=poisoned)
    replay = spec.simulate("tether.LIF", X, smooth=True, detached=poisoned, allow_nonfinite=True)
    assert np.isnan(replay.outputs["v"][1:]).any()


def test_observed_spikes_must_be_zero_or_one():
    spikes = np.zeros((4, 2, 3))
    spikes[1, 0, 2] = 0.5
    raises(ValueError, r"inject\['spikes'\]: expected observed spikes of exactly 0 or 1, got 0.5",
           "hxtorch.cuba_lif", X, inject={"spikes": spikes})


def test_an_empty_hardware_trace_is_refused_by_name():
    # Found by mutation testing: accepted with the T_hw >= 1 check removed.
    empty = r"inject\['v'\]: expected shape \(T_hw, 2, 3\) with T_hw >= 1, got \(0, 2, 3\)"
    with pytest.raises(ValueError, match=empty):
        spec.simulate("hxtorch.cuba_lif", np.full((4, 2, 3), 0.5), inject={"v": np.zeros((0, 2, 3))})


def test_a_float32_value_is_written_as_the_caller_wrote_it():
    """A float32 run converts its parameters first: the message wrote -1e-6 in
    float64's digits, -9.999999974752427e-07, a number the caller never wrote."""
    import torch

    import snnref

    x32 = X.astype(np.float32)
    raises(ValueError, r"^params\['tau_syn'\]: expected values > 0, got -1e-06$", "hxtorch.cuba_lif", x32,
           {"tau_syn": -1e-6})
    with pytest.raises(ValueError, match=r"^params\['tau_syn'\]: expected values > 0, got \[1e-05, -1e-06, 0.1\]$"):
        snnref.simulate("hxtorch.cuba_lif", torch.from_numpy(x32), {"tau_syn": torch.tensor([1e-5, -1e-6, 0.1])},
                        backend="torch")
    with pytest.raises(ValueError, match=r"^params\['alpha'\]: expected values > 0, got -0.1$"):
        snnref.simulate("tether.LIF", torch.from_numpy(x32), {"alpha": -0.1}, backend="torch")
    # float64 keeps every digit it holds.
    raises(ValueError, r"^params\['tau_syn'\]: expected values > 0, got -1.0000000000000002e-06$",
           "hxtorch.cuba_lif", X, {"tau_syn": np.nextafter(-1e-6, -1)})


def test_a_custom_surrogate_is_proven_before_the_spec_uses_it():
    # Found by an outside user: called directly, simulate and vjp took an f twice the primitive's
    # derivative and returned a smooth-twin gradient twice the finite differences, without a word.
    def gauss_f(u, a):
        return a * np.exp(-(a * u) ** 2) / np.sqrt(np.pi)

    def gauss_F(u, a):
        return 0.5 * (1 + scipy.special.erf(a * u))

    doubled = surrogates.Custom("gauss", lambda u, a: 2 * gauss_f(u, a), gauss_F)
    raises(ValueError, r"^surrogate 'gauss': f is not dF/du \(F's rise and f's integral differ by", "tether.LIF", X,
           surrogate=doubled, smooth=True)
    with pytest.raises(ValueError, match=r"^surrogate 'gauss': f is not dF/du"):
        spec.vjp("tether.LIF", X, None, None, {"out": np.ones_like(X)}, surrogate=doubled, smooth=True)
    good = surrogates.Custom("gauss", gauss_f, gauss_F)
    assert np.isfinite(spec.vjp("tether.LIF", X, {"alpha": 2.0}, None, {"out": np.ones_like(X)}, surrogate=good,
                                smooth=True)["x"]).all()


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_a_missing_name_in_a_trace_or_its_gradients_says_what_they_hold(key):
    case = checks.random_case(key, np.random.default_rng(0))
    trace = spec.simulate(case.model, case.x, case.params, case.state, surrogate=case.surrogate, inject=case.inject)
    grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents, surrogate=case.surrogate,
                     inject=case.inject)
    for record, what in [(trace.outputs, "outputs"), (trace.final_state, "final_state"),
                         (trace.detached, "detached"), (grads, "gradients")]:
        held = ", ".join(repr(name) for name in record) or "nothing"
        with pytest.raises(KeyError, match=re.escape(f"{what} of this {key} ")) as raised:
            record["no such name"]
        assert raised.value.args[0].endswith(f"no 'no such name'; it holds {held}")
        # Lookups that do not raise are the plain dict's.
        assert record.get("no such name") is None and "no such name" not in record


def test_magnitudes_must_be_a_dict_to_fill():
    with pytest.raises(TypeError, match=r"^magnitudes: expected a dict to fill \(or None\), got list$"):
        spec.vjp("tether.LIF", X, None, None, {"out": np.ones_like(X)}, magnitudes=[])


def test_an_unknown_parameter_of_a_row_lists_the_row_s():
    with pytest.raises(KeyError, match="tether.LIF has no parameter 'bogus'; its parameters: decay, threshold, alpha"):
        registry.model("tether.LIF").param("bogus")


def test_a_cotangent_the_run_s_dtype_cannot_hold_is_named_as_such():
    # Found by an outside user: 1e40 is inf in float32, and the gradients came back NaN without a word.
    with pytest.raises(ValueError, match=r"^cotangents\['out'\]: 1e\+40 overflows float32"):
        spec.vjp("tether.LIF", X, None, None, {"out": np.full(X.shape, 1e40)}, dtype=np.float32)
    assert np.all(np.isfinite(spec.vjp("tether.LIF", X, None, None, {"out": np.full(X.shape, 1e40)})["x"]))
