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
from snnref.testing.adapters import _common

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


def test_snntorch_leaky_takes_per_neuron_beta_and_threshold_as_its_docs_say():
    # snnTorch documents beta and threshold as one value or one per neuron; the adapter declared
    # scalars only, so a "conforms" never saw a per-neuron case.  By hand (dyadic, exact in float32):
    # lane 0 beta 0.5, theta 1: v = 0.75, 0.5 * 0.75 + 0.5 = 0.875, no spike; lane 1 beta 0.25,
    # theta 0.5: v = 0.625 spikes, reset to 0, then 0.25 * 0 + 0.25 = 0.25.  Lane 0's theta on
    # lane 1 (a scalar read) would not spike at 0.625.
    require("snntorch")
    impl = adapters.snntorch_leaky()
    x = torch.tensor([[0.75, 0.625], [0.5, 0.25]])
    params = {"decay": torch.tensor([0.5, 0.25]), "threshold": torch.tensor([1.0, 0.5]), "alpha": torch.tensor(1.0)}
    out = impl.fn("tether.LIF", x, params, {"v": torch.zeros(2)}, surrogate="arctan")
    assert torch.equal(out.outputs["out"], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(out.outputs["v"], torch.tensor([[0.75, 0.625], [0.875, 0.25]]))
    report = gate.run(impl, examples=1, kinds=("wide",))
    assert report.passed, report.text()
    assert [q for q in report.not_checked() if q.startswith("per-neuron")] == ["per-neuron alpha (per_neuron)"]
    assert len(report.runs) == 3  # the wide case with scalar and with per-neuron parameters, and the repeat


def test_norse_lif_box_takes_a_per_neuron_tau_as_its_tensor_parameters_allow():
    require("norse")
    impl = adapters.norse_lif_box()
    report = gate.run(impl, examples=1, kinds=("wide",))
    assert report.passed, report.text()
    assert [q for q in report.not_checked() if q.startswith("per-neuron")] == ["per-neuron gradient_factor "
                                                                                "(per_neuron)"]
    assert len(report.runs) == 5  # scalar and per-neuron wide cases in float32 and float64, and the repeat


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

def test_a_repeated_library_option_runs_each_library(tmp_path, capsys):
    # Found by an outside user: the second --library replaced the first, which then looked as if it had passed.
    require("norse")
    require("snntorch")
    path = tmp_path / "matrix.json"
    cli.main(["conformance", "--library", "norse", "--library", "snntorch", "--json", str(path)])
    written = json.loads(path.read_text())["configurations"]
    assert [r["configuration"] for r in written] == [c.name for c in conformance.CONFIGURATIONS
                                                     if c.library in ("norse", "snntorch")]
    assert {c.library for c in conformance.select(["snntorch", "norse"])} == {"norse", "snntorch"}


def test_cli_prints_the_matrix_of_one_library_and_writes_it_as_json(tmp_path, capsys):
    require("norse")
    path = tmp_path / "matrix.json"
    assert cli.main(["conformance", "--library", "norse", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    rows = [c for c in conformance.CONFIGURATIONS if c.library == "norse"]
    for c in rows:
        assert f"  {c.name}\n    -> {c.model}: " in text and c.reason in text
    assert "-> rnnbuilder.LIF: conforms (worst 0." in text
    assert "-> hxtorch.cuba_lif: fails: out:v at step 0\n    in: hxtorch.cuba_lif superspike random seed=" in text
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
    assert "snntorch not installed here, so nothing was checked; without another torch: pip install snntorch" in err
    assert json.loads(path.read_text())["configurations"][0]["verdict"] == "not installed"


def test_the_install_advice_never_resolves_a_library_s_declared_dependencies_but_snntorch_s():
    # Before, "pip install norse rockpool sinabs snntorch spikingjelly": their declared dependencies
    # (torchvision, torchaudio) replaced the CPU torch with a CUDA one.  snnTorch's install cleanly.
    assert set(conformance.INSTALL) == set(conformance.LIBRARIES)
    for library, command in conformance.INSTALL.items():
        assert library == "snntorch" or command.startswith(f"pip install --no-deps {library}"), command


def test_a_library_installed_without_a_module_its_neurons_import_is_not_installed(monkeypatch):
    monkeypatch.setattr(conformance, "installed", lambda library: True)

    def adapter():
        raise ImportError("No module named 'pbr'")

    broken = replace(conformance.CONFIGURATIONS[0], name="Leaky (pbr missing)", adapter=adapter)
    verdict = conformance.evaluate(broken)
    assert verdict.status == conformance.NOT_INSTALLED and verdict.text() == "not installed (No module named 'pbr')"


def _inside_a_file(tmp):
    (tmp / "notes.txt").write_text("a file, not a directory\n")
    return tmp / "notes.txt" / "matrix.json"


@pytest.mark.parametrize("make_target,message", [
    (lambda tmp: tmp, "is a directory; expected a file name"),
    (lambda tmp: tmp / "missing" / "matrix.json", "--json: the directory"),
    # Before: "the directory .../notes.txt does not exist", of a file that is there.
    (_inside_a_file, "notes.txt exists and is not a directory; name a file in a directory"),
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


# Found by mutation testing (no library needed): each of these passed a planted bug before.
# snnTorch's Leaky off threshold (recorded: conforms) and at exact threshold (recorded: fails at spikes).
LEAKY_CONFORMS, LEAKY_FAILS = (next(c for c in conformance.CONFIGURATIONS if c.library == "snntorch" and
                                    c.name == f'Leaky(reset_mechanism="zero"), {where}')
                               for where in ("off threshold", "exact threshold"))


def _matrix(monkeypatch, verdicts):
    monkeypatch.setattr(conformance, "CONFIGURATIONS", tuple(v.configuration for v in verdicts))
    monkeypatch.setattr(conformance, "evaluate", {v.configuration: v for v in verdicts}.__getitem__)


def test_cli_exits_0_when_some_libraries_are_missing_and_the_rest_is_as_recorded(monkeypatch, capsys):
    norse = next(c for c in conformance.CONFIGURATIONS if c.library == "norse")
    _matrix(monkeypatch, [conformance.Verdict(LEAKY_CONFORMS, conformance.CONFORMS, worst=0.5),
                          conformance.Verdict(norse, conformance.NOT_INSTALLED, detail="No module named 'norse'")])
    assert cli.main(["conformance"]) == 0
    out, err = capsys.readouterr()
    assert "1 conform, 0 fail, 0 unexpected; not installed: norse" in out
    assert "nothing was checked" not in err


def test_a_conforms_row_names_the_quantities_it_did_not_compare_and_the_json_lists_all(monkeypatch, tmp_path,
                                                                                       capsys):
    # SpikingJelly's LIFNode conformed with its membrane (not returned) and every parameter gradient (Python
    # numbers) never compared, and neither the text nor the JSON said so.
    not_checked = ("out:v (not returned)", "surrogates arctan (not declared)", "grad:decay (fixed)",
                   "grad:threshold (fixed)", "float64 (dtypes)")
    _matrix(monkeypatch, [conformance.Verdict(LEAKY_CONFORMS, conformance.CONFORMS, worst=0.5,
                                              not_checked=not_checked),
                          conformance.Verdict(LEAKY_FAILS, conformance.FAILS, quantity="spikes", step=0,
                                              not_checked=not_checked)])
    path = tmp_path / "matrix.json"
    assert cli.main(["conformance", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("-> tether.LIF: conforms (worst 0.50 of the budget)\n"
            "    not compared: out:v (not returned); grad:decay, grad:threshold (fixed)\n"
            f"    {LEAKY_CONFORMS.reason}\n") in out
    # A failing row is not vouched for at all: no such line.
    assert out.count("not compared:") == 1
    rows = json.loads(path.read_text())["configurations"]
    assert [row["not_checked"] for row in rows] == [list(not_checked)] * 2


def test_cli_exits_1_when_a_recorded_failure_fails_elsewhere_or_conforms(monkeypatch, capsys):
    for verdict, shown in [
        (conformance.Verdict(LEAKY_FAILS, conformance.FAILS, quantity="out:v", step=3), "fails: out:v at step 3"),
        (conformance.Verdict(LEAKY_FAILS, conformance.CONFORMS, worst=0.2), "conforms (worst 0.20 of the budget)"),
    ]:
        assert not verdict.as_expected
        _matrix(monkeypatch, [verdict])
        assert cli.main(["conformance"]) == 1
        assert f"{shown}  UNEXPECTED (recorded: fails: spikes)" in capsys.readouterr().out


def test_a_final_state_is_named_before_a_gradient_and_a_step_before_no_step():
    final_and_gradient = SimpleNamespace(failures=["grad:x: e", "final:v: e"], details={
        "grad:x": _detail(True, 0), "final:v": _detail(True), "out:v": _detail(False, None)})
    assert conformance.quantity_at(final_and_gradient, "tether.LIF")[:2] == ("final:v", None)
    # A gradient located at a step comes before one without a time axis, whatever the step.
    located = SimpleNamespace(failures=["grad:decay: e", "grad:x: e"], details={
        "grad:decay": _detail(True, None), "grad:x": _detail(True, 9)})
    assert conformance.quantity_at(located, "tether.LIF") == ("grad:x", 9, "grad:x: e")


def test_evaluate_reads_the_first_failing_run_not_the_first_run(monkeypatch):
    def failing_run(label, passed, details, failures):
        return gate.Run(label, "random", 0, "float32", passed, details, failures)

    report = gate.GateReport("tether.LIF", "planted", "contract", runs=[
        failing_run("first", True, {"out:v": _detail(False, None)}, []),
        failing_run("second", False, {"out:v": _detail(True, 7)}, ["out:v: max error"])])
    monkeypatch.setattr(conformance, "installed", lambda library: True)
    monkeypatch.setattr(conformance.gate, "run", lambda impl, **options: report)
    planted = replace(LEAKY_CONFORMS, name="Leaky (planted report)",
                      adapter=lambda: Implementation(lambda *a, surrogate=None, inject=None: None, "tether.LIF"))
    verdict = conformance.evaluate(planted)
    assert (verdict.status, verdict.quantity, verdict.step) == (conformance.FAILS, "out:v", 7)
    assert verdict.detail == "second: out:v: max error"
    # The row names that run, in the table and the JSON, so that a reader can rerun the case.
    assert verdict.run == "second" and verdict.as_dict()["run"] == "second"
    assert "\n    -> tether.LIF: fails: out:v at step 7  UNEXPECTED (recorded: conforms)\n    in: second\n" \
        in conformance.table([verdict])


def test_initial_takes_the_gates_tensor_and_fills_a_variable_it_does_not_give():
    x = torch.zeros(4, 2, 3, dtype=torch.float64)
    given = {"v": torch.full((2, 3), 0.25, dtype=torch.float64)}
    assert torch.equal(_common.initial(given, "v", x), given["v"])
    # A partial state (the gate's random cases give the first variable only): the rest is filled.
    filled = _common.initial(given, "i", x, fill=0.5)
    assert filled.shape == (2, 3) and filled.dtype == torch.float64 and bool((filled == 0.5).all())
    assert bool((_common.initial(None, "v", x) == 0).all())


def test_a_library_that_is_not_installed_is_not_marked_unexpected():
    verdict = conformance.Verdict(conformance.CONFIGURATIONS[1], conformance.NOT_INSTALLED,
                                  detail="No module named 'snntorch'")
    assert "UNEXPECTED" not in conformance.table([verdict])
    assert "not installed (No module named 'snntorch')" in conformance.table([verdict])


def test_a_parameter_a_library_takes_as_one_number_is_refused_per_neuron():
    # Found by an outside library author: the adapters read such a parameter's first element, so a
    # per-neuron threshold given directly to the adapter ran every neuron at neuron 0's.
    pytest.importorskip("spikingjelly")
    from snnref.testing import adapters

    impl = adapters.spikingjelly_lif()
    x = torch.full((3, 1, 2), 0.7)
    params = {"decay": torch.tensor(0.5), "threshold": torch.tensor([1.0, 0.6]), "alpha": torch.tensor(4.0)}
    with pytest.raises(ValueError, match=r"^params\['threshold'\]: this library takes one number, got \[1.0, 0.6"):
        impl.fn("tether.LIF", x, params, None, surrogate="sigmoid")
    # One value repeated per neuron is that number.
    repeated = impl.fn("tether.LIF", x, {**params, "threshold": torch.tensor([0.6, 0.6])}, None, surrogate="sigmoid")
    one = impl.fn("tether.LIF", x, {**params, "threshold": torch.tensor(0.6)}, None, surrogate="sigmoid")
    assert torch.equal(repeated.outputs["out"], one.outputs["out"]) and one.outputs["out"].sum() > 0


def test_the_leaky_row_says_snntorch_clamps_beta_and_it_does():
    # Found by an outside user: "conforms" held only inside the sampled decays, unsaid; past 1 snnTorch's
    # clamped beta and tether's raw decay part (SPEC.md section 2: parameters are used raw).
    require("snntorch")
    row = next(c for c in conformance.CONFIGURATIONS if c.name == 'Leaky(reset_mechanism="zero"), off threshold')
    assert "beta is clamped to [0, 1], tether's decay is used raw" in row.reason
    x = torch.full((12, 1, 3), 0.3, dtype=torch.float32)
    params = {"decay": torch.tensor(1.05), "threshold": torch.tensor(1.0), "alpha": torch.tensor(2.0)}
    leaky = adapters.snntorch_leaky().fn("tether.LIF", x, params, None)
    ours = snnref.simulate("tether.LIF", x, params, backend="torch")
    assert not torch.equal(leaky.outputs["v"], ours.outputs["v"])
    inside = dict(params, decay=torch.tensor(0.9))
    assert torch.equal(adapters.snntorch_leaky().fn("tether.LIF", x, inside, None).outputs["out"],
                       snnref.simulate("tether.LIF", x, inside, backend="torch").outputs["out"])
