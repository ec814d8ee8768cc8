"""The gate for other people's code (snnref.testing.gate): one declared contract,
no blind spots, a report that shows why, and planted bugs in an outside LIF
(tests/fixtures/outside_lif.py) caught with the quantity and the step."""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import outside_lif
from snnref import registry, spec, testing
from snnref.spec.surrogates import arctan_F, arctan_f, arctan_dF
from snnref.testing import gate

SPIKING = sorted(k for k, row in registry.MODELS.items() if row.surrogates)
QUICK = dict(examples=2)


def test_a_correct_outside_implementation_passes_in_float32_and_float64():
    report = gate.run(testing.Implementation.of(outside_lif.correct, "tether.LIF"), **QUICK)
    assert report.passed, report.text()
    assert {r.dtype for r in report.runs} == {"float32", "float64"}
    assert {r.kind for r in report.runs} == set(gate.KINDS)


def _forward_alone(fn):
    """``fn``'s results cut from the autograd graph, as a simulator without autograd returns them."""
    def simulator(model, x, params, state, *, surrogate=None, inject=None):
        result = fn(model, x, params, state, surrogate=surrogate, inject=inject)
        return outside_lif.SimpleNamespace(outputs={k: v.detach() for k, v in result.outputs.items()},
                                           final_state={k: v.detach() for k, v in result.final_state.items()})

    simulator.surrogates = fn.surrogates
    return simulator


def test_an_implementation_of_the_forward_alone_is_checked_without_its_gradients():
    # Found by an outside user (a hardware team's simulator, NumPy inside): the gate refused every
    # call ("every tensor is detached from the inputs"), with no way to check the forward alone.
    impl = testing.Implementation(_forward_alone(outside_lif.correct), "tether.LIF", gradients=False)
    report = gate.run(impl, **QUICK)
    assert report.passed, report.text()
    assert "every gradient (gradients=False: the forward alone)" in report.not_checked()
    assert not [q for q in report.not_checked() if q.startswith("grad:")], report.not_checked()
    assert {key for run in report.runs for key in run.details} >= {"out:out", "out:v", "final:v"}
    assert not [key for run in report.runs for key in run.details if key.startswith("grad:")]
    # A forward bug is caught, its step named; a backward bug is not the gate's to see here.
    late = gate.run(replace(impl, fn=_forward_alone(outside_lif.after_step_50)), **QUICK)
    assert not late.passed and re.search(r"out:v .* 5\d-", late.text()), late.text()
    assert gate.run(replace(impl, fn=_forward_alone(outside_lif.threshold_grad_sign)), **QUICK).passed
    with pytest.raises(testing.ContractError, match=r"^gradients: expected True or False, got 'no'$"):
        testing.Implementation(outside_lif.correct, "tether.LIF", gradients="no")
    detached = gate.run(testing.Implementation(outside_lif.detached, "tether.LIF"), examples=1, kinds=("random",))
    assert "declares gradients=False" in detached.text(), detached.text()


@pytest.mark.parametrize("name", sorted(outside_lif.BUGS))
def test_each_planted_bug_is_caught_naming_the_quantity_and_step(name):
    model, _ = outside_lif.BUGS[name]
    with pytest.raises(testing.ConformanceError) as caught:
        testing.assert_conforms(getattr(outside_lif, name), model, **QUICK)
    text = str(caught.value)
    # The per-quantity table: quantity, worst fraction, failing runs, first-last step.
    rows = {m[0]: m[1:] for m in re.findall(r"(?m)^  (\S+) +(\S+) +(\d+)/(\d+) +(\S+) ", text)}
    assert rows and all(q.startswith(("out:", "grad:", "final:", "spikes")) for q in rows), text
    assert "first failing run: " + model in text
    # Every failure names a step: a sequence's own, or the run's first failing step.
    assert any(rows[q][3] != "-" for q in rows) or re.search(r"first at step \d+", text), text
    expected = {"after_step_50": ("out:v", outside_lif.LATE_STEP), "gt_for_ge": ("spikes", 0),
                "beyond_lane_32": ("out:v", 0), "b4": ("out:v", 0)}.get(name)
    if expected:
        assert int(rows[expected[0]][3].split("-")[0]) == expected[1], text


@pytest.mark.parametrize("name,kind,per_neuron", [
    ("beyond_lane_32", "wide", None),
    # Both passed the gate before: its exact-threshold and wide cases had only scalar parameters.
    ("per_neuron_gt_for_ge", "threshold", True),
    ("per_neuron_beyond_lane_256", "wide", True),
    # Passed before: every case gave every initial state, so the default was never run.
    ("default_v_half", "out_sum", None),
    # Passed before without the goldens: no case had T = 1 by construction, and the long case's
    # T = 256 left no partial tile of steps.
    ("single_step_final_pre_reset", "random", None),
    ("tail_of_64_step_tiles", "long", None),
    # Passed before: no case reached alpha |u| = 88, where float32's exp overflows.
    ("naive_sigmoid", "far", None),
])
def test_a_bug_is_caught_only_by_the_case_made_for_it(name, kind, per_neuron):
    kinds = tuple(k for k in gate.KINDS if k != "golden")
    report = gate.run(testing.Implementation.of(getattr(outside_lif, name), "tether.LIF"), kinds=kinds, **QUICK)
    failing = [r for r in report.runs if not r.passed]
    assert {r.kind for r in failing} == {kind}, report.text()
    if per_neuron is not None:
        assert all(np.ndim(r.planned.case.params["threshold"]) for r in failing), report.text()


def reads_its_inputs_as_if_contiguous(model, x, params, state, *, surrogate=None, inject=None):
    """A kernel that takes x's and the parameters' storage by pointer,
    ignoring their strides."""
    def as_if_contiguous(tensor):
        strides = [int(np.prod(tensor.shape[axis + 1:])) for axis in range(tensor.dim())]
        return torch.as_strided(tensor, tensor.shape, strides, tensor.storage_offset())

    params = {name: as_if_contiguous(value) for name, value in params.items()}
    return torch_simulate(model, as_if_contiguous(x), params, state, surrogate=surrogate, inject=inject)


def addresses_lanes_with_one_stride(model, x, params, state, *, surrogate=None, inject=None):
    """A (T, lanes) kernel: time by its stride, lane (b, n) at (b N + n) times the last stride,
    as if the batch axis ran contiguously over the neurons."""
    lanes = [int(np.prod(x.shape[axis + 1:])) * x.stride(-1) for axis in range(1, x.dim())]
    return torch_simulate(model, torch.as_strided(x, x.shape, [x.stride(0)] + lanes, x.storage_offset()), params,
                          state, surrogate=surrogate, inject=inject)


@pytest.mark.parametrize("fn", [reads_its_inputs_as_if_contiguous,
                                # Passed before: every other element of a time-major buffer keeps one lane stride.
                                addresses_lanes_with_one_stride])
def test_a_kernel_that_ignores_strides_is_caught_only_by_the_strided_case(fn):
    report = gate.run(testing.Implementation(fn, "tether.PLIF"), **QUICK)
    assert {r.kind for r in report.runs if not r.passed} == {"strided"}, report.text()
    assert any(r.kind == "strided" for r in report.runs)


class _NeedsEveryCotangent(torch.autograd.Function):
    """Identity on (out, v) whose backward assumes a cotangent for each."""

    @staticmethod
    def forward(ctx, out, v):
        ctx.set_materialize_grads(False)
        return out.clone(), v.clone()

    @staticmethod
    def backward(ctx, g_out, g_v):
        return g_out * 1, g_v * 1


class _ReadsTheCotangentAsIfContiguous(torch.autograd.Function):
    """Identity on out whose backward takes the cotangent's storage by pointer."""

    @staticmethod
    def forward(ctx, out):
        return out.clone()

    @staticmethod
    def backward(ctx, g_out):
        # What a kernel reading numel() values from the cotangent's pointer
        # sees: a stride-0 cotangent holds one value, the rest is whatever lies
        # beyond it (zeros here).
        held = torch.empty(0, dtype=g_out.dtype).set_(g_out.untyped_storage())[g_out.storage_offset():]
        seen = torch.zeros(g_out.numel(), dtype=g_out.dtype)
        count = min(len(held), g_out.numel())
        seen[:count] = held[:count]
        return seen.view(g_out.shape)


def needs_every_cotangent(model, x, params, state, *, surrogate=None, inject=None):
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
    result.outputs["out"], result.outputs["v"] = _NeedsEveryCotangent.apply(result.outputs["out"], result.outputs["v"])
    return result


