"""``hxtorch.spiking.functional``'s API (SPEC section 5) on ``snnref.backend.simulate``.

``Unterjubel``, ``spiking_threshold``, ``cuba_lif_step``, ``refractory_update`` and the
integrations ``cuba_lif_integration``, ``cuba_refractory_lif_integration``,
``cuba_iaf_integration``, ``cuba_refractory_iaf_integration`` and
``cuba_li_integration``.  Time-major (T, B, N) as SPEC section 5 says
(hxtorch's docstrings say batch-first; its code is time-major).  Keyword
parameters are numbers or tensors of the input's dtype and device; a tensor
that requires grad receives its gradient.  Every argument is checked before
any computation; an error names the argument.  The integrations take
``backend`` (keyword only) as ``snnref.simulate`` does; the step functions
are torch operations.  Under ``torch.autocast`` every function computes in
float32 (``snnref.backend.float32_under_autocast``): half-precision tensors,
the pass-through MADC trace among them, come in and back as float32.

The spiking integrations return ``(spikes, membrane, current, membrane_madc)``,
SPEC section 5's order and hxtorch's code's; hxtorch's docstring says
"membrane traces, spikes and synaptic current", membrane first and three
items.  Code unpacking by that docstring (``membrane, spikes, current = out[:3]``)
would get the spikes as the membrane: unpack by this order.
"""

from __future__ import annotations

import torch

from .. import arguments, registry
from ..arguments import Names
from ..backend import float32_under_autocast, simulate, untraced
from ._tensors import broadcasting, finite_tensor, float_tensor, like, param
from ._tensors import params as params_like

__all__ = [
    "Unterjubel",
    "cuba_iaf_integration",
    "cuba_li_integration",
    "cuba_lif_integration",
    "cuba_lif_step",
    "cuba_refractory_iaf_integration",
    "cuba_refractory_lif_integration",
    "refractory_update",
    "spiking_threshold",
]

# hxtorch's only surrogate method, as the registry names it.
_METHOD = registry.model("hxtorch.cuba_lif").default_surrogate


def _check_method(method):
    arguments.check_choice("method", method, (_METHOD,))


def _per_neuron(reference):
    """A parameter's shapes: a scalar, (1,) or one value per neuron of ``reference``."""
    return ((), (1,), (reference.shape[-1],))


class _SuperSpike(torch.autograd.Function):
    """Forward ``[u > 0]``; backward ``1 / (alpha |u| + 1)^2`` (alpha gets no gradient).
    Written with ``setup_context``, so ``torch.func``'s transforms take the step functions."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u, alpha):
        return (u > 0).to(u.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        u, alpha = ctx.saved_tensors
        return grad / (alpha * u.abs() + 1) ** 2, None


class Unterjubel(torch.autograd.Function):
    """Hardware observables given the model's gradient: ``Unterjubel.apply(input, input_prime)``
    is ``input_prime`` (the observation) forward, exactly, and passes its gradient to ``input``
    (the model's value, same shape) backward; ``input_prime`` gets none.  ``inj(o, w)`` of
    SPEC section 5 with ``input = w``, ``input_prime = o``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, input_prime):
        # The gradient of input_prime's value goes to input: of another shape, torch refused it
        # only in the backward ("returned an invalid gradient").
        arguments.check_type("input", input, torch.Tensor, "a torch.Tensor")
        arguments.check_type("input_prime", input_prime, torch.Tensor, "a torch.Tensor")
        if input.shape != input_prime.shape:
            raise ValueError(f"input_prime: expected input's shape {tuple(input.shape)}, got "
                             f"{tuple(input_prime.shape)}")
        return input_prime.detach().clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


def _observed_spikes(label, observed):
    """Observed spikes (or None) are finite and exactly 0 or 1, as ``hw_data``'s are in the
    integrations: a step passed 0.5 on as a spike."""
    if observed is not None:
        finite_tensor(label, observed)
        arguments.check_spikes(label, observed.detach())
    return observed


def _inject(observed, model_value):
    """The observation forward (exactly), the model value's gradient backward, in the shape both
    broadcast to (an observation may be one value per neuron, or one value)."""
    if observed is None:
        return model_value
    shape = torch.broadcast_shapes(observed.shape, model_value.shape)
    return Unterjubel.apply(model_value.expand(shape), observed.expand(shape))


