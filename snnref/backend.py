"""``snnref.simulate``: the production entry point, torch tensors in and out.

Same contract as ``snnref.spec.simulate`` (registry names for models,
parameters, states and outputs) with torch tensors, differentiable by autograd
with respect to ``x``, every trainable parameter and every initial state.  The
model families live in ``snnref/ops/<family>.py`` as custom autograd Functions
whose backward is a hand-written reverse scan.

Every argument is checked here, before any computation: dtype, device, shape
and domain errors name the argument and what was expected.
"""

from __future__ import annotations

import importlib
from typing import Mapping

import torch

from . import registry
from .spec.api import Trace

BACKENDS = ("auto", "torch", "triton")
DTYPES = (torch.float32, torch.float64)


def _family(row):
    return importlib.import_module(f"{__package__}.ops.{row.family}")


def _finite(tensor) -> bool:
    """All values finite, by two reductions: NaN and +-inf reach the max or the
    min, and no tensor of the input's size is allocated (an elementwise
    isfinite over a long input costs more than the simulation's arithmetic)."""
    if tensor.numel() == 0:
        return True
    tensor = tensor.detach()
    return bool(torch.isfinite(tensor.amax())) and bool(torch.isfinite(tensor.amin()))


def _describe(tensor):
    return f"{tensor.dtype} on {tensor.device}"


def _check_x(row, x, allow_nonfinite):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__} (snnref.spec.simulate takes NumPy arrays)")
    if x.dtype not in DTYPES:
        raise TypeError(f"x: expected dtype torch.float32 or torch.float64, got {x.dtype}")
    if row.input_rank is not None and x.dim() != row.input_rank:
        raise ValueError(f"x: {row.key} expects rank {row.input_rank} (T, B, N, D), got shape {tuple(x.shape)}")
    if x.dim() < 2:
        raise ValueError(f"x: expected a time-major tensor of shape (T, ..., N), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x: expected at least one time step and one neuron, got shape {tuple(x.shape)}")
    if not allow_nonfinite and not _finite(x):
        raise ValueError("x: expected finite values, found NaN or inf (pass allow_nonfinite=True to compute anyway)")


