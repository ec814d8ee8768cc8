"""The finite-difference gate has teeth: each seed bug of SPEC.md section 6 that
lives in a gradient, planted into the spec's backward, makes gradient_check fail.

A mutant wraps the family's hand-written backward (or a surrogate) and changes
exactly what the seed bug changes; the check must then report a relative error
far above the pass bound on the case built here."""

import numpy as np
import pytest

import snnref.spec.api as api
from snnref import checks, registry
from snnref.spec import surrogates

FD_BOUND = 1e-6


def worst(key, surrogate=None, seed=3):
    case = checks.random_case(key, np.random.default_rng(seed), surrogate=surrogate, steps=10)
    return checks.gradient_check(case).worst


def test_correct_backwards_pass():
    for key in ("tether.LIF", "tether.ALIF", "tether.SpikingSelfAttention"):
        assert worst(key) < FD_BOUND


@pytest.mark.parametrize("key", ["tether.LIF", "tether.PLIF", "tether.ALIF"])
def test_b1_extra_decay_on_the_final_state_gradient(monkeypatch, key):
    decay = "decay_v" if key == "tether.ALIF" else "decay"
    family = api._family(registry.model(key))
    original = family.backward

    def b1(row, x, params, state, spike, inject, tape, cot):
        cot = dict(cot, **{"final.v": cot["final.v"] * params[decay]})
        return original(row, x, params, state, spike, inject, tape, cot)

    monkeypatch.setattr(family, "backward", b1)
    assert worst(key) > 100 * FD_BOUND


@pytest.mark.parametrize("key", ["tether.LIF", "tether.PLIF", "tether.ALIF"])
def test_b2_initial_state_gradient_is_the_final_state_gradient(plant_backward, key):
    def b2(grads, params, state, tape, cot):
        grads["state.v"] = cot["final.v"].copy()

    plant_backward(key, b2)
    assert worst(key) > 100 * FD_BOUND


def test_b5_spurious_initial_adaptation_term(plant_backward):
    def b5(grads, params, state, tape, cot):
        # g a[0] * a_init, where g a[0] is what the initial adaptation receives.
        grads["decay_a"] = grads["decay_a"] + grads["state.a"] * state["a"]

    plant_backward("tether.ALIF", b5)
    assert worst("tether.ALIF") > 100 * FD_BOUND


def test_b12_missing_final_adaptation_term(plant_backward):
    def b12(grads, params, state, tape, cot):
        grads["decay_a"] = grads["decay_a"] - cot["final.a"] * tape["a"][-1]

    plant_backward("tether.ALIF", b12)
    assert worst("tether.ALIF") > 100 * FD_BOUND


def test_b6_attention_weights_without_gradient(plant_backward):
    def b6(grads, params, state, tape, cot):
        for name in ("q_weight", "k_weight", "v_weight"):
            grads[name] = np.zeros_like(grads[name])

    plant_backward("tether.SpikingSelfAttention", b6)
    assert worst("tether.SpikingSelfAttention") > 100 * FD_BOUND


def test_b10_fast_sigmoid_alpha_gradient_u_f_over_alpha(monkeypatch):
    right = surrogates.IMPLEMENTATIONS["fast_sigmoid"]
    wrong = surrogates.SurrogateMath(right.f, right.F, lambda u, a: u * right.f(u, a) / a)
    monkeypatch.setitem(surrogates.IMPLEMENTATIONS, "fast_sigmoid", wrong)
    assert worst("tether.LIF", "fast_sigmoid") > 100 * FD_BOUND


@pytest.mark.parametrize("key", ["tether.LIF", "tether.ALIF", "hxtorch.cuba_lif"])
def test_missing_one_minus_s_in_the_reset_gradient(monkeypatch, key):
    # Dropping (1 - s) lets the gradient pass a reset unattenuated: the same as
    # running the backward with every recorded (detached) reset spike at 0.
    family = api._family(registry.model(key))
    original = family.backward

    def no_reset(row, x, params, state, spike, inject, tape, cot):
        tape = dict(tape, reset_spike=np.zeros_like(tape["reset_spike"]))
        return original(row, x, params, state, spike, inject, tape, cot)

    monkeypatch.setattr(family, "backward", no_reset)
    assert worst(key) > 100 * FD_BOUND


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_off_by_one_time_index_in_the_backward(plant_backward, key):
    def shifted(grads, params, state, tape, cot):
        grads["x"] = np.roll(grads["x"], 1, axis=0)

    plant_backward(key, shifted)
    assert worst(key) > 100 * FD_BOUND


@pytest.mark.parametrize("key", ["tether.LIF", "rnnbuilder.Adaptive", "hxtorch.cuba_iaf"])
def test_wrong_surrogate_in_the_backward(monkeypatch, key):
    row = registry.model(key)
    surrogate = row.default_surrogate
    right = surrogates.IMPLEMENTATIONS[surrogate]
    # The backward evaluates another surrogate's bump at the same scale.
    other = surrogates.sigmoid_f if surrogate != "sigmoid" else surrogates.arctan_f
    wrong = surrogates.SurrogateMath(other, right.F, right.dF)
    monkeypatch.setitem(surrogates.IMPLEMENTATIONS, surrogate, wrong)
    assert worst(key, surrogate) > 100 * FD_BOUND