def _through(function, output):
    """The torch path with ``function`` (an autograd Function holding one planted bug) applied to ``output``."""
    def implementation(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        result.outputs[output] = function.apply(result.outputs[output])
        return result

    implementation.__qualname__ = f"{function.__name__.lstrip('_')} on {output}"
    return implementation


reads_the_cotangent_as_if_contiguous = _through(_ReadsTheCotangentAsIfContiguous, "out")


@pytest.mark.parametrize("fn,kinds", [(needs_every_cotangent, {"out_sum"}),
                                      # The strided case's cotangents are strided views too.
                                      (reads_the_cotangent_as_if_contiguous, {"out_sum", "strided"})])
def test_a_backward_that_fails_on_a_training_steps_loss_is_caught_by_the_out_sum_case(fn, kinds):
    """Both pass every case with a dense contiguous cotangent on every output."""
    report = gate.run(testing.Implementation(fn, "tether.LIF"), **QUICK)
    assert {r.kind for r in report.runs if not r.passed} == kinds, report.text()


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_run_has_wide_long_and_exact_threshold_cases(key):
    impl = testing.Implementation(torch_simulate, key)
    planned, unchecked, broken = gate.plan(impl, examples=0, kinds=("threshold", "wide", "long"))
    kinds = {p.kind: p.case for p in planned}
    lanes = int(np.prod(kinds["wide"].x.shape[1:]))
    assert lanes > 1100 and all(lanes % block for block in (32, 128, 1024))
    assert kinds["long"].x.shape[0] >= 200
    row = registry.model(key)
    if not row.surrogates:
        assert "threshold" not in kinds
    elif "threshold" in kinds:
        case = kinds["threshold"]
        runs = [spec.simulate(key, case.x, case.params, case.state, surrogate=case.surrogate, dtype=d)
                for d in (np.float64, np.float32)]
        if runs[0].distance is not None:
            # Decisions exactly on u = 0 in both precisions, so >= and > differ there.
            assert np.any((runs[0].distance == 0) & (runs[1].distance == 0))
        else:
            # Attention (three decisions per step): identity weights put x[0] itself on q_threshold.
            assert np.array_equal(case.params["q_weight"], np.eye(case.x.shape[-1]))
            assert np.any(case.x[0] == case.params["q_threshold"])
    else:
        assert any(line.startswith("exact threshold:") for line in unchecked)


def torch_simulate(model, x, params, state, *, surrogate=None, inject=None):
    import snnref

    return snnref.simulate(model, x, params, state, surrogate=surrogate, inject=inject, backend="torch")


@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items() if "spikes" in row.inject))
def test_with_observed_spikes_only_the_spike_that_differs_from_the_observation_is_reported(key):
    # Before, teacher forcing judged every spike by the model's own threshold decision: with
    # observed spikes that disagree with it, one wrong spike came with a list of false flips.
    from snnref.testing import _checks as checks, _equivalence as equivalence

    case = checks.random_case(key, np.random.default_rng(4), steps=30, batch=2, neurons=3, inject=True)
    case = replace(case, inject={"spikes": case.inject["spikes"]} if "spikes" in case.inject else {
        "spikes": (np.random.default_rng(5).random(case.x.shape) < 0.3).astype(float)})
    own = spec.simulate(key, case.x, case.params, case.state, surrogate=case.surrogate, inject=case.inject).distance
    assert np.count_nonzero((own > 0) != (case.inject["spikes"] != 0)) > 1  # the case this test is about
    wrong = (20, 1, 2)

    def flips_one_spike(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        flip = torch.zeros_like(result.outputs["out"])
        flip[wrong] = 1 - 2 * result.outputs["out"][wrong].detach()
        return replace(result, outputs={**result.outputs, "out": result.outputs["out"] + flip})

    report = equivalence.compare(case, "flips_one_spike", torch.float64, implementation=flips_one_spike)
    spikes = [f for f in report.failures if f.startswith("spike")]
    assert spikes == [f"spike at step 20, index (1, 2): {1 - case.inject['spikes'][wrong]:g} where the observed "
                      f"spike is {case.inject['spikes'][wrong]:g} (an observed spike is the output, SPEC.md "
                      "section 5)"], report.failures


@pytest.mark.parametrize("per_neuron", [False, True])
def test_exact_threshold_cases_exist_for_the_spiking_families(per_neuron):
    found = {key for key in SPIKING
             if gate._exact_threshold_case(testing.Implementation(torch_simulate, key), 0, per_neuron) is not None}
    assert found == set(SPIKING)


@pytest.mark.parametrize("takes_state", [True, False])
@pytest.mark.parametrize("key", [key for key in SPIKING if registry.model(key).out.spiking])
def test_the_single_step_case_has_lanes_that_spike_and_lanes_that_do_not(key, takes_state):
    # Before, hxtorch's spiking models and rnnbuilder.Adaptive drew a single step without a spike.
    planned, unchecked, _ = gate.plan(testing.Implementation(torch_simulate, key, takes_state=takes_state),
                                      kinds=("random",))
    case = planned[1].case
    assert planned[1].kind == "random" and case.x.shape[0] == 1
    fired = np.count_nonzero(spec.simulate(key, case.x, case.params, case.state, surrogate=case.surrogate,
                                           inject=case.inject).outputs["out"])
    # Where no shift can make a neuron spike (a first decision read from a zero initial state), it is said.
    said = any(line.startswith("single step: no neuron of the T = 1 case spikes") for line in unchecked)
    assert 0 < fired < case.x[0].size and not said or fired == 0 and said


def _single_step_without_reset(model, x, params, state, *, surrogate=None, inject=None):
    """hxtorch.cuba_lif whose single-step path returns the membrane before the reset
    (equations (1) and (3) of snnref.spec.cuba; without a state, v starts at leak and i at 0)."""
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
    if x.shape[0] == 1 and not inject:
        v = state["v"] if state and "v" in state else params["leak"].expand(x.shape[1:])
        i = state["i"] if state and "i" in state else torch.zeros_like(x[0])
        before_reset = v + params["dt"] / params["tau_mem"] * (params["leak"] - v + i)
        result.outputs["v"] = before_reset[None]
        result.final_state["v"] = before_reset
    return result


@pytest.mark.parametrize("takes_state", [True, False])
def test_a_single_step_bug_of_an_hxtorch_kernel_is_caught(takes_state):
    # Passed before: the single-step case never spiked for hxtorch's models, and the bug shows only through a
    # reset.  Without initial states (the seed's functions take none) its starting value, leak, is what moves.
    impl = testing.Implementation(_single_step_without_reset, "hxtorch.cuba_lif", takes_state=takes_state)
    report = gate.run(impl, examples=2, kinds=("random",))
    assert not report.passed, report.text()


def test_a_flip_on_threshold_after_a_wrong_default_state_is_not_blamed_on_the_threshold_test_alone():
    # Before: "so the threshold test itself differs (>= against >)", and an author would "fix" a right
    # comparison.  hxtorch's v starts at leak; this one starts at 0, and the after-reset membrane it records
    # agrees with the reference's at the flip (both reset), so the default is named as the other cause.
    def starts_at_zero(model, x, params, state, *, surrogate=None, inject=None):
        state = {"v": torch.zeros_like(x[0]), **(state or {})}
        return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(starts_at_zero, "hxtorch.cuba_lif"), examples=1, kinds=("threshold",))
    text = report.text()
    assert not report.passed and "spike flip at step 0" in text, text
    assert "or the membrane does; this call gives no initial v, so the implementation's own defaults are used " \
           "(SPEC.md section 8: v starts at leak)" in text, text


def test_a_flip_on_threshold_where_the_recorded_membrane_already_differs_names_the_membrane():
    def shifted(model, x, params, state, *, surrogate=None, inject=None):
        return torch_simulate(model, x - 2.0**-10, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(shifted, "tether.LIF"), examples=1, kinds=("threshold",))
    text = report.text()
    assert "where the reference's u is 0 exactly: the implementation's out:v differs from the reference's by " \
           "then, so its membrane differs" in text, text
    assert ">= against >" not in text, text


def test_a_crash_shows_where_the_implementation_raised():
    # Before: "crashed: RuntimeError: ..." alone, in the text, the JSON and a replay of the saved case.
    def raises_on_long_runs(model, x, params, state, *, surrogate=None, inject=None):
        if x.shape[0] > 100:
            raise RuntimeError("too long for the fused kernel")
        return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(raises_on_long_runs, "tether.LIF", dtypes=("float32",)), examples=1,
                      kinds=("long",))
    text = report.text()
    assert "crashed: RuntimeError: too long for the fused kernel" in text, text
    where = text.split("where it raised (most recent call last):\n", 1)[1]
    assert re.match(r'\s+File ".*test_gate.py", line \d+, in raises_on_long_runs\n\s+raise RuntimeError', where), text
    assert "snnref/testing" not in where and "torch/autograd" not in where, text
    assert report.as_dict()["runs"][0]["traceback"] == report.runs[0].traceback != []