def _as_tensor(label, value, x):
    if isinstance(value, torch.Tensor):
        if value.dtype != x.dtype or value.device != x.device:
            raise TypeError(f"{label}: expected {_describe(x)} like x, got {_describe(value)}")
        return value
    try:
        return torch.as_tensor(value, dtype=x.dtype, device=x.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{label}: expected a number or tensor ({error})") from None


def _shape_ok(param, shape, n):
    if param.shape == registry.MATRIX:
        return shape == (n, n)
    if param.shape == registry.VECTOR:
        return shape == (n,)
    return shape in ((), (1,), (n,))


def _expected(param, n):
    if param.shape == registry.MATRIX:
        return f"({n}, {n})"
    if param.shape == registry.VECTOR:
        return f"({n},)"
    return f"a scalar, (1,) or ({n},) (per neuron)"


def _default(param, x):
    n = x.shape[-1]
    shape = {registry.PER_NEURON: (n,), registry.SHAPE_ONE: (1,)}.get(param.shape, ())
    return torch.full(shape, param.default, dtype=x.dtype, device=x.device)


def _check_params(row, params, x, allow_nonfinite):
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of parameter name -> value, got {type(params).__name__}")
    valid = [p.name for p in row.params]
    for name in params:
        if name not in valid:
            raise ValueError(f"params: {row.key} has no parameter {name!r}; expected among: {', '.join(valid)}")
    n = x.shape[-1]
    checked = {}
    for param in row.params:
        label = f"params[{param.name!r}]"
        if param.name in params:
            value = _as_tensor(label, params[param.name], x)
        elif param.default is None:
            raise ValueError(f"{label}: required by {row.key}, expected {_expected(param, n)}")
        else:
            value = _default(param, x)
        if not _shape_ok(param, tuple(value.shape), n):
            raise ValueError(f"{label}: expected {_expected(param, n)} for N={n}, got shape {tuple(value.shape)}")
        detached = value.detach()
        if not allow_nonfinite and not _finite(detached):
            raise ValueError(f"{label}: expected finite values")
        if param.domain == registry.POSITIVE and not bool((detached > 0).all()):
            raise ValueError(f"{label}: expected values > 0, got {detached.tolist()}")
        if param.domain == registry.NONNEGATIVE and not bool((detached >= 0).all()):
            raise ValueError(f"{label}: expected values >= 0, got {detached.tolist()}")
        checked[param.name] = value
    return checked


def _check_state(row, state, params, x, allow_nonfinite):
    state = {} if state is None else state
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict of state variable -> tensor, got {type(state).__name__}")
    for name in state:
        if name not in row.state_names:
            raise ValueError(f"state: {row.key} has no state variable {name!r}; expected among: "
                             f"{', '.join(row.state_names) or '(none: the model is stateless)'}")
    shape = tuple(x.shape[1:])
    full = {}
    for var in row.state:
        label = f"state[{var.name!r}]"
        if var.name in state:
            value = _as_tensor(label, state[var.name], x)
            if not allow_nonfinite and not _finite(value):
                raise ValueError(f"{label}: expected finite values")
        elif isinstance(var.initial, str):
            # hxtorch starts the membrane at a parameter: autograd then sums the
            # initial-state path into that parameter's gradient, as the seed does.
            value = params[var.initial]
        else:
            value = torch.full((), float(var.initial), dtype=x.dtype, device=x.device)
        try:
            full[var.name] = value.expand(shape)
        except RuntimeError:
            raise ValueError(f"{label}: expected a shape that broadcasts to {shape}, got {tuple(value.shape)}") from None
    return full


def _check_inject(row, inject, x, allow_nonfinite):
    if inject is None:
        return {}, x.shape[0]
    if not isinstance(inject, Mapping):
        raise TypeError(f"inject: expected a dict of observation name -> tensor, got {type(inject).__name__}")
    if not row.inject:
        raise ValueError(f"inject: {row.key} takes no hardware observations (only the hxtorch models do)")
    checked = {}
    for name, value in inject.items():
        if name not in row.inject:
            raise ValueError(f"inject: {row.key} accepts {', '.join(map(repr, row.inject))}, got {name!r}")
        if value is None:
            continue
        label = f"inject[{name!r}]"
        value = _as_tensor(label, value, x)
        if value.dim() != x.dim() or value.shape[1:] != x.shape[1:] or value.shape[0] < 1:
            raise ValueError(f"{label}: expected shape (T_hw, {', '.join(map(str, x.shape[1:]))}) with T_hw >= 1, "
                             f"got {tuple(value.shape)}")
        if not allow_nonfinite and not _finite(value):
            raise ValueError(f"{label}: expected finite values")
        checked[name] = value.detach()
    steps = min([x.shape[0]] + [v.shape[0] for v in checked.values()])
    return {k: v[:steps] for k, v in checked.items()}, steps


def _check_surrogate(row, surrogate):
    if surrogate is None:
        surrogate = row.default_surrogate
    if surrogate is None:
        return None
    registry.surrogate(surrogate)
    if surrogate not in row.surrogates:
        accepted = ", ".join(row.surrogates) or "none (the model does not spike)"
        raise ValueError(f"surrogate: {row.key} does not accept {surrogate!r}; it accepts: {accepted}")
    return surrogate


def _check_backend(backend, x):
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown name {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if backend == "triton":
        raise ValueError("backend: 'triton' is not available yet; use 'torch' or 'auto'")
    return "torch"


def _check_detached(detached, x):
    if detached is None:
        return None
    if not isinstance(detached, Mapping):
        raise TypeError(f"detached: expected the dict Trace.detached, got {type(detached).__name__}")
    checked = {}
    for key, value in detached.items():
        value = _as_tensor(f"detached[{key!r}]", value, x)
        if value.shape != x.shape:
            raise ValueError(f"detached[{key!r}]: expected shape {tuple(x.shape)}, got {tuple(value.shape)}")
        checked[key] = value.detach()
    return checked


def simulate(
    model,
    x,
    params=None,
    state=None,
    *,
    backend="auto",
    surrogate=None,
    inject=None,
    smooth=False,
    detached=None,
    allow_nonfinite=False,
) -> Trace:
    """Run ``model`` on the time-major tensor ``x`` of shape (T, ..., N).

    The arguments mean what they mean for ``snnref.spec.simulate``; values are
    torch tensors (or numbers), all of ``x``'s dtype and device.  ``backend`` is
    "torch", "triton" or "auto" (the kernels for CUDA tensors, torch otherwise).
    """
    row = registry.model(model)
    _check_x(row, x, allow_nonfinite)
    _check_backend(backend, x)
    surrogate = _check_surrogate(row, surrogate)
    params = _check_params(row, params, x, allow_nonfinite)
    full_state = _check_state(row, state, params, x, allow_nonfinite)
    inject, steps = _check_inject(row, inject, x, allow_nonfinite)
    x = x[:steps]
    frozen = _check_detached(detached, x)
    check_input = getattr(_family(row), "check_input", None)
    if check_input is not None:
        check_input(row, x, params)
    outputs, final, used = _family(row).run(row, x, params, full_state, surrogate, inject, bool(smooth), frozen)
    return Trace(row.key, surrogate, outputs, final, used)
