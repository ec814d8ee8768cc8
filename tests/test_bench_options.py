"""tools/bench_cpu.py refuses bad options by name before it measures anything (the
benchmarks themselves are not part of the tests: timings are reported, never asserted)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_cpu  # noqa: E402  (tools/ is no package)
from snnref.kernels.cpu import _launch  # noqa: E402


@pytest.mark.parametrize("option,value,message", [
    # Before: a KeyError from the copy reference after the header (the peak memory ran every model too).
    ("--models", "tether.PLIF", "--models: expected some of tether.LIF, hxtorch.cuba_lif, got tether.PLIF"),
    # Before: 0 rounds ran the default count.
    ("--rounds", "0", "--rounds: expected an integer >= 1, got '0'"),
    # Before: a traceback from the child process of each configuration.
    ("--threads", str(_launch.machine_threads() + 1), "--threads: expected 1 to"),
    ("--sizes", "65536", "--sizes: expected N:T pairs"),
    # Found by an outside user: a repeated size was measured twice and printed once.
    ("--sizes", "64:10,64:10", "--sizes: expected distinct N:T pairs"),
])
def test_a_bad_option_is_a_usage_error_before_any_measurement(option, value, message, capsys, monkeypatch):
    monkeypatch.setattr(bench_cpu, "measure_fresh", lambda *a: pytest.fail("measured before the options were checked"))
    with pytest.raises(SystemExit) as exit_:
        bench_cpu.main([option, value, "--no-peers"], write=lambda line: None)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_one_small_configuration_runs_and_prints_its_table(monkeypatch):
    # Before this test, a parser type named like the tool's own _threads(count) replaced it, and every
    # configuration failed in its child process (the options tests above stop before any measurement).
    monkeypatch.setattr(bench_cpu, "peak_memory", lambda model: {})
    lines = []
    results = bench_cpu.main(["--sizes", "4096:5", "--threads", "1", "--rounds", "1", "--no-peers",
                              "--models", "tether.LIF"], write=lines.append)
    assert len(results) == 2  # forward, forward+backward
    assert any(line.startswith("tether.LIF        forward+backward") and "cpu (fresh outputs)" in line
               for line in lines), lines


@pytest.mark.parametrize("argv,message", [
    # Found by an outside user: each combination ran, contradicting the help of one of its options
    # (--quick --full measured N = 2^20, T = 1000; --full beside --sizes was ignored; --flatness of one
    # size printed a max/min of 1.00).
    (["--quick", "--full"], "--full: not allowed with argument --quick"),
    (["--full", "--sizes", "64:10"], "--full: adds a size to the default grid"),
    (["--flatness", "--sizes", "64:10"], "--sizes: --flatness compares sizes; expected at least two N:T pairs"),
])
def test_contradictory_options_are_a_usage_error(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(bench_cpu, "measure_fresh", lambda *a: pytest.fail("measured before the options were checked"))
    monkeypatch.setattr(bench_cpu, "flatness", lambda *a: pytest.fail("measured before the options were checked"))
    with pytest.raises(SystemExit) as exit_:
        bench_cpu.main([*argv, "--no-peers"], write=lambda line: None)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
