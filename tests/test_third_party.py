"""Code nobody here wrote, through snnref's gate: snnTorch's Leaky and
SpikingJelly's LIFNode mapped onto tether.LIF by snnref.testing.adapters.

Where their semantics coincide with a canonical model they must conform,
outputs and gradients, under the unchanged budget; where they do not, the gate
must say so.  Skipped (with the reason) when the package is not installed; CI
installs both (see .ci/run)."""

import pytest

from snnref import testing
from snnref.testing import adapters

snntorch = pytest.importorskip("snntorch", reason="snnTorch is not installed (CI installs it)")

OFF_THRESHOLD = ("random", "wide", "long", "golden")


def test_snntorch_leaky_with_zero_reset_conforms_to_tether_lif_off_threshold():
    # Leaky(reset_mechanism="zero") with its one-step reset delay: pre-reset
    # membrane, detached hard reset to zero; ATan(2 alpha) == arctan(alpha).
    worst = testing.assert_conforms(adapters.snntorch_leaky(), "tether.LIF", examples=15, kinds=OFF_THRESHOLD)
    assert worst <= 1


def test_snntorch_leaky_tests_u_greater_than_zero_where_tether_says_greater_or_equal():
    # Leaky fires on mem - threshold > 0: the exact-threshold case must say so.
    with pytest.raises(testing.ConformanceError, match=r"spikes +inf .* threshold seed=\d+[\s\S]*>= against >"):
        testing.assert_conforms(adapters.snntorch_leaky(), "tether.LIF", kinds=("threshold",))


def test_snntorch_leaky_casts_float64_to_float32():
    impl = testing.Implementation.of(adapters.snntorch_leaky(), "tether.LIF")
    from dataclasses import replace

    with pytest.raises(testing.ConformanceError, match=r"dtype torch.float32, expected torch.float64"):
        testing.assert_conforms(replace(impl, dtypes=("float64",)), kinds=("random",), examples=1)


def test_snntorch_leaky_default_subtract_reset_is_not_tether_lif():
    # Leaky's default reset subtracts the threshold without decaying it
    # (mem = beta mem + x - theta s[t-1]): no registry model does that.
    with pytest.raises(testing.ConformanceError, match=r"\n  out:v +\S+ +\d+/\d+ +\d+-\d+ "):
        testing.assert_conforms(adapters.snntorch_leaky(reset_mechanism="subtract"), "tether.LIF",
                                examples=15, golden=False)


def test_spikingjelly_lif_node_conforms_to_tether_lif():
    pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed (CI installs it)")
    worst = testing.assert_conforms(adapters.spikingjelly_lif(), "tether.LIF", examples=15)
    assert worst <= 1


def test_spikingjelly_default_lif_node_is_not_tether_lif():
    # LIFNode's defaults scale the input by 1/tau (decay_input=True) and keep
    # the reset differentiable (detach_reset=False).
    pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed (CI installs it)")
    with pytest.raises(testing.ConformanceError, match="tether.LIF"):
        testing.assert_conforms(adapters.spikingjelly_lif(decay_input=True, detach_reset=False), "tether.LIF",
                                examples=15, golden=False)
