"""Every production backend equals the spec (SPEC.md section 7): one template,
parametrized over the backends (torch, triton, cpu: the family contract's
production layers) and the registry's models.

Every test is parametrized by model and backend (the random template also by
every storage dtype the backend holds the model in), so every model is covered
by construction; hypothesis draws, within the model, T from 1 up, batch 1 and
more, N not a multiple of any block size, scalar or per-neuron parameters,
every accepted surrogate, hardware injection and contiguous or strided input,
a few examples per model and dtype.  Outputs, state sequences, final states
and the gradients for x, every trainable parameter and every initial state are
compared with the float64 and float32 spec under the tolerance policy; spike
flips must be explained by teacher forcing.  Fixed cases give every model
T = 1 and per-neuron parameters with batch != N, and the smooth twin replayed
from its own stop-gradient values.  For the kernel backends every output
buffer starts as NaN and is followed by a NaN guard zone, so an element a
kernel forgets to write cannot pass and a store past the end is caught.
Reruns must be bitwise identical; gradcheck runs on every smooth twin where
the backend computes in float64; the cpu backend reproduces the golden traces
(the torch path's are in test_golden.py; the Triton interpreter is too slow
for all 85 in CI).
"""

import importlib
import importlib.util
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, strategies as st
from torch.autograd.gradcheck import GradcheckError

from fixtures.cpu_mutants import poison_outputs, stores_past_the_end
import snnref
from fixtures.examples import per_model
from snnref import families, registry, spec, testing
from snnref.testing import _checks as checks, _equivalence as equivalence, _fd as gradcheck, _golden as golden
from snnref.testing import gate, strategies, tolerance

MODELS = sorted(registry.MODELS)


@dataclass(frozen=True)
class Backend:
    name: str
    dtypes: Tuple[torch.dtype, ...]
    max_steps: int  # hypothesis case sizes (the Triton interpreter is slow)
    neuron_counts: Tuple[int, ...]
    allocator: Optional[str] = None  # the module whose empty() allocates every kernel output
    requires: Optional[str] = None  # a package the backend needs

    @property
    def float64(self) -> bool:
        return torch.float64 in self.dtypes

    def param(self):
        missing = self.requires and importlib.util.find_spec(self.requires) is None
        return pytest.param(self, id=self.name, marks=pytest.mark.skip(f"{self.requires} is not installed")
                            if missing else ())


BACKENDS = (
    Backend("torch", (torch.float32, torch.float64), 10, (1, 3, 7, 13)),
    Backend("triton", (torch.float32, torch.float16, torch.bfloat16), 6, (1, 3, 7), "snnref.kernels.common",
            "triton"),
    Backend("cpu", (torch.float32, torch.float64), 10, (1, 3, 7, 13), "snnref.kernels.cpu._launch", "numba"),
)
EVERY_BACKEND = [b.param() for b in BACKENDS]
FLOAT64_BACKENDS = [b.param() for b in BACKENDS if b.float64]


@pytest.fixture(params=EVERY_BACKEND)
def backend(request, monkeypatch):
    """The backend, with its kernel outputs poisoned: NaN, then a NaN guard zone
    checked after the test for stores past the end."""
    spec = request.param
    buffers = []
    if spec.allocator is not None:
        buffers = poison_outputs(monkeypatch, importlib.import_module(spec.allocator))
    yield spec
    assert not stores_past_the_end(buffers), f"{spec.name}: a kernel stored past the end of its output"


def storable_dtypes(backend, row):
    return [d for d in backend.dtypes if equivalence.storable(row, d)]


def test_the_backends_are_the_family_contract_s_production_layers():
    assert tuple(b.name for b in BACKENDS) == families.BACKENDS


def model_dtype_pairs():
    """Every (backend, model, storage dtype) the backend can run: the backend
    fixture's parameter (its skip mark where its package is missing), the
    model and the dtype, for the template below."""
    for spec_param in EVERY_BACKEND:
        spec = spec_param.values[0]
        for key in MODELS:
            for dtype in storable_dtypes(spec, registry.MODELS[key]):
                yield pytest.param(spec, key, dtype, marks=spec_param.marks,
                                   id=f"{spec.name}-{key}-{str(dtype).replace('torch.', '')}")