def test_a_crash_inside_an_adapter_of_snnref_s_shows_the_adapter():
    # The conformance adapters live in snnref/testing/adapters and are the implementation there: before,
    # every frame under snnref/testing was dropped, and such a crash showed no location at all.
    adapter = str(Path(testing.__file__).parent / "adapters" / "_planted.py")
    namespace = {}
    exec(compile("def library_step(x):\n    raise RuntimeError('adapter bug')\n", adapter, "exec"), namespace)

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        return namespace["library_step"](x)

    report = gate.run(testing.Implementation(adapted, "tether.LIF", dtypes=("float32",)), examples=1,
                      kinds=("random",))
    assert f'File "{adapter}", line 2, in library_step' in report.text(), report.text()


def test_a_crash_on_a_surrogate_the_implementation_lacks_says_how_to_declare_it():
    def arctan_only(model, x, params, state, *, surrogate=None, inject=None):
        if surrogate != "arctan":
            raise ValueError(f"mylib: no {surrogate} surrogate")
        return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    text = "\n".join(gate.run(testing.Implementation(arctan_only, "tether.LIF"), examples=3,
                              kinds=("random",)).failure_lines())
    assert "crashed: ValueError: mylib: no sigmoid surrogate (it names the surrogate 'sigmoid': if the " \
           "implementation does not have it, declare surrogates= with those it has)" in text, text
    assert "mylib: no fast_sigmoid surrogate (it names the surrogate 'fast_sigmoid'" in text, text
    # A whole word: "sigmoid" in "fast_sigmoid" names the fast sigmoid only.
    assert "no fast_sigmoid surrogate (it names the surrogate 'sigmoid'" not in text, text
    assert gate.run(testing.Implementation(arctan_only, "tether.LIF", surrogates=("arctan",)), examples=2,
                    kinds=("random",)).passed


def test_non_binary_spikes_fail_whatever_teacher_forcing_says():
    with pytest.raises(testing.ConformanceError,
                       match=r"spikes: \d+ values of out:out are not exactly 0 or 1; first at step \d+"):
        testing.assert_conforms(outside_lif.soft_spikes, "tether.LIF", kinds=("random",), examples=2)


@pytest.mark.parametrize("offset", [lambda out: -out * torch.finfo(out.dtype).eps,
                                    lambda out: (1 - out) * torch.finfo(out.dtype).tiny])
