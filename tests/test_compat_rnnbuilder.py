"""snnref.compat.rnnbuilder: explicit-state modules agree with the float64 spec.

``out, h = model(x, h)``: without ``h`` the run starts from the lazily created,
trainable ``initial_mem`` (F,) broadcast over the batch, so its gradient is the
spec's ``state.m`` summed over the batch; with ``h`` gradients flow back through
it into the previous call (BPTT across calls).
"""

import numpy as np
import pytest
import torch
from torch.nn.parameter import UninitializedParameter

from snnref import checks, registry, spec
from snnref.compat import rnnbuilder as rb
from snnref.nn import Arctan

RECURRENT = {
    "rnnbuilder.LIF": rb.LIF,
    "rnnbuilder.NoReset": rb.NoReset,
    "rnnbuilder.Cooldown": rb.Cooldown,
    "rnnbuilder.Adaptive": rb.Adaptive,
}


def tensor(array, grad=False):
    return torch.tensor(np.asarray(array), dtype=torch.float64, requires_grad=grad)


def random_case(key, seed, batch=2):
    return checks.random_case(key, np.random.default_rng(seed), steps=8, batch=batch, neurons=3)


def spike_linear(case):
    """SpikeLinear with the case's gradient_factor."""
    return rb.SpikeLinear(float(case.params["gradient_factor"]))


def build(key, case):
    """A float64 module with the case's parameters, initialised with initial_mem = case.state["m"][0]."""
    p = {name: float(value) for name, value in case.params.items()}
    extra = {"tau_thr": p["tau_thr"], "gamma": p["gamma"]} if key == "rnnbuilder.Adaptive" else {}
    module = RECURRENT[key](tau=p["tau"], spike_function=spike_linear(case), **extra).double()
    assert isinstance(module.initial_mem, UninitializedParameter)
    module(tensor(case.x[:1]))  # the first call creates initial_mem: zeros (F,)
    assert module.initial_mem.shape == (case.x.shape[-1],) and not module.initial_mem.any()
    with torch.no_grad():
        module.initial_mem.copy_(tensor(case.state["m"][0]))
    return module


def spec_state(key, case):
    """The spec's initial state of a run without h: initial_mem on every batch row, r = 0."""
    state = {"m": np.broadcast_to(case.state["m"][0], case.x.shape[1:]).copy()}
    if key == "rnnbuilder.Adaptive":
        state["r"] = np.zeros(case.x.shape[1:])
    return state


def final_cotangents(case):
    return {k: v for k, v in case.cotangents.items() if k == "out" or k.startswith("final.")}


def loss(out, h, cotangents):
    total = (out * tensor(cotangents["out"])).sum()
    return total + sum((h[var] * tensor(cotangents[f"final.{var}"])).sum() for var in h)


def close(actual, expected):
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("key", RECURRENT)
@pytest.mark.parametrize("seed", [0, 1])
def test_run_from_initial_mem_equals_the_spec(key, seed):
    case = random_case(key, seed)
    module = build(key, case)
    x = tensor(case.x, grad=True)
    out, h = module(x)
    cotangents = final_cotangents(case)
    loss(out, h, cotangents).backward()

    state = spec_state(key, case)
    trace = spec.simulate(key, case.x, case.params, state)
    grads = spec.vjp(key, case.x, case.params, state, cotangents)
    close(out, trace.outputs["out"])
    assert set(h) == set(registry.model(key).state_names)
    for var, value in trace.final_state.items():
        close(h[var], value)
    close(x.grad, grads["x"])
    close(module.initial_mem.grad, grads["state.m"].sum(axis=0))
    assert [name for name, _ in module.named_parameters()] == ["initial_mem"]


