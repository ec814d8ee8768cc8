"""SPEC.md section 2: tether's hard reset is v+ = 0 if s else v.  A membrane that
overflows to +inf from finite inputs fires, and resets to 0 like any spike.

Found by an outside user: every layer wrote the reset as v (1 - s), which is
inf * 0 = NaN there, and the neuron stayed NaN, silent, for the rest of the run
(NaN >= theta is false), on every backend; the NaN then reached the decay's
gradient.  Each row whose reset is the hard reset has a case here (a coverage
test fails on a new one without), run by the spec in both dtypes and by every
torch backend: the lane's membrane is 0.6 of the dtype's largest number at step
0 (below a threshold of 0.9 of it), overflows at step 1, and starts from 0 at
step 2, where it is that step's input, 0.5.
"""

import warnings

import numpy as np
import pytest
import torch

import snnref
from snnref import registry, spec

HARD = sorted(key for key, row in registry.MODELS.items() if row.reset == registry.HARD_RESET)
LANE = (0.6, 0.6, 0.5)  # step 0 and 1 in units of the largest number; step 2 as it is
OTHER = (0.3, 0.2, 0.1)


def _sequence(dtype):
    big = np.finfo(dtype).max
    lane = np.array([LANE[0] * big, LANE[1] * big, LANE[2]], dtype=dtype)
    return np.stack([lane, np.array(OTHER, dtype=dtype)], axis=-1), 0.9 * big


def _lif(dtype):
    x, threshold = _sequence(dtype)
    return x[:, None, :], {"threshold": threshold}, ("v",)


def _plif(dtype):
    x, threshold = _sequence(dtype)
    return x[:, None, :], {"threshold": np.full(2, threshold)}, ("v",)


def _attention(dtype):
    # Identity maps: each branch's drive is x itself (two features, one token).
    x, threshold = _sequence(dtype)
    eye = np.eye(2)
    params = {f"{branch}_weight": eye for branch in "qkv"} | {"proj_weight": eye, "proj_bias": np.zeros(2)}
    params |= {f"{branch}_threshold": threshold for branch in "qkv"}
    return x[:, None, None, :], params, ("q_v", "k_v", "v_v")


CASES = {"tether.LIF": _lif, "tether.PLIF": _plif, "tether.ALIF": _lif, "tether.SpikingSelfAttention": _attention}


def test_every_hard_reset_row_has_a_case():
    assert set(HARD) == set(CASES), f"rows with the hard reset and no case here: {set(HARD) - set(CASES)}"


def _check(key, membranes, outputs, final, grads):
    for name in membranes:
        recorded = np.asarray(outputs[name], dtype=np.float64).reshape(3, -1)[:, 0]
        assert recorded[1] == np.inf, f"{key}: {name} did not overflow at step 1: {recorded}"
        assert recorded[2] == LANE[2], f"{key}: {name} at step 2 is {recorded[2]}, not 0.5 from a reset to 0"
        assert np.asarray(final[name], dtype=np.float64).reshape(-1)[0] == LANE[2], f"{key}: final {name}"
    for name, value in {**outputs, **{f"final {k}": v for k, v in final.items()}}.items():
        assert not np.isnan(np.asarray(value, dtype=np.float64)).any(), f"{key}: {name} holds NaN"
    for name, value in grads.items():
        assert not np.isnan(np.asarray(value, dtype=np.float64)).any(), f"{key}: the gradient {name} is NaN"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("key", HARD)
def test_the_spec_resets_an_overflowed_membrane_to_zero(key, dtype):
    x, params, membranes = CASES[key](dtype)
    with warnings.catch_warnings():
        # The membrane's own overflow warns (NumPy's "overflow encountered in add"), as it should.
        warnings.simplefilter("ignore", RuntimeWarning)
        trace = spec.simulate(key, x, params, dtype=dtype)
        grads = spec.vjp(key, x, params, None, {"out": np.ones_like(trace.outputs["out"])}, dtype=dtype)
        # The reset spikes replayed (the smooth twin's path, where r may be fractional) reset the same.
        replayed = spec.simulate(key, x, params, dtype=dtype, detached=trace.detached)
    _check(key, membranes, trace.outputs, trace.final_state, grads)
    _check(f"{key} replayed", membranes, replayed.outputs, replayed.final_state, {})


def _backends(dtype):
    # Triton (under its interpreter on CPU tensors here) stores float32 and half precision only.
    return ["torch", "cpu"] + (["triton"] if dtype == torch.float32 else [])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", HARD)
def test_every_backend_resets_an_overflowed_membrane_to_zero(key, dtype):
    x, params, membranes = CASES[key](torch.empty((), dtype=dtype).numpy().dtype)
    for backend in _backends(dtype):
        # Run as is, then with the reset spikes replayed (the general loops, where r may be fractional).
        detached = None
        for run in ("", " replayed"):
            inputs = torch.tensor(x, requires_grad=True)
            values = {name: torch.tensor(value, dtype=dtype,
                                         requires_grad=registry.model(key).param(name).differentiable)
                      for name, value in params.items()}
            trace = snnref.simulate(key, inputs, values, backend=backend, detached=detached)
            trace.outputs["out"].sum().backward()
            grads = {"x": inputs.grad} | {name: value.grad for name, value in values.items() if value.grad is not None}
            plain = {name: value.detach().numpy() for name, value in trace.outputs.items()}
            final = {name: value.detach().numpy() for name, value in trace.final_state.items()}
            _check(f"{key} on {backend}{run}", membranes, plain, final, {k: v.numpy() for k, v in grads.items()})
            detached = {name: value.detach() for name, value in trace.detached.items()}
