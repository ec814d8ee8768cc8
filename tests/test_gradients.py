"""vjp(smooth=True) equals finite differences of the smooth twin, for every model,
every accepted surrogate, scalar and per-neuron parameters, with and without
hardware injection: in random directions of x, of every differentiable parameter
(trainable or not: registry.Model.differentiable) and of every initial state, to a relative error below 1e-6 in float64."""

import warnings
import zlib

import numpy as np
import pytest
import torch

from snnref import checks, leak, registry, simulate, spec
from snnref.testing import _equivalence as equivalence

# The bound: relative error below 1e-6 in float64.  The finite
# differences themselves are good to about 1e-10 here.
FD_BOUND = 1e-6


def cases():
    for key, row in sorted(registry.MODELS.items()):
        for surrogate in row.surrogates or (None,):
            for per_neuron in (False, True):
                for inject in (False, True) if row.inject else (False,):
                    yield pytest.param(key, surrogate, per_neuron, inject,
                                       id=f"{key}-{surrogate}-{'per_neuron' if per_neuron else 'scalar'}"
                                          f"{'-inject' if inject else ''}")


@pytest.mark.parametrize("key,surrogate,per_neuron,inject", list(cases()))
def test_vjp_equals_finite_differences(key, surrogate, per_neuron, inject):
    seed = zlib.crc32(f"{key}{surrogate}{per_neuron}{inject}".encode())
    rng = np.random.default_rng(seed)
    case = checks.random_case(key, rng, surrogate=surrogate, per_neuron=per_neuron, inject=inject)
    report = checks.gradient_check(case, seed=seed)
    assert set(report.errors) == {"x", *registry.model(key).differentiable,
                                  *(f"state.{v}" for v in registry.model(key).state_names)}
    bad = {k: v for k, v in report.errors.items() if not v < FD_BOUND}
    assert not bad, f"{key} ({surrogate}): relative error over {FD_BOUND}: {bad}"


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_gradient_check_catches_a_wrong_gradient(key, plant_backward):
    """The check can fail: scale the x-gradient of the hand-written backward by 1.001."""

    def skewed(grads, params, state, tape, cot):
        grads["x"] = grads["x"] * 1.001

    plant_backward(key, skewed)
    case = checks.random_case(key, np.random.default_rng(7))
    assert checks.gradient_check(case).errors["x"] > FD_BOUND



def test_richardson_extrapolation_is_exact_through_the_fifth_order():
    # Found by mutation testing: with one extrapolation dropped every gradient test still passed (their
    # steps are small enough), but the check's accuracy claim rests on both.  phi(h) = 2h + h^3 + h^5:
    # the central difference at step s is 2 + s^2 + s^4; the first extrapolation removes s^2, the
    # second s^4, so at h = 1 (every value a dyadic rational, exact in float64) the result is 2 exactly,
    # where one extrapolation leaves 2 - (1/2)^4 / 4 = 1.984375.
    assert checks._richardson(lambda h: 2 * h + h ** 3 + h ** 5, 1.0) == 2.0


def test_gradient_check_starts_an_unset_state_at_the_parameter_it_names(monkeypatch):
    # hxtorch.cuba_lif's v starts at the parameter leak (registry initial "leak").  A case drawn without
    # an initial state must be checked from there, as the model runs it; found by mutation testing:
    # started at 0, the check agreed with itself at a point the model never starts from.
    seen = []
    vjp = spec.vjp

    def recording(model, x, params, state, *args, **kwargs):
        seen.append({k: np.array(v) for k, v in state.items()})
        return vjp(model, x, params, state, *args, **kwargs)

    monkeypatch.setattr(spec, "vjp", recording)
    case = checks.random_case("hxtorch.cuba_lif", np.random.default_rng(0), steps=3, batch=2, neurons=3,
                              per_neuron=True, random_state=False)
    case.params["leak"] = np.array([0.25, -0.5, 0.75])
    checks.gradient_check(case, directions=1)
    assert np.array_equal(seen[0]["v"], np.array([[0.25, -0.5, 0.75]] * 2))
    assert np.array_equal(seen[0]["i"], np.zeros((2, 3)))

# ---- Every gradient a caller can get is verified (issue 8, item 6) ----

def _not_trained(row):
    return [p.name for p in row.params if p.differentiable and not p.trainable]


NOT_TRAINED = [(key, name) for key, row in sorted(registry.MODELS.items()) for name in _not_trained(row)]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items() if _not_trained(row)))
def test_production_gradients_of_untrained_parameters_equal_the_spec(key, backend):
    """A caller who sets requires_grad on a parameter the seed does not train
    gets the spec's gradient (float64, near machine precision)."""
    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(zlib.crc32(key.encode())), inject=bool(row.inject))
    report = equivalence.compare(case, backend, torch.float64)
    assert report.passed, report.failures
    assert {f"grad:{name}" for name in row.differentiable} <= set(report.fractions)


class _ScaledGradient(torch.autograd.Function):
    """Identity forward; the backward scales the gradient: a planted wrong factor."""

    @staticmethod
    def forward(ctx, value):
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.001