@float32_under_autocast
def spiking_threshold(input, method, alpha):
    """hxtorch's threshold function: ``[input > 0]``, superspike surrogate in backward."""
    _check_method(method)
    finite_tensor("input", float_tensor("input", input, 1))
    alpha = param("hxtorch.cuba_lif", "alpha", alpha, input, _per_neuron(input))
    return _SuperSpike.apply(input, alpha)


@float32_under_autocast
def cuba_lif_step(z, v, i, input, spikes_hw, membrane_hw, *, leak, reset, threshold, tau_syn, tau_mem,
                  method, alpha, dt=1e-6):
    """One forward-Euler step of hxtorch's CUBA LIF (SPEC section 5): returns ``(z, v, i)``.

    ``z`` (the previous spikes) does not enter the update; ``spikes_hw`` and
    ``membrane_hw`` are this step's hardware observations or None.
    """
    _check_method(method)
    finite_tensor("input", float_tensor("input", input, 1))
    for name, value in (("z", z), ("v", v), ("i", i)):
        broadcasting(name, finite_tensor(name, float_tensor(name, value)), input, "input")
    broadcasting("spikes_hw", spikes_hw, input, "input")
    broadcasting("membrane_hw", membrane_hw, input, "input")
    _observed_spikes("spikes_hw", spikes_hw)
    finite_tensor("membrane_hw", membrane_hw)
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "dt": dt}
    p = params_like("hxtorch.cuba_lif", values, input, _per_neuron(input))
    dv = p["dt"] / p["tau_mem"] * (p["leak"] - v + i)
    i = i * (1 - p["dt"] / p["tau_syn"]) + input
    v = _inject(membrane_hw, v + dv)
    z = _inject(spikes_hw, _SuperSpike.apply(v - p["threshold"], p["alpha"]))
    if membrane_hw is None:
        # An observed membrane already contains the hardware's reset.
        reset_spike = z.detach()
        v = (1 - reset_spike) * v + reset_spike * p["reset"]
    return z, v, i


@float32_under_autocast
def refractory_update(z, v, ref_state, spikes_hw, membrane_hw, *, reset, refractory_time, dt):
    """hxtorch's refractory clamp after a ``cuba_lif_step``: returns ``(z, v, ref_state)``.

    ``ref_state`` counts the steps of refractoriness left; while it is > 0 the
    membrane is held at ``reset`` and spikes are suppressed.
    """
    finite_tensor("v", float_tensor("v", v, 1))
    broadcasting("z", finite_tensor("z", float_tensor("z", z)), v, "v")
    # z decides the reset and the hold's start: a value between 0 and 1 blended both silently.
    arguments.check_spikes("z", z.detach(), noun="spikes")
    broadcasting("ref_state", finite_tensor("ref_state", float_tensor("ref_state", ref_state)), v, "v")
    if bool((ref_state < 0).any()):
        raise ValueError(f"ref_state: expected the steps of refractoriness left, >= 0, got {ref_state.min().item()!r}")
    _observed_spikes("spikes_hw", broadcasting("spikes_hw", spikes_hw, v, "v"))
    finite_tensor("membrane_hw", broadcasting("membrane_hw", membrane_hw, v, "v"))
    values = {"reset": reset, "refractory_time": refractory_time, "dt": dt}
    p = params_like("hxtorch.cuba_refractory_lif", values, v, _per_neuron(v))
    mask = (ref_state > 0).to(v.dtype)
    v = _inject(membrane_hw, (1 - mask) * v + mask * p["reset"])
    z = _inject(spikes_hw, (1 - mask) * z)
    carry = torch.relu(ref_state - mask).detach()
    ref_state = (1 - z) * carry + z * (p["refractory_time"] / p["dt"])
    return z, v, ref_state


# hw_data's entries, by the registry's names for the observations.
_HW_NAMES = {"spikes": "spikes", "v": "membrane_cadc"}


def _hw_labels(row):
    """How the messages name each observation of ``row``: its place in ``hw_data``."""
    return {name: f"hw_data[{k}] ({_HW_NAMES[name]})" for k, name in enumerate(row.inject)}


