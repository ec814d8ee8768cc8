"""The functional API with the seeds' names and signatures, on ``snnref.backend.simulate``.

tether (``lif``, ``plif``, ``alif``): sequences flattened to (n_steps, M) with
M = batch * n_neurons, as tether's autograd Functions take them.
hxtorch (``cuba_*``, ``refractory_update``, ``spiking_threshold``): time-major
(T, B, N) as SPEC section 5 says (hxtorch's docstrings say batch-first; its
code is time-major).  Keyword parameters are numbers or tensors of the input's
dtype and device; a tensor that requires grad receives its gradient.

Every argument is checked before any computation; an error names the argument.
"""

from __future__ import annotations

import operator

import torch

from . import registry
from .backend import ANY_DTYPE, simulate

# hxtorch's only surrogate method, as the registry names it.
_METHOD = registry.model("hxtorch.cuba_lif").default_surrogate


# --------------------------------------------------------------------------- checks


def _float_tensor(name, value, min_dim=0):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in ANY_DTYPE:
        raise TypeError(f"{name}: expected dtype float32 or float64 (float16 or bfloat16 on the triton backend), "
                        f"got {value.dtype}")
    if value.dim() < min_dim or value.numel() == 0:
        rank = f" of rank >= {min_dim}" if min_dim else ""
        raise ValueError(f"{name}: expected a non-empty tensor{rank}, got shape {tuple(value.shape)}")
    return value


def _finite_tensor(name, value):
    """A step function's tensor argument must hold finite values (NaN would pass through silently)."""
    if value is not None and value.numel() and not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return value


def _like(name, value, like):
    """``value`` must be a tensor of ``like``'s dtype and device."""
    _float_tensor(name, value)
    if value.dtype != like.dtype or value.device != like.device:
        raise TypeError(f"{name}: expected {like.dtype} on {like.device} like the other tensors, "
                        f"got {value.dtype} on {value.device}")
    return value


def _broadcasting(name, value, like):
    """``value`` (or None) must broadcast to ``like``'s shape."""
    if value is None:
        return None
    _like(name, value, like)
    try:
        fits = torch.broadcast_shapes(value.shape, like.shape) == like.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"{name}: expected a shape that broadcasts to {tuple(like.shape)}, got {tuple(value.shape)}")
    return value


def _param(model, name, value, like, shapes):
    """A parameter of ``model`` as a tensor like ``like``: shape among ``shapes``,
    finite, and inside the registry's domain."""
    if isinstance(value, torch.Tensor):
        _like(name, value, like)
    else:
        try:
            value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a number or tensor, got {type(value).__name__}") from None
    if tuple(value.shape) not in shapes:
        raise ValueError(f"{name}: expected shape {' or '.join(map(str, shapes))}, got {tuple(value.shape)}")
    detached = value.detach()
    if not bool(torch.isfinite(detached).all()):
        raise ValueError(f"{name}: expected finite values, got {detached.tolist()}")
    domain = registry.model(model).param(name).domain
    if domain == registry.POSITIVE and not bool((detached > 0).all()):
        raise ValueError(f"{name}: expected values > 0, got {detached.tolist()}")
    if domain == registry.NONNEGATIVE and not bool((detached >= 0).all()):
        raise ValueError(f"{name}: expected values >= 0, got {detached.tolist()}")
    return value


def _params(model, values, like, shapes):
    return {name: _param(model, name, value, like, shapes) for name, value in values.items()}


# --------------------------------------------------------------------------- tether

_SCALAR = ((), (1,))


def _surrogate_key(surrogate_type):
    """The registry surrogate whose tether kernel id is ``surrogate_type``."""
    ids = {s.tether_id: key for key, s in registry.SURROGATES.items() if s.tether_id is not None}
    valid = ", ".join(f"{i} ({key})" for i, key in sorted(ids.items()))
    try:
        index = operator.index(surrogate_type)
    except TypeError:
        index = None
    if index is None or isinstance(surrogate_type, bool):
        raise TypeError(f"surrogate_type: expected an int id among {valid}, got {type(surrogate_type).__name__}")
    if index not in ids:
        raise ValueError(f"surrogate_type: unknown id {index}; expected one of: {valid}")
    return ids[index]


