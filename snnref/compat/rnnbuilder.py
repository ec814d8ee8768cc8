"""rnnbuilder's ``rnnbuilder.snn`` neurons (0.1.1) as torch modules with explicit state (SPEC section 3).

``out, h = model(x, h=None)``: x is time-major (T, B, ...), flattened per step
to (T, B, F) as rnnbuilder's recurrent neurons do; ``h`` is the dict of state
tensors (registry names: ``m``, and ``r`` for Adaptive), each (B, F), or a
tuple of them in that order.  Without ``h`` a call starts from the initial
state: the membrane ``initial_mem`` (F,), zeros, broadcast over the batch, and
``r = 0``.  ``initial_mem`` is the only trainable parameter; it is created on
the first call, when F becomes known (a lazy module, as ``nn.LazyLinear``).
Gradients flow through ``h`` from one call into the previous one (BPTT).

``spike_function`` is a ``SpikeLinear`` (None means ``SpikeLinear()``: a module
default shared by every instance would share its dtype and device too).
``backend`` (keyword only, an attribute after) is ``snnref.simulate``'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from .. import arguments, backend, registry
from ..backend import check_backend_name
from ..nn.carried import check_like_module, check_numbers
from ..nn.surrogates import SpikeLinear

__all__ = ["Adaptive", "Cooldown", "Discontinuous", "LIF", "NoReset", "SpikeLinear"]


def _spike_function(spike_function):
    if spike_function is None:
        return SpikeLinear()
    if not isinstance(spike_function, SpikeLinear):
        raise TypeError(f"spike_function: expected an snnref.compat.rnnbuilder.SpikeLinear, "
                        f"got {type(spike_function).__name__}")
    return spike_function


def _names(model, h):
    """How the messages name simulate's arguments: the numbers as the
    constructor's, the surrogate's scale as an attribute of ``spike_function``,
    the state as ``h`` or, without one, ``initial_mem``."""
    state = {name: f"h[{name!r}]" for name in registry.model(model).state_names}
    if h is None:
        state["m"] = "initial_mem"
    return arguments.Names(params={"gradient_factor": "spike_function.gradient_factor"}, param_format="{}",
                           state=state, allow_nonfinite=False)


def _check_x(model, x):
    arguments.check_type("x", x, torch.Tensor, "a torch.Tensor")
    if x.dim() < 3:
        raise ValueError(f"x: expected a time-major tensor (T, B, F, ...) of rank >= 3, got shape {tuple(x.shape)}")
    # Here, before a lazy module sizes initial_mem from x[0, 0]: simulate's message for an empty axis.
    arguments.check_x_shape(registry.model(model), x.flatten(2).shape)


class _Recurrent(LazyModuleMixin, nn.Module):
    """A recurrent rnnbuilder neuron; subclasses set ``model`` and may add parameters."""

    model = None

    def __init__(self, tau=5, spike_function=None, *, backend="auto"):
        check_numbers(tau=tau, positive=("tau",))
        super().__init__()
        self.tau = float(tau)
        self.backend = check_backend_name(backend)
        self.spike_function = _spike_function(spike_function)
        self.initial_mem = UninitializedParameter()

    def initialize_parameters(self, x, h=None):
        """Create ``initial_mem`` (zeros, one entry per flattened feature) on the first call."""
        if self.has_uninitialized_params():
            _check_x(self.model, x)
            with torch.no_grad():
                self.initial_mem.materialize((x[0, 0].numel(),))
            self.reset_parameters()

    def reset_parameters(self):
        """``initial_mem`` back to zeros once it exists (as torch's lazy modules do;
        the spike function resets its own)."""
        if not self.has_uninitialized_params():
            with torch.no_grad():
                self.initial_mem.zero_()

    def params(self, x):
        """The registry parameters of a run on ``x``."""
        return {"tau": self.tau, "gradient_factor": self.spike_function.scale_like(x)}

    @backend.untraced
    @backend.float32_under_autocast
    def forward(self, x, h=None):
        _check_x(self.model, x)
        check_like_module(self, x)
        x = x.flatten(2)
        features = self.initial_mem.shape[0]
        if x.shape[-1] != features:
            raise ValueError(f"x: this module was built for F={features} features per step, "
                             f"got {x.shape[-1]} (shape {tuple(x.shape)} flattened)")
        state = {"m": self.initial_mem} if h is None else self._check_h(h, x)
        trace = backend.simulate(self.model, x, self.params(x), state, surrogate=self.spike_function.key,
                                 backend=self.backend, names=_names(self.model, h))
        return trace.outputs["out"], dict(trace.final_state)

    def _check_h(self, h, x):
        names = registry.model(self.model).state_names
        if isinstance(h, (tuple, list)):
            if len(h) != len(names):
                raise ValueError(f"h: expected {len(names)} state tensors ({', '.join(names)}), got {len(h)}")
            h = dict(zip(names, h))
        elif not isinstance(h, Mapping):
            raise TypeError(f"h: expected a dict or tuple of state tensors ({', '.join(names)}), got {type(h).__name__}")
        if set(h) != set(names):
            raise ValueError(f"h: expected the state variables {', '.join(names)}, got {', '.join(map(str, h))}")
        for name in names:
            value = h[name]
            arguments.check_type(f"h[{name!r}]", value, torch.Tensor, "a torch.Tensor")
            if value.shape != x.shape[1:]:
                raise ValueError(f"h[{name!r}]: expected shape {tuple(x.shape[1:])} (B, F), got {tuple(value.shape)}")
        return h

    def extra_repr(self):
        return f"tau={self.tau:g}, backend={self.backend!r}"


class LIF(_Recurrent):
    """m = beta m + x; s = H(m - 1); m -= s (not detached); beta = exp(-1/tau)."""

    model = "rnnbuilder.LIF"


class NoReset(_Recurrent):
    """LIF without the reset."""

    model = "rnnbuilder.NoReset"


class Cooldown(_Recurrent):
    """s from the previous membrane (the second half of the units fire while m < 1);
    m = beta m + (1 - beta) exp(x); no reset."""

    model = "rnnbuilder.Cooldown"


class Adaptive(_Recurrent):
    """Threshold 1 + r (r decays with tau_thr, grows by gamma per spike); the spike compares
    the previous membrane with it, normalised, and the reset subtracts it."""

    model = "rnnbuilder.Adaptive"

    def __init__(self, tau=5, spike_function=None, tau_thr=5, gamma=0.25, *, backend="auto"):
        check_numbers(tau_thr=tau_thr, gamma=gamma, positive=("tau_thr",))
        super().__init__(tau, spike_function, backend=backend)
        self.tau_thr = float(tau_thr)
        self.gamma = float(gamma)

    def params(self, x):
        return dict(super().params(x), tau_thr=self.tau_thr, gamma=self.gamma)

    def extra_repr(self):
        return f"tau={self.tau:g}, tau_thr={self.tau_thr:g}, gamma={self.gamma:g}, backend={self.backend!r}"


class Discontinuous(nn.Module):
    """Stateless s = H(x - threshold), shape kept; ``h`` is the empty state (None or {})."""

    model = "rnnbuilder.Discontinuous"

    def __init__(self, spike_function=None, threshold=1, *, backend="auto"):
        check_numbers(threshold=threshold)
        super().__init__()
        self.spike_function = _spike_function(spike_function)
        self.threshold = float(threshold)
        self.backend = check_backend_name(backend)

    @backend.untraced
    @backend.float32_under_autocast
    def forward(self, x, h=None):
        _check_x(self.model, x)
        if h is not None and not (isinstance(h, Mapping) and not h):
            raise ValueError(f"h: Discontinuous is stateless; expected None or an empty dict, got {h!r}")
        check_like_module(self, x)
        params = {"threshold": self.threshold, "gradient_factor": self.spike_function.scale_like(x)}
        trace = backend.simulate(self.model, x, params, surrogate=self.spike_function.key, backend=self.backend,
                                 names=_names(self.model, {}))
        return trace.outputs["out"], {}

    def extra_repr(self):
        return f"threshold={self.threshold:g}, backend={self.backend!r}"
