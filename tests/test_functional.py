"""snnref.functional (tether's and hxtorch's functional names) computes the spec:
outputs and autograd gradients equal snnref.spec.simulate / vjp in float64 on
random cases, with and without hardware injection; the single-step hxtorch
functions iterated over time equal the integrations; bad input is refused by
name before any computation."""

import numpy as np
import pytest
import torch

import snnref.compat.hxtorch as compat_hxtorch
import snnref.compat.qualia as compat_qualia
import snnref.compat.tether as compat_tether
import snnref.functional as F
from snnref import checks, registry, spec

TOL = 1e-12
TETHER_IDS = {s.tether_id: key for key, s in registry.SURROGATES.items() if s.tether_id is not None}


def tensor(array, grad=True):
    return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=grad)


def assert_close(actual, expected, label):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    error = np.max(np.abs(actual - expected), initial=0.0)
    assert error <= TOL * max(1.0, np.max(np.abs(expected), initial=0.0)), f"{label}: max error {error}"


def backprop(pairs):
    """Backward of the scalar sum <cotangent, output> over (output, cotangent) pairs."""
    sum((out * torch.as_tensor(cot)).sum() for out, cot in pairs).backward()


# ----------------------------------------------------------------------------- tether


def flat(array):
    """(T, B, N) -> (T, B * N), or (B, N) -> (B * N,)."""
    return np.reshape(array, (array.shape[0], -1)) if array.ndim == 3 else np.reshape(array, -1)


@pytest.mark.parametrize("spelling", ["function", "SubFunction.apply"])
@pytest.mark.parametrize("surrogate_type", sorted(TETHER_IDS))
@pytest.mark.parametrize("model", ["tether.LIF", "tether.PLIF"])
def test_lif_and_plif_equal_the_spec(model, surrogate_type, spelling):
    surrogate = TETHER_IDS[surrogate_type]
    case = checks.random_case(model, np.random.default_rng(surrogate_type), batch=3, neurons=4, surrogate=surrogate)
    x, v_init = tensor(flat(case.x)), tensor(flat(case.state["v"]))
    p = {name: tensor(value) for name, value in case.params.items()}
    # tether's own spelling: LIFSubFunction.apply(x_seq, v_init, decay, threshold, alpha, surrogate_type).
    functions = {"function": (compat_tether.lif, compat_tether.plif),
                 "SubFunction.apply": (compat_tether.LIFSubFunction.apply, compat_tether.PLIFSubFunction.apply)}
    function = functions[spelling][model == "tether.PLIF"]
    spikes, v_final, v_seq = function(x, v_init, p["decay"], p["threshold"], p["alpha"], surrogate_type)

    trace = spec.simulate(model, case.x, case.params, case.state, surrogate=surrogate)
    assert_close(spikes, flat(trace.outputs["out"]), "spikes")
    assert_close(v_seq, flat(trace.outputs["v"]), "v_seq")
    assert_close(v_final, flat(trace.final_state["v"]), "v_final")

    cot = case.cotangents
    backprop([(spikes, flat(cot["out"])), (v_seq, flat(cot["v"])), (v_final, flat(cot["final.v"]))])
    grads = spec.vjp(model, case.x, case.params, case.state, cot, surrogate=surrogate)
    assert_close(x.grad, flat(grads["x"]), "x")
    assert_close(v_init.grad, flat(grads["state.v"]), "v_init")
    for name in ("decay", "threshold", "alpha"):
        assert_close(p[name].grad, grads[name], name)


def test_plif_uses_parameter_j_for_column_j_of_every_batch_row():
    # Bug B4 indexes the parameters by the flat batch x neuron index, so the
    # batch rows of an identical input would behave differently.
    steps, batch, n = 12, 3, 4
    row_input = torch.linspace(0.2, 0.8, n, dtype=torch.float64).expand(steps, n)
    decay = torch.tensor([0.5, 0.7, 0.9, 0.99], dtype=torch.float64)
    threshold = torch.tensor([0.4, 0.8, 1.5, 3.0], dtype=torch.float64)
    zeros = torch.zeros(batch * n, dtype=torch.float64)
    spikes, v_final, v_seq = F.plif(row_input.repeat(1, batch), zeros, decay, threshold, 2.0, 0)
    single = F.plif(row_input, zeros[:n], decay, threshold, 2.0, 0)
    for batched, alone in zip((spikes, v_seq), (single[0], single[2])):
        assert torch.equal(batched.reshape(steps, batch, n), alone[:, None, :].expand(steps, batch, n))
    assert torch.equal(v_final.reshape(batch, n), single[1].expand(batch, n))
    assert 0 < spikes.sum() < spikes.numel()


