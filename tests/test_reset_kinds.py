"""The "soft reset, detached" combination (snnTorch's and SpikingJelly's detached
subtractive reset): v+ = v - theta sg(s), SPEC.md section 2 and spec/lif.py (4).

A test-time registry row (tether's LIF with this reset, recording v+) is run
by the reference against hand-computed values, then by the torch path and the
fused CPU scans against the reference through the one equivalence template,
and its smooth twin's gradient against finite differences.  Triton, which has
no kernel for it, refuses it by name.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from snnref import registry, spec
from snnref.testing import _checks as checks, _equivalence as equivalence

KEY = "test.SoftDetachedLIF"
ROW = dataclasses.replace(
    registry.MODELS["tether.LIF"], key=KEY, doc="tether's LIF with a detached soft reset, v recorded after it",
    reset=registry.Reset(kind=registry.ResetKind.SUBTRACT, detached=True),
    options=registry.LifOptions(leak=registry.Leak.DECAY, record=registry.Record.POST),
)
# One neuron, decay 1/2, threshold 1, arctan with alpha 2, from v = 0.
X = np.array([1.2, 0.3, 0.9]).reshape(3, 1, 1)
PARAMS = {"decay": 0.5, "threshold": 1.0, "alpha": 2.0}


@pytest.fixture(autouse=True)
def soft_detached_row(monkeypatch):
    monkeypatch.setitem(registry.MODELS, KEY, ROW)


def arctan_f(u, alpha=2.0):
    return alpha / (1 + (math.pi * alpha * u) ** 2)


def test_forward_by_hand():
    # v = 1.2 fires, v+ = 0.2; v = 0.1 + 0.3 = 0.4 does not; v = 0.2 + 0.9 = 1.1 fires, v+ = 0.1.
    trace = spec.simulate(KEY, X, PARAMS)
    np.testing.assert_array_equal(trace.outputs["out"].ravel(), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.2, 0.4, 0.1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(trace.detached["reset_spike"].ravel(), [1.0, 0.0, 1.0])


def test_backward_by_hand_the_reset_passes_no_gradient_to_the_spike():
    # Cotangent 1 on the final v+ only: the detached reset gives s no adjoint,
    # so g v = g v+ at every step: g x = (1/4, 1/2, 1), g v0 = 1/8; theta gets
    # -sg(s) g v+ = -(1/4 + 1) and decay g v[t] v+[t-1] = 1 * 0.4 + 1/2 * 0.2.
    cot = {"final.v": np.ones((1, 1))}
    grads = spec.vjp(KEY, X, PARAMS, {}, cot)
    np.testing.assert_allclose(grads["x"].ravel(), [0.25, 0.5, 1.0], rtol=1e-15)
    np.testing.assert_allclose(grads["state.v"].ravel(), [0.125], rtol=1e-15)
    np.testing.assert_allclose(grads["threshold"], -1.25, rtol=1e-15)
    np.testing.assert_allclose(grads["decay"], 0.5, rtol=1e-15)
    np.testing.assert_allclose(grads["alpha"], 0.0, atol=0)
    # The same run with the differentiated soft reset does send -theta g v+ to the spike.
    differentiated = dataclasses.replace(ROW, reset=registry.SOFT_RESET)
    assert spec.vjp(differentiated, X, PARAMS, {}, cot)["x"].ravel()[2] != 1.0


def test_backward_by_hand_through_the_spike_output():
    # Cotangent 1 on the last spike: g s[2] = 1, g u = f(u2) with u2 = 1.1 - 1;
    # g x = f (1/4, 1/2, 1); theta: -f at t = 2 and -sg(s0) g v+[0] = -f/4 at t = 0.
    f = arctan_f(0.1)
    cot = {"out": np.array([0.0, 0.0, 1.0]).reshape(3, 1, 1)}
    grads = spec.vjp(KEY, X, PARAMS, {}, cot)
    np.testing.assert_allclose(grads["x"].ravel(), [0.25 * f, 0.5 * f, f], rtol=1e-14)
    np.testing.assert_allclose(grads["threshold"], -1.25 * f, rtol=1e-14)


def test_smooth_twin_gradient_equals_finite_differences():
    case = checks.random_case(KEY, np.random.default_rng(11), per_neuron=True)
    report = checks.gradient_check(case)
    assert set(report.errors) == {"x", "decay", "threshold", "alpha", "state.v"}
    assert report.worst < 1e-6, report.errors


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_production_paths_equal_the_reference(backend, dtype):
    for seed in range(3):
        case = checks.random_case(KEY, np.random.default_rng(seed), per_neuron=seed == 1)
        report = equivalence.compare(case, backend, dtype)
        assert report.passed, report.failures
        assert {"grad:x", "grad:decay", "grad:threshold", "grad:alpha", "grad:state.v"} <= set(report.fractions)


def test_triton_refuses_it_by_name():
    lif_kernels = pytest.importorskip("snnref.kernels.lif")
    with pytest.raises(ValueError, match=f"no lif kernel for {KEY}'s reset"):
        params = {name: torch.tensor(value) for name, value in PARAMS.items()}
        lif_kernels.run(ROW, torch.zeros(2, 3), params, {"v": torch.zeros(3)}, "arctan", {}, False, None)


def test_a_differentiated_hard_reset_is_refused_by_name():
    row = dataclasses.replace(ROW, reset=registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=False))
    with pytest.raises(ValueError, match="asks for Reset.kind=TO_VALUE, detached=False, to=0.0., which family 'lif' "
                                         "does not implement"):
        spec.simulate(row, X, PARAMS)


@pytest.mark.parametrize("foreign", [False, True], ids=["own", "foreign"])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_production_smooth_twins_pass_gradcheck(backend, foreign):
    """The smooth twin replays the detached reset spike (the scans' replay branch).
    Replaying its own run's values, the replayed spike r equals the twin's spike F(u),
    so a backward that read one for the other passed (found by mutation testing: the
    threshold's term -r dL/dv+ taken as -F(u) dL/dv+, on the torch path and in the cpu
    scans); replaying another run's (x reversed in time) tells them apart."""
    from snnref.testing._fd import smooth_twin_gradcheck

    case = checks.random_case(KEY, np.random.default_rng(4), steps=4, neurons=2)
    assert smooth_twin_gradcheck(case, backend, foreign=foreign)