def test_spikes_one_rounding_away_from_0_or_1_fail_too(offset):
    # SPEC.md section 7: exactly 0 or 1.  A check that allowed values close to them (isclose)
    # passed spikes of 1 - eps and a "0" of the smallest normal number; 0.75 alone was tested.
    def nearly_binary(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        out = result.outputs["out"]
        return replace(result, outputs={**result.outputs, "out": out + offset(out.detach())})

    with pytest.raises(testing.ConformanceError,
                       match=r"spikes: \d+ values of out:out are not exactly 0 or 1; first at step \d+"):
        testing.assert_conforms(nearly_binary, "tether.LIF", kinds=("random",), examples=2)


@pytest.mark.parametrize("name,message", [
    ("detached", "every tensor is detached from the inputs"),
    ("numpy_outputs", r"result.outputs\['out'\]: expected a torch tensor .* got ndarray"),
    ("batch_first", r"result.outputs\['out'\]: shape \(\d+, \d+, \d+\) looks batch-first"),
    # Before, these passed: the misnamed quantity was only listed as not checked ("not returned").
    ("final_named_mem", r"result.final_state has 'mem', which tether.LIF does not define; its names: v "),
    ("out_named_spikes", r"result.outputs has 'spikes', which tether.LIF does not define; its names: out, v "),
    ("membrane_only", r"result.outputs has no 'out', tether.LIF's main output"),
])
def test_broken_results_are_named(name, message):
    with pytest.raises(testing.ConformanceError, match=message):
        testing.assert_conforms(getattr(outside_lif, name), "tether.LIF", kinds=("long",))


def test_a_float64_result_of_the_wrong_shape_fails_rather_than_counting_as_not_accepted():
    # Only an exception of the implementation's own says "not accepted"; one of
    # snnref's, raised on reading a broken result, is a failure.
    report = gate.run(testing.Implementation(outside_lif.reshaped_in_float64, "tether.LIF"), examples=1,
                      kinds=("random",))
    assert not report.passed and {r.dtype for r in report.runs} == {"float32", "float64"}
    assert "out:out: shape (1, 12, 2, 5), expected (12, 2, 5)" in report.text(), report.text()
    assert not [line for line in report.not_checked() if "not accepted" in line], report.not_checked()


def test_not_checked_says_not_returned_only_of_what_was_not_returned():
    # Before, a quantity skipped for a reference with no budget also read "(not returned)".
    runs = [gate.Run("random 0 float32", "random", 0, "float32", True,
                     unchecked=["out:i", "grad:x (the spec's float64 or float32 run is not finite: no budget)"])]
    report = gate.GateReport("tether.LIF", "mine", "contract", runs=runs)
    assert report.not_checked() == [
        "grad:x (the spec's float64 or float32 run is not finite: no budget)", "out:i (not returned)"]


def test_the_steps_column_says_what_it_means():
    # Before, "-" and "final" in the steps column had no legend in the text report.
    failed = {"fraction": 5.0, "failed": True, "first_step": None, "last_step": None, "failing_elements": 1,
              "worst_index": ()}
    runs = [gate.Run("random 0 float32", "random", 0, "float32", False, details={"grad:decay": failed},
                     failures=["grad:decay: max error"], worst=5.0)]
    text = gate.GateReport("tether.LIF", "mine", "contract", runs=runs).text()
    assert "  steps: - a sum over every step, not located in time" in text, text
    # A sum within budget once the final state's cotangent is off is not said to fail "only
    # through" that cotangent: an error on every path can shrink under its budget without it.
    runs[0].details["grad:decay"]["passes_without_final_cotangent"] = True
    report = gate.GateReport("tether.LIF", "mine", "contract", runs=runs)
    assert "  steps: final within budget once the final state's cotangent is off (that cotangent makes the " \
        "error, or makes it large enough to fail)" in report.text(), report.text()
    assert "not located: within budget once the final state's cotangent is off" in report.failure_lines()[0]


def test_a_crash_s_failure_line_names_the_run_once():
    report = gate.run(testing.Implementation(outside_lif.numpy_outputs, "tether.LIF", dtypes=("float32",)),
                      examples=1, kinds=("random",))
    lines = report.failure_lines()
    assert lines and lines[0].startswith(report.runs[0].label + ": crashed: ImplementationError"), lines
    assert not lines[0].startswith("tether.LIF tether.LIF"), lines


def test_a_result_of_the_wrong_shape_is_named_by_its_quantity():
    with pytest.raises(testing.ConformanceError, match=r"out:out: shape \(12, 10\), expected \(12, 2, 5\)"):
        testing.assert_conforms(outside_lif.flattened, "tether.LIF", kinds=("random",), examples=1)


def test_a_nan_spike_is_a_spike_not_0_or_1_in_both_dtypes():
    report = gate.run(testing.Implementation(outside_lif.nan_spike, "tether.LIF"), examples=1, kinds=("random",))
    assert {r.dtype for r in report.runs if not r.passed} == {"float32", "float64"}, report.text()
    assert "spikes: 2 values of out:out are not exactly 0 or 1; first at step 0, index (0, 0) (impl nan)" \
        in report.text(), report.text()


def test_a_nan_output_is_compared_not_read_as_a_reused_buffer():
    report = gate.run(testing.Implementation(outside_lif.nan_membrane, "tether.LIF"), examples=2,
                      kinds=("random",))
    # Before: "out:v: max error inf over the budget", which reads as an overflow.
    assert not report.passed and re.search(r"out:v: nan in the implementation's values \(2 of \d+\); first at step "
                                           r"11, index \(0, 0\) \(the reference there: -?\d", report.text()), \
        report.text()
    assert "changed when the implementation was called again" not in report.text()


def test_an_implementation_that_raises_while_the_failing_step_is_located_leaves_the_report_standing():
    calls = []

    def fails_then_raises(model, x, params, state, *, surrogate=None, inject=None):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("out of device memory")
        return outside_lif.threshold_grad_sign(model, x, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(fails_then_raises, "tether.LIF", dtypes=("float32",)), examples=1,
                      kinds=("random",))
    # The first call, the one that locates the step, and the repeat of the first case (which raises too).
    assert not report.passed and len(calls) == 3
    assert ("the failing step was not located: a further call raised RuntimeError: out of device memory"
            in report.runs[0].failures), report.runs[0].failures


def scribbles_on_x_after_use(model, x, params, state, *, surrogate=None, inject=None):
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
    with torch.no_grad():
        x.mul_(0.5)
    return result


def zeroes_the_state(model, x, params, state, *, surrogate=None, inject=None):
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
    with torch.no_grad():
        state["v"].zero_()
    return result


def scribbles_on_x_in_its_backward(model, x, params, state, *, surrogate=None, inject=None):
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    def scribble(gradient):
        with torch.no_grad():
            x[0].fill_(3.0)
        return gradient

    result.outputs["v"].register_hook(scribble)
    return result


@pytest.mark.parametrize("fn,message", [
    (scribbles_on_x_after_use, r"x: modified in place by the implementation during its call \(\d+ of \d+ elements "
                               r"changed, first at index \(0, 0, 0\)\)"),
    (zeroes_the_state, r"state\['v'\]: modified in place by the implementation during its call"),
    (scribbles_on_x_in_its_backward, r"x: modified in place by the implementation during its backward"),
])
def test_an_implementation_that_writes_into_its_inputs_fails_naming_the_input(fn, message):
    """Their outputs and gradients are right (tether.LIF's torch path saves
    neither x nor the state), so only the inputs' check catches them."""
    report = gate.run(testing.Implementation(fn, "tether.LIF"), examples=1, kinds=("random",))
    assert not report.passed
    assert all(re.match(message, failure) for run in report.runs for failure in run.failures), report.text()
    assert re.search(message, report.text()), report.text()


def test_quantities_not_returned_are_listed():
    def spikes_only(model, x, params, state, *, surrogate=None, inject=None):
        result = outside_lif.correct(model, x, params, state, surrogate=surrogate)
        result.outputs.pop("v")
        result.final_state.clear()
        return result

    report = gate.run(testing.Implementation(spikes_only, "tether.LIF"), examples=1, kinds=("random",))
    assert report.passed, report.text()
    assert {"out:v (not returned)", "final:v (not returned)"} <= set(report.not_checked())


def pinned_cuba(model, x, params, state, *, surrogate=None, inject=None):
    """hxtorch.cuba_lif without a leak parameter (the library has none): leak must be 0."""
    import snnref

    assert float(params["leak"].reshape(-1)[0]) == 0.0, "a case outside the pin reached the implementation"
    assert inject is None, "injection reached an implementation that takes none"
    return snnref.simulate(model, x, params, state, surrogate=surrogate, backend="torch")


def test_pin_and_no_injection_narrow_the_cases_and_goldens_and_say_so():
    impl = testing.Implementation(pinned_cuba, "hxtorch.cuba_lif", pin={"leak": 0.0}, takes_inject=False,
                                  dtypes=("float32",))
    report = gate.run(impl, examples=4)
    assert report.passed, report.text()
    listed = " ".join(report.not_checked())
    assert "grad:leak (pinned)" in listed and "hardware injection (takes_inject=False)" in listed
    assert "uses hardware injection" in listed and "outside the pin leak = 0.0" in listed
    assert "float64 (dtypes)" in listed
    assert any(r.kind == "golden" for r in report.runs)


def test_per_neuron_names_only_those_parameters():
    impl = testing.Implementation(outside_lif.correct, "tether.LIF", per_neuron=("decay",))
    planned, unchecked, _ = gate.plan(impl, examples=6, kinds=("random",))
    assert any(np.size(p.case.params["decay"]) > 1 for p in planned)
    assert all(np.size(p.case.params["threshold"]) == 1 and np.size(p.case.params["alpha"]) == 1 for p in planned)
    assert "per-neuron threshold, alpha (per_neuron)" in unchecked


def test_a_custom_surrogate_is_proven_then_used_by_the_spec():
    # arctan under another name, as a library would declare its own.
    own = testing.Surrogate("atan_own", arctan_f, arctan_F, arctan_dF)

    def with_own(model, x, params, state, *, surrogate=None, inject=None):
        assert surrogate is own
        return outside_lif.correct(model, x, params, state, surrogate="arctan")

    report = gate.run(testing.Implementation(with_own, "tether.LIF", surrogates=(own,)), **QUICK)
    assert report.passed, report.text()
    assert "surrogates arctan, sigmoid, fast_sigmoid (not declared)" in report.not_checked()
    # The same function judged against a steeper custom surrogate fails: the spec really uses it.
    steep = testing.Surrogate("steep", lambda u, a: arctan_f(u, 2 * a), lambda u, a: arctan_F(u, 2 * a), None)
    impl = testing.Implementation(lambda *a, surrogate=None, inject=None: outside_lif.correct(
        *a, surrogate="arctan"), "tether.LIF", surrogates=(steep,), fixed=("alpha",))
    assert not gate.run(impl, examples=1, kinds=("random",)).passed


@pytest.mark.parametrize("fields,message", [
    (dict(pin={"leek": 0.0}), r"pin: tether.LIF has no parameter 'leek'"),
    (dict(pin={"alpha": -1.0}), r"pin\['alpha'\]: -1.0 is outside the parameter's domain"),
    # Both taken as 1.0 before.
    (dict(pin={"alpha": "1"}), r"pin\['alpha'\]: expected a number, got '1'"),
    (dict(pin={"alpha": True}), r"pin\['alpha'\]: expected a number, got True"),
    (dict(per_neuron="decay"), r"per_neuron: expected a sequence of names"),
    # These four raised "TypeError: 'int' object is not iterable" (a traceback from verify --impl, an
    # INTERNALERROR from the pytest plugin).
    (dict(per_neuron=5), r"per_neuron: expected a sequence of names, got 5"),
    (dict(fixed=None), r"fixed: expected a sequence of names, got None"),
    (dict(fixed=5), r"fixed: expected a sequence of names, got 5"),
    (dict(surrogates=5), r"surrogates: expected a sequence, got 5"),
    # A positive parameter's boundary is outside its domain.
    (dict(pin={"alpha": 0.0}), r"pin\['alpha'\]: 0.0 is outside the parameter's domain \(positive\)"),
    # Found by an outside user: the gate then failed a correct implementation ("crashed: ... NaN or inf").
    (dict(pin={"threshold": 1e40}), r"pin\['threshold'\]: 1e\+40 overflows float32, a dtype the gate checks"),
    (dict(pin={"alpha": 1e-50}, dtypes=("float64", "float32")), r"pin\['alpha'\]: 1e-50 underflows to 0 in float32"),
    (dict(surrogates=("superspike",)), r"surrogates: tether.LIF does not accept 'superspike'"),
    (dict(dtypes=("float128",)), r"dtypes: expected some of"),
    (dict(takes_state="yes"), r"takes_state: expected True or False"),
    (dict(surrogates=(testing.Surrogate("bad", arctan_f, lambda u, a: 0 * u, None),),),
     r"surrogates\['bad'\]: f is not dF/du"),
    (dict(surrogates=(testing.Surrogate("bad_scale", arctan_f, arctan_F, lambda u, a: u),),),
     r"surrogates\['bad_scale'\]: dF is not dF/dscale"),
    # Each of these was accepted before.  Without dF the spec's gradient of alpha was 0.
    (dict(surrogates=(testing.Surrogate("no_dF", arctan_f, arctan_F, None),),),
     r"surrogates\['no_dF'\]: no dF, so its scale 'alpha' is fixed: declare fixed=\('alpha',\) or pin it"),
    # Under a built-in's name, the built-in's goldens were judged against the custom math.
    (dict(surrogates=(testing.Surrogate("arctan", arctan_f, arctan_F, arctan_dF),),),
     r"surrogates\['arctan'\]: the name of a built-in surrogate"),
    (dict(surrogates=(testing.Surrogate("", arctan_f, arctan_F, arctan_dF),),),
     r"surrogates: a custom surrogate's key must be a non-empty name, got ''"),
    (dict(surrogates=("sigmoid", "sigmoid")), r"surrogates: 'sigmoid' is declared twice"),
    (dict(surrogates=(testing.Surrogate("own", arctan_f, arctan_F, arctan_dF),
                      testing.Surrogate("own", arctan_f, arctan_F, arctan_dF))),
     r"surrogates: 'own' is declared twice"),
    # These raised NumPy's or Python's own exceptions.
    (dict(surrogates=(testing.Surrogate("raises", arctan_f, arctan_F, lambda u, a: 1 / 0),),),
     r"surrogates\['raises'\]: dF or F fails on arrays"),
    (dict(surrogates=(testing.Surrogate("short", arctan_f, arctan_F, lambda u, a: np.zeros(3)),),),
     r"surrogates\['short'\].dF: expected finite values of u's shape"),
])
def test_a_contract_that_cannot_be_right_names_the_field(fields, message):
    with pytest.raises(testing.ContractError, match=message):
        testing.Implementation(outside_lif.correct, "tether.LIF", **fields)


def _triangle_f(u, a):
    return a * np.maximum(0.0, 1.0 - a * np.abs(u))


def _triangle_F(u, a):
    inside = 0.5 + a * u - a * a * u * np.abs(u) / 2
    return np.where(u > 1 / a, 1.0, np.where(u < -1 / a, 0.0, inside))


def _triangle_dF(u, a):
    return np.where(np.abs(u) <= 1 / a, u - a * u * np.abs(u), 0.0)


def _gauss_F(u, a):
    import scipy.special

    return scipy.special.ndtr(a * u)


def _gauss_f(u, a):
    return a * np.exp(-((a * u) ** 2) / 2) / np.sqrt(2 * np.pi)


# Found by an outside user.  The proof took F's derivative by difference quotients, which a kink of f
# (a triangle's, rnnbuilder's spike_linear's) put 4e-5 of the peak off: a correct triangle was refused.
# And its points were fixed in u (steps of 0.05 in [-4, 4]): an f cut to 0 past |u| = 4.2, and one
# 1.5 times too large where a surrogate of scale 50 lives (|u| < 0.04), were proven.
def test_a_correct_triangle_surrogate_is_proven_with_and_without_its_scale_gradient():
    triangle = testing.Surrogate("triangle", _triangle_f, _triangle_F, _triangle_dF)
    testing.Implementation(outside_lif.correct, "tether.LIF", surrogates=(triangle,))
    fixed = testing.Surrogate("triangle", _triangle_f, _triangle_F, None)
    testing.Implementation(outside_lif.correct, "tether.LIF", fixed=("alpha",), surrogates=(fixed,))


@pytest.mark.parametrize("model,f", [
    ("tether.LIF", lambda u, a: np.where(np.abs(u) > 4.2, 0.0, _gauss_f(u, a))),
    ("hxtorch.cuba_lif", lambda u, a: _gauss_f(u, a) * np.where((np.abs(u) > 0.01) & (np.abs(u) < 0.04), 1.5, 1.0)),
])
def test_a_surrogate_wrong_off_the_fixed_grid_is_refused(model, f):
    wrong = testing.Surrogate("gauss", f, _gauss_F, None)
    testing.Implementation(outside_lif.correct, "tether.LIF", fixed=("alpha",),
                           surrogates=(testing.Surrogate("gauss", _gauss_f, _gauss_F, None),))
    with pytest.raises(testing.ContractError, match=r"^surrogates\['gauss'\]: f is not dF/du \(F's rise and f's "
                                                    r"integral differ by .* per unit of u"):
        testing.Implementation(torch_simulate, model, fixed=("alpha",), surrogates=(wrong,))


def test_a_custom_surrogate_whose_F_is_nan_somewhere_is_not_proven():
    # Found by mutation testing: a NaN difference read as within the bound passed every other test.
    def nan_F(u, a):
        return np.where(np.abs(u) > 20, np.nan, arctan_F(u, a))

    with pytest.raises(testing.ContractError, match=r"surrogates\['nan_F'\].F: expected finite values of u's "
                                                    r"shape"):
        # Without dF (the scale fixed), f against F is the only proof: NaN must not pass it.
        testing.Implementation(outside_lif.correct, "tether.LIF", fixed=("alpha",),
                               surrogates=(testing.Surrogate("nan_F", arctan_f, nan_F, None),))


def test_a_contract_with_nothing_to_check_is_refused():
    # Before: accepted; under pytest every item was skipped (a green run), under the CLI it failed with 0 runs.
    with pytest.raises(testing.ContractError, match=r"dtypes: float16 cannot store hxtorch.cuba_lif's parameters"):
        testing.Implementation(torch_simulate, "hxtorch.cuba_lif", dtypes=("float16",))


@pytest.mark.parametrize("model", sorted(registry.MODELS))
def test_a_contract_copied_by_dataclasses_replace_is_the_same_contract(model):
    # Found by an outside user: renamed by --impl's target, the contract of a model that does not
    # spike was refused ("hxtorch.cuba_li does not accept None"), as was a replayed case of one.
    impl = testing.Implementation(torch_simulate, model)
    renamed = replace(impl, name="mine:fn")
    assert renamed.name == "mine:fn" and replace(renamed, name=impl.name) == impl


@pytest.mark.parametrize("seed", ["a", None, 1.5, True, -1])
def test_a_seed_that_is_no_integer_from_0_is_refused_by_name(seed):
    # Before: a TypeError from a comparison for "a" and None; 1.5 and True were taken.
    with pytest.raises(ValueError, match=f"seed: expected an integer >= 0, got {re.escape(repr(seed))}"):
        gate.plan(testing.Implementation(torch_simulate, "tether.LIF"), seed=seed)


def test_old_adapter_attributes_still_narrow_the_checks():
    impl = testing.Implementation.of(outside_lif.correct, "tether.LIF")
    assert impl.surrogates == ("arctan", "sigmoid", "fast_sigmoid")

    def fn(*args, **kwargs):
        return outside_lif.correct(*args, **kwargs)

    fn.takes_state, fn.per_neuron, fn.fixed_parameters, fn.surrogates = False, False, ("alpha",), ("sigmoid",)
    impl = testing.Implementation.of(fn, "tether.LIF")
    assert (impl.takes_state, impl.per_neuron, impl.fixed, impl.surrogates) == (False, False, ("alpha",),
                                                                               ("sigmoid",))


def test_one_planted_bug_prints_about_30_lines_and_json_has_everything(tmp_path):
    impl = testing.Implementation.of(outside_lif.after_step_50, "tether.LIF")
    report = gate.run(impl)
    lines = report.text().splitlines()
    assert len(lines) <= 32, report.text()
    document = json.loads(json.dumps(report.as_dict(), default=str))
    assert not document["passed"] and len(document["runs"]) == len(report.runs)
    failing = [r for r in document["runs"] if not r["passed"]]
    assert all(r["failures"] and r["details"] for r in failing)
    # Labels carry model, surrogate, case kind, seed and dtype.
    assert all(r["label"].startswith("tether.LIF ") and f"seed={r['seed']}" in r["label"]
               and r["kind"] in r["label"] and r["label"].endswith(r["dtype"]) for r in document["runs"])
    row = document["quantities"]["out:v"]
    assert row["first_step"] == outside_lif.LATE_STEP and row["failing"] >= 1


def test_the_first_failing_case_is_saved_and_replays(tmp_path):
    impl = testing.Implementation.of(outside_lif.after_step_50, "tether.LIF")
    report = gate.run(impl, examples=1, kinds=("long",))
    path = gate.save_failure(report, tmp_path, "fixtures.outside_lif:after_step_50")
    assert path.exists() and report.replay.startswith("snnref verify --impl fixtures.outside_lif:after_step_50 ")
    assert f"--case {path}" in report.replay
    planned, dtype = gate.load_case(path, impl)
    replayed = gate.run_planned(replace(impl, dtypes=(dtype,)), [planned])
    assert not replayed.passed and replayed.quantities()["out:v"]["first_step"] == outside_lif.LATE_STEP
    np.testing.assert_array_equal(planned.case.x, report.runs[0].planned.case.x)
    # The correct implementation passes the same saved case.
    assert gate.run_planned(replace(testing.Implementation.of(outside_lif.correct, "tether.LIF"),
                                    dtypes=(dtype,)), [planned]).passed


def test_the_old_dtype_keyword_checks_one_dtype():
    worst = testing.assert_conforms(outside_lif.correct, "tether.LIF", dtype=torch.float64, kinds=("random",),
                                    examples=1)
    assert 0 <= worst <= 1


def test_float64_is_checked_when_accepted_and_listed_when_refused():
    def float32_only(model, x, params, state, *, surrogate=None, inject=None):
        if x.dtype != torch.float32:
            raise TypeError("x: this library computes in float32 only")
        return outside_lif.correct(model, x, params, state, surrogate=surrogate)

    report = gate.run(testing.Implementation(float32_only, "tether.LIF"), examples=1, kinds=("random",))
    assert report.passed and {r.dtype for r in report.runs} == {"float32"}
    assert any(line.startswith("float64 (not accepted: TypeError: x: this library computes in float32 only")
               for line in report.not_checked()), report.not_checked()

    def casts_to_float32(model, x, params, state, *, surrogate=None, inject=None):
        result = outside_lif.correct(model, x.float(), {k: v.float() for k, v in params.items()},
                                     {k: v.float() for k, v in state.items()}, surrogate=surrogate)
        return result

    report = gate.run(testing.Implementation(casts_to_float32, "tether.LIF"), examples=1, kinds=("random",))
    assert not report.passed and "dtype torch.float32, expected torch.float64" in report.text()


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_the_gate_passes_snnrefs_own_torch_path_for_every_model(key):
    # Every case kind and the goldens, float32 and float64: no false failure of a correct path.
    report = gate.run(testing.Implementation(torch_simulate, key), examples=1)
    assert report.passed, report.text()
    assert not [line for line in report.not_checked() if "not returned" in line]


def reads_x_as_if_contiguous(model, x, params, state, *, surrogate=None, inject=None):
    strides = [int(np.prod(x.shape[axis + 1:])) for axis in range(x.dim())]
    seen = torch.as_strided(x, x.shape, strides, x.storage_offset())
    return torch_simulate(model, seen, params, state, surrogate=surrogate, inject=inject)


def test_a_strided_only_failure_is_located_in_the_strided_case():
    """The bisection of a parameter gradient re-runs the failing case as it ran:
    re-run contiguous, where this kernel is right, it said "only through the
    final state" though out:v already fails at step 0."""
    report = gate.run(testing.Implementation(reads_x_as_if_contiguous, "tether.LIF"), **QUICK)
    assert {r.kind for r in report.runs if not r.passed} == {"strided"}, report.text()
    table = report.quantities()
    gradients = [k for k, row in table.items() if k.startswith("grad:") and row["failing"]
                 and k not in ("grad:x",)]
    assert gradients and all(table[k]["first_step"] is not None for k in gradients), report.text()
    assert not any(table[k].get("passes_without_final_cotangent") for k in gradients), report.text()


@pytest.mark.parametrize("fn", [outside_lif.soft_spikes, outside_lif.gt_for_ge])
def test_a_failing_run_s_worst_is_never_below_one(fn):
    """A spike not 0 or 1, or a flip outside the margin, is no error over a
    budget: its run's worst is inf, so no FAIL row or JSON reads as a pass."""
    report = gate.run(testing.Implementation.of(fn, "tether.LIF"), **QUICK)
    assert not report.passed and report.worst == np.inf
    assert all(r.worst > 1 for r in report.runs if not r.passed)


class _FirstCallWrong:
    """An implementation whose very first call returns a wrong membrane (an
    uninitialised workspace): the float64 probe used to make that call and throw it away."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, x, params, state, *, surrogate=None, inject=None):
        self.calls += 1
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        if self.calls == 1:
            result.outputs["v"] = result.outputs["v"] + 1.0
        return result


def test_the_implementation_s_first_call_is_checked_too():
    report = gate.run(testing.Implementation(_FirstCallWrong(), "tether.LIF"), **QUICK)
    failed = [r for r in report.runs if not r.passed]
    assert len(failed) == 1 and failed[0].dtype == "float64" and "out:v" in failed[0].details, report.text()


class _IntoItsBuffer(torch.autograd.Function):
    """Identity whose result is a view of one buffer that every call overwrites."""

    buffer = None

    @staticmethod
    def forward(ctx, out):
        if _IntoItsBuffer.buffer is None or _IntoItsBuffer.buffer.numel() < out.numel() \
                or _IntoItsBuffer.buffer.dtype != out.dtype:
            _IntoItsBuffer.buffer = torch.empty(2 * out.numel(), dtype=out.dtype)
        view = _IntoItsBuffer.buffer[:out.numel()].view(out.shape)
        view.copy_(out)
        return view

    @staticmethod
    def backward(ctx, g_out):
        return g_out


# Each result is right when read at once, wrong for a caller that keeps two.
_reuses_its_buffer = _through(_IntoItsBuffer, "out")


def test_a_result_that_a_later_call_overwrites_fails():
    report = gate.run(testing.Implementation(_reuses_its_buffer, "tether.LIF", dtypes=("float32",)), **QUICK)
    assert not report.passed
    assert "of an earlier call ((12, 2, 5), torch.float32) changed when the implementation was called again" \
        in report.text(), report.text()


_KEPT = {}


def _keeps_a_buffer_per_shape_and_dtype(model, x, params, state, *, surrogate=None, inject=None):
    """The usual workspace cache: handed out again only to a call of the same shape and dtype."""
    result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
    out = result.outputs["out"]
    buffer = _KEPT.setdefault((tuple(out.shape), out.dtype), torch.empty_like(out))
    result.outputs["out"] = _IntoBuffer.apply(out, buffer)
    return result


class _IntoBuffer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, buffer):
        return buffer.copy_(out)

    @staticmethod
    def backward(ctx, g_out):
        return g_out, None


@pytest.mark.parametrize("kinds", [gate.KINDS, ("random",)])
def test_a_result_overwritten_by_a_later_call_of_its_shape_and_dtype_fails(kinds):
    # Passed before with both dtypes: only the previous call's results were checked, and the
    # dtypes alternate from call to call.  The repeat of the first case gives every run a pair.
    _KEPT.clear()
    report = gate.run(testing.Implementation(_keeps_a_buffer_per_shape_and_dtype, "tether.LIF"), kinds=kinds,
                      **QUICK)
    assert not report.passed
    assert "changed when the implementation was called again" in report.text(), report.text()


def test_a_contract_checks_the_signature_before_any_case():
    def two_arguments(model, x):
        return torch_simulate(model, x)

    with pytest.raises(testing.ContractError, match=r"fn: .*two_arguments.* does not have the contract's signature"):
        testing.Implementation(two_arguments, "tether.LIF")
    with pytest.raises(testing.ContractError, match=r"^model: unknown name 'tether.LIFF'"):
        testing.Implementation(torch_simulate, "tether.LIFF")


def test_a_tuple_result_is_named_as_such():
    def returns_a_tuple(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        return result.outputs, result.final_state

    report = gate.run(testing.Implementation(returns_a_tuple, "tether.LIF", dtypes=("float32",)), examples=1,
                      kinds=("random",))
    assert "result.outputs: expected a dict of tensors, got a tuple without .outputs" in report.text()


def test_save_failures_writes_a_replay_command_that_names_the_implementation(tmp_path):
    with pytest.raises(testing.ConformanceError) as caught:
        testing.assert_conforms(outside_lif.gt_for_ge, "tether.LIF", golden=False, save_failures=tmp_path, **QUICK)
    # fixtures/ imports from tests/ (pytest's pythonpath), not from the working directory.
    tests = Path(outside_lif.__file__).resolve().parents[1]
    assert (f"replay: PYTHONPATH={tests} snnref verify --impl fixtures.outside_lif:gt_for_ge --model tether.LIF "
            "--case") in str(caught.value), str(caught.value)
    # Before, the command failed from anywhere but tests/ (No module named 'fixtures').
    command = re.search(r"replay: (.*)", str(caught.value)).group(1)
    script = shlex.quote(str(Path(sys.executable).parent / "snnref"))
    replay = subprocess.run(command.replace("snnref verify", f"{script} verify", 1),
                            shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 1 and "0 passed, 1 failed" in replay.stdout, replay.stdout + replay.stderr


def test_a_golden_dir_that_is_no_store_is_refused_by_its_argument_name(tmp_path):
    # Before: "NotAStore: <path>: no such directory", unlike every other argument's message.
    with pytest.raises(ValueError, match=r"^golden_dir: .*nowhere: no such directory \(expected a golden store\)"):
        testing.assert_conforms(outside_lif.correct, "tether.LIF", golden_dir=tmp_path / "nowhere", **QUICK)


def test_a_replay_of_a_declared_contract_names_the_contract_or_no_callable(tmp_path):
    """Replayed by its function's name, an Implementation's contract (here a
    fixed alpha) was dropped, and the replay failed a correct implementation."""
    with pytest.raises(testing.ConformanceError) as caught:
        testing.assert_conforms(outside_lif.gt_for_ge_alpha_fixed, golden=False, save_failures=tmp_path / "named",
                                **QUICK)
    assert "snnref verify --impl fixtures.outside_lif:gt_for_ge_alpha_fixed --model tether.LIF --case" \
        in str(caught.value), str(caught.value)
    inline = testing.Implementation(outside_lif.gt_for_ge, "tether.LIF", fixed=("alpha",), dtypes=("float32",))
    with pytest.raises(testing.ConformanceError) as caught:
        testing.assert_conforms(inline, golden=False, save_failures=tmp_path / "inline", **QUICK)
    assert "snnref verify --impl MODULE:CALLABLE --model tether.LIF --case" in str(caught.value), str(caught.value)


def following(spikes):
    """An implementation whose only choice is its spike train: the spec's float32
    run with ``spikes`` forced, forward and backward (self-consistent otherwise)."""
    def numpy(tensor):
        return tensor.detach().double().numpy()

    def impl(model, x, params, state, *, surrogate=None, inject=None):
        state = state or {}
        names, states = list(params), list(state)
        given = dict(surrogate=surrogate, dtype=np.float32, force_spikes=spikes)
        args = (numpy(x), {k: numpy(params[k]) for k in names}, {k: numpy(state[k]) for k in states})
        trace = spec.simulate(model, *args, **given)
        keys = list(trace.outputs), list(trace.final_state)

        class Forced(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *inputs):
                values = [trace.outputs[k] for k in keys[0]] + [trace.final_state[k] for k in keys[1]]
                return tuple(torch.tensor(np.asarray(v), dtype=x.dtype) for v in values)

            @staticmethod
            def backward(ctx, *cotangents):
                cot = {k: numpy(g) for k, g in zip(keys[0], cotangents)}
                cot.update({f"final.{k}": numpy(g) for k, g in zip(keys[1], cotangents[len(keys[0]):])})
                grads = spec.vjp(model, *args, cot, **given)
                wanted = ["x"] + names + [f"state.{k}" for k in states]
                return tuple(torch.tensor(np.asarray(grads[k]), dtype=x.dtype) if k in grads else None
                             for k in wanted)

        results = Forced.apply(x, *(params[k] for k in names), *(state[k] for k in states))
        return type("Result", (), {"outputs": dict(zip(keys[0], results[:len(keys[0])])),
                                   "final_state": dict(zip(keys[1], results[len(keys[0]):]))})()
    return impl


def test_a_spike_that_contradicts_the_implementation_s_own_history_fails():
    """Step 0 lies within float32's margin (u = -1e-8), so firing there is
    allowed; given that spike the membrane at step 1 is 0.5 below threshold, so
    firing there is wrong, though the unforced reference fires at step 1 too.
    Only elements that differed from the unforced run were judged, and it passed."""
    from snnref.testing import _checks, _equivalence

    x = np.array([1 - 1e-8, 0.5, 0.2, 0.9, 0.3, 0.95]).reshape(6, 1, 1)
    params = {"decay": np.asarray(0.9), "threshold": np.asarray(1.0), "alpha": np.asarray(2.0)}
    state = {"v": np.zeros((1, 1))}
    cotangents = {"out": np.ones_like(x), "v": np.full_like(x, 0.1), "final.v": np.ones((1, 1))}
    case = _checks.Case("tether.LIF", "arctan", x, params, state, cotangents)
    unforced = spec.simulate("tether.LIF", x, params, state).outputs["out"]
    assert unforced.ravel().tolist() == [0, 1, 0, 1, 0, 1]
    early = unforced.copy()
    early[0] = 1
    report = _equivalence.compare(case, "follower", torch.float32, implementation=following(early))
    assert not report.passed and report.failures[0].startswith("spike flip at step 1, index (0, 0): |u| = 5.000e-01")
    # The same early spike followed by the spikes its own history implies passes.
    consistent = early.copy()
    for step in range(1, 6):
        distance = spec.simulate("tether.LIF", x, params, state, force_spikes=consistent).distance
        consistent[step] = float(distance[step].item() >= 0)
    assert _equivalence.compare(case, "follower", torch.float32, implementation=following(consistent)).passed


class _WritesItsGradientIntoTheCotangent(torch.autograd.Function):
    """A memory-saving backward: dL/dv computed in the incoming cotangent's own memory."""

    @staticmethod
    def forward(ctx, v):
        return v.clone()

    @staticmethod
    def backward(ctx, g_v):
        result = g_v.clone()
        g_v.zero_()
        return result


_reuses_the_cotangent = _through(_WritesItsGradientIntoTheCotangent, "v")


def test_a_backward_that_writes_into_its_cotangent_fails():
    # Passed before: its own gradients are right, and the loss gave no cotangent a second consumer.
    report = gate.run(testing.Implementation(_reuses_the_cotangent, "tether.LIF"), kinds=("random",), **QUICK)
    assert not report.passed
    assert "the cotangent of out:v: modified in place by the implementation during its backward" in report.text()


def _in_float32_stored_in_half(model, x, params, state, *, surrogate=None, inject=None):
    """Half-precision storage: float32 arithmetic on the half inputs, each result rounded once."""
    def widened(values):
        return None if values is None else {k: v.float() for k, v in values.items()}

    result = torch_simulate(model, x.float(), widened(params), widened(state), surrogate=surrogate,
                            inject=widened(inject))
    return type("Result", (), {"outputs": {k: v.to(x.dtype) for k, v in result.outputs.items()},
                               "final_state": {k: v.to(x.dtype) for k, v in result.final_state.items()}})()


def test_half_storage_is_compared_with_the_parameter_defaults_rounded_too():
    # Failed before on the goldens that leave parameters at their defaults: the implementation got
    # decay 0.8984375 (0.9 in bfloat16), the reference 0.9, and a spike flipped at step 5.
    impl = testing.Implementation(_in_float32_stored_in_half, "tether.LIF", dtypes=("bfloat16",),
                                  surrogates=("fast_sigmoid",))
    report = gate.run(impl, kinds=("golden",))
    assert report.passed and any("default" in r.label for r in report.runs), report.text()


def _resets_with_its_own_spikes(model, x, params, state, *, surrogate=None, inject=None):
    """Hardware spikes alone (no membrane): returned, but the reset follows the model's own spikes."""
    if inject and set(inject) == {"spikes"}:
        steps = min(x.shape[0], inject["spikes"].shape[0])
        result = torch_simulate(model, x[:steps], params, state, surrogate=surrogate)
        own = result.outputs["out"]
        result.outputs["out"] = inject["spikes"][:steps] + (own - own.detach())
        return result
    return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)