def _hw_data(row, hw_data, input):
    """Split ``hw_data`` into the model's ``inject`` dict and the pass-through MADC trace."""
    if hw_data is None:
        return {}, None
    order = [_HW_NAMES[name] for name in row.inject] + ["membrane_madc"]
    if not isinstance(hw_data, (tuple, list)) or len(hw_data) != len(order):
        raise ValueError(f"hw_data: expected a tuple ({', '.join(order)}), any entry None, got {hw_data!r:.80}")
    inject = {}
    labels = _hw_labels(row)
    for k, name in enumerate(row.inject):
        trace = hw_data[k]
        if trace is None:
            continue
        like(labels[name], trace, input)
        if trace.dim() != input.dim() or trace.shape[1:] != input.shape[1:]:
            raise ValueError(f"{labels[name]}: expected shape (T_hw, {', '.join(map(str, input.shape[1:]))}), "
                             f"got {tuple(trace.shape)}")
        inject[name] = trace
    return inject, hw_data[-1]


def _integrate(model, method, input, values, hw_data, backend):
    """Run ``model`` through ``snnref.backend.simulate``: its trace and the MADC trace."""
    row = registry.model(model)
    if row.surrogates:
        _check_method(method)
    float_tensor("input", input, 2)
    params = params_like(model, values, input, _per_neuron(input))
    inject, madc = _hw_data(row, hw_data, input)
    names = Names(x="input", param_format="{}", inject=_hw_labels(row), allow_nonfinite=False)
    return simulate(model, input, params, inject=inject, backend=backend, names=names), madc


def _spiking(trace, madc):
    return trace.outputs["out"], trace.outputs["v"], trace.outputs["i"], madc


@untraced
@float32_under_autocast
def cuba_lif_integration(input, *, leak, reset, threshold, tau_syn, tau_mem, method, alpha, hw_data=None,
                         dt=1e-6, backend="auto"):
    """hxtorch's CUBA LIF over time: returns ``(spikes, membrane, current, membrane_madc)``
    (SPEC section 5's order, not the seed docstring's "membrane, spikes, current").

    ``input`` is (T, B, N); v starts at ``leak``, i at 0.  ``hw_data`` is
    ``(spikes, membrane_cadc, membrane_madc)``, any entry None; the MADC trace
    comes back untouched.
    """
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_lif", method, input, values, hw_data, backend))


@untraced
@float32_under_autocast
def cuba_refractory_lif_integration(input, *, leak, reset, threshold, tau_syn, tau_mem, refractory_time, method,
                                    alpha, hw_data=None, dt=1e-6, backend="auto"):
    """``cuba_lif_integration`` with a refractory clamp of ``refractory_time``."""
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "refractory_time": refractory_time, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_refractory_lif", method, input, values, hw_data, backend))


@untraced
@float32_under_autocast
def cuba_iaf_integration(input, *, reset, threshold, tau_syn, tau_mem, method, alpha, hw_data=None, dt=1e-6,
                         backend="auto"):
    """hxtorch's CUBA integrate-and-fire (no leak; v starts at ``reset``):
    returns ``(spikes, membrane, current, membrane_madc)``."""
    values = {"reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem, "alpha": alpha,
              "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_iaf", method, input, values, hw_data, backend))


@untraced
@float32_under_autocast
def cuba_refractory_iaf_integration(input, *, reset, threshold, tau_syn, tau_mem, refractory_time, method, alpha,
                                    hw_data=None, dt=1e-6, backend="auto"):
    """``cuba_iaf_integration`` with a refractory clamp of ``refractory_time``."""
    values = {"reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem, "alpha": alpha,
              "refractory_time": refractory_time, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_refractory_iaf", method, input, values, hw_data, backend))


@untraced
@float32_under_autocast
def cuba_li_integration(input, *, leak, tau_syn, tau_mem, hw_data=None, dt=1e-6, backend="auto"):
    """hxtorch's leaky-integrator readout: returns ``(membrane, current, membrane_madc)``.

    ``input`` is a tensor or a tuple of tensors of one shape (summed);
    ``hw_data`` is ``(membrane_cadc, membrane_madc)``, either None.
    """
    if isinstance(input, (tuple, list)):
        if not input:
            raise ValueError("input: expected a tensor or a non-empty tuple of tensors")
        for k, term in enumerate(input):
            like(f"input[{k}]", term, input[0])
            if term.shape != input[0].shape:
                raise ValueError(f"input[{k}]: expected shape {tuple(input[0].shape)} like input[0], "
                                 f"got {tuple(term.shape)}")
        input = sum(input[1:], input[0])
    values = {"leak": leak, "tau_syn": tau_syn, "tau_mem": tau_mem, "dt": dt}
    trace, madc = _integrate("hxtorch.cuba_li", None, input, values, hw_data, backend)
    return trace.outputs["v"], trace.outputs["i"], madc
