"""snnref.compat.qualia: heaviside and SpikeFunctionSigmoid are the spec's step and
sigmoid surrogate; IFSRL and ATIF stepped over time equal snnref.spec (outputs,
membrane and BPTT gradients); reset() rebinds v so no old graph stays alive (a
second forward + backward works; the in-place reset of bug B7 fails this test);
the threshold parameter initialises in range and round-trips through state_dict."""

import copy
import gc
import weakref

import numpy as np
import pytest
import torch

from snnref import checks, spec
from snnref.compat import qualia
from snnref.compat.qualia import ATIF, IFSRL, SpikeFunctionSigmoid, heaviside
from snnref.spec import surrogates

TOL = 1e-12
NODES = {"qualia.IFSRL": (IFSRL, "vp_th"), "qualia.ATIF": (ATIF, "v_threshold")}


def assert_close(actual, expected, label):
    actual, expected = actual.detach().numpy(), np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    error = np.max(np.abs(actual - expected))
    assert error <= TOL * max(1.0, np.max(np.abs(expected))), f"{label}: max error {error}"


def run(node, x):
    """Step ``node`` over the time axis of ``x``: the outputs and the membrane after each step."""
    outs, vs = [], []
    for t in range(x.shape[0]):
        outs.append(node(x[t]))
        vs.append(node.v)
    return torch.stack(outs), torch.stack(vs)