def _defaults_a_missing_adaptation_to_half(model, x, params, state, *, surrogate=None, inject=None):
    """Given v without a (a partial state), the adaptation starts at 0.5 (tether's starts at 0)."""
    if state is not None and "v" in state and "a" not in state:
        state = dict(state, a=torch.full_like(state["v"], 0.5))
    return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)


@pytest.mark.parametrize("fn,model", [
    # Both passed before: every injected case gave both hardware traces, and every case every state.
    (_resets_with_its_own_spikes, "hxtorch.cuba_lif"),
    (_defaults_a_missing_adaptation_to_half, "tether.ALIF"),
])
def test_a_bug_of_a_partial_input_is_caught_by_the_random_cases(fn, model):
    report = gate.run(testing.Implementation(fn, model), examples=5, kinds=("random",))
    assert not report.passed, report.text()


@pytest.mark.parametrize("key", ["hxtorch.cuba_lif", "hxtorch.cuba_refractory_lif"])
def test_the_start_on_threshold_case_is_exact_however_the_step_is_arranged(key):
    # Before, dt and the time constants were drawn: (1 - a) leak + a leak missed leak by an ulp.
    for per_neuron in (False, True):
        case = gate._start_on_threshold(testing.Implementation(torch_simulate, key), registry.model(key), 0,
                                        per_neuron).case
        p = {k: np.float32(v) if np.ndim(v) == 0 else np.asarray(v, np.float32) for k, v in case.params.items()}
        for a in (p["dt"] / p["tau_mem"], p["dt"] * (np.float32(1) / p["tau_mem"])):
            assert np.all((1 - a) * p["leak"] + a * p["leak"] == p["threshold"])
            assert np.all(p["leak"] + a * (p["leak"] - p["leak"]) == p["threshold"])


