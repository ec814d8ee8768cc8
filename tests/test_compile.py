"""``torch.compile`` of code that calls ``snnref.simulate``: the fused backends
(cpu, Triton) run as they are inside a compiled caller (snnref/backend.py,
``_untraced_run``), with the outputs and gradients of the same call
uncompiled.  Traced, the numba dispatcher crashed Dynamo.

One model per family (the fused call is untraced whatever the family, and
Dynamo's tracing of the checks before it costs seconds per model); Dynamo
alone (``backend="eager"``), which is where the crash was, with its caches
reset per case so that no recompile limit turns tracing off.
"""

import importlib.util

import numpy as np
import pytest
import torch

import snnref
from snnref import families
from snnref.testing import _checks as checks
from snnref.testing._equivalence import _tensor

BACKENDS = [pytest.param(name, id=name, marks=pytest.mark.skip(f"{package} is not installed")
                         if importlib.util.find_spec(package) is None else ())
            for name, package in (("cpu", "numba"), ("triton", "triton"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", families.names())
def test_a_compiled_caller_gets_the_uncompiled_results(backend, family):
    key = families.models(family)[0]
    case = checks.random_case(key, np.random.default_rng(2), steps=5, batch=2, neurons=3)
    params = {name: _tensor(value, torch.float32, "cpu") for name, value in case.params.items()}
    state = {name: _tensor(value, torch.float32, "cpu") for name, value in case.state.items()}

    def call(x):
        trace = snnref.simulate(key, x, params, state, backend=backend, surrogate=case.surrogate)
        # An operation after the call, so that the compiled caller has a graph of its own.
        return [value * 1 for value in trace.outputs.values()]

    results = []
    torch._dynamo.reset()
    for run in (call, torch.compile(call, backend="eager")):
        x = _tensor(case.x, torch.float32, "cpu", True)
        outputs = run(x)
        weights = [torch.linspace(-1.0, 1.0, output.numel()).reshape(output.shape) for output in outputs]
        gradient, = torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, outputs)), x)
        results.append([output.detach() for output in outputs] + [gradient])
    eager, compiled = results
    assert len(eager) == len(compiled) >= 2
    for index, (a, b) in enumerate(zip(eager, compiled)):
        assert torch.equal(a, b), (key, index)