# The backend fixture (its poisoned allocator) is shared by every example on purpose.
@pytest.mark.parametrize("backend,key,dtype", list(model_dtype_pairs()), indirect=["backend"])
@per_model(share=10, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_backend_equals_the_spec(backend, key, dtype, data):
    case = data.draw(strategies.cases(key, max_steps=backend.max_steps, neuron_counts=list(backend.neuron_counts)),
                     label="case")
    contiguous = data.draw(st.booleans(), label="contiguous")
    report = equivalence.compare(case, backend.name, dtype, contiguous=contiguous)
    assert report.passed, f"{key} {backend.name} {report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_a_single_time_step_with_per_neuron_parameters_and_batch_not_n(backend, key):
    # Fixed boundaries every model gets by construction: T = 1 (a reverse scan
    # with no earlier step), and per-neuron parameters with batch 3 != N 2 (a
    # kernel reading them by the batch axis is wrong there), with injection and
    # without: found by mutation testing, the cpu scans' loops for a run without
    # observations (cuba_li's integrator tile: its leak gradient read neuron 0's
    # a in every lane) met per-neuron parameters only where hypothesis drew both.
    row = registry.MODELS[key]
    for steps in (1, 4):
        for inject in sorted({False, bool(row.inject)}):
            case = checks.random_case(key, np.random.default_rng(steps), steps=steps, batch=3, neurons=2,
                                      per_neuron=True, inject=inject)
            report = equivalence.compare(case, backend.name, torch.float32)
            assert report.passed, f"T={steps} inject={inject}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_a_loss_on_one_output_alone_gets_the_spec_s_gradients(backend, key):
    # Found by mutation testing: every other test's loss reaches every output and final state, so
    # every "has this cotangent" flag of a backward kernel is on.  A training loss reaches a few (the
    # spikes, never the carried final state): the backward gets None for the others, which must
    # count as zeros.  Six Triton backward loads guarded by another output's flag passed before.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(13), steps=4, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    for name in sorted(case.cotangents):
        report = equivalence.compare(replace(case, cotangents={name: case.cotangents[name]}), backend.name,
                                     torch.float32)
        assert report.passed, f"cotangent on {name} alone: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_an_initial_state_beyond_the_threshold_equals_the_spec(backend, key):
    # Found by mutation testing: the random cases draw initial membranes below every threshold,
    # and a backward that rebuilt the membrane before step 0 as if the initial state had fired
    # and been reset (the rebuilt p[t-1] of t = 1 applied at t = 0) passed on every backend's
    # tile loops.  A carried state can lie there (rnnbuilder's subtractive reset leaves v - 1,
    # above threshold when v > 2) and so can any given one: every initial state raised by 2.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(23), steps=4, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    case = replace(case, state={name: value + 2.0 for name, value in case.state.items()})
    dtypes = [torch.float32] if backend.name == "triton" else storable_dtypes(backend, row)
    for dtype in dtypes:
        report = equivalence.compare(case, backend.name, dtype)
        assert report.passed, f"{report.dtype}: " + "; ".join(report.failures)


# Each hardware trace a model accepts, given alone: (model, trace name) pairs.
SINGLE_TRACES = [pytest.param(k, name, id=f"{k}-{name}") for k in MODELS for name in registry.MODELS[k].inject
                 if len(registry.MODELS[k].inject) > 1]


@pytest.mark.parametrize("key,trace", SINGLE_TRACES)
def test_one_hardware_trace_alone_equals_the_spec(backend, key, trace):
    # The random cases inject every trace a model takes or none.  Found by mutation testing: with
    # both, the observed membrane skips the reset, so a reset that used the model's own spike where
    # SPEC.md section 5 resets with the injected one (spikes observed, no membrane) passed.  Each
    # trace alone, with per-neuron parameters and the refractory models' clamp too.
    case = checks.random_case(key, np.random.default_rng(29), steps=6, batch=2, neurons=3, per_neuron=True,
                              inject=True)
    case = replace(case, inject={trace: case.inject[trace]})
    dtypes = [torch.float32] if backend.name == "triton" else storable_dtypes(backend, registry.MODELS[key])
    for dtype in dtypes:
        report = equivalence.compare(case, backend.name, dtype)
        assert report.passed, f"{trace} alone {report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_far_from_threshold_every_backend_equals_the_spec(backend, key):
    # The gate's far cases (x scaled up to 1000 times, one per surrogate): the surrogates' tails and
    # every exponential of the state, where a formula written naively overflows to NaN.
    planned, _, _ = gate.plan(testing.Implementation(snnref.simulate, key), kinds=("far",))
    assert planned, f"{key}: no far case"
    for item in planned:
        for dtype in (d for d in backend.dtypes if d in (torch.float32, torch.float64)):
            report = equivalence.compare(item.case, backend.name, dtype)
            assert report.passed, f"{item.label()} {report.dtype}: " + "; ".join(report.failures)


def half_precision_pairs():
    """Every (backend, model) whose storage can be half precision for that model."""
    for spec_param in EVERY_BACKEND:
        spec = spec_param.values[0]
        for key in MODELS:
            if any(d in (torch.float16, torch.bfloat16) for d in storable_dtypes(spec, registry.MODELS[key])):
                yield pytest.param(spec, key, marks=spec_param.marks, id=f"{spec.name}-{key}")


@pytest.mark.parametrize("backend,key", list(half_precision_pairs()), indirect=["backend"])
def test_half_storage_on_a_wide_case_backpropagates_the_float32_values(backend, key):
    # Found by mutation testing: half storage computes in float32 and keeps float32 copies of the
    # recorded states for the backward; a backward reading the half-rounded record recomputes spike
    # decisions from values up to half an ulp away, and a flipped one changes a gradient by O(1).
    # The small hypothesis cases rarely put a state that close to a threshold; 6 x 16 x 64 do.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(21), steps=6, batch=16, neurons=64, per_neuron=True,
                              inject=bool(row.inject))
    for dtype in storable_dtypes(backend, row):
        if dtype in (torch.float16, torch.bfloat16):
            report = equivalence.compare(case, backend.name, dtype)
            assert report.passed, f"{report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_replaying_its_stop_gradient_values_reproduces_the_smooth_twin(backend, key):
    # The smooth twin replayed from its own Trace.detached (what finite
    # differences and gradcheck run) must still be the spec's smooth twin:
    # gradcheck alone cannot see a replay that drops a constant (an injection
    # offset), since a constant changes no gradient.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(6), steps=6, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    dtype = torch.float64 if backend.float64 else torch.float32
    tensors = {k: torch.tensor(np.asarray(v), dtype=dtype) for k, v in case.params.items()}
    state = {k: torch.tensor(v, dtype=dtype) for k, v in case.state.items()}
    inject = {k: torch.tensor(v, dtype=dtype) for k, v in case.inject.items()} if case.inject else None

    def smooth(detached=None, x=case.x):
        return snnref.simulate(key, torch.tensor(np.ascontiguousarray(x), dtype=dtype), tensors, state,
                               backend=backend.name, surrogate=case.surrogate, inject=inject, smooth=True,
                               detached=detached)

    replayed = smooth(detached=smooth().detached)
    # Trace.detached under replay holds the values given, not the run's own: found by an outside
    # contributor, whose new family returned its own spikes there and passed every test (values of
    # another run, x reversed in time, differ from the run's own where they would agree).
    foreign = smooth(x=case.x[::-1]).detached
    for name, value in smooth(detached=foreign).detached.items():
        assert torch.equal(value, foreign[name]), f"{key} {backend.name}: Trace.detached[{name!r}] under replay"
    references = [spec.simulate(key, case.x, case.params, case.state, surrogate=case.surrogate,
                                inject=case.inject, smooth=True, dtype=d) for d in (np.float64, np.float32)]
    for name, value in replayed.outputs.items():
        tolerance.assert_within_budget(f"{key} replayed {name}", value.double().numpy(),
                                       references[0].outputs[name], references[1].outputs[name], dtype)


