"""A gradient differentiated again, or batched, is either right or refused (snnref/second_order.py).

For every model and backend: on the smooth twin, where the backend computes
in float64, ``gradgradcheck`` compares the derivative of the gradient with
finite differences of the gradient, and it must pass exactly where
``TORCH_SECOND_ORDER`` says the torch path differentiates the family's
gradients, and raise ``SecondOrderError`` everywhere else (the cpu backend's
compiled scans always).  On the default step (H, the surrogate's gradient)
and every backend, a second derivative of a gradient whose cotangent is a
constant, the case that once gave a number without the scan's terms, must
be refused likewise where the family is not differentiated twice.
"""

import importlib.util

import numpy as np
import pytest
import torch

import snnref
from snnref import registry
from snnref.second_order import TORCH_SECOND_ORDER, SecondOrderError, first_order
from snnref.testing import _checks as checks, _fd
from snnref.testing._equivalence import _tensor

MODELS = sorted(registry.MODELS)
# (backend, compute dtype of the checks, the package it needs)
BACKENDS = (("torch", torch.float64, None), ("cpu", torch.float64, "numba"), ("triton", torch.float32, "triton"))


def _backends(float64_only=False):
    return [pytest.param(name, dtype, id=name,
                         marks=pytest.mark.skip(f"{package} is not installed")
                         if package and importlib.util.find_spec(package) is None else ())
            for name, dtype, package in BACKENDS if dtype == torch.float64 or not float64_only]


def _differentiated_twice(backend, key):
    return backend == "torch" and registry.MODELS[key].family in TORCH_SECOND_ORDER


def _case(key, surrogate=None):
    row = registry.MODELS[key]
    return checks.random_case(key, np.random.default_rng(5), steps=4, batch=2, neurons=3, surrogate=surrogate,
                              per_neuron=True, inject=bool(row.inject))


@pytest.mark.parametrize("backend, dtype", _backends(float64_only=True))
@pytest.mark.parametrize("key", MODELS)
def test_the_smooth_twins_second_derivative_is_right_or_refused(backend, dtype, key):
    for surrogate in registry.MODELS[key].surrogates or (None,):
        case = _case(key, surrogate)
        if _differentiated_twice(backend, key):
            assert _fd.smooth_twin_gradgradcheck(case, backend), surrogate
        else:
            with pytest.raises(SecondOrderError, match=f"{registry.MODELS[key].family} family's backward on "
                                                       f"backend '{backend}'"):
                _fd.smooth_twin_gradgradcheck(case, backend)


def _second_derivative(key, backend, dtype):
    """The gradient with respect to x of the sum of the gradient of the
    outputs' sum, the first taken with create_graph."""
    case = _case(key)

    def tensors(values):
        return {name: _tensor(value, dtype, "cpu") for name, value in values.items()}

    x = _tensor(case.x, dtype, "cpu", True)
    inject = tensors(case.inject) if case.inject else None
    trace = snnref.simulate(key, x, tensors(case.params), tensors(case.state), backend=backend,
                            surrogate=case.surrogate, inject=inject)
    loss = sum(output.sum() for output in trace.outputs.values() if output.requires_grad)
    # x ** 3 keeps the gradient in the graph whether or not the scan's part is.
    gradient, = torch.autograd.grad(loss + (x ** 3).sum(), x, create_graph=True)
    second, = torch.autograd.grad(gradient.sum(), x)
    return second


@pytest.mark.parametrize("backend, dtype", _backends())
@pytest.mark.parametrize("key", MODELS)
def test_a_gradient_of_a_constant_cotangent_is_not_differentiated_silently(backend, dtype, key):
    _assert_finite_or_refused(_second_derivative, key, backend, dtype)


def _assert_finite_or_refused(second_derivative, key, backend, dtype):
    """Where the backend differentiates the family twice, a finite number; elsewhere SecondOrderError."""
    if _differentiated_twice(backend, key):
        assert torch.isfinite(second_derivative(key, backend, dtype)).all()
        return
    with pytest.raises(SecondOrderError, match="create_graph: "):
        second_derivative(key, backend, dtype)


def _penalized_weight_gradient(key, backend, dtype):
    """A gradient penalty's gradient with respect to the weight W of a layer
    before the neuron, x = inputs @ W (x no leaf), with every differentiable
    parameter and state taking a gradient too: the second derivative reaches
    W only through x, and x is no tensor a scan saves where it records the
    post-reset membrane (rnnbuilder.LIF, qualia.IFSRL)."""
    case = _case(key)
    row = registry.MODELS[key]

    def tensors(values, names):
        return {name: _tensor(value, dtype, "cpu", name in names) for name, value in values.items()}

    x_values = torch.as_tensor(np.asarray(case.x), dtype=dtype)
    inputs = torch.linspace(-1.0, 1.0, x_values.numel(), dtype=dtype).reshape(x_values.shape)
    weight = torch.eye(x_values.shape[-1], dtype=dtype).requires_grad_()
    # x = inputs @ W + (x - inputs): the drawn values, reached through W.
    x = inputs @ weight + (x_values - inputs)
    inject = tensors(case.inject, ()) if case.inject else None
    trace = snnref.simulate(key, x, tensors(case.params, row.differentiable), tensors(case.state, case.state),
                            backend=backend, surrogate=case.surrogate, inject=inject)
    loss = sum((output * output).sum() for output in trace.outputs.values() if output.requires_grad)
    gradient, = torch.autograd.grad(loss, x, create_graph=True)
    second, = torch.autograd.grad(loss + (gradient ** 2).sum(), weight)
    return second


