"""The torch backend equals the spec (SPEC.md section 7), for every registry model.

Hypothesis draws the model, T from 1 up, batch 1 and more, N not a multiple of
any block size, scalar or per-neuron parameters, every accepted surrogate,
hardware injection, contiguous or strided input, float32 or float64.  Outputs,
state sequences, final states and the gradients for x, every trainable
parameter and every initial state are compared with the float64 and float32
spec under the tolerance policy; spike flips must be explained by teacher
forcing.  gradcheck runs on every model's smooth twin."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from snnref import checks, equivalence, gradcheck, registry
from snnref.testing import strategies

MODELS = sorted(registry.MODELS)


def torch_cases():
    return st.tuples(strategies.cases(max_steps=10, neuron_counts=[1, 3, 7, 13]),
                     st.sampled_from([torch.float32, torch.float64]), st.booleans())


@given(torch_cases())
def test_torch_backend_equals_the_spec(drawn):
    case, dtype, contiguous = drawn
    report = equivalence.compare(case, "torch", dtype, contiguous=contiguous)
    assert report.passed, f"{case.model} {report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_model_on_a_fixed_case(key, dtype):
    row = registry.MODELS[key]
    for surrogate in row.surrogates or (None,):
        case = checks.random_case(key, np.random.default_rng(11), steps=12, batch=2, neurons=5,
                                  surrogate=surrogate, per_neuron=True, inject=bool(row.inject))
        report = equivalence.compare(case, "torch", dtype)
        assert report.passed, "; ".join(report.failures)
        if dtype == torch.float64:
            # Near machine precision: far inside the float64 budget of 64 ulp.
            assert report.worst < 0.5, report.fractions


@pytest.mark.parametrize("key", MODELS)
def test_gradcheck_on_the_smooth_twin(key):
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(5), steps=4, batch=2, neurons=3,
                              per_neuron=True, inject=bool(row.inject))
    assert gradcheck.smooth_twin_gradcheck(case)


def test_equivalence_catches_a_wrong_gradient(monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.backward

    def skewed(ctx, *grads):
        result = list(original(ctx, *grads))
        result[3] = result[3] * 1.01  # the threshold's gradient
        return tuple(result)

    monkeypatch.setattr(lif._Scan, "backward", staticmethod(skewed))
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=10)
    report = equivalence.compare(case, "torch", torch.float32)
    assert not report.passed
    assert any(f.startswith("grad:threshold") for f in report.failures)


def test_equivalence_rejects_an_unexplained_spike_flip(monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.forward

    def flipping(ctx, x, *args):
        # The implementation fires on a membrane 0.05 lower than it should.
        return original(ctx, x + 0.05, *args)

    monkeypatch.setattr(lif._Scan, "forward", staticmethod(flipping))
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=10)
    report = equivalence.compare(case, "torch", torch.float64)
    assert not report.passed and any("spike flip" in f for f in report.failures)