def test_heaviside_is_x_at_least_zero_in_x_dtype():
    x = torch.tensor([-1.0, -1e-300, 0.0, 1e-300, 2.0], dtype=torch.float64)
    assert torch.equal(heaviside(x), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    assert heaviside(x.float()).dtype == torch.float32


def test_spike_function_sigmoid_backward_is_the_sigmoid_surrogate():
    u = torch.linspace(-800.0, 800.0, 41, dtype=torch.float64)
    u = torch.cat([u, torch.linspace(-3.0, 3.0, 61, dtype=torch.float64)]).requires_grad_()
    z = SpikeFunctionSigmoid.apply(u, 2.5)
    assert torch.equal(z, heaviside(u.detach()))
    z.backward(torch.full_like(u, 0.5))
    assert_close(u.grad, 0.5 * surrogates.get("sigmoid").f(u.detach().numpy(), 2.5), "surrogate")


@pytest.mark.parametrize("key", sorted(NODES))
def test_stepping_equals_the_spec(key):
    cls, _ = NODES[key]
    case = checks.random_case(key, np.random.default_rng(5), steps=10, random_state=False)
    node = cls(alpha=float(case.params["alpha"])).double()
    node.set_coeffs(torch.tensor(case.params["threshold"]))
    x = torch.tensor(case.x, requires_grad=True)
    out, v = run(node, x)

    trace = spec.simulate(key, case.x, case.params)
    assert_close(out, trace.outputs["out"], "out")
    assert_close(v, trace.outputs["v"], "v")
    assert 0 < trace.outputs["out"].astype(bool).sum() < out.numel()

    cot = {name: torch.tensor(case.cotangents[name]) for name in ("out", "v", "final.v")}
    ((out * cot["out"]).sum() + (v * cot["v"]).sum() + (node.v * cot["final.v"]).sum()).backward()
    grads = spec.vjp(key, case.x, case.params, None, case.cotangents)
    assert_close(x.grad, grads["x"], "x")
    assert_close(node.get_coeffs().grad, grads["threshold"], "threshold")


class InPlaceReset(IFSRL):
    """Bug B7: reset() zeroes v in place, keeping its old graph."""

    def reset(self):
        self.v.mul_(0)


@pytest.mark.parametrize("cls", [IFSRL, ATIF])
def test_reset_drops_the_old_graph_and_a_second_backward_works(cls):
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    node = cls().double()
    run(node, x)[0].sum().backward()
    old = weakref.ref(node.v)
    node.reset()
    gc.collect()
    assert old() is None

    out, _ = run(node, x)
    out.sum().backward()  # no retain_graph: nothing of the first run is reached
    fresh = cls().double()
    fresh.load_state_dict(node.state_dict())
    assert torch.equal(out, run(fresh, x)[0])


def test_the_reset_test_catches_an_in_place_reset():
    with pytest.raises((AssertionError, RuntimeError)):
        test_reset_drops_the_old_graph_and_a_second_backward_works(InPlaceReset)


@pytest.mark.parametrize("key", sorted(NODES))
def test_threshold_initialisation_coefficients_and_state_dict(key):
    cls, name = NODES[key]
    node = cls(v_threshold=2.0, vth_init_l=0.5, vth_init_h=0.6)
    theta = node.get_coeffs()
    assert [n for n, _ in node.named_parameters()] == [name] and theta is getattr(node, name)
    assert theta.shape == (1,) and 1.0 <= theta.item() <= 1.2

    node.set_coeffs(torch.tensor([1.3]))
    assert node.get_coeffs() is theta and theta.item() == pytest.approx(1.3)
    fresh = cls()
    fresh.load_state_dict(node.state_dict())
    assert torch.equal(fresh.get_coeffs(), theta)
    x = torch.randn(4, 5)
    assert torch.equal(run(fresh, x)[0], run(node, x)[0])


def test_bad_arguments_are_refused_by_name():
    # Found by an outside user: torch's own "Invalid device string: 'gpu0'" named no argument.
    with pytest.raises(ValueError, match=r"^device: expected a torch device or its name \('cpu', 'cuda', 'cuda:0'\), "
                                         r"got 'gpu0'"):
        IFSRL(device="gpu0")
    with pytest.raises(ValueError, match=r"^device: expected a torch device or its name .*, got 3.5"):
        ATIF(device=3.5)
    with pytest.raises(ValueError, match="alpha"):
        IFSRL(alpha=0.0)
    with pytest.raises(ValueError, match="vth_init_l"):
        ATIF(vth_init_l=1.2, vth_init_h=1.0)
    with pytest.raises(TypeError, match="input"):
        IFSRL()(np.zeros(3))
    # Found by mutation testing: each of these was accepted with its check loosened or removed.
    with pytest.raises(ValueError, match=r"^vp_th: expected a tensor with one element, got"):
        IFSRL().set_coeffs(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"^v_threshold: expected a tensor with one element, got"):
        ATIF().set_coeffs(torch.tensor([]))


# Found by mutation testing: a range of one value (a fixed initial threshold) was refused with
# vth_init_l <= vth_init_h tightened to a strict inequality.
@pytest.mark.parametrize("key", sorted(NODES))
def test_an_initial_threshold_range_of_one_value_is_that_value_times_v_threshold(key):
    cls, name = NODES[key]
    node = cls(v_threshold=2.0, vth_init_l=0.75, vth_init_h=0.75)
    assert getattr(node, name).tolist() == [1.5]


def test_atif_reports_its_supported_backends():
    neuron = qualia.ATIF()
    assert neuron.step_mode == "s" and neuron.supported_backends == ("torch",)
    neuron.step_mode = "m"
    with pytest.raises(ValueError, match=r"step_mode: ATIF supports only single-step mode 's', got 'm'"):
        neuron.supported_backends
    # Before, a call in multi-step mode read the sequence (T, B, N) as one step of T B N neurons.
    with pytest.raises(ValueError, match=r"step_mode: ATIF supports only single-step mode 's', got 'm'"):
        neuron(torch.full((4, 1, 1), 0.6))
    assert neuron.v == 0.0


@pytest.mark.parametrize("cls", [qualia.IFSRL, qualia.ATIF])
def test_errors_name_the_input_and_the_carried_membrane(cls):
    neuron = cls()
    with pytest.raises(ValueError, match=r"^input: expected finite values, found NaN or inf$"):
        neuron(torch.full((3,), float("nan")))
    neuron(torch.zeros(3))
    with pytest.raises(ValueError, match=r"^v \(the membrane carried since the last reset\(\)\): expected a shape"):
        neuron(torch.zeros(4))
    with pytest.raises(ValueError, match=r"backend: unknown name 'cuda'"):
        cls(backend="cuda")


def test_set_coeffs_takes_the_seed_s_keyword():
    node = IFSRL()
    node.set_coeffs(vp_th=torch.tensor([1.3]))
    assert node.vp_th.item() == pytest.approx(1.3)
    node = ATIF()
    node.set_coeffs(v_threshold=torch.tensor([0.7]))
    assert node.v_threshold.item() == pytest.approx(0.7)


# Found by an outside user switching from qualia-plugin-snn: v was the float 0.0 until the first
# step and after every reset() (the seed's IFSRL keeps a tensor: `layer.v.detach()` failed), and ATIF
# had no detach(), which SpikingJelly's functional.detach_net calls: a chunked BPTT skipped it and
# failed on its second backward.
@pytest.mark.parametrize("cls", [IFSRL, ATIF])
def test_the_membrane_is_a_tensor_and_detach_cuts_it_between_chunks(cls):
    node = cls().double()
    assert isinstance(node.v, torch.Tensor) and node.v.shape == (1,) and node.v.item() == 0.0
    x = torch.rand(6, 2, 3, dtype=torch.float64) * 2
    outs = []
    for chunk in (x[:3], x[3:]):
        out = run(node, chunk)[0]
        out.sum().backward()  # no retain_graph: the second chunk reaches nothing of the first
        node.detach()
        assert not node.v.requires_grad
        outs.append(out)
    node.reset()
    assert isinstance(node.v, torch.Tensor) and node.v.shape == (1,) and node.v.item() == 0.0
    reference = cls().double()
    reference.load_state_dict(node.state_dict())
    # Detaching changes no value: the chunks equal one run over the whole sequence.
    assert torch.equal(torch.cat(outs), run(reference, x)[0])


@pytest.mark.parametrize("cls", [IFSRL, ATIF])
def test_an_empty_input_is_named_in_the_caller_s_shape(cls):
    # Before: "got shape (1, 0, 3)", the shape with the time axis forward() puts in front.
    with pytest.raises(ValueError, match=r"^input: expected a non-empty tensor, got shape \(0, 3\)$"):
        cls()(torch.rand(0, 3))


def test_the_constructors_take_numpy_and_one_element_torch_numbers():
    # A sweep's values: the seed hands them to torch, which takes them.  Before, each was refused.
    node = IFSRL(v_threshold=np.float32(2.0), vth_init_l=torch.tensor(0.5), vth_init_h=np.int64(1), alpha=np.float64(3))
    assert 1.0 <= node.vp_th.item() <= 2.0 and node.alpha == 3.0 and type(node.alpha) is float
    for value in ("1.0", True, torch.ones(2)):
        with pytest.raises(TypeError, match=r"^alpha: expected a number, got"):
            IFSRL(alpha=value)
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number, got inf$"):
        IFSRL(alpha=float("inf"))
    with pytest.raises(ValueError, match=r"^alpha: expected a number > 0, got 0.0$"):
        IFSRL(alpha=0.0)


@pytest.mark.parametrize("cls", [IFSRL, ATIF])
def test_a_model_mid_sequence_deep_copies_and_both_go_on_alike(cls):
    # Found by an outside user: v carries its graph from step to step, and torch deep-copies
    # graph leaves only, so copy.deepcopy and AveragedModel of a model mid-training raised.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), cls(backend="cpu"))
    steps = torch.randn(3, 2, 4) + 0.5
    model(steps[0])
    copied = copy.deepcopy(model)
    averaged = torch.optim.swa_utils.AveragedModel(model)
    assert copied[1].v.grad_fn is None and torch.equal(copied[1].v, model[1].v.detach())
    assert averaged.module[1].v.grad_fn is None
    for x in steps[1:]:
        assert torch.equal(copied(x), model(x))
    # The original keeps its graph through every step; the copy's starts at the copy.
    model[1].v.sum().backward()
    assert model[0].weight.grad is not None and torch.count_nonzero(model[0].weight.grad) > 0
    copied[1].v.sum().backward()
    assert copied[0].weight.grad is not None


@pytest.mark.parametrize("call,error,message", [
    (lambda: heaviside(None), TypeError, "^x: expected a torch.Tensor, got NoneType$"),
    (lambda: SpikeFunctionSigmoid.apply(torch.zeros(3), "a"), TypeError, "^alpha: expected a number, got 'a'$"),
    (lambda: SpikeFunctionSigmoid.apply(torch.zeros(3), torch.ones(2)), TypeError, "^alpha: expected a number"),
    (lambda: SpikeFunctionSigmoid.apply(torch.zeros(3), -1.0), ValueError,
     r"^alpha: expected a finite number > 0, got -1.0$"),
    (lambda: SpikeFunctionSigmoid.apply(torch.zeros(3), 0), ValueError, r"^alpha: expected a finite number > 0"),
])
def test_the_spike_function_s_arguments_are_refused_by_name(call, error, message):
    """Found by an outside user: a string alpha failed only in the backward, and an alpha
    of 0 or less gave zero or sign-flipped gradients without a word."""
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("build,message", [
    (lambda: ATIF(vth_init_h=1e40), r"^vth_init_h: 1e\+40 overflows float32"),
    (lambda: IFSRL(v_threshold=1e40), r"^v_threshold: 1e\+40 overflows float32"),
])
def test_a_number_the_module_s_dtype_cannot_hold_is_refused_at_construction(build, message):
    # Found by an outside user: ATIF failed inside torch ("to is out of bounds for float"), IFSRL at
    # its first call as "NaN or inf" under another name (vp_th).
    with pytest.raises(ValueError, match=message):
        build()
