"""The equivalence checks themselves fail on a wrong torch backend.

The torch backend's equivalence with the spec (hypothesis, every model on a
fixed case, gradcheck on every smooth twin) is the shared template of
tests/test_backends.py, run there for every backend."""

import numpy as np
import torch

from snnref.testing import _checks as checks, _equivalence as equivalence


def test_equivalence_catches_a_wrong_gradient(monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.backward

    def skewed(ctx, *grads):
        result = list(original(ctx, *grads))
        result[3] = result[3] * 1.01  # the threshold's gradient
        return tuple(result)

    monkeypatch.setattr(lif._Scan, "backward", staticmethod(skewed))
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=10)
    report = equivalence.compare(case, "torch", torch.float32)
    assert not report.passed
    assert any(f.startswith("grad:threshold") for f in report.failures)


def test_equivalence_rejects_an_unexplained_spike_flip(monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.forward

    def flipping(ctx, x, *args):
        # The implementation fires on a membrane 0.05 lower than it should.
        return original(ctx, x + 0.05, *args)

    monkeypatch.setattr(lif._Scan, "forward", staticmethod(flipping))
    case = checks.random_case("tether.LIF", np.random.default_rng(0), steps=10)
    report = equivalence.compare(case, "torch", torch.float64)
    assert not report.passed and any("spike flip" in f for f in report.failures)
