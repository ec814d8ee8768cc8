"""The tile loops of the ALIF and Adaptive CPU scans (the branch-free fast
paths that run by default) compute the same bits as their general loops.

Each module is compared with a copy of itself whose dispatch to the tile loops
is switched off (compiled without the on-disk cache), on random lanes and on
dyadic lanes, where the arithmetic is exact and u = 0 (the exact threshold)
happens; strict and inclusive spike tests, every algebraic surrogate, both
dtypes, tiles of 4 lanes with a partial last one; outputs, final states and
every gradient."""

import importlib
import inspect
import types

import numpy as np
import pytest
import torch

from snnref.kernels.cpu import _launch
from snnref.kernels.cpu.surrogates import KINDS, SIGMOID

# The dispatch conditions of each module's scans, in the order forward, backward.
DISPATCH = {
    "alif": ("if not smooth and not replay:", "if not smooth and not replay and surrogate != SIGMOID:"),
    "adaptive": ("if not smooth:", "if not smooth and surrogate != SIGMOID:"),
}
ALGEBRAIC = sorted(name for name, number in KINDS.items() if number != SIGMOID)
STEPS, BATCH, NEURONS = 9, 2, 7


def general_only(family):
    """A copy of kernels/cpu/<family>.py that never takes the tile loops."""
    name = f"snnref.kernels.cpu.{family}"
    source = inspect.getsource(importlib.import_module(name))
    for condition in DISPATCH[family]:
        assert source.count(condition) == 1, condition
        source = source.replace(condition, "if False:")
    copy = types.ModuleType(name)
    copy.__package__ = "snnref.kernels.cpu"
    exec(compile(source.replace("cache=True", "cache=False"), f"<general loops of {family}>", "exec"), copy.__dict__)
    return copy


@pytest.fixture(scope="module", params=sorted(DISPATCH))
def family(request):
    return request.param, importlib.import_module(f"snnref.kernels.cpu.{request.param}"), general_only(request.param)


def inputs(family, dyadic, dtype, rng):
    """(x, initial states, per-neuron parameters) of the scan's apply; dyadic:
    values on a grid of quarters with decays of 1/2, so each step is exact."""
    if dyadic:
        x = rng.integers(0, 7, (STEPS, BATCH, NEURONS)) / 4
        if family == "alif":
            # lam_v, lam_a, theta, beta, scale
            parameters = [np.full(NEURONS, value) for value in (0.5, 0.5, 1.0, 0.5, 2.0)]
        else:
            # beta, beta_thr, gamma, scale
            parameters = [np.full(NEURONS, value) for value in (0.5, 0.5, 0.25, 0.5)]
        states = [np.zeros((BATCH, NEURONS)) for _ in range(2)]
    else:
        x = rng.uniform(0.2, 0.8, (STEPS, BATCH, NEURONS))
        low_high = ([(0.5, 0.98)] * 2 + [(0.6, 1.4), (0.1, 1.0), (0.5, 4.0)] if family == "alif"
                    else [(0.5, 0.9)] * 2 + [(0.05, 0.5), (0.1, 1.0)])
        parameters = [rng.uniform(low, high, NEURONS) for low, high in low_high]
        states = [rng.uniform(-0.5, 0.5, (BATCH, NEURONS)), rng.uniform(0.0, 0.5, (BATCH, NEURONS))]
    return [torch.tensor(value, dtype=dtype, requires_grad=True) for value in (x, *states, *parameters)]


def scan(module, family, values, strict, surrogate):
    if family == "alif":
        config = module.Config(strict, False, False, KINDS[surrogate])
        return module._Scan.apply(*values, None, config)
    return module._Scan.apply(*values, (strict, False, KINDS[surrogate]))


def outputs_and_gradients(module, family, values, strict, surrogate, weights):
    with _launch.tile_size(4):
        outputs = scan(module, family, values, strict, surrogate)
        loss = sum((weight * output).sum() for weight, output in zip(weights, outputs))
        gradients = torch.autograd.grad(loss, values, allow_unused=True)
    return [output.detach() for output in outputs] + [g for g in gradients if g is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dyadic", [True, False], ids=["dyadic", "random"])
def test_tile_loops_compute_the_general_loops_bits(family, dyadic, dtype):
    name, fast, general = family
    rng = np.random.default_rng(10)
    exact_thresholds = 0
    for strict in (False, True):
        for surrogate in ALGEBRAIC:
            values = inputs(name, dyadic, dtype, rng)
            outputs = scan(fast, name, values, strict, surrogate)
            # Cotangents for every output: spikes, both recorded sequences, both final states.
            weights = [torch.tensor(rng.normal(size=tuple(output.shape)), dtype=dtype) for output in outputs]
            expected = outputs_and_gradients(general, name, values, strict, surrogate, weights)
            got = outputs_and_gradients(fast, name, values, strict, surrogate, weights)
            assert len(got) == len(expected) > len(outputs)
            for index, (a, b) in enumerate(zip(got, expected)):
                assert torch.equal(a, b), (name, strict, surrogate, index)
            exact_thresholds += int(at_threshold(name, values, outputs).sum())
    if dyadic:
        # The dyadic lanes do reach u = 0, where the strict and inclusive tests differ.
        assert exact_thresholds > 0


def at_threshold(family, values, outputs):
    """Where u[t] = 0 exactly, from the recorded sequences (eq. (2) of each module)."""
    _, first, second = (output.detach() for output in outputs[:3])
    if family == "alif":
        theta, beta = values[5].detach(), values[6].detach()
        return first - (theta + beta * second) == 0
    # Adaptive records m[t], r[t] after the step; u[t+1] = (m[t] - (1 + r[t])) / (1 + r[t]).
    return first == 1 + second
