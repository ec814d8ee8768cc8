"""Benchmark: the fused CPU backend against its peers, float32, CPU.  One command:

    python tools/bench_cpu.py              # the grid below, 5 interleaved rounds, a table
    python tools/bench_cpu.py --quick      # N = 2^16, T = 100 only, 3 rounds
    python tools/bench_cpu.py --full       # also T = 1000 at N = 2^20 (4 GB per sequence)
    python tools/bench_cpu.py --sizes 1048576:100 --threads 1   # one configuration
    python tools/bench_cpu.py --flatness   # the cpu backend at three sizes, interleaved: max/min
    python tools/bench_cpu.py --flatness --sizes 65536:100,1048576:100 --threads 1   # chosen sizes

Each configuration of the grid runs in a fresh process; with peers at N = 2^20
one peaks near 20 GB (SpikingJelly and Norse keep every step's tensors for
their backward): run it on a machine with room.
    python -m pytest tools/bench_cpu.py --benchmark-only -p no:cacheprovider -s   # the same, under pytest-benchmark

Side by side, measured interleaved (every implementation once per round, the
order rotated each round, the median of the rounds reported), for tether.LIF
and hxtorch.cuba_lif, forward and forward+backward (gradients for x, the leak
and the threshold; the loss is the spike count):

- ``cpu``: ``snnref.simulate(..., backend="cpu")`` (snnref/kernels/cpu), with
  fresh outputs (as a training step calls it: new output tensors every call,
  which the backend serves from the blocks its earlier, released outputs left)
  and with reused output buffers (the kernels' allocator pointed at a pool);
  ``cpu (reused, no loss)``: the same with the spike count's cotangent given
  to the backward (``grad_outputs``) rather than made by the loss's sum, which
  reads the output once more: the neuron's own forward+backward;
- ``cpu kernels``: the part of the reused-outputs calls spent in the fused
  scans themselves (``_launch.run_tiles``), the rest being the input checks
  (a finiteness sum over x), autograd, the loss's sum and the parameter
  reductions: read against ``copy``, the kernels' own distance from the
  bandwidth floor;
- ``torch``: ``backend="torch"``;
- LIF: snnTorch ``Leaky``, SpikingJelly ``LIFNode`` (multi-step, torch) and
  Norse ``LIFBoxCell``; CUBA: snnTorch ``Synaptic`` and Norse ``LIFCell``
  (SpikingJelly has no current-based neuron); each only where the package
  imports, and each with the same gradients where it can learn them: its
  decays (time constants) and threshold, besides x (``LIFNode`` learns
  neither: it computes dx only, less work than the others);
- ``copy``: torch copying as many bytes as the scan must read and write (the
  memory-bandwidth reference): LIF forward reads x and writes spikes and v
  (12 B per neuron-step), its backward reads v and writes dx (8 B); CUBA
  reads x and writes spikes, v and i (16 B), its backward reads v and i and
  writes dx (12 B).  The spike count's cotangent is the same at every step,
  and the scans read it as one row (``_launch.cotangent``), not as a sequence.

Grid: N in {2^16, 2^20}, T in {100, 1000} (T = 1000 with N = 2^20 only with
--full), 1 and 2 threads (numba's and torch's).  Printed: ns per neuron-step,
the ratio to the fastest peer (snnTorch, SpikingJelly, Norse), to the torch
backend and, for reused buffers, to the copy; the machine's load average before
and after; the peak memory of one forward+backward at T = 1000, N = 2^16 in
units of one (T, N) float32 sequence.  Timings are reported, never asserted.

Flatness (``--flatness``): the grid measures one size after another, so the
machine's drift over minutes enters a ratio between sizes.  This mode runs the
cpu backend's forward+backward (fresh outputs) at N = 2^16, T = 100; N = 2^16,
T = 1000 and N = 2^20, T = 100 interleaved, every size three times in a row
per round in a rotated order, and prints the median ns per neuron-step of
each, whole calls and the kernels alone, and max/min over the sizes: once for
the first call of each block (it follows another size's call, whose data fills
the caches) and once for the calls that repeat a size.  Then the fixed cost
of a call (``fixed_cost``): Python, argument checks and autograd, measured on
a call of 640 neuron-steps with warm caches and right after a large copy.  A
call at N = 2^16, T = 100 pays the cold one: its own scans stream more than
the caches hold, so the next call's code and data come from memory.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import importlib
import multiprocessing
import os
import statistics
import sys
import time

import torch

import snnref
from snnref.cli import positive_integer
from snnref.kernels import cpu
from snnref.kernels.cpu import _launch

PEERS = ("snntorch", "spikingjelly", "norse")
MODELS = ("tether.LIF", "hxtorch.cuba_lif")
# Bytes per neuron-step the scan must read and write (see the docstring).
SCAN_BYTES = {("tether.LIF", "forward"): 12, ("tether.LIF", "forward+backward"): 20,
              ("hxtorch.cuba_lif", "forward"): 16, ("hxtorch.cuba_lif", "forward+backward"): 28}


def _optional(name):
    try:
        return importlib.import_module(name)
    except Exception:  # a peer that does not import is left out and said so
        return None


@contextlib.contextmanager
def reused_outputs(pool):
    """Point the CPU kernels' allocator at ``pool``: the k-th allocation of a
    call gets the same (already touched) buffer every call."""
    original = _launch.empty
    counter = iter(range(1 << 30))

    def empty(shape, dtype):
        key = (next(counter), tuple(shape), dtype)
        if key not in pool:
            pool[key] = original(shape, dtype).fill_(0)
        return pool[key]

    _launch.empty = empty
    try:
        yield
    finally:
        _launch.empty = original


def _params(model, grad):
    if model == "tether.LIF":
        return {"decay": torch.tensor(0.9, requires_grad=grad), "threshold": torch.tensor(1.0, requires_grad=grad)}
    return {"threshold": torch.tensor(1.0, requires_grad=grad), "tau_mem": torch.tensor(1e-5, requires_grad=grad),
            "tau_syn": torch.tensor(1e-5, requires_grad=grad)}


@contextlib.contextmanager
def kernel_clock(laps):
    """Append to ``laps`` the seconds spent in the fused scans (every
    ``_launch.run_tiles``) of the calls inside the ``with``."""
    original = _launch.run_tiles
    spent = [0.0]

    def timed(kernel, lane_count, *args, **options):
        start = time.perf_counter()
        original(kernel, lane_count, *args, **options)
        spent[0] += time.perf_counter() - start

    _launch.run_tiles = timed
    try:
        yield
    finally:
        _launch.run_tiles = original
        laps.append(spent[0])


def snnref_step(model, backend, backward, pool=None, laps=None, loss=True):
    """One call as a training step makes it; with ``loss=False`` the backward
    starts from the spike count's cotangent given as such (``grad_outputs``,
    the stride-0 ones that the sum's backward makes) instead of from the sum,
    which reads the output once more: the neuron's forward+backward alone."""
    def run(x):
        context = reused_outputs(pool) if pool is not None else contextlib.nullcontext()
        clock = kernel_clock(laps) if laps is not None else contextlib.nullcontext()
        with context, clock:
            if not backward:
                with torch.no_grad():
                    return snnref.simulate(model, x, _params(model, False), backend=backend).outputs["out"]
            inp = x.detach().requires_grad_(True)
            params = _params(model, True)
            out = snnref.simulate(model, inp, params, backend=backend).outputs["out"]
            target, cotangent = (out.sum(), None) if loss else (out, torch.ones((), dtype=out.dtype).expand(out.shape))
            # With the sum, nothing holds the output during the backward, as in
            # a training step (``peak_memory`` measures that peak).
            del out
            # autograd.grad, not backward(): backward() stores dx in inp.grad,
            # and that accumulation copies a gradient that something else still
            # references (the reused pool does), which timed a copy of dx.
            torch.autograd.grad(target, [inp, *params.values()], grad_outputs=cotangent)
    return run


