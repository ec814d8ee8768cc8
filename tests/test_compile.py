"""``torch.compile`` of code that calls ``snnref.simulate``, a module or a seed
library's function: on every backend (torch, cpu, Triton) the call runs as it
is inside a compiled caller (snnref/backend.py, ``untraced``), checks and
scans untraced, with the outputs and gradients of the same call uncompiled.
Traced, the numba dispatcher once crashed Dynamo, and the torch path's checks
made Dynamo compile snnref's helpers once per caller, up to its recompile limit.
Without ``torch.compile`` no call imports Dynamo (a second of a fresh process).

One model per family (the fused call is untraced whatever the family); Dynamo
alone (``backend="eager"``), which is where the crash was, with its caches
reset per case so that no recompile limit turns tracing off.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

import snnref
from snnref import arguments, families, registry
from snnref.compat import hxtorch, qualia, rnnbuilder, tether
from snnref.testing import _checks as checks
from snnref.testing._equivalence import _tensor

BACKENDS = [pytest.param(name, id=name, marks=pytest.mark.skip(f"{package} is not installed")
                         if importlib.util.find_spec(package) is None else ())
            for name, package in (("cpu", "numba"), ("triton", "triton"))]
EVERY_BACKEND = [pytest.param("torch", id="torch"), *BACKENDS]


@pytest.mark.parametrize("backend", EVERY_BACKEND)
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


@pytest.mark.parametrize("backend", EVERY_BACKEND)
def test_inside_a_compiled_caller_the_run_and_its_checks_are_not_traced(backend, monkeypatch):
    # Traced, Dynamo would evaluate is_dynamo_compiling() in them as True.  The checks of the
    # arguments were traced until 2026-12-07: nothing of theirs went into the graph, and tracing
    # them cost Dynamo 2-4 s per call site (and a warning about an lru_cache on Triton's).
    key = "tether.LIF"
    module = families.module(registry.model(key).family, backend)
    traced = {"run": [], "check_x": []}
    for owner, name in ((module, "run"), (arguments, "check_x")):
        original = getattr(owner, name)

        def spy(*args, _name=name, _original=original):
            traced[_name].append(torch.compiler.is_dynamo_compiling())
            return _original(*args)

        monkeypatch.setattr(owner, name, spy)

    def call(x):
        return snnref.simulate(key, x, backend=backend).outputs["out"] * 1

    torch._dynamo.reset()
    torch.compile(call, backend="eager")(torch.ones(3, 2))
    assert traced == {"run": [False], "check_x": [False]}


MODULES = {
    "nn.LIF": (lambda backend: snnref.nn.LIF(6, backend=backend), (5, 2, 6)),
    "nn.ALIF": (lambda backend: snnref.nn.ALIF(6, backend=backend), (5, 2, 6)),
    "nn.SpikingSelfAttention": (lambda backend: snnref.nn.SpikingSelfAttention(6, num_heads=2, backend=backend),
                                (5, 2, 3, 6)),
    "compat.rnnbuilder.LIF": (lambda backend: rnnbuilder.LIF(backend=backend), (5, 2, 6)),
    "compat.rnnbuilder.Discontinuous": (lambda backend: rnnbuilder.Discontinuous(backend=backend), (5, 2, 6)),
    "compat.qualia.IFSRL": (lambda backend: qualia.IFSRL(backend=backend), (2, 6)),
}


@pytest.mark.parametrize("backend", ["torch", BACKENDS[0], pytest.param("auto", marks=BACKENDS[0].marks)])
@pytest.mark.parametrize("name", MODULES)
def test_a_module_is_one_graph_break_with_the_eager_results(name, backend, monkeypatch):
    # The module's own checks and carried state, traced for nothing until 2026-12-07 (as simulate's
    # checks were): 2.7 s of Dynamo in a 2.9 s first compiled call of a model with two neuron layers.
    make, shape = MODULES[name]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3)) * 1.5

    def built():
        # Two equal modules (qualia's cannot be deepcopied mid-sequence).  A lazy module takes
        # its shape in a first call, and both go on from the state that call left.
        torch.manual_seed(4)
        module = make(backend)
        module(x)
        return module

    _assert_one_graph_break_with_the_eager_results(monkeypatch, built(), built(), x)


def _assert_one_graph_break_with_the_eager_results(monkeypatch, eager, compiled, x):
    """``eager(x)`` and ``torch.compile(compiled)(x)`` (equal callables): equal
    outputs and x-gradients, and every registry lookup of the compiled call
    made outside Dynamo's tracing (the call ran as it is)."""
    traced = []
    lookup = registry.model

    def spy(key):
        traced.append(torch.compiler.is_dynamo_compiling())
        return lookup(key)

    monkeypatch.setattr(registry, "model", spy)
    torch._dynamo.reset()
    results = []
    for run in (eager, torch.compile(compiled, backend="eager")):
        inp = x.clone().requires_grad_(True)
        out = run(inp)
        out = out[0] if isinstance(out, tuple) else out
        weights = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
        gradient, = torch.autograd.grad((weights * out).sum(), inp)
        results.append((out.detach(), gradient))
    assert traced and not any(traced), traced
    (eager_out, eager_grad), (compiled_out, compiled_grad) = results
    assert torch.equal(eager_out, compiled_out) and torch.equal(eager_grad, compiled_grad)


