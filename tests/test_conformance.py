"""The field's conformance matrix (snnref.testing.conformance): code nobody here
wrote, through snnref's gate under the unchanged budget.

One test per (library configuration, model) of ``conformance.CONFIGURATIONS``
asserts its recorded verdict: conforms with the worst fraction <= 1, or fails
at the named quantity.  A library that is not installed skips its rows with
the reason (CI installs all five, see .ci/run).  Below the matrix: the gate's
report for snnTorch's Leaky and SpikingJelly's LIFNode (message by message),
the first-failing-quantity rule, and ``snnref conformance``.
"""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import snnref
from snnref import cli, testing
from snnref.testing import Implementation, adapters, conformance, gate

OFF_THRESHOLD = ("random", "wide", "long", "golden")


def require(library):
    pytest.importorskip(library, reason=f"{conformance.LIBRARIES[library]} is not installed (CI installs it)")


@pytest.mark.parametrize("configuration", conformance.CONFIGURATIONS, ids=lambda c: c.key)
def test_recorded_verdict(configuration):
    require(configuration.library)
    verdict = conformance.evaluate(configuration)
    if configuration.expected == conformance.CONFORMS:
        assert verdict.status == conformance.CONFORMS, verdict.detail
        assert verdict.worst <= 1
    else:
        assert verdict.status == conformance.FAILS, f"{configuration.key} now conforms (worst {verdict.worst})"
        assert verdict.quantity == configuration.quantity, verdict.detail
    assert verdict.as_expected


def test_every_library_has_rows_and_every_row_a_verdict_and_a_reason():
    assert {c.library for c in conformance.CONFIGURATIONS} == set(conformance.LIBRARIES)
    assert len({c.key for c in conformance.CONFIGURATIONS}) == len(conformance.CONFIGURATIONS)
    for c in conformance.CONFIGURATIONS:
        assert c.expected in (conformance.CONFORMS, conformance.FAILS), c.key
        assert bool(c.quantity) == (c.expected == conformance.FAILS), c.key
        assert c.reason and "\n" not in c.reason, c.key


# The gate's report on snnTorch's Leaky and SpikingJelly's LIFNode, message by message.

def test_snntorch_leaky_with_zero_reset_conforms_to_tether_lif_off_threshold():
    require("snntorch")
    # Leaky(reset_mechanism="zero") with its one-step reset delay: pre-reset
    # membrane, detached hard reset to zero; ATan(2 alpha) == arctan(alpha).
    worst = testing.assert_conforms(adapters.snntorch_leaky(), "tether.LIF", examples=15, kinds=OFF_THRESHOLD)
    assert worst <= 1


def test_snntorch_leaky_tests_u_greater_than_zero_where_tether_says_greater_or_equal():
    require("snntorch")
    # Leaky fires on mem - threshold > 0: the exact-threshold case must say so.
    with pytest.raises(testing.ConformanceError, match=r"spikes +inf .* threshold seed=\d+[\s\S]*>= against >"):
        testing.assert_conforms(adapters.snntorch_leaky(), "tether.LIF", kinds=("threshold",))


def test_snntorch_leaky_casts_float64_to_float32():
    require("snntorch")
    impl = testing.Implementation.of(adapters.snntorch_leaky(), "tether.LIF")
    with pytest.raises(testing.ConformanceError, match=r"dtype torch.float32, expected torch.float64"):
        testing.assert_conforms(replace(impl, dtypes=("float64",)), kinds=("random",), examples=1)


def test_snntorch_leaky_default_subtract_reset_is_not_tether_lif():
    require("snntorch")
    # Leaky's default reset subtracts the threshold without decaying it
    # (mem = beta mem + x - theta s[t-1]): no registry model does that.
    with pytest.raises(testing.ConformanceError, match=r"\n  out:v +\S+ +\d+/\d+ +\d+-\d+ "):
        testing.assert_conforms(adapters.snntorch_leaky(reset_mechanism="subtract"), "tether.LIF",
                                examples=15, golden=False)


def test_spikingjelly_lif_node_conforms_to_tether_lif():
    require("spikingjelly")
    worst = testing.assert_conforms(adapters.spikingjelly_lif(), "tether.LIF", examples=15)
    assert worst <= 1


def test_spikingjelly_default_lif_node_is_not_tether_lif():
    # LIFNode's defaults scale the input by 1/tau (decay_input=True) and keep
    # the reset differentiable (detach_reset=False).
    require("spikingjelly")
    with pytest.raises(testing.ConformanceError, match="tether.LIF"):
        testing.assert_conforms(adapters.spikingjelly_lif(decay_input=True, detach_reset=False), "tether.LIF",
                                examples=15, golden=False)


def test_adapters_refuse_a_model_they_do_not_cover_by_naming_the_argument():
    require("norse")
    impl = adapters.norse_lif_box()
    with pytest.raises(ValueError, match=r"^model: the Norse LIFBox adapter covers rnnbuilder.LIF, got 'tether.LIF'"):
        impl.fn("tether.LIF", None, {}, {}, surrogate="spike_linear")


# The first failing quantity: forward before final before gradient, then step, then the registry's order.

def _detail(failed, first_step=None):
    return {"failed": failed, "first_step": first_step}