def _sequence(x_seq):
    _float_tensor("x_seq", x_seq)
    if x_seq.dim() != 2:
        raise ValueError(f"x_seq: expected a non-empty (n_steps, batch_size * n_neurons) tensor, "
                         f"got shape {tuple(x_seq.shape)}")
    return x_seq


def _initial(name, value, x_seq):
    _like(name, value, x_seq)
    if tuple(value.shape) != (x_seq.shape[1],):
        raise ValueError(f"{name}: expected shape ({x_seq.shape[1]},) (batch_size * n_neurons, like x_seq's "
                         f"second axis), got {tuple(value.shape)}")


def lif(x_seq, v_init, decay, threshold, alpha, surrogate_type, *, backend="auto"):
    """tether's LIFSubFunction: hard reset to 0, returns ``(spikes, v_final, v_seq)``.

    ``v_seq`` is the pre-reset membrane, ``v_final`` the membrane after the last
    reset.  ``surrogate_type`` is tether's kernel id (0 arctan, 1 sigmoid,
    2 fast_sigmoid); ``decay``, ``threshold`` and ``alpha`` are scalars.
    ``backend`` as for ``snnref.simulate``: "auto" runs the Triton kernels on
    CUDA tensors and the torch path otherwise.
    """
    surrogate = _surrogate_key(surrogate_type)
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    params = _params("tether.LIF", {"decay": decay, "threshold": threshold, "alpha": alpha}, x_seq, _SCALAR)
    trace = simulate("tether.LIF", x_seq, params, {"v": v_init}, surrogate=surrogate, backend=backend)
    return trace.outputs["out"], trace.final_state["v"], trace.outputs["v"]


def plif(x_seq, v_init, decay, threshold, alpha, surrogate_type, *, backend="auto"):
    """tether's PLIFSubFunction: ``lif`` with per-neuron ``decay`` and ``threshold`` of shape (n,).

    n must divide M; column j of every batch row uses ``decay[j]`` and
    ``threshold[j]`` (SPEC section 2, not the seed's flat indexing, bug B4).
    """
    surrogate = _surrogate_key(surrogate_type)
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    steps, total = x_seq.shape
    _float_tensor("decay", decay)
    if decay.dim() != 1 or total % decay.shape[0]:
        raise ValueError(f"decay: expected shape (n_neurons,) with n_neurons dividing x_seq's {total} "
                         f"columns, got {tuple(decay.shape)}")
    n = decay.shape[0]
    params = _params("tether.PLIF", {"decay": decay, "threshold": threshold}, x_seq, ((n,),))
    params["alpha"] = _param("tether.PLIF", "alpha", alpha, x_seq, _SCALAR)
    batch = total // n
    trace = simulate("tether.PLIF", x_seq.reshape(steps, batch, n), params, {"v": v_init.reshape(batch, n)},
                     surrogate=surrogate, backend=backend)
    return (trace.outputs["out"].reshape(steps, total), trace.final_state["v"].reshape(total),
            trace.outputs["v"].reshape(steps, total))


def alif(x_seq, v_init, a_init, decay_v, decay_a, threshold, beta, alpha, *, backend="auto"):
    """tether's ALIF (arctan surrogate): returns ``(spikes, v_final, a_final, v_seq, a_seq)``.

    ``v_seq`` is the pre-reset membrane, ``a_seq`` the adaptation before each
    step's update, ``a_final`` the adaptation after the last update.
    """
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    _initial("a_init", a_init, x_seq)
    values = {"decay_v": decay_v, "decay_a": decay_a, "threshold": threshold, "beta": beta, "alpha": alpha}
    params = _params("tether.ALIF", values, x_seq, _SCALAR)
    trace = simulate("tether.ALIF", x_seq, params, {"v": v_init, "a": a_init}, backend=backend)
    return (trace.outputs["out"], trace.final_state["v"], trace.final_state["a"],
            trace.outputs["v"], trace.outputs["a"])


# --------------------------------------------------------------------------- hxtorch


def _check_method(method):
    if not isinstance(method, str) or method != _METHOD:
        raise ValueError(f"method: unknown surrogate method {method!r}; the only valid value is {_METHOD!r}")


def _per_neuron(like):
    return ((), (1,), (like.shape[-1],))


