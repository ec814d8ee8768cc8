"""GPU benchmark: LIF and CUBA families, forward and forward+backward, on CUDA only.

    python -m pytest tools/bench_gpu.py --benchmark-only -p no:cacheprovider
    python tools/bench_gpu.py          # the same

For T in {100, 1000} and N up to 2^24 (as memory allows: a size that does not
fit the card is reported as skipped), float32: the Triton kernels, the torch
path and a plain per-step torch loop, side by side on the same GPU.  Reported
as achieved bytes per second (the bytes each pass must move at least, below)
against the device's copy bandwidth measured in the same run (read + write of
a 1 GiB tensor).  Skipped without CUDA.

Bytes per neuron-step counted: forward reads x and writes the spikes and the
recorded membrane (12 B; CUBA also writes the current: 16 B); forward+backward
adds reading the saved membrane and the spike cotangent and writing the input
gradient (12 B more).
"""

import sys

import pytest
import torch

import snnref
from bench_lif import plain_loop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU benchmark needs CUDA")

RESULTS = {}
CASES = [(100, 2**16), (100, 2**20), (100, 2**24), (1000, 2**16), (1000, 2**20), (1000, 2**22)]
MODELS = {"tether.LIF": 12, "hxtorch.cuba_lif": 16}
BACKWARD_BYTES = 12


def copy_bandwidth():
    source = torch.empty(2**28, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        target.copy_(source)
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * source.numel() * 4 / (start.elapsed_time(end) / 1e3)


@pytest.fixture(scope="module")
def bandwidth():
    RESULTS["copy bandwidth"] = copy_bandwidth()
    return RESULTS["copy bandwidth"]


def cuda_run(benchmark, fn):
    def synchronized():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(synchronized, rounds=5, iterations=1, warmup_rounds=2)
    return benchmark.stats.stats.median


@pytest.mark.parametrize("steps,neurons", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("impl", ["triton", "torch", "plain loop"])
@pytest.mark.parametrize("phase", ["forward", "forward+backward"])
def test_gpu(benchmark, bandwidth, model, impl, phase, steps, neurons):
    if impl == "plain loop" and model != "tether.LIF":
        pytest.skip("the plain per-step loop is the tether LIF baseline")
    x = torch.randn(steps, neurons, device="cuda") * 0.6 + 0.4

    def forward(inp):
        if impl == "plain loop":
            return plain_loop(inp, 0.9, 1.0, 2.0)
        return snnref.simulate(model, inp, backend=impl).outputs["out"]

    def run():
        if phase == "forward":
            with torch.no_grad():
                forward(x)
        else:
            forward(x.detach().requires_grad_(True)).sum().backward()

    try:
        seconds = cuda_run(benchmark, run)
    except torch.cuda.OutOfMemoryError:
        # The torch path keeps every step's intermediates for autograd: at the
        # largest sizes they outgrow the card; said, not counted as a result.
        del x
        torch.cuda.empty_cache()
        pytest.skip(f"{impl} {phase} at T={steps}, N={neurons}: out of GPU memory")
    per_step = MODELS[model] + (BACKWARD_BYTES if phase != "forward" else 0)
    achieved = per_step * steps * neurons / seconds
    RESULTS[(model, phase, steps, neurons, impl)] = (seconds, achieved, achieved / bandwidth)


if __name__ == "__main__":
    # A pytest-benchmark module: run as a script, it runs itself that way (and says why it skips).
    sys.exit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider", "-rs", *sys.argv[1:]]))