@pytest.mark.parametrize("key,name", NOT_TRAINED)
def test_a_wrong_gradient_of_an_untrained_parameter_is_caught(key, name):
    """The comparison can fail: a path whose gradient of ``name`` is off by a
    factor 1.001 (a dropped factor in gamma's gradient, say) fails on grad:name."""

    def skewed(model, x, params, state, **kwargs):
        params = dict(params, **{name: _ScaledGradient.apply(params[name])})
        return simulate(model, x, params, state, backend="torch", **kwargs)

    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(zlib.crc32(key.encode())), inject=bool(row.inject))
    report = equivalence.compare(case, "skewed", torch.float64, implementation=skewed)
    assert any(failure.startswith(f"grad:{name}:") for failure in report.failures), report.failures


# The spec's surrogates overflow on the way to a finite value there (1 + w * w).
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype,value", [(np.float64, 1e-200), (np.float32, 1e-30)])
@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items()
                                     if any(p.domain == registry.POSITIVE and p.differentiable for p in row.params)))
def test_a_positive_parameter_far_below_its_scale_gives_no_nan_gradient(key, dtype, value):
    """One positive parameter at a time at ``value``: where the spec's outputs stay
    finite, no gradient is NaN.  rnnbuilder's lam / tau^2 was 0 / 0 there (lam and
    tau^2 both underflowed), where the derivative is 0.  An infinite gradient can
    be the true one overflowed (hxtorch's a / tau_mem with a = dt / tau_mem)."""
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(3), steps=4, batch=1, neurons=2)
    positive = [p.name for p in row.params
                if p.domain == registry.POSITIVE and p.differentiable and p.name in case.params]
    checked = []
    for name in positive:
        params = {**case.params, name: np.full(np.shape(case.params[name]), value)}
        trace = spec.simulate(key, case.x, params, case.state, surrogate=case.surrogate, dtype=dtype)
        if not all(np.isfinite(v).all() for v in trace.outputs.values()):
            continue
        checked.append(name)
        cotangents = {output: np.ones_like(v) for output, v in trace.outputs.items()}
        grads = spec.vjp(key, case.x, params, case.state, cotangents, surrogate=case.surrogate, dtype=dtype)
        for wrt, gradient in grads.items():
            assert not np.isnan(gradient).any(), f"{name} = {value}: gradient {wrt} is {gradient}"
    if not checked:
        pytest.skip(f"each of {positive} at {value} overflows {key}'s outputs")


@pytest.mark.parametrize("key", sorted(k for k, row in registry.MODELS.items()
                                     if row.family in ("lif", "adaptive", "cooldown")
                                     and any(p.name == "tau" for p in row.params)))
def test_a_subnormal_time_constant_runs_the_spec_as_its_limit_without_a_warning(key):
    """tau = 1e-320 (subnormal): 1 / tau overflows and lam = exp(-1 / tau) is 0,
    as at tau = 1e-200; NumPy's overflow warning on the way escaped the spec (an
    exception under -W error, naming no argument)."""
    case = checks.random_case(key, np.random.default_rng(4), steps=4, batch=1, neurons=2)
    taus = [name for name in ("tau", "tau_thr") if name in case.params]
    runs = {}
    for value in (1e-320, 1e-200):
        params = {**case.params, **{name: np.full(np.shape(case.params[name]), value) for name in taus}}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            trace = spec.simulate(key, case.x, params, case.state, surrogate=case.surrogate)
            cotangents = {output: np.ones_like(v) for output, v in trace.outputs.items()}
            grads = spec.vjp(key, case.x, params, case.state, cotangents, surrogate=case.surrogate)
        runs[value] = trace, grads
    (tiny, tiny_grads), (small, small_grads) = runs[1e-320], runs[1e-200]
    for name, value in small.outputs.items():
        np.testing.assert_array_equal(tiny.outputs[name], value)
    for name, value in small_grads.items():
        np.testing.assert_array_equal(tiny_grads[name], value, err_msg=name)


# Found by mutation testing: the test above runs the spec; the torch paths' leak (snnref.leak) had no test,
# and dropping decay_of's clamp or _Quotient's one-division-at-a-time backward passed.  A time constant
# far below its scale has lam = 0 and a zero derivative (Eq. (2)); a zero cotangent gives a zero gradient.
@pytest.mark.parametrize("dtype,tiny", [(torch.float32, 1e-38), (torch.float64, 1e-300)])
def test_the_torch_leak_gives_no_nan_gradient_far_below_its_scale(dtype, tiny):
    tau = torch.tensor(tiny, dtype=dtype, requires_grad=True)
    lam = leak.decay_of(tau)
    lam.backward()
    assert lam.item() == 0.0 and tau.grad.item() == 0.0
    # dt / tau_mem: only the denominator asks for a gradient, and (dt / tau_mem) / tau_mem overflows.
    tau_mem = torch.tensor(tiny, dtype=dtype, requires_grad=True)
    (leak.quotient(torch.tensor(1e-6, dtype=dtype), tau_mem) * 0.0).backward()
    assert tau_mem.grad.item() == 0.0