class _SuperSpike(torch.autograd.Function):
    """Forward ``[u > 0]``; backward ``1 / (alpha |u| + 1)^2`` (alpha gets no gradient)."""

    @staticmethod
    def forward(ctx, u, alpha):
        ctx.save_for_backward(u, alpha)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        u, alpha = ctx.saved_tensors
        return grad / (alpha * u.abs() + 1) ** 2, None


def _inject(observed, model_value):
    """The observation forward (exactly), the model value's gradient backward."""
    if observed is None:
        return model_value
    return observed.detach() + (model_value - model_value.detach())


def spiking_threshold(input, method, alpha):
    """hxtorch's threshold function: ``[input > 0]``, superspike surrogate in backward."""
    _check_method(method)
    _finite_tensor("input", _float_tensor("input", input, 1))
    alpha = _param("hxtorch.cuba_lif", "alpha", alpha, input, _per_neuron(input))
    return _SuperSpike.apply(input, alpha)


def cuba_lif_step(z, v, i, input, spikes_hw, membrane_hw, *, leak, reset, threshold, tau_syn, tau_mem,
                  method, alpha, dt=1e-6):
    """One forward-Euler step of hxtorch's CUBA LIF (SPEC section 5): returns ``(z, v, i)``.

    ``z`` (the previous spikes) does not enter the update; ``spikes_hw`` and
    ``membrane_hw`` are this step's hardware observations or None.
    """
    _check_method(method)
    _finite_tensor("input", _float_tensor("input", input, 1))
    for name, value in (("z", z), ("v", v), ("i", i)):
        _broadcasting(name, _finite_tensor(name, _float_tensor(name, value)), input)
    _broadcasting("spikes_hw", spikes_hw, input)
    _broadcasting("membrane_hw", membrane_hw, input)
    _finite_tensor("spikes_hw", spikes_hw)
    _finite_tensor("membrane_hw", membrane_hw)
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "dt": dt}
    p = _params("hxtorch.cuba_lif", values, input, _per_neuron(input))
    dv = p["dt"] / p["tau_mem"] * (p["leak"] - v + i)
    i = i * (1 - p["dt"] / p["tau_syn"]) + input
    v = _inject(membrane_hw, v + dv)
    z = _inject(spikes_hw, _SuperSpike.apply(v - p["threshold"], p["alpha"]))
    if membrane_hw is None:
        # An observed membrane already contains the hardware's reset.
        reset_spike = z.detach()
        v = (1 - reset_spike) * v + reset_spike * p["reset"]
    return z, v, i


def refractory_update(z, v, ref_state, spikes_hw, membrane_hw, *, reset, refractory_time, dt):
    """hxtorch's refractory clamp after a ``cuba_lif_step``: returns ``(z, v, ref_state)``.

    ``ref_state`` counts the steps of refractoriness left; while it is > 0 the
    membrane is held at ``reset`` and spikes are suppressed.
    """
    _finite_tensor("v", _float_tensor("v", v, 1))
    _broadcasting("z", _finite_tensor("z", _float_tensor("z", z)), v)
    _broadcasting("ref_state", _finite_tensor("ref_state", _float_tensor("ref_state", ref_state)), v)
    _broadcasting("spikes_hw", spikes_hw, v)
    _broadcasting("membrane_hw", membrane_hw, v)
    values = {"reset": reset, "refractory_time": refractory_time, "dt": dt}
    p = _params("hxtorch.cuba_refractory_lif", values, v, _per_neuron(v))
    mask = (ref_state > 0).to(v.dtype)
    v = _inject(membrane_hw, (1 - mask) * v + mask * p["reset"])
    z = _inject(spikes_hw, (1 - mask) * z)
    carry = torch.relu(ref_state - mask).detach()
    ref_state = (1 - z) * carry + z * (p["refractory_time"] / p["dt"])
    return z, v, ref_state