def _alpha_untouched(model, x, params, state, *, surrogate=None, inject=None):
    """qualia's IFSRL as the seed trains it: no gradient for the surrogate's scale."""
    return torch_simulate(model, x, dict(params, alpha=params["alpha"].detach()), state, surrogate=surrogate,
                          inject=inject)


def test_a_zero_gradient_of_a_trained_parameter_asks_whether_it_is_detached():
    def decay_detached(model, x, params, state, *, surrogate=None, inject=None):
        return torch_simulate(model, x, dict(params, decay=params["decay"].detach()), state, surrogate=surrogate,
                              inject=inject)

    report = gate.run(testing.Implementation(decay_detached, "tether.LIF"), kinds=("random",), **QUICK)
    assert not report.passed
    assert ("grad:decay: all zeros where the reference's is not: is decay detached in the implementation "
            "(.detach(), .item(), or copied into a constant)?") in report.text(), report.text()


def test_a_zero_gradient_of_the_initial_state_asks_whether_it_is_detached():
    # Found by an outside user: a detached parameter got the question, a detached state only its error.
    def state_detached(model, x, params, state, *, surrogate=None, inject=None):
        state = {name: value.detach() for name, value in (state or {}).items()}
        return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(state_detached, "tether.LIF"), kinds=("random",), **QUICK)
    assert not report.passed
    assert ("grad:state.v: all zeros where the reference's is not: is the initial state v detached in the "
            "implementation (.detach(), or a new tensor made from its values)?") in report.text(), report.text()


