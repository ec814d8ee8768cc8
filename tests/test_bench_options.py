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
])
def test_a_bad_option_is_a_usage_error_before_any_measurement(option, value, message, capsys, monkeypatch):
    monkeypatch.setattr(bench_cpu, "measure_fresh", lambda *a: pytest.fail("measured before the options were checked"))
    with pytest.raises(SystemExit) as exit_:
        bench_cpu.main([option, value, "--no-peers"], write=lambda line: None)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
