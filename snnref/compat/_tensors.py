"""The torch side of the seed layers' argument checks; the rules and messages are ``snnref.arguments``'s.

The seeds' functions take tensors and numbers side by side: a number becomes a
tensor of the input's dtype and device, a tensor must already be one.
"""

from __future__ import annotations

import torch

from .. import arguments, registry
from ..backend import ANY_DTYPE, TorchArrays, check_dense, check_has_values, finite

# How the messages name the tensor every other value must match.
_REFERENCE = "the other tensors"


def float_tensor(name, value, min_dim=0):
    """A non-empty floating tensor of rank >= ``min_dim`` in a dtype some backend stores."""
    arguments.check_type(name, value, torch.Tensor, "a torch.Tensor")
    check_has_values(name, value)
    check_dense(name, value)
    arguments.check_dtype(name, value.dtype, ANY_DTYPE)
    arguments.check_nonempty(name, value.shape, min_dim)
    return value


def finite_tensor(name, value):
    """A tensor (or None) of finite values: NaN would pass through a step silently."""
    if value is not None and not finite(value):
        raise arguments.nonfinite_error(name, opt_in=False)
    return value


def like(name, value, reference):
    """``value`` must be a tensor of ``reference``'s dtype and device."""
    float_tensor(name, value)
    return TorchArrays(reference, _REFERENCE).convert(name, value)


def broadcasting(name, value, reference, reference_name):
    """``value`` (or None) must broadcast to ``reference``'s shape (the argument ``reference_name``)."""
    if value is None:
        return None
    like(name, value, reference)
    try:
        fits = torch.broadcast_shapes(value.shape, reference.shape) == reference.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"{name}: expected a shape that broadcasts to {reference_name}'s shape "
                         f"{tuple(reference.shape)}, got {tuple(value.shape)}")
    return value


def param(model, name, value, reference, shapes):
    """Parameter ``name`` of ``model`` as a tensor like ``reference``: shape among
    ``shapes``, finite, inside the registry's domain, and asking for a gradient
    only where the model has one (the step functions compute with torch
    operations, which would leave such a gradient at None without a word)."""
    row = registry.model(model)
    # No parameter is a flag: torch reads True as 1, and tether.lif(x, v, True, ...) ran with a decay of 1.
    if arguments.is_boolean(value):
        raise TypeError(f"{name}: expected a number, got a boolean ({value!r})")
    given, value = value, TorchArrays(reference, _REFERENCE).convert(name, value)
    arguments.check_shape_among(name, value.shape, shapes)
    if not row.param(name).differentiable and value.requires_grad:
        raise arguments.no_gradient_error(name, row, row.param(name))
    values = value.detach()
    try:
        arguments.check_finite_values(name, values, finite(values))
        arguments.check_domain(row.param(name), values, name)
    except ValueError:
        arguments.check_narrowed(name, given, values)
        raise
    return value


def params(model, values, reference, shapes):
    return {name: param(model, name, value, reference, shapes) for name, value in values.items()}