def test_alif_equals_the_spec():
    case = checks.random_case("tether.ALIF", np.random.default_rng(7), batch=2, neurons=3)
    x = tensor(flat(case.x))
    v_init, a_init = tensor(flat(case.state["v"])), tensor(flat(case.state["a"]))
    names = ("decay_v", "decay_a", "threshold", "beta", "alpha")
    p = {name: tensor(case.params[name]) for name in names}
    spikes, v_final, a_final, v_seq, a_seq = F.alif(x, v_init, a_init, *(p[name] for name in names))

    trace = spec.simulate("tether.ALIF", case.x, case.params, case.state)
    expected = (trace.outputs["out"], trace.final_state["v"], trace.final_state["a"],
                trace.outputs["v"], trace.outputs["a"])
    for label, actual, value in zip(("spikes", "v_final", "a_final", "v_seq", "a_seq"),
                                    (spikes, v_final, a_final, v_seq, a_seq), expected):
        assert_close(actual, flat(value), label)

    cot = case.cotangents
    backprop([(spikes, flat(cot["out"])), (v_final, flat(cot["final.v"])), (a_final, flat(cot["final.a"])),
              (v_seq, flat(cot["v"])), (a_seq, flat(cot["a"]))])
    grads = spec.vjp("tether.ALIF", case.x, case.params, case.state, cot)
    assert_close(x.grad, flat(grads["x"]), "x")
    assert_close(v_init.grad, flat(grads["state.v"]), "v_init")
    assert_close(a_init.grad, flat(grads["state.a"]), "a_init")
    for name in names:
        assert_close(p[name].grad, grads[name], name)


# ----------------------------------------------------------------------------- hxtorch

INTEGRATIONS = {
    "hxtorch.cuba_lif": F.cuba_lif_integration,
    "hxtorch.cuba_refractory_lif": F.cuba_refractory_lif_integration,
    "hxtorch.cuba_iaf": F.cuba_iaf_integration,
    "hxtorch.cuba_refractory_iaf": F.cuba_refractory_iaf_integration,
    "hxtorch.cuba_li": F.cuba_li_integration,
}
SPIKING = [key for key in INTEGRATIONS if registry.model(key).surrogates]


def keywords(row, params):
    """hxtorch keywords: trainable parameters as tensors that require grad, the rest as floats."""
    kw = {p.name: tensor(params[p.name]) if p.trainable else float(params[p.name]) for p in row.params}
    if row.surrogates:
        kw["method"] = "superspike"
    return kw


def integrate(key, x, kw, hw_data=None):
    """(spikes or None, membrane, current, madc) from the functional integration of ``key``."""
    if key == "hxtorch.cuba_li":
        return (None,) + INTEGRATIONS[key](x, hw_data=hw_data, **kw)
    return INTEGRATIONS[key](x, hw_data=hw_data, **kw)


def hw_tuple(key, observed, madc):
    if key == "hxtorch.cuba_li":
        return observed.get("v"), madc
    return observed.get("spikes"), observed.get("v"), madc


@pytest.mark.parametrize("inject", [False, True], ids=["free", "hw_data"])
@pytest.mark.parametrize("key", list(INTEGRATIONS))
def test_integrations_equal_the_spec(key, inject):
    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(len(key) + inject), steps=10, random_state=False,
                              inject=inject)
    x, kw = tensor(case.x), keywords(row, case.params)
    hw_data = None
    if inject:
        madc = torch.randn(case.x.shape, dtype=torch.float64)
        hw_data = hw_tuple(key, {k: torch.tensor(v) for k, v in case.inject.items()}, madc)
    spikes, membrane, current, madc_out = integrate(key, x, kw, hw_data)
    assert madc_out is (hw_data[-1] if inject else None)

    trace = spec.simulate(key, case.x, case.params, inject=case.inject)
    if spikes is not None:
        assert_close(spikes, trace.outputs["out"], "spikes")
    assert_close(membrane, trace.outputs["v"], "membrane")
    assert_close(current, trace.outputs["i"], "current")

    cot = {name: case.cotangents[name] for name in ("out", "v", "i") if spikes is not None or name != "out"}
    backprop([(out, cot[name]) for out, name in ((spikes, "out"), (membrane, "v"), (current, "i")) if name in cot])
    grads = spec.vjp(key, case.x, case.params, None, cot, inject=case.inject)
    assert_close(x.grad, grads["x"], "x")
    # v starts at a parameter (leak, or reset for IAF): autograd sums both paths.
    start = row.state[0].initial
    for name in row.trainable:
        expected = grads[name] + (grads["state.v"].sum() if name == start else 0)
        assert_close(kw[name].grad, expected, name)


