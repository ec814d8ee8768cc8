"""``snnref verify``: a table row per model, exit 0 only when every check passes."""

import subprocess
import sys

import numpy as np

import snnref.spec.api as api
from snnref import cli, registry


def test_verify_passes_and_prints_a_row_per_model(capsys):
    keys = ["tether.LIF", "hxtorch.cuba_refractory_lif", "rnnbuilder.Discontinuous"]
    code = cli.main(["verify", *[arg for key in keys for arg in ("--model", key)]])
    out = capsys.readouterr()
    assert code == 0, out.out
    rows = [line.split() for line in out.out.splitlines() if line.split() and line.split()[0] in keys]
    # One row per model and backend, every one passing.
    assert sorted((r[0], r[1]) for r in rows) == sorted((k, b) for k in keys for b in ("spec", "torch"))
    assert all(r[-1] == "PASS" for r in rows)
    assert "refractory" in out.out and "gradcheck" in out.out and "6 passed, 0 failed" in out.out
    # Progress goes to stderr while it runs.
    assert "[ 1/6] tether.LIF (spec)" in out.err


def test_verify_fails_on_a_wrong_backward(capsys, plant_backward):
    def wrong(grads, params, state, tape, cot):
        grads["decay_a"] = grads["decay_a"] * 1.01

    plant_backward("tether.ALIF", wrong)
    code = cli.main(["verify", "--model", "tether.ALIF", "--backend", "spec"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "decay_a" in out


def test_verify_fails_on_a_wrong_forward(capsys, monkeypatch):
    family = api._family(registry.model("rnnbuilder.LIF"))
    original = family.forward

    def leaky(row, x, *args):
        # An input gain off by 1e-3: the comparison with lfilter must notice.
        return original(row, x * np.float64(1.001), *args)

    monkeypatch.setattr(family, "forward", leaky)
    assert cli.main(["verify", "--model", "rnnbuilder.LIF", "--backend", "spec"]) == 1
    assert "lfilter" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "snnref.cli", "verify", "--model", "tether.lif"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "model: unknown name 'tether.lif'; expected one of:" in result.stderr


def test_verify_fails_on_a_wrong_torch_backward(capsys, monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.backward

    def skewed(ctx, *grads):
        result = list(original(ctx, *grads))
        result[0] = result[0] * 1.001  # the input's gradient
        return tuple(result)

    monkeypatch.setattr(lif._Scan, "backward", staticmethod(skewed))
    assert cli.main(["verify", "--model", "qualia.IFSRL", "--backend", "torch"]) == 1
    out = capsys.readouterr().out
    assert "grad:x" in out and "first at step" in out