def _loop(cell, x, state):
    spikes = []
    # unbind, not x[t]: indexing inside a recorded loop makes the backward O(T^2 N).
    for x_t in x.unbind(0):
        spike, state = cell(x_t, state)
        spikes.append(spike)
    return torch.stack(spikes)


def peer_steps(model, backward):
    """name -> run(x) for every peer that imports (a loop over time, as each documents)."""
    steps = {}
    snntorch, spikingjelly, norse = (_optional(name) for name in ("snntorch", "spikingjelly", "norse.torch"))

    def wrap(forward):
        def run(x):
            if not backward:
                with torch.no_grad():
                    return forward(x)
            forward(x.detach().requires_grad_(True)).sum().backward()
        return run

    if snntorch is not None:
        from snntorch import surrogate as snn_surrogate

        if model == "tether.LIF":
            def leaky(x):
                cell = snntorch.Leaky(beta=torch.tensor(0.9), threshold=1.0, spike_grad=snn_surrogate.atan(alpha=2.0),
                                      reset_mechanism="zero", learn_beta=backward, learn_threshold=backward)
                spikes, mem = [], cell.init_leaky()
                for x_t in x.unbind(0):
                    spike, mem = cell(x_t, mem)
                    spikes.append(spike)
                return torch.stack(spikes)
            steps["snnTorch Leaky"] = wrap(leaky)
        else:
            def synaptic(x):
                cell = snntorch.Synaptic(alpha=0.9, beta=0.9, threshold=1.0, reset_mechanism="zero",
                                         learn_alpha=backward, learn_beta=backward, learn_threshold=backward)
                syn, mem = cell.init_synaptic()
                spikes = []
                for x_t in x.unbind(0):
                    spike, syn, mem = cell(x_t, syn, mem)
                    spikes.append(spike)
                return torch.stack(spikes)
            steps["snnTorch Synaptic"] = wrap(synaptic)
    if spikingjelly is not None and model == "tether.LIF":
        from spikingjelly.activation_based import functional as sj_functional, neuron, surrogate as sj_surrogate

        def lif_node(x):
            node = neuron.LIFNode(tau=10.0, decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                                  surrogate_function=sj_surrogate.ATan(alpha=2.0), step_mode="m")
            out = node(x)
            sj_functional.reset_net(node)
            return out
        steps["SpikingJelly LIFNode"] = wrap(lif_node)
    if norse is not None:
        if model == "tether.LIF":
            def lif_box(x):
                cell = norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0, requires_grad=backward),
                                                               v_th=torch.tensor(1.0, requires_grad=backward)), dt=1e-3)
                return _loop(cell, x, None)
            steps["Norse LIFBoxCell"] = wrap(lif_box)
        else:
            def lif_cell(x):
                parameters = norse.LIFParameters(tau_syn_inv=torch.tensor(200.0, requires_grad=backward),
                                                 tau_mem_inv=torch.tensor(100.0, requires_grad=backward),
                                                 v_th=torch.tensor(1.0, requires_grad=backward))
                return _loop(norse.LIFCell(parameters), x, None)
            steps["Norse LIFCell"] = wrap(lif_cell)
    return steps