@pytest.mark.parametrize("key", MODELS)
def test_every_model_and_surrogate_on_a_fixed_case(backend, key):
    row = registry.MODELS[key]
    # The Triton interpreter is slow: its fixed cases are float32 only.
    dtypes = [torch.float32] if backend.name == "triton" else storable_dtypes(backend, row)
    for surrogate in row.surrogates or (None,):
        case = checks.random_case(key, np.random.default_rng(11), steps=12 if backend.float64 else 5, batch=2,
                                  neurons=5, surrogate=surrogate, per_neuron=True, inject=bool(row.inject))
        for dtype in dtypes:
            report = equivalence.compare(case, backend.name, dtype)
            assert report.passed, f"{surrogate} {report.dtype}: " + "; ".join(report.failures)
            if dtype == torch.float64:
                # Near machine precision: far inside the float64 budget of 64 ulp.
                assert report.worst < 0.5, report.fractions


# float32's smallest normal number, rounded up: a value every storage but float16 holds.
SMALLEST_POSITIVE = 1.2e-38


# The spec's surrogates overflow on the way to a finite value there (1 + w * w).
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("key", MODELS)
def test_every_positive_parameter_at_the_smallest_normal_float32(backend, key):
    """A positive parameter at 1.2e-38, one at a time: where the float32 spec
    stays finite, the backend equals it.  Autograd's own chains made NaN or inf
    there where the derivative is 0 or finite: exp(-1 / tau) formed 1 / tau^2
    = inf (times 0), and dt / tau_mem's backward formed (dt / tau_mem) / tau_mem
    = inf before the cotangent multiplied it."""
    row = registry.MODELS[key]
    dtypes = [torch.float32] if backend.name == "triton" else storable_dtypes(backend, row)
    base = checks.random_case(key, np.random.default_rng(5), steps=4, batch=1, neurons=2)
    checked, overflowing = [], []
    for param in row.params:
        if param.domain != registry.POSITIVE or param.name not in base.params:
            continue
        value = np.full(np.shape(base.params[param.name]), SMALLEST_POSITIVE)
        case = replace(base, params={**base.params, param.name: value})
        reference, _ = equivalence.run_spec(case, np.float32)
        if not all(np.isfinite(v).all() for v in reference.values()):
            overflowing.append(param.name)
            continue
        checked.append(param.name)
        for dtype in dtypes:
            report = equivalence.compare(case, backend.name, dtype)
            assert report.passed, f"{param.name} = {SMALLEST_POSITIVE} {report.dtype}: " + "; ".join(report.failures)
    if not checked:
        # Said as it is: a model with no positive parameter was "overflowing at every one: []".
        pytest.skip(f"the float32 spec overflows at every positive parameter's {SMALLEST_POSITIVE}: {overflowing}"
                    if overflowing else f"{key} has no positive parameter")