def test_li_sums_a_tuple_input():
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    kw = {"leak": 0.1, "tau_syn": 1e-5, "tau_mem": 2e-5}
    summed = F.cuba_li_integration(x + 0.5 * x, **kw)
    parts = F.cuba_li_integration((x, 0.5 * x), **kw)
    for a, b in zip(summed[:2], parts[:2]):
        assert_close(a, b.detach().numpy(), "tuple input")


@pytest.mark.parametrize("key", SPIKING)
def test_hw_data_is_returned_and_truncates_time(key):
    x = tensor(np.random.default_rng(1).normal(1.0, 0.6, (8, 2, 3)))
    spikes_hw = (torch.rand(6, 2, 3, dtype=torch.float64) < 0.3).double()
    cadc = torch.randn(5, 2, 3, dtype=torch.float64)
    madc = torch.randn(9, 2, 3, dtype=torch.float64)
    kw = keywords(registry.model(key), {p.name: p.default for p in registry.model(key).params})

    spikes, membrane, _, madc_out = integrate(key, x, kw, (spikes_hw, cadc, madc))
    assert madc_out is madc
    assert torch.equal(spikes, spikes_hw[:5]) and torch.equal(membrane, cadc)
    spikes.sum().backward()
    assert torch.equal(x.grad[5:], torch.zeros(3, 2, 3, dtype=torch.float64))

    spikes, _, _, madc_out = integrate(key, x, kw, (spikes_hw, None, None))
    assert madc_out is None and torch.equal(spikes, spikes_hw)


def test_hardware_defaults_equal_the_spec():
    # The values hxtorch's hardware modules use, given as plain floats.
    kw = {"leak": 80.0, "reset": 80.0, "threshold": 125.0, "tau_syn": 10e-6, "tau_mem": 10e-6, "alpha": 50.0}
    x = np.random.default_rng(3).normal(8.0, 4.0, (30, 2, 3))
    spikes, membrane, current, _ = F.cuba_lif_integration(tensor(x, grad=False), method="superspike", **kw)
    trace = spec.simulate("hxtorch.cuba_lif", x, kw)
    assert_close(spikes, trace.outputs["out"], "spikes")
    assert_close(membrane, trace.outputs["v"], "membrane")
    assert_close(current, trace.outputs["i"], "current")
    assert 0 < spikes.sum() < spikes.numel()


@pytest.mark.parametrize("refractory", [False, True], ids=["lif", "refractory_lif"])
@pytest.mark.parametrize("inject", [False, True], ids=["free", "hw_data"])
def test_steps_iterated_equal_the_integration(refractory, inject):
    key = "hxtorch.cuba_refractory_lif" if refractory else "hxtorch.cuba_lif"
    row = registry.model(key)
    case = checks.random_case(key, np.random.default_rng(11), steps=12, random_state=False, inject=inject)
    observed = {k: torch.tensor(v) for k, v in (case.inject or {}).items()}
    spikes_hw, membrane_hw = observed.get("spikes"), observed.get("v")
    cot = [torch.as_tensor(case.cotangents[name]) for name in ("out", "v", "i")]

    def gradients(outputs, x, kw):
        backprop(zip(outputs, cot))
        # With an observed membrane the step never uses reset: no gradient at all.
        return [x.grad] + [torch.zeros(()) if kw[name].grad is None else kw[name].grad for name in row.trainable]

    x, kw = tensor(case.x), keywords(row, case.params)
    integrated = integrate(key, x, kw, (spikes_hw, membrane_hw, None) if inject else None)[:3]
    expected = gradients(integrated, x, kw)

    x, kw = tensor(case.x), keywords(row, case.params)
    step_kw = {k: v for k, v in kw.items() if k != "refractory_time"}
    zeros = torch.zeros(case.x.shape[1:], dtype=torch.float64)
    z, v, i, r = zeros, kw["leak"], zeros, zeros
    stepped = []
    for t in range(case.x.shape[0]):
        s_hw = None if spikes_hw is None else spikes_hw[t]
        v_hw = None if membrane_hw is None else membrane_hw[t]
        z, v, i = F.cuba_lif_step(z, v, i, x[t], s_hw, v_hw, **step_kw)
        if refractory:
            z, v, r = F.refractory_update(z, v, r, s_hw, v_hw, reset=kw["reset"],
                                          refractory_time=kw["refractory_time"], dt=kw["dt"])
        stepped.append((z, v, i))
    stepped = [torch.stack(seq) for seq in zip(*stepped)]
    for label, a, b in zip(("spikes", "membrane", "current"), stepped, integrated):
        assert_close(a, b.detach().numpy(), label)
    for label, a, b in zip(("x",) + row.trainable, gradients(stepped, x, kw), expected):
        assert_close(a, b.numpy(), label)


