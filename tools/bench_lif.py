"""Benchmark: tether.LIF forward and forward+backward at T = 100, float32, CPU.

    python -m pytest tools/bench_lif.py --benchmark-only -p no:cacheprovider

Side by side in one run: the torch backend (``snnref.simulate``: one autograd
Function with a hand-written reverse scan), a plain per-step torch loop with a
surrogate autograd Function (the way most SNN libraries do it), and the float64
NumPy spec.  Every call allocates its outputs afresh (no buffer reuse), as a
training step would.  Timings are reported, never asserted.
"""

import math

import numpy as np
import pytest
import torch

import snnref
from snnref import spec

STEPS = 100
SIZES = (2**16, 2**20)
RESULTS = {}
PARAMS = {"decay": 0.9, "threshold": 1.0, "alpha": 2.0}


class _ArctanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, alpha):
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad * alpha / (1 + (math.pi * alpha * u) ** 2), None


def plain_loop(x, decay, threshold, alpha):
    v = torch.zeros_like(x[0])
    spikes = []
    # unbind, not x[t]: indexing inside a recorded loop makes the backward O(T^2 N).
    for x_t in x.unbind(0):
        v = decay * v + x_t
        s = _ArctanSpike.apply(v - threshold, alpha)
        spikes.append(s)
        v = v * (1 - s.detach())
    return torch.stack(spikes)


def torch_backend(x, decay, threshold, alpha):
    params = {"decay": decay, "threshold": threshold, "alpha": alpha}
    return snnref.simulate("tether.LIF", x, params, backend="torch").outputs["out"]


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"N={n}")
def inputs(request):
    neurons = request.param
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, neurons, generator=generator) * 0.6 + 0.4
    return neurons, x


def record(benchmark, neurons, phase, name):
    RESULTS.setdefault((neurons, phase), {})[name] = benchmark.stats.stats.median


def run(benchmark, fn):
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("name", ["torch backend", "plain per-step loop"])
def test_forward(benchmark, inputs, name):
    neurons, x = inputs
    impl = torch_backend if name == "torch backend" else plain_loop
    params = [torch.tensor(v) for v in PARAMS.values()]
    params[2] = PARAMS["alpha"] if impl is plain_loop else params[2]

    def forward():
        with torch.no_grad():
            return impl(x, *params)

    benchmark.group = f"forward N={neurons}"
    run(benchmark, forward)
    record(benchmark, neurons, "forward", name)


@pytest.mark.parametrize("name", ["torch backend", "plain per-step loop"])
def test_forward_backward(benchmark, inputs, name):
    neurons, x = inputs
    impl = torch_backend if name == "torch backend" else plain_loop

    def step():
        # The same gradients on both sides: x, decay and threshold (the plain
        # loop's surrogate scale is a constant, so alpha is frozen here too).
        inp = x.detach().requires_grad_(True)
        decay = torch.tensor(PARAMS["decay"], requires_grad=True)
        threshold = torch.tensor(PARAMS["threshold"], requires_grad=True)
        alpha = torch.tensor(PARAMS["alpha"]) if impl is torch_backend else PARAMS["alpha"]
        impl(inp, decay, threshold, alpha).sum().backward()

    benchmark.group = f"forward+backward N={neurons}"
    run(benchmark, step)
    record(benchmark, neurons, "forward+backward", name)


def test_spec_forward(benchmark, inputs):
    neurons, x = inputs
    x64 = x.double().numpy()
    benchmark.group = f"forward N={neurons}"
    run(benchmark, lambda: spec.simulate("tether.LIF", x64, PARAMS))
    record(benchmark, neurons, "forward", "float64 spec")


def test_spec_forward_backward(benchmark, inputs):
    neurons, x = inputs
    x64 = x.double().numpy()
    cotangent = {"out": np.ones_like(x64)}
    benchmark.group = f"forward+backward N={neurons}"
    run(benchmark, lambda: spec.vjp("tether.LIF", x64, PARAMS, None, cotangent))
    record(benchmark, neurons, "forward+backward", "float64 spec")