@pytest.mark.parametrize("key", [k for k in MODELS if registry.MODELS[k].surrogates])
def test_a_membrane_exactly_on_threshold_decides_as_the_spec_does(backend, key):
    # The gate's dyadic case (u = 0 exactly in float64 and float32, so >= and > part): the
    # random cases never land there, and a rebuilt previous spike tested with > for a >=
    # model passed every test here (only a meta-test's fixture caught it).
    from snnref import testing
    from snnref.testing import gate

    def production(model, x, params, state, *, surrogate=None, inject=None):
        return snnref.simulate(model, x, params, state, surrogate=surrogate, inject=inject, backend=backend.name)

    planned = gate._exact_threshold_case(testing.Implementation(production, key), 0, False)
    assert planned is not None
    case = planned.case
    for dtype in [torch.float32] if backend.name == "triton" else storable_dtypes(backend, registry.MODELS[key]):
        report = equivalence.compare(case, backend.name, dtype, equivalence.kernel_device()
                                     if backend.name == "triton" else "cpu")
        assert report.passed, f"{report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_values_made_under_inference_mode_train_like_any_other(backend, key):
    # An evaluation pass under torch.inference_mode leaves inference tensors
    # (a module's carried state); a training call then gets them as x,
    # parameters, initial states and injections.
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(9), steps=4, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))

    def tensors(values):
        return {name: torch.tensor(np.asarray(value), dtype=torch.float32) for name, value in values.items()}

    def gradients(inference):
        with torch.inference_mode(inference):
            x, params, state = torch.tensor(case.x, dtype=torch.float32), tensors(case.params), tensors(case.state)
            inject = tensors(case.inject) if case.inject else None
        # The gradient flows through one parameter, made an ordinary tensor by
        # an addition (which saves no operand for its backward).
        weight = torch.zeros((), requires_grad=True)
        name = row.differentiable[0]
        params[name] = params[name] + weight
        trace = snnref.simulate(key, x, params, state, backend=backend.name, surrogate=case.surrogate,
                                inject=inject)
        outputs = [output for output in trace.outputs.values() if output.requires_grad]
        gradient, = torch.autograd.grad(sum(output.sum() for output in outputs), weight)
        return [output.detach() for output in outputs], gradient

    outputs, gradient = gradients(inference=True)
    expected_outputs, expected_gradient = gradients(inference=False)
    assert all(torch.equal(a, b) for a, b in zip(outputs, expected_outputs))
    assert torch.equal(gradient, expected_gradient)