@pytest.mark.parametrize("key", RECURRENT)
def test_explicit_h_gets_the_spec_state_gradient(key):
    case = random_case(key, 2)
    module = build(key, case)
    h0 = {var: tensor(value, grad=True) for var, value in case.state.items()}
    out, h = module(tensor(case.x), h0)
    cotangents = final_cotangents(case)
    loss(out, h, cotangents).backward()
    trace = spec.simulate(key, case.x, case.params, case.state)
    grads = spec.vjp(key, case.x, case.params, case.state, cotangents)
    close(out, trace.outputs["out"])
    for var in case.state:
        close(h0[var].grad, grads[f"state.{var}"])
    assert module.initial_mem.grad is None


@pytest.mark.parametrize("key", RECURRENT)
@pytest.mark.parametrize("as_tuple", [False, True])
def test_two_calls_with_h_equal_one_long_call_with_gradients(key, as_tuple):
    case = random_case(key, 3)
    cotangents = final_cotangents(case)

    whole = build(key, case)
    x_whole = tensor(case.x, grad=True)
    out, h = whole(x_whole)
    loss(out, h, cotangents).backward()

    parts = build(key, case)
    x_parts = tensor(case.x, grad=True)
    out1, h1 = parts(x_parts[:3])
    out2, h2 = parts(x_parts[3:], tuple(h1[var] for var in registry.model(key).state_names) if as_tuple else h1)
    loss(torch.cat([out1, out2]), h2, cotangents).backward()

    close(torch.cat([out1, out2]), out.detach().numpy())
    for var in h:
        close(h2[var], h[var].detach().numpy())
    close(x_parts.grad, x_whole.grad.numpy())
    close(parts.initial_mem.grad, whole.initial_mem.grad.numpy())


def test_features_are_flattened_per_step():
    x = tensor(np.random.default_rng(4).normal(0.5, 0.6, (8, 2, 2, 3)))
    module = rb.LIF().double()
    out, h = module(x)
    assert out.shape == (8, 2, 6) and h["m"].shape == (2, 6) and module.initial_mem.shape == (6,)
    close(out, spec.simulate("rnnbuilder.LIF", x.reshape(8, 2, 6).numpy()).outputs["out"])
    with pytest.raises(ValueError, match=r"x: this module was built for F=6 features per step, got 3"):
        module(x[:, :, 0])


def test_discontinuous_equals_the_spec():
    case = random_case("rnnbuilder.Discontinuous", 5)
    module = rb.Discontinuous(spike_linear(case), threshold=float(case.params["threshold"])).double()
    x = tensor(case.x, grad=True)
    out, h = module(x)
    assert h == {} and list(module.parameters()) == []
    (out * tensor(case.cotangents["out"])).sum().backward()
    close(out, spec.simulate(case.model, case.x, case.params).outputs["out"])
    close(x.grad, spec.vjp(case.model, case.x, case.params, None, {"out": case.cotangents["out"]})["x"])


@pytest.mark.parametrize("key", RECURRENT)
def test_state_dict_loads_into_a_fresh_lazy_module(key):
    case = random_case(key, 6)
    trained = build(key, case)
    extra = {"tau_thr": trained.tau_thr, "gamma": trained.gamma} if key == "rnnbuilder.Adaptive" else {}
    fresh = RECURRENT[key](tau=trained.tau, **extra).double()
    assert isinstance(fresh.initial_mem, UninitializedParameter)
    fresh.load_state_dict(trained.state_dict())  # initial_mem and gradient_factor
    x = tensor(random_case(key, 7, batch=5).x)
    out, h = fresh(x)
    expected, _ = trained(x)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("key", RECURRENT)
def test_an_rnnbuilder_checkpoint_without_the_spike_function_s_scale_loads_strictly(key):
    # rnnbuilder's spike function is no module: its checkpoints hold initial_mem alone.  Before, a strict
    # load failed on the missing spike_function.gradient_factor; the constructed 0.25 is kept.
    case = random_case(key, 8)
    trained = build(key, case)
    checkpoint = {k: v for k, v in trained.state_dict().items() if not k.startswith("spike_function.")}
    extra = {"tau_thr": trained.tau_thr, "gamma": trained.gamma} if key == "rnnbuilder.Adaptive" else {}
    fresh = RECURRENT[key](tau=trained.tau, spike_function=rb.SpikeLinear(0.25), **extra).double()
    fresh.load_state_dict(checkpoint)
    assert torch.equal(fresh.initial_mem, trained.initial_mem)
    assert fresh.spike_function.gradient_factor.item() == 0.25
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"initial_mem\""):
        RECURRENT[key](tau=trained.tau, **extra).load_state_dict({})


