"""Prints each benchmark as ns per neuron-step and as a ratio to the torch
backend measured in the same run (pytest-benchmark's own table is in seconds)."""

import sys

import bench_lif


def pytest_terminal_summary(terminalreporter):
    gpu = sys.modules.get("bench_gpu")
    if gpu is not None and gpu.RESULTS:
        _gpu_summary(terminalreporter.write_line, gpu.RESULTS)
    results = bench_lif.RESULTS
    if not results:
        return
    write = terminalreporter.write_line
    write("")
    write("tether.LIF, float32 in / float64 for the spec, T = %d, median of the rounds" % bench_lif.STEPS)
    write(f"{'N':>8} {'pass':<17} {'implementation':<22} {'ns/neuron-step':>15} {'x torch backend':>16}")
    for (neurons, phase), timings in sorted(results.items()):
        base = timings.get("torch backend")
        for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]):
            per_step = seconds / (neurons * bench_lif.STEPS) * 1e9
            ratio = f"{seconds / base:.2f}" if base else "-"
            write(f"{neurons:>8} {phase:<17} {name:<22} {per_step:>15.2f} {ratio:>16}")


def _gpu_summary(write, results):
    bandwidth = results.pop("copy bandwidth")
    write("")
    write(f"GPU copy bandwidth (read + write): {bandwidth / 1e9:.0f} GB/s")
    write(f"{'model':<18} {'pass':<17} {'T':>5} {'N':>9} {'impl':<11} {'ms':>9} {'GB/s':>7} {'of copy':>8}")
    for (model, phase, steps, neurons, impl), (seconds, achieved, fraction) in sorted(results.items()):
        write(f"{model:<18} {phase:<17} {steps:>5} {neurons:>9} {impl:<11} {seconds * 1e3:>9.2f} "
              f"{achieved / 1e9:>7.0f} {fraction:>8.2f}")
