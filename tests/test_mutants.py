"""The finite-difference gate has teeth: each seed bug of SPEC.md section 6 that
lives in a gradient, planted into the spec's backward, makes gradient_check fail.
Every family has at least one planted mutant in every layer (spec, torch,
triton, cpu): the hand-written ones of tests/fixtures and the generic ones of
tests/fixtures/family_mutants.py, stamped over every family and production layer.

A mutant wraps the family's hand-written backward (or a surrogate) and changes
exactly what the seed bug changes; the check must then report a relative error
far above the pass bound on the case built here."""

import importlib.util

import numpy as np
import pytest
import torch

import snnref.spec.api as api
from fixtures import family_mutants
from fixtures.cpu_mutants import CPU_MUTANTS
from fixtures.kernel_mutants import KERNEL_MUTANTS
from fixtures.torch_mutants import MUTANTS as TORCH_MUTANTS
from snnref import families, registry
from snnref.spec import surrogates
from snnref.testing import _checks as checks, _equivalence as equivalence

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


# The spec layer's generic mutant: every model, so every family, by construction.
SPEC_MUTANT_MODELS = sorted(registry.MODELS)


@pytest.mark.parametrize("key", SPEC_MUTANT_MODELS)
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


GENERIC_CASES = [
    pytest.param(mutant, family, layer, id=f"{layer}-{family}-{mutant.name}",
                 marks=pytest.mark.skip(f"{layer} needs {package}") if importlib.util.find_spec(package) is None
                 else ())
    for layer, package in (("torch", "torch"), ("triton", "triton"), ("cpu", "numba"))
    for family in families.names()
    for mutant in family_mutants.GENERIC
]


@pytest.mark.parametrize("mutant,family,layer", GENERIC_CASES)
def test_generic_mutant_is_caught(mutant, family, layer, monkeypatch):
    key = families.models(family)[0]
    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(8), steps=5, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    # The same case passes unmutated, so the failure below is the mutant's.
    assert equivalence.compare(case, layer, torch.float32).passed
    family_mutants.install(mutant, family, layer, monkeypatch)
    assert not equivalence.compare(case, layer, torch.float32).passed, f"{mutant.name} survives {key} on {layer}"


def _families_of(mutants, package):
    return {m.module[len(package) + 1:] for m in mutants if m.module.rpartition(".")[0] == package}


def test_every_family_has_a_planted_mutant_in_every_layer():
    covered = {
        "spec": {registry.model(key).family for key in SPEC_MUTANT_MODELS},
        "torch": _families_of(TORCH_MUTANTS, "snnref.ops"),
        "triton": _families_of(KERNEL_MUTANTS, "snnref.kernels"),
        "cpu": _families_of(CPU_MUTANTS, "snnref.kernels.cpu"),
    }
    for case in GENERIC_CASES:
        _, family, layer = case.values
        covered[layer].add(family)
    missing = [(family, layer) for family in families.names() for layer in families.LAYERS
               if family not in covered[layer]]
    assert not missing, f"families without a planted mutant in a layer: {missing}"