@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float32], ids=["bfloat16_x", "float32_x"])
@pytest.mark.parametrize("key", MODELS)
def test_under_autocast_the_scan_computes_in_float32(backend, key, x_dtype):
    # An autocast Linear hands the neuron bfloat16 (or, from a float32 layer,
    # float32) x beside float32 parameters.  Under torch.autocast simulate must
    # give, bit for bit, the float32 call on the same values outside autocast:
    # outputs, and the gradients of a backward outside the region (torch's
    # recipe; in it, autograd's own matmul backward would run in bfloat16).
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(11), steps=4, batch=2, neurons=4, per_neuron=True,
                              inject=bool(row.inject))

    def tensors(values, trainable):
        return {name: torch.tensor(np.asarray(value), dtype=torch.float32, requires_grad=name in trainable)
                for name, value in values.items()}

    def run(x, autocast):
        x = x.detach().requires_grad_()
        params = tensors(case.params, row.differentiable)
        state = tensors(case.state, row.state_names)
        inject = tensors(case.inject, ()) if case.inject else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            trace = snnref.simulate(key, x, params, state, backend=backend.name, surrogate=case.surrogate,
                                    inject=inject)
        outputs = {name: value for name, value in trace.outputs.items() if value.requires_grad}
        loss = sum((value * torch.tensor(case.cotangents[name], dtype=value.dtype)).sum()
                   for name, value in outputs.items())
        inputs = [x] + [value for value in {**params, **state}.values() if value.requires_grad]
        gradients = torch.autograd.grad(loss, inputs, allow_unused=True)
        return outputs, gradients

    x = torch.tensor(case.x, dtype=torch.float32).to(x_dtype)
    outputs, gradients = run(x, autocast=True)
    expected_outputs, expected_gradients = run(x.float(), autocast=False)
    assert outputs.keys() == expected_outputs.keys()
    for name, value in outputs.items():
        assert value.dtype == torch.float32, name
        assert torch.equal(value, expected_outputs[name]), name
    # x's gradient comes back in x's dtype, through the cast.
    assert gradients[0].dtype == x_dtype
    assert torch.equal(gradients[0], expected_gradients[0].to(x_dtype))
    for gradient, expected in zip(gradients[1:], expected_gradients[1:]):
        assert (gradient is None) == (expected is None)
        assert gradient is None or torch.equal(gradient, expected)


@pytest.mark.parametrize("key", MODELS)
def test_reruns_are_bitwise_identical(backend, key):
    case = checks.random_case(key, np.random.default_rng(4), steps=5, batch=3, neurons=5, per_neuron=True)
    first = equivalence.run_backend(case, backend.name, torch.float32)
    second = equivalence.run_backend(case, backend.name, torch.float32)
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def _twin_case(key, seed, steps):
    """A smooth-twin case: per-neuron parameters, hardware injection where the model takes it."""
    return checks.random_case(key, np.random.default_rng(seed), steps=steps, batch=2, neurons=3,
                              per_neuron=True, inject=bool(registry.MODELS[key].inject))