# The copy reference moves the scan's bytes, at most this many float32 elements
# each way (1 GiB), scaled to the scan's byte count beyond that (CUBA's
# forward+backward at N = 2^20, T = 100; T = 1000).  Not less: on the machine
# of an earlier session some 480 MiB stayed in cache, and after 2 GiB of other traffic
# a copy of 256 MiB each way took 1.60-1.75 ns per 20 bytes on one thread
# against 1.98-2.48 for 1 GiB and 2.44 for 2 GiB (0.82-0.85 against 0.92-0.95
# on two): the scans' ratios to the smaller copy came out 24-42% too high on
# one thread, 8-15% on two.  That of 2026-12-05 (lscpu: 32 MiB of L3) copied
# 32 MiB to 1 GiB each way at the same 25-28 GB/s, after 1 GiB of other
# traffic or not.
COPY_CAP = 1 << 28


def copy_step(model, phase, neurons, steps):
    """The bandwidth reference: the time of a copy reading and writing SCAN_BYTES
    per neuron-step in total (a capped copy, scaled linearly)."""
    elements = SCAN_BYTES[(model, phase)] * neurons * steps // 8  # float32: half read, half written
    used = min(elements, COPY_CAP)
    source = torch.ones(used)
    target = torch.empty(used).fill_(0)

    def run(x):
        target.copy_(source)
    run.scale = elements / used
    return run


def _threads(count):
    torch.set_num_threads(count)
    cpu.set_threads(count)


def _drive(model, neurons, steps):
    """The benchmark's input: (T, N) Gaussian drive, the same on every run."""
    generator = torch.Generator().manual_seed(0)
    mean, spread = (0.4, 0.6) if model == "tether.LIF" else (1.0, 0.6)
    return torch.randn(steps, neurons, generator=generator) * spread + mean


