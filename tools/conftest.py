"""Prints each benchmark as ns per neuron-step and as a ratio to the torch
backend measured in the same run (pytest-benchmark's own table is in seconds)."""

import bench_lif


def pytest_terminal_summary(terminalreporter):
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