def test_first_failing_quantity_is_the_earliest_forward_sequence_not_a_gradient():
    run = SimpleNamespace(failures=["spikes: flip", "out:v: max error", "grad:x: max error"], details={
        "grad:x": _detail(True, 0), "final:v": _detail(True), "spikes": _detail(True, 3),
        "out:v": _detail(True, 3), "out:out": _detail(False, None), "out:i": _detail(True, 5)})
    assert conformance.quantity_at(run, "hxtorch.cuba_lif") == ("out:v", 3, "out:v: max error")
    only_gradients = SimpleNamespace(failures=["grad:tau_mem: x"], details={
        "grad:x": _detail(True, 4), "grad:tau_mem": _detail(True, 2), "out:v": _detail(False)})
    assert conformance.quantity_at(only_gradients, "hxtorch.cuba_lif")[:2] == ("grad:tau_mem", 2)


def test_a_run_that_returns_float32_for_float64_fails_on_dtype_and_a_crash_is_a_crash():
    cast = SimpleNamespace(details={}, failures=["crashed: ImplementationError: result.outputs['out']: dtype "
                                                 "torch.float32, expected torch.float64 like x"])
    assert conformance.quantity_at(cast, "tether.LIF")[0] == "dtype"
    crash = SimpleNamespace(details={}, failures=["crashed: RuntimeError: dtype mismatch in the library"])
    assert conformance.quantity_at(crash, "tether.LIF")[0] == "crash"



def test_a_library_that_writes_into_its_input_fails_on_inputs():
    def halves_x_after_use(model, x, params, state, *, surrogate=None, inject=None):
        result = snnref.simulate(model, x, params, state, surrogate=surrogate, inject=inject, backend="torch")
        with torch.no_grad():
            x.mul_(0.5)
        return result

    report = gate.run(Implementation(halves_x_after_use, "tether.LIF"), examples=1, kinds=("random",))
    quantity, step, message = conformance.quantity_at(report.runs[0], "tether.LIF")
    assert (quantity, step) == ("inputs", None)
    assert message.startswith("x: modified in place by the implementation during its call"), message


# snnref conformance

def test_cli_prints_the_matrix_of_one_library_and_writes_it_as_json(tmp_path, capsys):
    require("norse")
    path = tmp_path / "matrix.json"
    assert cli.main(["conformance", "--library", "norse", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    rows = [c for c in conformance.CONFIGURATIONS if c.library == "norse"]
    for c in rows:
        assert f"  {c.name}\n    -> {c.model}: " in text and c.reason in text
    assert "-> rnnbuilder.LIF: conforms (worst 0." in text
    assert "-> hxtorch.cuba_lif: fails: out:v at step 0" in text
    written = json.loads(path.read_text())["configurations"]
    assert [(r["configuration"], r["model"]) for r in written] == [(c.name, c.model) for c in rows]
    assert all(r["as_expected"] for r in written)
    assert {r["verdict"] for r in written} == {"conforms", "fails"}


def test_cli_says_not_installed_and_exits_2_when_nothing_was_checked(monkeypatch, tmp_path, capsys):
    missing = replace(conformance.CONFIGURATIONS[0], name="Leaky (a library that is not installed)")
    monkeypatch.setattr(conformance, "CONFIGURATIONS", (missing,))
    monkeypatch.setattr(conformance, "installed", lambda library: False)
    path = tmp_path / "matrix.json"
    assert cli.main(["conformance", "--json", str(path)]) == 2
    out, err = capsys.readouterr()
    assert f"-> {missing.model}: not installed (No module named 'snntorch')" in out
    assert "not installed: snntorch" in out
    assert "snntorch not installed here, so nothing was checked (pip install snntorch)" in err
    assert json.loads(path.read_text())["configurations"][0]["verdict"] == "not installed"


def test_a_library_installed_without_a_module_its_neurons_import_is_not_installed(monkeypatch):
    monkeypatch.setattr(conformance, "installed", lambda library: True)

    def adapter():
        raise ImportError("No module named 'pbr'")

    broken = replace(conformance.CONFIGURATIONS[0], name="Leaky (pbr missing)", adapter=adapter)
    verdict = conformance.evaluate(broken)
    assert verdict.status == conformance.NOT_INSTALLED and verdict.text() == "not installed (No module named 'pbr')"


@pytest.mark.parametrize("make_target,message", [
    (lambda tmp: tmp, "is a directory; expected a file name"),
    (lambda tmp: tmp / "missing" / "matrix.json", "--json: the directory"),
])
def test_cli_checks_its_json_target_before_the_run(make_target, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(conformance, "evaluate", lambda configuration: pytest.fail("ran before --json was checked"))
    assert cli.main(["conformance", "--json", str(make_target(tmp_path))]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_cli_exits_1_when_a_verdict_is_not_the_recorded_one(monkeypatch, capsys):
    recorded = conformance.CONFIGURATIONS[0]
    changed = conformance.Verdict(recorded, conformance.FAILS, quantity="out:v", step=7, detail="planted")
    monkeypatch.setattr(conformance, "CONFIGURATIONS", (recorded,))
    monkeypatch.setattr(conformance, "evaluate", lambda configuration: changed)
    assert cli.main(["conformance"]) == 1
    assert "fails: out:v at step 7  UNEXPECTED (recorded: conforms)" in capsys.readouterr().out


def test_cli_rejects_an_unknown_library(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["conformance", "--library", "brian2"])
    assert stop.value.code == 2
    assert "--library: invalid choice: 'brian2'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^--library: unknown library 'brian2'; expected one of: snntorch"):
        conformance.select("brian2")