def timed_rounds(runs, inputs, rounds, repeats=1):
    """{name: [[seconds of each call] of each round]}: ``runs[name](inputs[name])``
    ``repeats`` times in a row per round, the names' order rotated each round.
    One garbage collection before the rounds, none between calls: a full
    collection walks every Python object, and the call after it ran cold
    (tether.LIF forward+backward on two threads at N = 64, T = 10: 1.39 ms
    after a collection against 0.43 ms), a cost a training loop does not pay
    every step."""
    gc.collect()
    times = {name: [] for name in runs}
    names = list(runs)
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:
            block = []
            for _ in range(repeats):
                start = time.perf_counter()
                runs[name](inputs[name])
                block.append(time.perf_counter() - start)
            times[name].append(block)
    return times


def measure(model, phase, neurons, steps, threads, rounds, peers):
    """{implementation: median seconds} of one configuration, measured interleaved."""
    _threads(threads)
    backward = phase == "forward+backward"
    x = _drive(model, neurons, steps)
    kernel_laps = []
    runs = {
        "cpu (fresh outputs)": snnref_step(model, "cpu", backward),
        "cpu (reused outputs)": snnref_step(model, "cpu", backward, pool={}, laps=kernel_laps),
        **({"cpu (reused, no loss)": snnref_step(model, "cpu", backward, pool={}, loss=False)} if backward else {}),
        "torch backend": snnref_step(model, "torch", backward),
        "copy (bandwidth)": copy_step(model, phase, neurons, steps),
    }
    if peers:
        runs.update(peer_steps(model, backward))
    for run in runs.values():
        run(x)  # warm up: compile, first touch of a reused pool
    # The pool's warm-up took the blocks that the fresh call's outputs had left,
    # so the first timed fresh call touched new memory (712 page faults, 43 ns
    # per neuron-step against 5.5 here after the peers): a second warm-up call
    # touches the blocks that every later fresh call finds, as in a training loop.
    runs["cpu (fresh outputs)"](x)
    times = {name: [block[0] for block in blocks]
             for name, blocks in timed_rounds(runs, dict.fromkeys(runs, x), rounds).items()}
    medians = {name: statistics.median(values) * getattr(runs[name], "scale", 1.0) for name, values in times.items()}
    # The warm-up's lap is not a timed call.
    medians["cpu kernels (reused)"] = statistics.median(kernel_laps[1:])
    return medians