@pytest.mark.parametrize("backend_spec", FLOAT64_BACKENDS)
@pytest.mark.parametrize("key", MODELS)
def test_gradcheck_on_the_smooth_twin(backend_spec, key):
    assert gradcheck.smooth_twin_gradcheck(_twin_case(key, seed=5, steps=4), backend_spec.name)


# The models whose smooth twin replays stop-gradient values (a reset spike, a mask, an offset).
REPLAYING = [k for k in MODELS if registry.detached_keys(registry.MODELS[k], registry.MODELS[k].inject)]


@pytest.mark.parametrize("backend_spec", FLOAT64_BACKENDS)
@pytest.mark.parametrize("key", REPLAYING)
def test_gradcheck_on_the_smooth_twin_replaying_another_run_s_values(backend_spec, key):
    # Replayed values of the run's own make a replayed reset equal the twin's spike F(u):
    # a backward that rebuilt p[t-1] from F(u) instead of the replayed reset passed.
    assert gradcheck.smooth_twin_gradcheck(_twin_case(key, seed=6, steps=6), backend_spec.name, foreign=True)


@pytest.mark.parametrize("key", ["tether.LIF", "hxtorch.cuba_lif"])
def test_the_function_gradcheck_differentiates_is_the_case_s_smooth_twin(key):
    # Found by mutation testing (snnref/testing/_fd.py): gradcheck passes on any differentiable
    # function, so a twin that dropped an input's gradient, the final states, the parameters'
    # rescaling, or that replayed its own run where it should replay x reversed, passed all the same.
    # The twin must be simulate's smooth twin of the case itself, bit for bit, with x, every
    # differentiable parameter and every initial state as inputs taking a gradient.  The parameters sit
    # at the top of their sample range, where the rescaling to order one divides and multiplies by
    # exactly the value itself.
    row = registry.MODELS[key]
    case = _twin_case(key, seed=6, steps=6)
    for name in row.differentiable:
        case.params[name] = np.full_like(case.params[name], max(abs(v) for v in row.param(name).sample))

    def tensors(values):
        return {k: torch.tensor(v) for k, v in values.items()}

    def smooth(x, detached=None):
        return snnref.simulate(key, x, tensors(case.params), tensors(case.state), backend="torch",
                               surrogate=case.surrogate, inject=tensors(case.inject) if case.inject else None,
                               smooth=True, detached=detached)

    x = torch.tensor(case.x)
    own, reversed_run = smooth(x).detached, smooth(x.flip(0)).detached
    assert any(not torch.equal(own[k], reversed_run[k]) for k in own)  # the two replays differ here
    for foreign, held in ((False, own), (True, reversed_run)):
        twin, inputs = gradcheck._smooth_twin(case, "torch", foreign)
        assert len(inputs) == 1 + len(row.differentiable) + len(case.state)
        assert all(value.requires_grad for value in inputs)
        expected = smooth(x, held)
        want = [*expected.outputs.values(), *expected.final_state.values()]
        got = twin(*inputs)
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want)), foreign


