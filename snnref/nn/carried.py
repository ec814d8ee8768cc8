"""The state tether's modules carry from one forward call to the next.

The state variables are non-persistent buffers (registry names, e.g. ``v``):
they follow ``.to()`` / ``.double()`` but stay out of ``state_dict``, so a
saved module loads into a fresh one whatever batch size either has seen.
They are ``None`` before the first call, start at zero, and are stored
detached, so no call's autograd graph outlives it through the state.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import arguments, backend


def check_numbers(**values):
    """Constructor arguments that must be real numbers, named when they are not."""
    for name, value in values.items():
        try:
            if isinstance(value, (str, bytes, bool)):
                raise TypeError
            float(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a number, got {value!r}") from None


def check_positive_int(name, value):
    """A count (neurons, features, heads): a positive integer, as an int."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_like_module(module, x):
    """``x`` must have the dtype and device of ``module``'s floating parameters
    and buffers: otherwise the message names the module's, not one of the
    parameters simulate would meet first under a name the caller never used."""
    # A surrogate's fixed scale is a float64 constant whatever the module's dtype (snnref.nn.surrogates).
    constants = {id(sub.fixed_scale) for sub in module.modules() if getattr(sub, "fixed_scale", None) is not None}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if isinstance(tensor, nn.parameter.UninitializedParameter) or not tensor.is_floating_point():
            continue
        dtype = x.dtype if id(tensor) in constants else tensor.dtype
        if (dtype, tensor.device) != (x.dtype, x.device):
            # Under torch.autocast the forward gets x already cast to float32
            # (backend.float32_under_autocast), whatever the caller passed.
            autocast = (" (under torch.autocast the neurons compute in float32: keep the module in float32 there)"
                        if x.dtype == torch.float32 and tensor.dtype in backend.HALF else "")
            raise TypeError(f"x: {x.dtype} on {x.device}, but this module's {name} is {tensor.dtype} on "
                            f"{tensor.device}; move one to the other (module.to(x.dtype) or x.to(...)){autocast}")


def names(state_names, params=None):
    """How the modules' messages name simulate's arguments: their parameters by
    attribute (``params`` maps the others, a submodule's), the carried state as
    such; they take no ``allow_nonfinite``."""
    return arguments.Names(params=params or {}, param_format="{}",
                           state={name: f"the carried state {name}" for name in state_names}, allow_nonfinite=False)


def check_input(x, features, what, rank=None):
    """``x`` must be a time-major tensor (rank ``rank``, or at least 2 when None)
    whose last axis has ``features`` entries; ``what`` names that number."""
    arguments.check_type("x", x, torch.Tensor, "a torch.Tensor")
    if (x.dim() < 2) if rank is None else (x.dim() != rank):
        expected = "rank >= 2 (T, ..., N)" if rank is None else f"rank {rank}"
        raise ValueError(f"x: expected a time-major tensor of {expected}, got shape {tuple(x.shape)}")
    if x.shape[-1] != features:
        raise ValueError(f"x: expected a last axis of {features} ({what}), got shape {tuple(x.shape)}")


class CarriedState(nn.Module):
    """Base of the tether modules: ``state_names`` are the carried registry state variables."""

    state_names: tuple = ()

    def __init__(self, backend_name="auto"):
        super().__init__()
        # simulate's ``backend``: "torch" differentiates some families twice,
        # the fused backends' backward is first order (``snnref.second_order``).
        self.backend = backend.check_backend_name(backend_name)
        for name in self.state_names:
            self.register_buffer(name, None, persistent=False)

    def carried(self, x):
        """The state for a call on ``x``; None (all zeros) on the first call or when the
        carried state's shape is not ``x.shape[1:]`` (another batch size)."""
        state = {name: getattr(self, name) for name in self.state_names}
        if any(value is None or value.shape != x.shape[1:] for value in state.values()):
            return None
        return state

    def carry(self, final_state):
        """Keep a call's final state, detached, for the next call: a copy, which the
        caller may edit in place (``neuron.v[done] = 0``) on every backend; a detached
        view would share its version with an output the torch path saved for backward."""
        for name in self.state_names:
            setattr(self, name, final_state[name].detach().clone())

    def reset_state(self):
        """Zero the carried state (rebinding it: no old tensor is written in place)."""
        for name in self.state_names:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, torch.zeros_like(value))


class TetherNeuron(CarriedState):
    """A tether neuron population: input (T, ..., n_neurons), spikes out.

    Subclasses set ``model`` and ``state_names`` and return their parameters by
    registry name from ``params()``; ``self.surrogate`` supplies the alpha.
    With ``store_traces`` the last call's pre-reset membrane is kept in ``v_seq``.
    """

    def __init__(self, n_neurons, store_traces, backend_name):
        super().__init__(backend_name)
        self.n_neurons = check_positive_int("n_neurons", n_neurons)
        self.store_traces = store_traces
        self.v_seq = None

    @property
    def alpha(self) -> torch.Tensor:
        return self.surrogate.alpha

    @backend.float32_under_autocast
    def forward(self, x):
        check_input(x, self.n_neurons, "n_neurons")
        check_like_module(self, x)
        params = dict(self.params(), alpha=self.surrogate.scale_like(x))
        trace = backend.simulate(self.model, x, params, self.carried(x), surrogate=self.surrogate.key,
                                 backend=self.backend, names=names(self.state_names))
        self.carry(trace.final_state)
        if self.store_traces:
            self.v_seq = trace.outputs["v"]
        return trace.outputs["out"]

    def reset_state(self):
        super().reset_state()
        self.v_seq = None

    def extra_repr(self):
        return f"n_neurons={self.n_neurons}, store_traces={self.store_traces}, backend={self.backend!r}"