def in_fresh_process(function, *args):
    """``function(*args)`` in a freshly spawned interpreter, its result returned."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as fresh:
        return fresh.submit(function, *args).result()


def measure_fresh(*config):
    """``measure`` in a fresh interpreter.  In one process the peers' memory
    at N = 2^20 stayed with the allocator after their tensors were freed, and
    the grid was killed for memory (24 GB) during its second model."""
    return in_fresh_process(measure, *config)


FLATNESS_SIZES = ((2**16, 100), (2**16, 1000), (2**20, 100))


def flatness(model, threads, rounds, sizes=FLATNESS_SIZES):
    """{(N, T): ((whole, kernels) after another size, (whole, kernels) repeated)}:
    median seconds per neuron-step of the cpu backend's forward+backward with
    fresh outputs, and of its kernels alone.  Each round runs every size three
    times in a row, the sizes' order rotated each round: the first call of a
    size follows a call of another size (after one at N = 2^20 the caches hold
    that call's data), the later ones repeat it, as a training loop at one size
    does."""
    _threads(threads)
    gc.collect()
    _launch.release_memory()
    inputs = {size: _drive(model, *size) for size in sizes}
    laps = {size: [] for size in sizes}
    runs = {size: snnref_step(model, "cpu", True, laps=laps[size]) for size in sizes}
    for size in sizes:
        runs[size](inputs[size])  # warm up: compile, the output blocks of this size
    repeats = 3
    whole = timed_rounds(runs, inputs, rounds, repeats)
    result = {}
    for n, t in sizes:
        # The warm-up's lap is not a timed call; the others line up with the rounds' blocks.
        kernel_blocks = [laps[(n, t)][1 + i * repeats:1 + (i + 1) * repeats] for i in range(rounds)]
        first = [(block[0], kernels[0]) for block, kernels in zip(whole[(n, t)], kernel_blocks)]
        later = [pair for block, kernels in zip(whole[(n, t)], kernel_blocks) for pair in zip(block[1:], kernels[1:])]
        result[(n, t)] = tuple(tuple(statistics.median(column) / (n * t) for column in zip(*pairs))
                               for pairs in (first, later))
    return result


def flatness_line(model, threads, per_step):
    """The printed lines of ``flatness``'s result, with max/min over the sizes."""
    lines = []
    for index, label in enumerate(("after another size", "repeated")):
        cells = " | ".join(f"N={n} T={t}: {pair[index][0] * 1e9:.2f} (kernels {pair[index][1] * 1e9:.2f})"
                           for (n, t), pair in per_step.items())
        spread = [max(v) / min(v) for v in zip(*(pair[index] for pair in per_step.values()))]
        lines.append(f"flatness {model}, {threads} thread(s), ns per neuron-step, forward+backward, fresh outputs, "
                     f"{label}: {cells}; max/min {spread[0]:.2f} (kernels {spread[1]:.2f})")
    return "\n".join(lines)


def fixed_cost(model, threads, calls=40):
    """(warm, cold): median seconds of a forward+backward call with almost no
    neuron-steps (N = 64, T = 10), once with its code and data still in the
    caches from the call before, once right after a copy of 128 MB each way
    evicted them, as the scans of every size in ``flatness`` do between one
    call's Python and the next.  The cold one is the part of each call that
    does not scale with its neuron-steps."""
    _threads(threads)
    x = _drive(model, 64, 10)
    run = snnref_step(model, "cpu", True)
    source = torch.ones(32 << 20)
    target = torch.empty_like(source).fill_(0)
    for _ in range(10):
        run(x)
    warm, cold = [], []
    for _ in range(calls):
        start = time.perf_counter()
        run(x)
        warm.append(time.perf_counter() - start)
        target.copy_(source)
        start = time.perf_counter()
        run(x)
        cold.append(time.perf_counter() - start)
    return statistics.median(warm), statistics.median(cold)


def fixed_cost_line(model, threads, costs, neuron_steps):
    warm, cold = costs
    return (f"fixed cost of a call, {model}, {threads} thread(s), forward+backward at N=64 T=10: "
            f"{warm * 1e3:.2f} ms with warm caches, {cold * 1e3:.2f} ms after a 128 MB copy; the cold one is "
            f"{cold / neuron_steps * 1e9:.2f} ns per neuron-step at the smallest size above "
            f"({neuron_steps} neuron-steps)")


def _rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _peak_in_this_process(model, backend, neurons, steps):
    """Growth of the resident high-water mark over one forward+backward, in bytes."""
    torch.set_num_threads(1)
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current RSS
    x = torch.randn(steps, neurons) * 0.6 + 0.4
    snnref_step(model, backend, True)(x)
    return (_rss_kib("VmHWM") - before) * 1024


def peak_memory(model, neurons=2**16, steps=1000):
    """Peak resident memory of one forward+backward on the cpu and torch backends
    (x included), in units of one (T, N) float32 sequence, from Linux's VmHWM.
    Each in a fresh process: in this one, memory that earlier rounds freed but
    the allocator kept would serve the new tensors without raising the mark."""
    if not os.path.exists("/proc/self/clear_refs"):
        return {}
    unit = steps * neurons * 4
    return {backend: in_fresh_process(_peak_in_this_process, model, backend, neurons, steps) / unit
            for backend in ("cpu", "torch")}


def grid(quick, full, sizes=None, threads=None, models=None):
    if sizes is None:
        sizes = [(2**16, 100)] if quick else [(2**16, 100), (2**20, 100), (2**16, 1000)]
        sizes += [(2**20, 1000)] if full else []
    threads = threads or ((1,) if quick else (1, 2))
    return [(model, phase, n, t, count) for model in models or MODELS for phase in ("forward", "forward+backward")
            for n, t in sizes for count in threads]


HEADER = (f"{'model':<17} {'pass':<17} {'N':>8} {'T':>5} {'thr':>3} {'implementation':<22} {'ns/n-step':>9} "
          f"{'/peer':>6} {'/torch':>6} {'/copy':>6}\n"
          "(/peer, /torch, /copy: this row's time over the fastest peer's, the torch backend's and the copy's; "
          "below 1 is faster)")


def table(results, write=print):
    for (model, phase, neurons, steps, threads), timings in results.items():
        peers = [v for k, v in timings.items() if k.split()[0] in ("snnTorch", "SpikingJelly", "Norse")]
        fastest_peer = min(peers) if peers else None
        for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]):
            per = seconds / (neurons * steps) * 1e9
            ratio = lambda base: f"{seconds / base:6.2f}" if base else "     -"  # noqa: E731
            # The copy and the scans alone are no whole call: against a peer's or the torch backend's
            # call, their ratios would read as speed-ups of snnref.
            whole_call = name not in ("copy (bandwidth)", "cpu kernels (reused)")
            against_calls = (f"{ratio(fastest_peer)} {ratio(timings['torch backend'])}" if whole_call
                             else f"{'-':>6} {'-':>6}")
            write(f"{model:<17} {phase:<17} {neurons:>8} {steps:>5} {threads:>3} {name:<22} {per:>9.2f} "
                  f"{against_calls} {ratio(timings['copy (bandwidth)'])}")