def test_a_zero_gradient_of_a_parameter_the_seed_does_not_train_says_how_to_declare_it():
    report = gate.run(testing.Implementation(_alpha_untouched, "qualia.IFSRL"), kinds=("random",), **QUICK)
    assert not report.passed
    assert ("grad:alpha: all zeros, and qualia.IFSRL does not train alpha: if the implementation does not "
            "differentiate it, declare fixed=('alpha',)") in report.text(), report.text()
    assert gate.run(testing.Implementation(_alpha_untouched, "qualia.IFSRL", fixed=("alpha",)), kinds=("random",),
                    **QUICK).passed


def time_constants_one_rounding_apart(model, x, params, state, *, surrogate=None, inject=None):
    """snnref's torch path with each time constant one ulp larger: an honest implementation whose
    time constants went through one rounding more (1e-5 s kept as 10 us, or dt (1 / tau) formed for
    dt / tau), its gradients those of the given values."""
    def rounded(value):
        return value + (torch.nextafter(value, value * 2) - value).detach()

    params = {name: rounded(value) if name.startswith("tau") else value for name, value in params.items()}
    return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)


def test_an_honest_float64_cuba_on_hardware_parameters_passes(tmp_path):
    # Found by an outside library author: with k = 0 in float64, dt (1 / tau) for dt / tau failed the
    # threshold and x gradients at 3 times the budget on hxtorch's hardware parameters (v near 125,
    # superspike alpha 50: f moves by thousands of ulp per ulp of v); float32 passed at 0.25.
    from snnref.testing import golden_cases

    (tmp_path / "hw.toml").write_text(
        '[[case]]\nname = "hw"\nmodel = "hxtorch.cuba_lif"\nshape = [100, 2, 16]\ndrive = [6.0, 3.0]\n'
        "seeds = [0, 1]\nparams = { leak = 80, reset = 80, threshold = 125, tau_syn = 1e-5, tau_mem = 1e-5, "
        "alpha = 50 }\n")
    golden_cases.generate(tmp_path / "hw.toml", tmp_path / "store")
    report = gate.run(testing.Implementation(time_constants_one_rounding_apart, "hxtorch.cuba_lif",
                                             dtypes=("float64",)), kinds=("golden",), golden_dir=tmp_path / "store")
    assert report.passed and report.worst > 0.01, report.text()