FUNCTIONS = {
    "compat.tether.lif": (lambda x, backend: tether.lif(x, torch.zeros(x.shape[1]), 0.9, 1.0, 2.0, 0,
                                                         backend=backend)[0], (5, 12)),
    "compat.hxtorch.cuba_lif_integration": (
        lambda x, backend: hxtorch.cuba_lif_integration(x, leak=0.0, reset=0.0, threshold=1.0, tau_syn=5e-6,
                                                        tau_mem=1e-5, method="superspike", alpha=50.0,
                                                        backend=backend)[0], (5, 2, 6)),
}


@pytest.mark.parametrize("backend", ["torch", BACKENDS[0], pytest.param("auto", marks=BACKENDS[0].marks)])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_seed_function_is_one_graph_break_with_the_eager_results(name, backend, monkeypatch):
    # Its own checks (the parameters read against the registry row) were traced before simulate's break.
    function, shape = FUNCTIONS[name]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3)) * 1.5

    def call(inp):
        return function(inp, backend)

    _assert_one_graph_break_with_the_eager_results(monkeypatch, call, call, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_without_torch_compile_does_not_import_dynamo(backend):
    code = ("import sys\n"
            "import torch, snnref\n"
            "x = torch.ones(3, 2, requires_grad=True)\n"
            f"out = snnref.simulate('tether.LIF', x, backend={backend!r}).outputs['out']\n"
            "torch.autograd.grad(out.sum(), x)\n"
            "assert 'torch._dynamo' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_compiling_a_model_says_nothing_about_snnref():
    # In a fresh process, where the first import of the numba kernels happens under Dynamo.  Before:
    # "hit config.recompile_limit (8)" on numba's import-time code (cpu), and Dynamo's warning about the
    # Tensor.item() of the finiteness check of x (torch), on every compile of such a model.
    code = ("import torch, snnref\n"
            "model = torch.nn.Sequential(torch.nn.Linear(8, 8), snnref.nn.LIF(8, backend='torch'),\n"
            "                            torch.nn.Linear(8, 8), snnref.nn.LIF(8, backend='cpu'))\n"
            "compiled = torch.compile(model, backend='eager')\n"
            "compiled(torch.randn(5, 2, 8)).sum().backward()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]


# Nine neuron module classes in a row, called with three lengths, with and without a gradient of x.
MANY_TYPES = """
import sys, torch, snnref
from snnref.compat import rnnbuilder
backend = sys.argv[1]
layers = [snnref.nn.LIF(8, backend=backend), snnref.nn.PLIF(8, backend=backend), snnref.nn.ALIF(8, backend=backend),
          rnnbuilder.LIF(backend=backend), rnnbuilder.Adaptive(backend=backend), rnnbuilder.Cooldown(backend=backend),
          rnnbuilder.NoReset(backend=backend), rnnbuilder.Discontinuous(backend=backend)]
attention = snnref.nn.SpikingSelfAttention(8, 2, backend=backend)
def model(x):
    for layer in layers[:3]:
        layer.reset_state()
    attention.reset_states()
    for layer in layers:
        x = layer(x)
        x = x[0] if isinstance(x, tuple) else x
    return attention(x.unsqueeze(2))
compiled = torch.compile(model, backend="eager")
for steps in (5, 6, 7):
    x = torch.randn(steps, 2, 8, requires_grad=steps == 6) + 0.5
    assert torch.equal(compiled(x), model(x)), steps
"""


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=BACKENDS[0].marks)])
def test_a_model_of_many_neuron_types_compiles_without_a_word(backend):
    # Found by an outside user: nine neuron types on the torch backend hit Dynamo's
    # "config.recompile_limit (8)" in snnref's shared helpers (convert, finite, the autocast
    # wrapper), which it compiled as frames of their own once per caller; the fused backends'
    # one wrapper shared a code object the same way.
    done = subprocess.run([sys.executable, "-c", MANY_TYPES, backend], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]