def _size_pairs(text):
    pairs = [pair.split(":") for pair in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected N:T pairs, comma-separated, got {text!r}")
    sizes = [(positive_integer(n), positive_integer(t)) for n, t in pairs]
    if len(set(sizes)) != len(sizes):
        # The results are keyed by size: a repeated pair would be measured twice and printed once.
        raise argparse.ArgumentTypeError(f"expected distinct N:T pairs, got {text!r}")
    return sizes


def _thread_counts(text):
    counts = tuple(positive_integer(v) for v in text.split(","))
    limit = _launch.machine_threads()
    if max(counts) > limit:
        raise argparse.ArgumentTypeError(f"expected 1 to {limit} (this machine's maximum), got {text!r}")
    return counts


def _model_names(text):
    # The copy reference needs each model's bytes per neuron-step (SCAN_BYTES), and the
    # peers exist for these two.
    chosen = text.split(",")
    unknown = [model for model in chosen if model not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(MODELS)}, got {', '.join(unknown)}")
    return chosen


def main(argv=None, write=lambda line: print(line, flush=True)):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--quick", action="store_true", help="N = 2^16, T = 100, one thread, 3 rounds")
    scope.add_argument("--full", action="store_true", help="also T = 1000 at N = 2^20 (needs about 24 GB)")
    parser.add_argument("--rounds", type=positive_integer, default=None,
                        help="interleaved rounds (default 5, --quick 3)")
    parser.add_argument("--no-peers", action="store_true", help="only snnref and the copy")
    parser.add_argument("--sizes", type=_size_pairs, help="N:T pairs, comma-separated (e.g. 1048576:100,65536:1000)")
    parser.add_argument("--threads", type=_thread_counts, help="thread counts, comma-separated (default 1,2; --quick 1)")
    parser.add_argument("--models", type=_model_names,
                        help=f"comma-separated, some of {','.join(MODELS)} (default: both)")
    parser.add_argument("--flatness", action="store_true",
                        help="only the cpu backend at three sizes, interleaved (default 7 rounds): max/min per step")
    args = parser.parse_args(argv)
    if args.full and args.sizes:
        parser.error("--full: adds a size to the default grid; with --sizes, name that size there")
    if args.flatness and args.sizes and len(args.sizes) < 2:
        parser.error("--sizes: --flatness compares sizes; expected at least two N:T pairs")
    sizes, threads, models = args.sizes, args.threads, args.models
    rounds = args.rounds or (3 if args.quick else 7 if args.flatness else 5)
    missing = [p for p in PEERS if _optional(p) is None]
    write(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average before: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; peers missing: {', '.join(missing) or 'none'}")
    results = {}
    if args.flatness:
        for model in models or MODELS:
            for count in threads or (1, 2):
                results[(model, count)] = flatness(model, count, rounds, sizes or FLATNESS_SIZES)
                write(flatness_line(model, count, results[(model, count)]))
                smallest = min(n * t for n, t in sizes or FLATNESS_SIZES)
                write(fixed_cost_line(model, count, fixed_cost(model, count), smallest))
    else:
        write(HEADER)
        for config in grid(args.quick, args.full, sizes, threads, models):
            results[config] = measure_fresh(*config, rounds, not args.no_peers)
            table({config: results[config]}, write)  # each configuration as soon as it is measured
        for model in models or MODELS:
            peaks = peak_memory(model)
            if peaks:
                write(f"peak memory of one forward+backward, {model}, T=1000, N=2^16 (x included), in (T, N) "
                      "float32 sequences: " + ", ".join(f"{k} {v:.2f}" for k, v in peaks.items()))
    write(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return results


def test_cpu_benchmark(benchmark):
    """Under pytest-benchmark: the whole interleaved grid once (``--quick`` sizes
    unless BENCH_CPU_FULL=1), its table printed (run with -s)."""
    argv = [] if os.environ.get("BENCH_CPU_FULL") == "1" else ["--quick"]
    benchmark.pedantic(main, args=(argv,), rounds=1, iterations=1)


if __name__ == "__main__":
    main(sys.argv[1:])
