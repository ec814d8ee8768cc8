"""The CUBA scans' vectorized tiles compute the general loop's roundings: a run
replaying the stop-gradient values that a plain run recorded takes the general
loop, and must reproduce the plain run's outputs, final state and gradients bit
for bit (dyadic inputs put membranes exactly on threshold; tiles of 16 lanes
with a partial last one)."""

import pytest
import torch

import snnref
from snnref import registry
from snnref.kernels.cpu import _launch

SPIKING = [key for key, row in registry.MODELS.items() if row.family == "cuba" and row.options.spiking]


def _bits(tensor):
    return tensor.contiguous().view(torch.int64 if tensor.dtype == torch.float64 else torch.int32)


def _case(row, dtype, generator):
    steps, batch, neurons = 40, 3, 37
    x = torch.randint(0, 8, (steps, batch, neurons), generator=generator).to(dtype) / 8
    # a = b = 1/2, threshold 1/2: binary fractions, so some membranes land on threshold.
    params = {"tau_mem": torch.full((neurons,), 2.0, dtype=dtype), "tau_syn": torch.full((neurons,), 2.0, dtype=dtype),
              "dt": torch.tensor(1.0, dtype=dtype), "threshold": torch.tensor(0.5, dtype=dtype),
              "reset": torch.tensor(-0.25, dtype=dtype)}
    state = {"v": torch.randint(0, 4, (batch, neurons), generator=generator).to(dtype) / 4,
             "i": torch.rand((batch, neurons), generator=generator, dtype=dtype)}
    if row.refractory:
        params["refractory_time"] = torch.tensor(2.0, dtype=dtype)
        state["r"] = torch.randint(0, 3, (batch, neurons), generator=generator).to(dtype)
    if row.options.leak:
        params["leak"] = torch.tensor(0.125, dtype=dtype)
    return x, params, state


def _run(key, x, params, state, cotangents, detached):
    x = x.clone().requires_grad_(True)
    params = {name: value.clone().requires_grad_(True) for name, value in params.items()}
    state = {name: value.clone().requires_grad_(name != "r") for name, value in state.items()}
    trace = snnref.simulate(key, x, params, state, backend="cpu", detached=detached)
    loss = sum((trace.outputs[name] * weight).sum() for name, weight in cotangents.items())
    loss = loss + sum((value * 1.5).sum() for value in trace.final_state.values())
    leaves = [x, *params.values(), *(value for value in state.values() if value.requires_grad)]
    return trace, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", SPIKING)
def test_the_vectorized_tiles_match_the_general_loop_bitwise(key, dtype):
    row = registry.model(key)
    generator = torch.Generator().manual_seed(7)
    x, params, state = _case(row, dtype, generator)
    with _launch.tile_size(16):
        shapes = snnref.simulate(key, x, params, state, backend="cpu").outputs
        cotangents = {name: torch.randn(value.shape, generator=generator, dtype=dtype)
                      for name, value in shapes.items()}
        fast, fast_grads = _run(key, x, params, state, cotangents, None)
        assert fast.outputs["out"].sum() > 0
        general, general_grads = _run(key, x, params, state, cotangents, dict(fast.detached))
    for name in fast.outputs:
        assert torch.equal(_bits(fast.outputs[name]), _bits(general.outputs[name])), name
    for name in fast.final_state:
        assert torch.equal(_bits(fast.final_state[name]), _bits(general.final_state[name])), name
    for position, (ours, theirs) in enumerate(zip(fast_grads, general_grads)):
        assert torch.equal(_bits(ours), _bits(theirs)), position