@pytest.mark.parametrize("backend", ["torch", BACKENDS[0]])
def test_a_compiled_caller_under_autocast_gets_the_eager_results(backend):
    # Compiled, an autocast Linear's bfloat16 output must still reach the scan as
    # float32 (float32_under_autocast, inside the module's graph break), and a
    # compiled call without autocast must not reuse that graph.
    torch.manual_seed(0)
    linear, neuron = torch.nn.Linear(4, 6), snnref.nn.PLIF(6, backend=backend)
    x = torch.randn(5, 2, 4)

    def step(autocast):
        neuron.reset_state()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return neuron(linear(x))

    torch._dynamo.reset()
    compiled = torch.compile(step, backend="eager")
    for autocast in (True, False, True):
        eager, traced = step(autocast), compiled(autocast)
        assert traced.dtype == torch.float32
        assert torch.equal(eager, traced), autocast


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("backend", ["auto", "cpu"])
def test_torch_jit_trace_of_a_fused_backend_is_refused_by_name(backend):
    """torch.jit.trace hands the argument checks' values over as traced tensors,
    which numba's dispatcher cannot type: the trace failed inside numba
    ("Cannot determine Numba type of <class 'torch.Tensor'>"; found by an
    outside user).  It is refused naming the backend and the way out."""
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    x = torch.full((3, 2, 4), 0.6)
    picked = r" \(backend 'auto' picks it for cpu tensors\)" if backend == "auto" else ""
    with pytest.raises(RuntimeError, match=rf"backend: torch\.jit\.trace cannot record the 'cpu' backend's "
                                           rf"fused scans{picked}; pass backend='torch'"):
        torch.jit.trace(lambda x: snnref.simulate("tether.LIF", x, backend=backend).outputs["out"], (x,),
                        check_trace=False)
    # The torch path is recorded: the trace gives the eager spikes and gradients.
    def call(x):
        trace = snnref.simulate("tether.LIF", x, backend="torch", surrogate="arctan")
        return trace.outputs["out"], trace.outputs["v"]

    traced = torch.jit.trace(call, (x,), check_trace=False)
    inputs = x + torch.linspace(-0.5, 0.5, x.numel()).reshape(x.shape)
    gradients = []
    for run in (traced, call):
        given = inputs.clone().requires_grad_()
        spikes, v = run(given)
        (spikes * torch.arange(spikes.numel()).reshape(spikes.shape) + v).sum().backward()
        gradients.append((spikes, v, given.grad))
    for traced_value, eager_value in zip(*gradients):
        assert torch.equal(traced_value, eager_value)


class _Caller(torch.nn.Module):
    """A module whose forward is ``call(x)`` (what torch.export takes)."""

    def __init__(self, call):
        super().__init__()
        self.call = call

    def forward(self, x):
        return self.call(x)


# name -> (the exported module, its input's shape)
EXPORTED = {
    "simulate-torch": (lambda: _Caller(lambda x: snnref.simulate("tether.LIF", x, backend="torch").outputs["out"]),
                       (3, 2, 4)),
    "simulate-auto": (lambda: _Caller(lambda x: snnref.simulate("tether.LIF", x).outputs["out"]), (3, 2, 4)),
    "nn.LIF-auto": (lambda: snnref.nn.LIF(4), (3, 2, 4)),
    "compat.tether.lif-auto": (lambda: _Caller(lambda x: tether.lif(x, torch.zeros(4), 0.9, 1.0, 2.0, 0)[0]),
                               (3, 4)),
}


@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
@pytest.mark.parametrize("name", EXPORTED)
def test_torch_export_is_refused_by_name(name, strict):
    """torch.export wants one graph of the whole call, and simulate's checks read
    values on the host before a run: exported, it failed deep inside torch
    ("Could not guard on data-dependent expression", from the finiteness
    check; with strict=True, Dynamo's refusal to trace torch.compiler.disable
    on the fused backends).  Refused by name, with the way that runs it."""
    make, shape = EXPORTED[name]
    with pytest.raises(Exception, match="snnref.simulate: called under torch.export, which cannot capture it") as error:
        torch.export.export(make(), (torch.full(shape, 0.6),), strict=strict)
    assert "compile the model with torch.compile instead" in str(error.value)