class _Skewed(torch.autograd.Function):
    """The identity, whose backward scales the cotangent by 1 + 1e-4: a gradient wrong by 1e-4."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, cotangent):
        return cotangent * (1 + 1e-4)


def test_gradcheck_on_the_smooth_twin_catches_a_gradient_wrong_by_1e_4(monkeypatch):
    # Found by mutation testing: with atol 1e-3 instead of 1e-7 the gradcheck tests above still passed,
    # every planted gradient bug being far larger.  Order-one Jacobian entries wrong by 1e-4 of
    # themselves are far over gradcheck's atol 1e-7 + rtol 1e-5, and must fail it.
    run = gradcheck.simulate

    def skewed(*args, **kwargs):
        trace = run(*args, **kwargs)
        return replace(trace, outputs={k: _Skewed.apply(v) for k, v in trace.outputs.items()})

    monkeypatch.setattr(gradcheck, "simulate", skewed)
    with pytest.raises(GradcheckError):
        gradcheck.smooth_twin_gradcheck(_twin_case("tether.LIF", seed=5, steps=4), "torch")


def _replaying_another_run(case, backend, dtype, device="cpu"):
    """Outputs and gradients (x, the differentiable parameters) of the smooth twin in
    ``dtype`` replaying the stop-gradient values of a float64 torch run on x reversed in time."""
    row = registry.MODELS[case.model]

    def tensor(value, grad=False, to=dtype):
        return torch.tensor(np.ascontiguousarray(value), dtype=to, device=device, requires_grad=grad)

    inject = {k: tensor(v) for k, v in case.inject.items()} if case.inject else None
    held = snnref.simulate(case.model, tensor(case.x[::-1], to=torch.float64),
                           {k: tensor(v, to=torch.float64) for k, v in case.params.items()},
                           {k: tensor(v, to=torch.float64) for k, v in case.state.items()}, surrogate=case.surrogate,
                           inject=inject and {k: v.double() for k, v in inject.items()}, smooth=True,
                           backend="torch").detached
    x = tensor(case.x, True)
    params = {k: tensor(v, k in row.differentiable) for k, v in case.params.items()}
    trace = snnref.simulate(case.model, x, params, {k: tensor(v) for k, v in case.state.items()},
                            surrogate=case.surrogate, inject=inject, smooth=True, backend=backend,
                            detached={k: v.to(dtype=dtype, device=device) for k, v in held.items()})
    # The loss of the case's cotangents on every recorded output.
    loss = sum((trace.outputs[k] * tensor(v)).sum() for k, v in case.cotangents.items() if k in trace.outputs)
    wrt = {"x": x, **{k: params[k] for k in row.differentiable}}
    grads = torch.autograd.grad(loss, list(wrt.values()))
    values = {f"out:{k}": v.detach() for k, v in trace.outputs.items()}
    values.update({f"grad:{k}": g for k, g in zip(wrt, grads)})
    return {k: v.double().cpu().numpy() for k, v in values.items()}


@pytest.mark.parametrize("backend_spec", [b.param() for b in BACKENDS if not b.float64])
@pytest.mark.parametrize("key", REPLAYING)
def test_a_float32_backend_replaying_another_run_s_values_equals_the_gradchecked_torch_path(backend_spec, key):
    # The Triton kernels hold no float64: their replay is judged against the torch path's, which the
    # gradcheck above verifies, under section 7's budget with the torch path's own float32 error.
    case = _twin_case(key, seed=6, steps=6)
    ref64 = _replaying_another_run(case, "torch", torch.float64)
    ref32 = _replaying_another_run(case, "torch", torch.float32)
    impl = _replaying_another_run(case, backend_spec.name, torch.float32, equivalence.kernel_device())
    for name, reference in ref64.items():
        tolerance.assert_within_budget(f"{key} {name}", impl[name], reference, ref32[name], np.float32)


@pytest.mark.parametrize("backend_spec", [b.param() for b in BACKENDS if b.name == "cpu"])
def test_golden_traces_are_reproduced(backend_spec):
    store = golden.store_dir()
    manifest = golden.read_manifest(store)
    failures = []
    for name, entry in manifest["files"].items():
        arrays = golden.load(store, name, entry)
        case, expected = golden.case_from(arrays, entry), golden.expected_from(arrays)
        for dtype in backend_spec.dtypes:
            report = equivalence.compare(case, backend_spec.name, dtype, reference=expected)
            failures += [f"{name} {report.dtype}: {failure}" for failure in report.failures]
    assert not failures, "\n".join(failures[:10])


def test_a_trace_names_its_model_by_the_registry_key_when_given_the_row():
    # simulate takes a registry row as well as its key; the Trace's model is the key either way, as
    # the reference's is (found by mutation testing: the argument itself was stored, here the row).
    row = registry.MODELS["tether.LIF"]
    x = torch.full((3, 2), 0.5)
    assert spec.simulate(row, x.numpy()).model == "tether.LIF"
    for name in ("torch", "cpu"):
        assert snnref.simulate(row, x, backend=name).model == "tether.LIF"