def test_unterjubel_gives_the_observation_forward_and_the_model_s_gradient_backward():
    model_value = torch.tensor([0.25, float("inf"), -3.0], dtype=torch.float64, requires_grad=True)
    observed = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = F.Unterjubel.apply(model_value, observed)
    # Exactly the observation, an infinite model value included (an arithmetic w - w would give nan there).
    assert out.tolist() == [1.0, 2.0, 0.5]
    (out * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    assert model_value.grad.tolist() == [1.0, 2.0, 3.0] and observed.grad is None
    # torch.func too: dL/dw of sum(3 w'), w' = Unterjubel(w, o), is 3 whatever o.
    grad = torch.func.grad(lambda w: (3 * F.Unterjubel.apply(w, observed.detach())).sum())(model_value.detach())
    assert grad.tolist() == [3.0, 3.0, 3.0]
    assert F.Unterjubel is compat_hxtorch.Unterjubel


def test_an_observation_that_broadcasts_is_injected_in_the_input_s_shape():
    # Broke with Unterjubel first: v came back in the observation's shape (3,) and the backward raised.
    kw = dict(leak=0.0, reset=0.0, threshold=1.0, tau_syn=5e-6, tau_mem=1e-5, method="superspike", alpha=50.0)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    v = torch.full((2, 3), 0.5, dtype=torch.float64, requires_grad=True)
    z1, v1, _ = F.cuba_lif_step(zeros, v, zeros, zeros, torch.tensor(0.0, dtype=torch.float64),
                                torch.full((3,), 0.7, dtype=torch.float64), **kw)
    assert v1.tolist() == [[0.7] * 3] * 2 and z1.tolist() == [[0.0] * 3] * 2
    v1.sum().backward()
    # dv1/dv = 1 - dt / tau_mem = 0.9 (the observation passes the model value's gradient on).
    assert torch.allclose(v.grad, torch.full((2, 3), 0.9, dtype=torch.float64), rtol=1e-15, atol=0)


def test_spiking_threshold_is_strict_with_the_superspike_gradient():
    u = torch.tensor([-2.0, -0.1, 0.0, 0.1, 3.0], dtype=torch.float64, requires_grad=True)
    z = F.spiking_threshold(u, "superspike", 5.0)
    assert torch.equal(z, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    z.sum().backward()
    assert_close(u.grad, 1 / (5.0 * np.abs(u.detach().numpy()) + 1) ** 2, "superspike")


# Found by mutation testing: every other case passes the hxtorch parameters as scalars, so a
# per-neuron shape read from input's first (time) axis instead of its last (neuron) axis passed.
def test_hxtorch_parameters_may_be_one_value_per_neuron():
    x = np.random.default_rng(4).normal(0.5, 0.6, (5, 2, 3)) * 40  # T = 5, N = 3
    per_neuron = {"threshold": np.array([0.5, 1.0, 1.5]), "tau_mem": np.array([1e-5, 2e-5, 4e-5])}
    kw = {**LIF_KW, **{name: torch.tensor(value) for name, value in per_neuron.items()}}
    spikes, membrane, _, _ = F.cuba_lif_integration(tensor(x, grad=False), method="superspike", **kw)
    trace = spec.simulate("hxtorch.cuba_lif", x, {**LIF_KW, **per_neuron})
    assert_close(spikes, trace.outputs["out"], "spikes")
    assert_close(membrane, trace.outputs["v"], "membrane")
    assert 0 < spikes.sum() < spikes.numel()
    # The step functions take the same shapes: one step from the initial state is the integration's first.
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    z, v, _ = F.cuba_lif_step(zeros, torch.tensor(0.0, dtype=torch.float64), zeros, torch.tensor(x[0]), None, None,
                              method="superspike", **kw)
    assert_close(z, trace.outputs["out"][0], "step spikes")
    assert_close(v, trace.outputs["v"][0], "step membrane")
    _, v, _ = F.refractory_update(z, v, zeros, None, None, reset=torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64),
                                  refractory_time=1e-6, dt=1e-6)
    assert_close(F.spiking_threshold(torch.tensor(x[0]), "superspike", torch.full((3,), 50.0, dtype=torch.float64)),
                 (x[0] > 0).astype(np.float64), "spiking_threshold")


def test_compat_hxtorch_reexports_the_functional_api():
    for name in compat_hxtorch.__all__:
        assert getattr(compat_hxtorch, name) is getattr(F, name)


# ----------------------------------------------------------------------------- bad input

X64 = torch.zeros(4, 2, 3, dtype=torch.float64)
LIF_KW = {"leak": 0.0, "reset": 0.0, "threshold": 1.0, "tau_syn": 1e-5, "tau_mem": 1e-5, "alpha": 50.0}
STEP_ZEROS = (X64[0], X64[0], X64[0], X64[0], None, None)


@pytest.mark.parametrize("call", [
    lambda m: F.spiking_threshold(X64, m, 50.0),
    lambda m: F.cuba_lif_step(*STEP_ZEROS, method=m, **LIF_KW),
    lambda m: F.cuba_lif_integration(X64, method=m, **LIF_KW),
    lambda m: F.cuba_refractory_lif_integration(X64, method=m, refractory_time=1e-6, **LIF_KW),
    lambda m: F.cuba_iaf_integration(X64, method=m, **{k: v for k, v in LIF_KW.items() if k != "leak"}),
    lambda m: F.cuba_refractory_iaf_integration(X64, method=m, refractory_time=1e-6,
                                                **{k: v for k, v in LIF_KW.items() if k != "leak"}),
])
@pytest.mark.parametrize("method", ["super_spike", "SuperSpike", None])
def test_method_other_than_superspike_is_refused(call, method):
    with pytest.raises(ValueError, match=r"method.*'superspike'"):
        call(method)


# Found by mutation testing: the message said "expected one of 'superspike'" with the one-choice wording
# removed; the test above matches either.
def test_the_one_valid_method_is_named_as_the_only_one():
    with pytest.raises(ValueError,
                       match=r"^method: unknown value 'super_spike'; the only valid value is 'superspike'$"):
        F.spiking_threshold(X64, "super_spike", 50.0)


def refuse_to_compute(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("simulate ran on bad input")

    monkeypatch.setattr(compat_hxtorch, "simulate", fail)
    monkeypatch.setattr(compat_tether, "simulate", fail)


X_FLAT = torch.zeros(4, 6, dtype=torch.float64)
V_FLAT = torch.zeros(6, dtype=torch.float64)
VEC3 = torch.ones(3, dtype=torch.float64)


@pytest.mark.parametrize("call,error,name", [
    (lambda: F.lif(X_FLAT, V_FLAT, 0.9, 1.0, 2.0, 3), ValueError, "surrogate_type"),
    (lambda: F.lif(X_FLAT, V_FLAT, 0.9, 1.0, 2.0, True), TypeError, "surrogate_type"),
    (lambda: F.lif(X_FLAT, V_FLAT, 0.9, 1.0, 2.0, "arctan"), TypeError, "surrogate_type"),
    (lambda: F.lif(X_FLAT, V_FLAT[:5], 0.9, 1.0, 2.0, 0), ValueError, "v_init"),
    (lambda: F.lif(X_FLAT[0], V_FLAT, 0.9, 1.0, 2.0, 0), ValueError, "x_seq"),
    (lambda: F.lif(X_FLAT, V_FLAT, VEC3, 1.0, 2.0, 0), ValueError, "decay"),
    (lambda: F.lif(X_FLAT, V_FLAT, 0.9, 1.0, -2.0, 0), ValueError, "alpha"),
    (lambda: F.lif(X_FLAT, V_FLAT, torch.tensor(0.9), 1.0, 2.0, 0), TypeError, "decay"),
    (lambda: F.plif(X_FLAT, V_FLAT, torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
                    2.0, 0), ValueError, "decay"),
    (lambda: F.plif(X_FLAT, V_FLAT, VEC3, torch.ones(2, dtype=torch.float64), 2.0, 0), ValueError, "threshold"),
    (lambda: F.alif(X_FLAT, V_FLAT, V_FLAT[:2], 0.9, 0.9, 1.0, 0.5, 2.0), ValueError, "a_init"),
    # Found by mutation testing: plif's alpha is a scalar; one value per neuron was taken with its shape check widened.
    (lambda: F.plif(X_FLAT, V_FLAT, VEC3, VEC3, 2.0 * VEC3, 0), ValueError, r"alpha: expected shape \(\) or \(1,\)"),
    (lambda: F.cuba_lif_integration(X64[:, 0, 0], method="superspike", **LIF_KW), ValueError, "input"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", **{**LIF_KW, "tau_mem": -1e-5}),
     ValueError, "tau_mem"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", **{**LIF_KW, "tau_syn": float("nan")}),
     ValueError, "tau_syn"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", **{**LIF_KW, "leak": torch.tensor(0.0)}),
     TypeError, "leak"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", **{**LIF_KW, "threshold": torch.ones(2).double()}),
     ValueError, "threshold"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", hw_data=(None, None), **LIF_KW),
     ValueError, "hw_data"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", hw_data=(X64[:, :1], None, None), **LIF_KW),
     ValueError, r"hw_data\[0\]"),
    (lambda: F.cuba_refractory_lif_integration(X64, method="superspike", refractory_time=-1e-6, **LIF_KW),
     ValueError, "refractory_time"),
    (lambda: F.cuba_li_integration((X64, X64[:2]), leak=0.0, tau_syn=1e-5, tau_mem=1e-5),
     ValueError, r"input\[1\]"),
    (lambda: F.cuba_li_integration(X64, leak=0.0, tau_syn=1e-5, tau_mem=0.0), ValueError, "tau_mem"),
    (lambda: F.cuba_lif_step(*STEP_ZEROS, method="superspike", **{**LIF_KW, "tau_mem": 0.0}), ValueError, "tau_mem"),
    (lambda: F.cuba_lif_step(X64[0], X64[0, :1, :2], X64[0], X64[0], None, None, method="superspike", **LIF_KW),
     ValueError, r"v: expected a shape that broadcasts to input's shape \(\d+, \d+\), got \(1, 2\)"),
    # The state is measured against input (as hxtorch broadcasts v + dv against it): said so by name.
    (lambda: F.cuba_lif_step(X64[0], X64[0], X64[0], X64[0, 0], None, None, method="superspike", **LIF_KW),
     ValueError, r"z: expected a shape that broadcasts to input's shape \(\d+,\), got"),
    (lambda: F.refractory_update(X64[0], X64[0], X64[0], None, None, reset=0.0, refractory_time=1e-6, dt=0.0),
     ValueError, "dt"),
    (lambda: F.spiking_threshold(X64, "superspike", -1.0), ValueError, "alpha"),
    (lambda: F.lif(X_FLAT.to_sparse(), V_FLAT, 0.9, 1.0, 2.0, 0), ValueError,
     r"x_seq: expected a dense \(strided\) tensor, got layout torch.sparse_coo"),
    (lambda: F.lif(X_FLAT, V_FLAT.to_sparse(), 0.9, 1.0, 2.0, 0), ValueError, "v_init: expected a dense"),
    (lambda: F.cuba_lif_integration(X64.to_sparse(), method="superspike", **LIF_KW), ValueError,
     "input: expected a dense"),
])
def test_bad_input_is_refused_by_name_before_computing(monkeypatch, call, error, name):
    refuse_to_compute(monkeypatch)
    with pytest.raises(error, match=name):
        call()


NAN_FLAT = torch.full((4, 6), float("nan"), dtype=torch.float64)
NAN64 = torch.full((4, 2, 3), float("nan"), dtype=torch.float64)
WRONG_SPIKES = torch.full((4, 2, 3), 2.0, dtype=torch.float64)


@pytest.mark.parametrize("call,error,message", [
    (lambda: F.lif(NAN_FLAT, V_FLAT, 0.9, 1.0, 2.0, 0), ValueError, "x_seq: expected finite values, found NaN or inf"),
    (lambda: F.lif(X_FLAT, NAN_FLAT[0], 0.9, 1.0, 2.0, 0), ValueError, "v_init: expected finite values"),
    (lambda: F.plif(X_FLAT, NAN_FLAT[0], VEC3, VEC3, 2.0, 0), ValueError, "v_init: expected finite values"),
    (lambda: F.alif(X_FLAT, V_FLAT, NAN_FLAT[0], 0.9, 0.9, 1.0, 0.5, 2.0), ValueError,
     "a_init: expected finite values"),
    (lambda: F.cuba_lif_integration(NAN64, method="superspike", **LIF_KW), ValueError,
     "input: expected finite values"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", hw_data=(WRONG_SPIKES, None, None), **LIF_KW),
     ValueError, r"hw_data\[0\] \(spikes\): expected observed spikes of exactly 0 or 1"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", hw_data=(None, NAN64, None), **LIF_KW),
     ValueError, r"hw_data\[1\] \(membrane_cadc\): expected finite values"),
    (lambda: F.cuba_li_integration(X64, leak=0.0, tau_syn=1e-5, tau_mem=1e-5, hw_data=(NAN64, None)),
     ValueError, r"hw_data\[0\] \(membrane_cadc\): expected finite values"),
    (lambda: F.cuba_lif_integration(X64.half(), method="superspike", **LIF_KW), TypeError,
     r"input: backend 'auto' on cpu \(half precision on CUDA only\) expects"),
    (lambda: F.cuba_lif_step(*STEP_ZEROS, method="superspike", **{**LIF_KW, "alpha": tensor(50.0)}), ValueError,
     "alpha: requires_grad=True, but hxtorch.cuba_lif has no gradient with respect to alpha"),
    (lambda: F.spiking_threshold(X64, "superspike", tensor(50.0)), ValueError,
     "alpha: requires_grad=True, but hxtorch.cuba_lif has no gradient"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", backend="fused", **LIF_KW), ValueError,
     "backend: unknown name 'fused'"),
    # Found by an outside user: the refractory clamp let NaN observations through (cuba_lif_step refused them).
    (lambda: F.refractory_update(X64[0], X64[0], X64[0], NAN64[0], None, reset=0.0, refractory_time=1e-6, dt=1e-6),
     ValueError, "spikes_hw: expected finite values"),
    (lambda: F.refractory_update(X64[0], X64[0], X64[0], None, NAN64[0], reset=0.0, refractory_time=1e-6, dt=1e-6),
     ValueError, "membrane_hw: expected finite values"),
    # Found by mutation testing: the step functions are torch operations, so a NaN parameter of a real
    # domain (no > 0 check to fail) passed through silently with the finiteness check removed.
    (lambda: F.cuba_lif_step(*STEP_ZEROS, method="superspike", **{**LIF_KW, "threshold": float("nan")}), ValueError,
     "threshold: expected finite values, got nan$"),
    (lambda: F.refractory_update(X64[0], X64[0], X64[0], None, None, reset=float("inf"), refractory_time=1e-6,
                                 dt=1e-6), ValueError, "reset: expected finite values, got inf$"),
    # Found by an outside user: the step functions passed an observed 0.5 on as a spike, which the
    # integrations refuse, and the clamp blended a z of 0.5 and counted down a negative hold.
    (lambda: F.cuba_lif_step(*STEP_ZEROS[:4], WRONG_SPIKES[0] / 4, None, method="superspike", **LIF_KW), ValueError,
     r"spikes_hw: expected observed spikes of exactly 0 or 1, got 0.5$"),
    (lambda: F.refractory_update(X64[0], X64[0], X64[0], WRONG_SPIKES[0], None, reset=0.0, refractory_time=1e-6,
                                 dt=1e-6), ValueError,
     r"spikes_hw: expected observed spikes of exactly 0 or 1, got 2.0$"),
    (lambda: F.refractory_update(WRONG_SPIKES[0] / 4, X64[0], X64[0], None, None, reset=0.0, refractory_time=1e-6,
                                 dt=1e-6), ValueError, r"z: expected spikes of exactly 0 or 1, got 0.5$"),
    (lambda: F.refractory_update(X64[0], X64[0], -WRONG_SPIKES[0], None, None, reset=0.0, refractory_time=1e-6,
                                 dt=1e-6), ValueError, r"ref_state: expected the steps of refractoriness left, >= 0, "
                                                       r"got -2.0$"),
    (lambda: F.cuba_lif_step(*(t.to("meta") for t in STEP_ZEROS[:4]), None, None, method="superspike", **LIF_KW),
     ValueError, "input: a tensor on the 'meta' device holds no values"),
    (lambda: compat_hxtorch.Unterjubel.apply(VEC3, None), TypeError, "input_prime: expected a torch.Tensor"),
    (lambda: compat_hxtorch.Unterjubel.apply(VEC3, X64[0, 0, :2]), ValueError,
     r"input_prime: expected input's shape \(3,\), got \(2,\)$"),
    # Found by an outside user: a flag in a number's place ran as 1.
    (lambda: F.lif(X_FLAT, V_FLAT, True, 1.0, 2.0, 0), TypeError, r"decay: expected a number, got a boolean \(True\)$"),
    (lambda: F.cuba_lif_integration(X64, method="superspike", **{**LIF_KW, "threshold": True}), TypeError,
     r"threshold: expected a number, got a boolean \(True\)$"),
    # A number the run's dtype cannot hold is named as such, not as a 0 or an inf the caller never wrote.
    (lambda: F.spiking_threshold(X64.float(), "superspike", 1e-300), ValueError,
     "alpha: 1e-300 underflows to 0 in float32, the dtype this run computes in"),
    (lambda: F.spiking_threshold(X64.float(), "superspike", 1e300), ValueError, "alpha: 1e[+]300 overflows float32"),
])
def test_errors_name_the_arguments_the_caller_passed(call, error, message):
    # Raised inside snnref.simulate, but in the seed function's names, without
    # suggesting allow_nonfinite, which these functions do not take.
    with pytest.raises(error, match="^" + message) as raised:
        call()
    assert "allow_nonfinite" not in str(raised.value)


@pytest.mark.parametrize("integrate,kwargs", [
    (F.cuba_lif_integration, dict(LIF_KW, method="superspike")),
    (F.cuba_li_integration, {"leak": 0.0, "tau_syn": 1e-5, "tau_mem": 1e-5}),
])
def test_integrations_take_a_backend(integrate, kwargs):
    """backend="torch" reaches the torch path, which differentiates the CUBA
    family twice; the default on CPU tensors is the first-order cpu backend."""
    x = tensor(np.random.default_rng(3).normal(0.4, 0.6, (6, 2, 3)) * 50)
    for backend, second_order in (("torch", True), ("auto", False)):
        first = integrate(x, **kwargs, backend=backend)[0]
        (g,) = torch.autograd.grad((first * first).sum(), x, create_graph=True)
        if second_order:
            torch.autograd.grad(g.pow(2).sum(), x)
        else:
            with pytest.raises(RuntimeError, match="module classes"):
                torch.autograd.grad(g.pow(2).sum(), x)


def test_the_step_functions_take_torch_func_s_gradients():
    # The step functions are torch operations and the surrogate Functions are written with
    # setup_context: torch.func.grad takes them, with autograd's gradient.  Before, torch refused the
    # surrogate Functions deep inside (the integrations still refuse by name: test_backend_bad_input).
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(0.5, 1.0, (2, 3)))
    state = [torch.tensor(rng.normal(0.5, 0.5, (2, 3))) for _ in range(3)]
    steps = {
        # Of the membrane (the input enters the current only): the spikes' surrogate, the reset, the leak.
        "cuba_lif_step": lambda u: sum(out.pow(2).sum() for out in F.cuba_lif_step(
            state[0], u, state[1], state[2], None, None, method="superspike", **LIF_KW)),
        "spiking_threshold": lambda u: (F.spiking_threshold(u, "superspike", 50.0) * u).sum(),
        "SpikeFunctionSigmoid": lambda u: (compat_qualia.SpikeFunctionSigmoid.apply(u - 0.5, 3.0) * u).sum(),
    }
    for name, loss in steps.items():
        leaf = x.clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(leaf), leaf)
        assert torch.equal(torch.func.grad(loss)(x), expected), name