@pytest.mark.parametrize("backend, dtype", _backends())
@pytest.mark.parametrize("key", MODELS)
def test_a_penalty_on_the_gradient_of_a_layer_before_is_not_differentiated_silently(backend, dtype, key):
    _assert_finite_or_refused(_penalized_weight_gradient, key, backend, dtype)


def _jvp_by_double_backward(key, backend, dtype):
    """torch.autograd.functional.jvp of the outputs with respect to x: it takes
    the derivative of a gradient with respect to the gradient's cotangent."""
    case = _case(key)

    def tensors(values):
        return {name: _tensor(value, dtype, "cpu") for name, value in values.items()}

    inject = tensors(case.inject) if case.inject else None

    def outputs(x):
        trace = snnref.simulate(key, x, tensors(case.params), tensors(case.state), backend=backend,
                                surrogate=case.surrogate, inject=inject)
        return tuple(output for output in trace.outputs.values() if output.requires_grad)

    x = _tensor(case.x, dtype, "cpu")
    direction = torch.linspace(-1.0, 1.0, x.numel(), dtype=dtype).reshape(x.shape)
    return x, direction, outputs, torch.autograd.functional.jvp(outputs, x, direction)[1]


@pytest.mark.parametrize("backend, dtype", _backends())
@pytest.mark.parametrize("key", MODELS)
def test_a_jacobian_vector_product_by_double_backward_is_right_or_refused(backend, dtype, key):
    """A gradient is linear in its cotangent: its derivative there is J v.  A
    first-order backward's gradient carried no path to the cotangent, and
    functional.jvp gave zeros for every LIF-family model on cpu and torch."""
    if not _differentiated_twice(backend, key):
        with pytest.raises(SecondOrderError, match="functional.jvp"):
            _jvp_by_double_backward(key, backend, dtype)
        return
    x, direction, outputs, products = _jvp_by_double_backward(key, backend, dtype)
    jacobians = torch.autograd.functional.jacobian(outputs, x)
    for jacobian, product in zip(jacobians, products):
        expected = jacobian.reshape(product.numel(), -1) @ direction.reshape(-1)
        torch.testing.assert_close(product.reshape(-1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend, dtype", _backends())
@pytest.mark.parametrize("key", MODELS)
def test_a_batched_gradient_is_right_or_refused_by_name(backend, dtype, key):
    """jacobian(vectorize=True) runs the backward once on cotangents batched by
    autograd's vmap: every model but the torch path's Discontinuous failed deep
    inside torch ("vmap: aten::copy_ ... is not possible", "Batching rule not
    implemented for aten::detach")."""
    case = _case(key)

    def tensors(values):
        return {name: _tensor(value, dtype, "cpu") for name, value in values.items()}

    inject = tensors(case.inject) if case.inject else None

    def spikes(x):
        return snnref.simulate(key, x, tensors(case.params), tensors(case.state), backend=backend,
                               surrogate=case.surrogate, inject=inject).outputs["out"]

    x = _tensor(case.x, dtype, "cpu")
    if backend == "torch" and registry.MODELS[key].family == "discontinuous":
        assert torch.equal(torch.autograd.functional.jacobian(spikes, x, vectorize=True),
                           torch.autograd.functional.jacobian(spikes, x))
        return
    with pytest.raises(NotImplementedError, match=r"a batched gradient .* take the cotangents one at a time"):
        torch.autograd.functional.jacobian(spikes, x, vectorize=True)


def test_a_gradient_without_create_graph_is_the_scans_own():
    """The refusal costs nothing without create_graph: the gradient is the
    backward's tensor itself, with no graph."""
    x = torch.rand(5, 2, 3, requires_grad=True)
    loss = snnref.simulate("tether.PLIF", x, backend="cpu").outputs["out"].sum()
    gradient, = torch.autograd.grad(loss, x)
    assert gradient.grad_fn is None and not gradient.requires_grad


# Found by mutation testing (snnref/second_order.py): the second_order suite above passes whether a
# refusal comes when the gradient is built or when it is differentiated, and its Functions each save
# an output or every input; these pin down when and where first_order refuses.
def _toy(saved):
    """y = 2 a + b, a first-order backward; ``saved`` picks which inputs it saves."""

    class Toy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(*saved(a, b))
            return 2 * a + b

        @staticmethod
        @first_order("toy", "cpu")
        def backward(ctx, cotangent):
            return 2 * cotangent, cotangent

    return Toy.apply


def test_a_gradient_built_with_a_graph_is_refused_only_when_differentiated_again():
    # Both leaf inputs saved: the gradient itself is the backward's (2 and 1 per element); only its own
    # derivative raises (mutant: a leaf never counted as reached, so the build itself raised).
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    grad_a, grad_b = torch.autograd.grad(_toy(lambda a, b: (a, b))(a, b).sum(), (a, b), create_graph=True)
    assert grad_a.tolist() == [2.0, 2.0, 2.0] and grad_b.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(SecondOrderError, match="toy family's backward on backend 'cpu'"):
        torch.autograd.grad((grad_a * a).sum(), a)


def test_an_input_the_saved_tensors_do_not_reach_is_refused_when_the_gradient_is_built():
    # Only a is saved: a second derivative with respect to b would pass beside _Refused, so the build
    # raises.  b a leaf (mutant: only the first input checked), and b the second output of the node
    # that made a (mutant: any output of that node counted as reaching b).
    leaf_a, leaf_b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    w = torch.ones(6, requires_grad=True)
    for a, b in ((leaf_a, leaf_b), torch.chunk(w * 1, 2)):
        with pytest.raises(SecondOrderError, match="toy family's backward"):
            torch.autograd.grad(_toy(lambda a, b: (a,))(a, b).sum(), (a, b), create_graph=True)