def test_fewer_examples_name_the_built_cases_they_leave_out():
    # Found by an outside library author: with examples=1 a T = 1 fast path that returned the pre-reset
    # membrane passed with nothing listed as not checked, and with examples=4 a CUBA that reset by its
    # own spikes under injected ones; the cases that catch them are built at fixed places (2nd, 5th).
    lines = gate.plan(testing.Implementation(torch_simulate, "hxtorch.cuba_lif"), examples=4, kinds=("random",))[1]
    assert lines == ["random: observed spikes injected alone, built by random case 5 (examples=4)",
                     "random: an observed membrane injected alone, built by random case 7 (examples=4)"]
    report = gate.run(testing.Implementation(outside_lif.single_step_final_pre_reset, "tether.LIF"), examples=1,
                      kinds=("random",))
    assert report.passed and "random: a single time step (T = 1), built by random case 2 (examples=1)" in \
        report.not_checked()
    assert not gate.plan(testing.Implementation(torch_simulate, "hxtorch.cuba_lif"), kinds=("random",))[1]


def test_a_pin_that_is_a_float32_rounding_is_shown_to_the_last_digit():
    # Found by an outside library author: "decay = 0.9 outside the pin decay = 0.9", every golden lost.
    pinned = float(torch.tensor(0.9))
    impl = testing.Implementation(outside_lif.correct, "tether.LIF", surrogates=("arctan",), pin={"decay": pinned})
    listed = gate.plan(impl, kinds=("golden",))[1]
    assert "golden lif/tether_LIF-arctan-default.npz: decay = 0.9 outside the pin decay = 0.8999999761581421 " \
           "(float32's rounding of 0.9: pin 0.9 itself)" in listed, listed


def test_an_implementation_that_takes_no_state_is_always_called_with_none():
    # Found by an outside library author: {} in most cases, None in the out_sum case; the contract
    # says None is "no initial state".
    seen = []

    def stateless(model, x, params, state, *, surrogate=None, inject=None):
        seen.append(state)
        return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)

    report = gate.run(testing.Implementation(stateless, "tether.LIF", takes_state=False), examples=3,
                      kinds=("random", "out_sum", "wide"))
    assert report.passed, report.text()
    assert seen and all(state is None for state in seen), {repr(state) for state in seen}


def _float32_flips_a_spike_float64_does_not():
    """A tether.LIF case with one membrane within 1e-9 of threshold, where the float32 spec fires
    and the float64 spec does not (or the other way round)."""
    from snnref.testing import _checks as checks

    base = checks.random_case("tether.LIF", np.random.default_rng(3), steps=40, batch=2, neurons=4,
                              random_state=False)
    distance = spec.simulate("tether.LIF", base.x, base.params, surrogate=base.surrogate).distance
    # Early, so that the two runs' trajectories part for most of the case.
    nearest = np.unravel_index(np.argmin(np.abs(distance[3:10])), distance[3:10].shape)
    nearest = (nearest[0] + 3,) + nearest[1:]
    for offset in np.arange(-100, 101) * 1e-10:
        x = base.x.copy()
        x[nearest] += offset - distance[nearest]
        if _float32_alone_flips(replace(base, x=x)):
            return replace(base, x=x)
    raise AssertionError("no offset flips a spike in float32 alone")


def _float32_alone_flips(case):
    runs = [spec.simulate(case.model, case.x, case.params, surrogate=case.surrogate, dtype=d).outputs["out"]
            for d in (np.float64, np.float32)]
    return not np.array_equal(runs[0], runs[1])


def _float32_flips_a_spike_float64_does_not_on_float32_inputs():
    """The same with every input a float32 number, so that an implementation computing in float64 from
    its float32 inputs makes exactly the float64 spec's decisions."""
    from snnref.testing import _checks as checks

    def moved(value, ulps):
        return float(np.float32(value) + np.float32(ulps) * np.spacing(np.float32(value)))

    base = checks.random_case("tether.LIF", np.random.default_rng(3), steps=40, batch=2, neurons=4,
                              random_state=False)
    base = replace(base, x=base.x.astype(np.float32).astype(np.float64),
                   params={k: np.float64(np.float32(v)) for k, v in base.params.items()})
    # One lane's membrane is put on threshold at step 3 (within float32's spacing of x), after its
    # step-2 input is moved by a few ulp at a time: float32's rounding of that membrane falls on
    # either side of the float64 decision for some of them.
    for ulps in range(-64, 65):
        x = base.x.copy()
        x[2, 0, 1] = moved(x[2, 0, 1], ulps)
        distance = spec.simulate("tether.LIF", x, base.params, surrogate=base.surrogate).distance[3, 0, 1]
        x[3, 0, 1] = float(np.float32(x[3, 0, 1] - distance))
        if _float32_alone_flips(replace(base, x=x)):
            return replace(base, x=x)
    raise AssertionError("no float32 input flips a spike in float32 alone")


def test_float64_s_budget_is_not_widened_by_a_spike_only_float32_flips():
    # Found by a review: float64's k term scales ref32 - ref64 to float64's precision, and a spike that
    # float32 alone flips put ref32 on another trajectory, widening the membrane's budget 1e5-fold: a
    # recorded membrane off by 1e-10 of itself passed such a case.
    case = _float32_flips_a_spike_float64_does_not()

    def membrane_off(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        return replace(result, outputs={**result.outputs, "v": result.outputs["v"] * (1 + 1e-10)})

    def run(fn):
        impl = testing.Implementation(fn, "tether.LIF", dtypes=("float64",))
        return gate.run_planned(impl, [gate.Planned(case, "random", 0)], again=False)

    assert run(torch_simulate).passed
    failed = run(membrane_off)
    assert not failed.passed and failed.quantities()["out:v"]["failing"], failed.text()


def test_float32_s_budget_is_not_widened_by_a_spike_only_float32_flips():
    # The same blind spot in float32: an implementation whose spikes are the float64 spec's (it computes
    # in float64 and stores float32) was measured against a float32 spec on another trajectory, and a
    # recorded membrane 10% off passed with 0.07 of its budget used.
    case = _float32_flips_a_spike_float64_does_not_on_float32_inputs()

    def in_float64(off):
        def run(model, x, params, state, *, surrogate=None, inject=None):
            def wide(values):
                return None if values is None else {k: v.double() for k, v in values.items()}

            result = torch_simulate(model, x.double(), wide(params), wide(state), surrogate=surrogate,
                                    inject=inject)
            # The recorded membrane's value is off, its gradient is not: out:v alone can see it.
            outputs = {k: (v + off * v.detach() if k == "v" else v).float() for k, v in result.outputs.items()}
            return replace(result, outputs=outputs, final_state={k: v.float() for k, v in result.final_state.items()})
        return run

    def run(fn):
        impl = testing.Implementation(fn, "tether.LIF", dtypes=("float32",))
        return gate.run_planned(impl, [gate.Planned(case, "random", 0)], again=False)

    assert run(in_float64(0.0)).passed
    failed = run(in_float64(0.1))
    assert not failed.passed and failed.quantities()["out:v"]["failing"], failed.text()


def test_a_result_on_the_meta_device_is_named_by_its_quantity():
    # Found by an outside user: "crashed: RuntimeError: Tensor.item() cannot be called on meta tensors",
    # raised in the gate's own torch calls.
    def on_meta(model, x, params, state, *, surrogate=None, inject=None):
        result = torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)
        return replace(result, outputs={k: v.to("meta") for k, v in result.outputs.items()})

    report = gate.run(testing.Implementation(on_meta, "tether.LIF"), examples=1, kinds=("random",))
    assert {f for run in report.runs for f in run.failures} == {
        "crashed: ImplementationError: result.outputs['out']: a tensor on the 'meta' device, which holds no values"}
