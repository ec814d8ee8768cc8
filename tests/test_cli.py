"""``snnref verify``: a table row per model, exit 0 only when every check passes."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import snnref.spec.api as api
from fixtures import impl_mutants
from snnref import cli, registry


def test_verify_passes_and_prints_a_row_per_model(capsys):
    keys = ["tether.LIF", "hxtorch.cuba_refractory_lif", "rnnbuilder.Discontinuous"]
    code = cli.main(["verify", *[arg for key in keys for arg in ("--model", key)]])
    out = capsys.readouterr()
    assert code == 0, out.out
    rows = [line.split() for line in out.out.splitlines() if line.split() and line.split()[0] in keys]
    # One row per model and backend, every one passing.
    backends = ("spec", "torch", "triton")
    assert sorted((r[0], r[1]) for r in rows) == sorted((k, b) for k in keys for b in backends)
    assert all(r[-1] == "PASS" for r in rows)
    assert "refractory" in out.out and "gradcheck" in out.out and "bfloat16" in out.out
    assert "9 passed, 0 failed" in out.out
    # Progress goes to stderr while it runs.
    assert "[ 1/9] tether.LIF (spec)" in out.err


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


def test_verify_impl_passes_a_correct_implementation(capsys):
    assert cli.main(["verify", "--impl", "snnref:simulate", "--model", "hxtorch.cuba_refractory_lif"]) == 0
    assert "impl" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(impl_mutants.CASES))
def test_verify_impl_catches_each_planted_mutant(name, capsys):
    _, model = impl_mutants.CASES[name]
    code = cli.main(["verify", "--quick", "--impl", f"fixtures.impl_mutants:{name}", "--model", model])
    out = capsys.readouterr().out
    assert code == 1, out
    # Every failure names the model, the quantity (or a spike flip) and where it first fails.
    failures = [line for line in out.splitlines() if line.startswith("    ")]
    assert failures
    for failure in failures:
        assert model in failure
        assert re.search(r"(out|final|grad):\S+: max error .* first at (step \d+|index)|spike flip at step \d+",
                         failure), failure


@pytest.mark.parametrize("impl,message", [
    ("no_such_module:fn", "--impl: cannot import 'no_such_module'"),
    ("fixtures.impl_mutants:missing", "--impl: 'fixtures.impl_mutants' has no attribute 'missing'"),
    ("fixtures.impl_mutants:CASES", "is not callable"),
    ("fixtures.impl_mutants:not_a_function", "does not have the contract's signature"),
    ("snnref.simulate", "expected package.module:callable"),
])
def test_verify_impl_bad_targets(impl, message, capsys):
    assert cli.main(["verify", "--impl", impl, "--model", "tether.LIF"]) == 2
    assert message in capsys.readouterr().err


def test_verify_json_report(tmp_path, capsys):
    target = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF", "--json", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["passed"] and document["results"][0]["model"] == "tether.LIF"
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF",
                     "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "--json: the directory" in capsys.readouterr().err
