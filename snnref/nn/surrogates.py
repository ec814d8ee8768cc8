"""Surrogate-gradient modules: which registry surrogate a neuron uses, and its scale.

A surrogate module computes nothing itself: a neuron module hands its ``key``
and ``scale_like(x)`` to ``snnref.backend.simulate``.  ``SpikeLinear`` is also
callable, as rnnbuilder's is, on the ``backend`` it is given (a keyword, and
an attribute after, as for the neuron modules).  The scale is an ``nn.Parameter`` when trainable
(it then receives dL/dscale = sum g * dF/dscale, SPEC section 1) and follows the
module's dtype and device.  A fixed scale is a constant, as the seeds' Python
number (rnnbuilder's ``gradient_factor = 0.3``): a float64 buffer that follows
the module's device but not its dtype, rounded to x's dtype at each use.  Kept
in float32 it would be 0.30000001192..., and every float64 gradient 4e-8 off.
A state dict saved before this (a float32 buffer) loads its rounded value.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import registry
from ..arguments import Names, check_flags
from ..backend import check_backend_name, simulate
from .carried import ResetsToConstructor, check_numbers, shown


class Surrogate(ResetsToConstructor, nn.Module):
    """Base class; subclasses set ``key`` to a registry surrogate key."""

    key = None

    def __init__(self, alpha=2.0, trainable=False):
        super().__init__()
        if self.key is None:
            raise TypeError("Surrogate is a base class: use Arctan, Sigmoid, FastSigmoid, SuperSpike or SpikeLinear")
        row = registry.surrogate(self.key)
        # trainable="no" would be truthy: a trained scale nobody asked for.
        check_flags(trainable=trainable)
        # A tensor asking for a gradient would be read as a number and never
        # receive one (simulate refuses the same by name).
        if not trainable and getattr(alpha, "requires_grad", False):
            remedy = ("pass trainable=True to train it, or a number" if row.trainable_scale
                      else f"the {self.key} surrogate's {row.scale} has no gradient; pass a number")
            raise ValueError(f"{row.scale}: requires_grad=True, but trainable=False keeps it a fixed number; {remedy}")
        (scale,) = check_numbers(**{row.scale: alpha})
        # Every registry surrogate's scale is a positive parameter: refused here, not at the first forward.
        if not scale > 0:
            raise ValueError(f"{row.scale}: expected a value > 0, got {alpha!r}")
        if trainable and not row.trainable_scale:
            raise ValueError(f"trainable: the {self.key} surrogate's {row.scale} has no gradient; pass trainable=False")
        self._initial = {row.scale: scale}
        if trainable:
            setattr(self, row.scale, nn.Parameter(torch.tensor(scale)))
        else:
            self.register_buffer(row.scale, torch.tensor(scale, dtype=torch.float64))

    def forward(self, x):
        """Not a layer: torch's own message ("missing the required forward function")
        did not say what the module is for."""
        raise TypeError(f"{type(self).__name__} is a neuron's surrogate setting, not a layer: pass it to a neuron "
                        f"(LIF(n, surrogate={type(self).__name__}())), or use snnref.nn.SpikeLinear, which is "
                        "callable as rnnbuilder's spike function is")

    @property
    def scale(self) -> torch.Tensor:
        """The scale tensor, under the registry's name for it (``alpha`` or ``gradient_factor``)."""
        return getattr(self, registry.surrogate(self.key).scale)

    @property
    def trainable(self) -> bool:
        return isinstance(self.scale, nn.Parameter)

    @property
    def fixed_scale(self) -> Optional[torch.Tensor]:
        """The float64 constant of a fixed scale (None when trainable): its dtype is not the module's."""
        return None if self.trainable else self.scale

    def scale_like(self, x) -> torch.Tensor:
        """The scale in x's dtype (a trainable one already has it: the module's dtype is x's)."""
        return self.scale.to(dtype=x.dtype)

    def _apply(self, fn, recurse=True):
        # nn.Module.to, .double(), .cuda() and the like: a fixed scale follows the device only.  What
        # ``fn`` made of it is kept unless it changed the dtype (to_empty from the meta device keeps
        # its fresh buffer: the constant there holds no value to copy; reset_parameters fills it).
        constant = self.fixed_scale
        result = super()._apply(fn, recurse)
        if constant is not None:
            name = registry.surrogate(self.key).scale
            moved = self._buffers[name]
            if moved.dtype != constant.dtype:
                self._buffers[name] = constant.to(device=moved.device)
        return result

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs)
        # A fixed scale is a constructor constant that the seeds do not save (rnnbuilder's
        # spike function is no module): a checkpoint without it keeps the constructed one.
        key = prefix + registry.surrogate(self.key).scale
        if not self.trainable and key not in state_dict and key in missing_keys:
            missing_keys.remove(key)

    def extra_repr(self):
        return f"{registry.surrogate(self.key).scale}={shown(self.scale)}, trainable={self.trainable}"


class Arctan(Surrogate):
    """f(u) = alpha / (1 + (pi alpha u)^2) (tether's default)."""

    key = "arctan"


class Sigmoid(Surrogate):
    """f(u) = alpha sigma(alpha u) (1 - sigma(alpha u))."""

    key = "sigmoid"


class FastSigmoid(Surrogate):
    """f(u) = 1 / (1 + alpha |u|)^2."""

    key = "fast_sigmoid"


class SuperSpike(Surrogate):
    """f(u) = 1 / (alpha |u| + 1)^2 (hxtorch; alpha fixed, 50 in its modules)."""

    key = "superspike"

    def __init__(self, alpha=50.0, trainable=False):
        super().__init__(alpha, trainable)


class SpikeLinear(Surrogate):
    """f(u) = gradient_factor * max(0, 1 - |u|) (rnnbuilder; fixed)."""

    key = "spike_linear"

    def __init__(self, gradient_factor=0.3, *, backend="auto"):
        super().__init__(gradient_factor, trainable=False)
        # Only this module's own call: a neuron given it as its surrogate runs on the neuron's backend.
        self.backend = check_backend_name(backend)

    def forward(self, x):
        """rnnbuilder's ``spike_function(x)``: [x > 0] elementwise, with this
        surrogate's derivative in the backward; any shape.  It is the registry's
        stateless rnnbuilder.Discontinuous at threshold 0 (SPEC section 3)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.numel() == 0:
            raise ValueError(f"x: expected at least one element, got shape {tuple(x.shape)}")
        params = {"threshold": 0.0, "gradient_factor": self.scale_like(x).to(device=x.device)}
        # Messages name this module's attribute, not simulate's params[...].
        names = Names(params={"gradient_factor": "gradient_factor"}, allow_nonfinite=False)
        trace = simulate("rnnbuilder.Discontinuous", x.reshape(1, -1), params, surrogate=self.key,
                         backend=self.backend, names=names)
        return trace.outputs["out"].reshape(x.shape)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"