def _hw_data(row, hw_data, input):
    """Split ``hw_data`` into the model's ``inject`` dict and the pass-through MADC trace."""
    if hw_data is None:
        return {}, None
    names = {"spikes": "spikes", "v": "membrane_cadc"}
    order = [names[name] for name in row.inject] + ["membrane_madc"]
    if not isinstance(hw_data, (tuple, list)) or len(hw_data) != len(order):
        raise ValueError(f"hw_data: expected a tuple ({', '.join(order)}), any entry None, got {hw_data!r:.80}")
    inject = {}
    for k, name in enumerate(row.inject):
        trace = hw_data[k]
        if trace is None:
            continue
        label = f"hw_data[{k}] ({names[name]})"
        _like(label, trace, input)
        if trace.dim() != input.dim() or trace.shape[1:] != input.shape[1:]:
            raise ValueError(f"{label}: expected shape (T_hw, {', '.join(map(str, input.shape[1:]))}), "
                             f"got {tuple(trace.shape)}")
        inject[name] = trace
    return inject, hw_data[-1]


def _integrate(model, method, input, values, hw_data):
    """Run ``model`` through ``snnref.backend.simulate``: its trace and the MADC trace."""
    row = registry.model(model)
    if row.surrogates:
        _check_method(method)
    _float_tensor("input", input, 2)
    params = _params(model, values, input, _per_neuron(input))
    inject, madc = _hw_data(row, hw_data, input)
    return simulate(model, input, params, inject=inject), madc


def _spiking(trace, madc):
    return trace.outputs["out"], trace.outputs["v"], trace.outputs["i"], madc


def cuba_lif_integration(input, *, leak, reset, threshold, tau_syn, tau_mem, method, alpha, hw_data=None,
                         dt=1e-6):
    """hxtorch's CUBA LIF over time: returns ``(spikes, membrane, current, membrane_madc)``.

    ``input`` is (T, B, N); v starts at ``leak``, i at 0.  ``hw_data`` is
    ``(spikes, membrane_cadc, membrane_madc)``, any entry None; the MADC trace
    comes back untouched.
    """
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_lif", method, input, values, hw_data))


def cuba_refractory_lif_integration(input, *, leak, reset, threshold, tau_syn, tau_mem, refractory_time, method,
                                    alpha, hw_data=None, dt=1e-6):
    """``cuba_lif_integration`` with a refractory clamp of ``refractory_time``."""
    values = {"leak": leak, "reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem,
              "alpha": alpha, "refractory_time": refractory_time, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_refractory_lif", method, input, values, hw_data))


def cuba_iaf_integration(input, *, reset, threshold, tau_syn, tau_mem, method, alpha, hw_data=None, dt=1e-6):
    """hxtorch's CUBA integrate-and-fire (no leak; v starts at ``reset``):
    returns ``(spikes, membrane, current, membrane_madc)``."""
    values = {"reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem, "alpha": alpha,
              "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_iaf", method, input, values, hw_data))


def cuba_refractory_iaf_integration(input, *, reset, threshold, tau_syn, tau_mem, refractory_time, method, alpha,
                                    hw_data=None, dt=1e-6):
    """``cuba_iaf_integration`` with a refractory clamp of ``refractory_time``."""
    values = {"reset": reset, "threshold": threshold, "tau_syn": tau_syn, "tau_mem": tau_mem, "alpha": alpha,
              "refractory_time": refractory_time, "dt": dt}
    return _spiking(*_integrate("hxtorch.cuba_refractory_iaf", method, input, values, hw_data))


def cuba_li_integration(input, *, leak, tau_syn, tau_mem, hw_data=None, dt=1e-6):
    """hxtorch's leaky-integrator readout: returns ``(membrane, current, membrane_madc)``.

    ``input`` is a tensor or a tuple of tensors of one shape (summed);
    ``hw_data`` is ``(membrane_cadc, membrane_madc)``, either None.
    """
    if isinstance(input, (tuple, list)):
        if not input:
            raise ValueError("input: expected a tensor or a non-empty tuple of tensors")
        for k, term in enumerate(input):
            _like(f"input[{k}]", term, input[0])
            if term.shape != input[0].shape:
                raise ValueError(f"input[{k}]: expected shape {tuple(input[0].shape)} like input[0], "
                                 f"got {tuple(term.shape)}")
        input = sum(input[1:], input[0])
    values = {"leak": leak, "tau_syn": tau_syn, "tau_mem": tau_mem, "dt": dt}
    trace, madc = _integrate("hxtorch.cuba_li", None, input, values, hw_data)
    return trace.outputs["v"], trace.outputs["i"], madc