def test_default_spike_function_is_spike_linear_per_module():
    first, second = rb.LIF(), rb.LIF()
    assert first.spike_function.key == "spike_linear"
    assert first.spike_function.gradient_factor.item() == 0.3
    assert first.spike_function is not second.spike_function


X = torch.zeros(4, 2, 3, dtype=torch.float64)


@pytest.mark.parametrize("call,error,match", [
    (lambda m: m(np.zeros((4, 2, 3))), TypeError, r"x: expected a torch.Tensor"),
    (lambda m: m(X[0]), ValueError, r"x: expected a time-major tensor \(T, B, F, ...\)"),
    (lambda m: m(X, {"m": torch.zeros(2, 3, dtype=torch.float64)}),
     ValueError, r"h: expected the state variables m, r, got m"),
    # Found by mutation testing: a state variable the model does not have was ignored with the check loosened.
    (lambda m: m(X, {"m": X[0], "r": X[0], "s": X[0]}),
     ValueError, r"h: expected the state variables m, r, got m, r, s"),
    (lambda m: m(X, (torch.zeros(2, 3, dtype=torch.float64),)),
     ValueError, r"h: expected 2 state tensors \(m, r\), got 1"),
    (lambda m: m(X, {"m": torch.zeros(1, 3), "r": torch.zeros(2, 3)}),
     ValueError, r"h\['m'\]: expected shape \(2, 3\) \(B, F\), got \(1, 3\)"),
    (lambda m: m(X, {"m": 0.0, "r": 0.0}),
     TypeError, r"h\['m'\]: expected a torch.Tensor, got float"),
    (lambda m: m(X, torch.zeros(2, 3)),
     TypeError, r"h: expected a dict or tuple of state tensors \(m, r\), got Tensor"),
])
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(rb.Adaptive().double())


@pytest.mark.parametrize("module", [*RECURRENT.values(), rb.Discontinuous])
@pytest.mark.parametrize("shape,axis", [((0, 2, 3), "time step"), ((4, 0, 3), "element along axis 1")])
def test_an_empty_axis_is_named_before_the_lazy_initial_mem_is_sized(module, shape, axis):
    # A fresh lazy module used to index x[0, 0] first: a raw IndexError.
    with pytest.raises(ValueError, match=rf"^x: expected at least one {axis} \(every axis non-empty\)"):
        module()(torch.zeros(shape))


def test_bad_construction_and_stateless_h():
    with pytest.raises(TypeError, match=r"spike_function: expected an snnref.compat.rnnbuilder.SpikeLinear, got"):
        rb.LIF(spike_function=Arctan())
    with pytest.raises(ValueError, match=r"h: Discontinuous is stateless"):
        rb.Discontinuous().double()(X, {"m": X[0]})
    with pytest.raises(ValueError, match=r"^tau: expected a number > 0, got -1$"):
        rb.LIF(tau=-1)
    # One set after construction is refused at the forward.
    neuron = rb.LIF().double()
    neuron.tau = -1.0
    with pytest.raises(ValueError, match=r"^tau: expected values > 0"):
        neuron(X)


# Found by mutation testing: without h the carried membrane is initial_mem, and its message named it
# h['m'], an argument the caller never passed, with the label removed.
@pytest.mark.parametrize("key", sorted(RECURRENT))
def test_a_non_finite_initial_mem_is_named_as_such(key):
    module = RECURRENT[key]().double()
    module(X)
    with torch.no_grad():
        module.initial_mem.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"^initial_mem: expected finite values, found NaN or inf$"):
        module(X)
