"""``snnref.simulate``: the production entry point, torch tensors in and out.

Same contract as ``snnref.spec.simulate`` (registry names for models,
parameters, states and outputs) with torch tensors, differentiable by autograd
with respect to ``x``, every trainable parameter and every initial state.  The
model families live in ``snnref/ops/<family>.py`` as custom autograd Functions
whose backward is a hand-written reverse scan (the torch path), in
``snnref/kernels/<family>.py`` (Triton) and ``snnref/kernels/cpu/<family>.py``
(fused numba scans), each with the same ``run`` contract.

Every argument is checked here, before any computation: dtype, device, shape
and domain errors name the argument and what was expected.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import torch

from . import arguments, registry
from .spec.api import Trace

BACKENDS = ("auto", "torch", "triton", "cpu")
# Storage dtypes: the torch path and the fused CPU scans compute in the input's
# precision; the Triton kernels accumulate in float32 whatever they store.
DTYPES = {"torch": (torch.float32, torch.float64), "triton": (torch.float32, torch.float16, torch.bfloat16),
          "cpu": (torch.float32, torch.float64)}
# Every dtype some backend stores (the functional and compat layers accept these
# and leave the choice of backend to simulate).
ANY_DTYPE = tuple(dict.fromkeys(DTYPES["torch"] + DTYPES["triton"]))
# Where each backend's family modules live (same stems as snnref/spec).
PACKAGES = {"torch": "ops", "triton": "kernels", "cpu": "kernels.cpu"}


def _family(row, backend="torch"):
    return importlib.import_module(f"{__package__}.{PACKAGES[backend]}.{row.family}")


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


def _check_x(row, x, backend, allow_nonfinite):
    if x.dtype not in DTYPES[backend]:
        names = " or ".join(str(d) for d in DTYPES[backend])
        raise TypeError(f"x: backend {backend!r} expects dtype {names}, got {x.dtype}")
    arguments.check_x_shape(row, x.shape)
    if not allow_nonfinite and not _finite(x):
        raise arguments.nonfinite_error("x")


def _as_tensor(label, value, x, allow_nonfinite):
    if isinstance(value, torch.Tensor):
        if value.dtype != x.dtype or value.device != x.device:
            raise TypeError(f"{label}: expected {_describe(x)} like x, got {_describe(value)}")
    else:
        try:
            value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{label}: expected a number or tensor ({error})") from None
    if not allow_nonfinite and not _finite(value):
        raise arguments.nonfinite_error(label)
    return value


def _check_half_range(label, value):
    """Half-precision storage must hold a scale (a time constant, dt, a surrogate
    scale: the positive parameters) as a normal number: below that its precision
    is gone (float16 keeps hxtorch's 1e-5 s in a few bits, and the gradients of
    such constants overflow it).  A weight or threshold near 0 is just small."""
    if value.dtype not in (torch.float16, torch.bfloat16):
        return
    magnitude = value.detach().abs()
    tiny = torch.finfo(value.dtype).tiny
    if bool(((magnitude > 0) & (magnitude < tiny)).any()):
        raise ValueError(f"{label}: {value.detach().tolist()} is below {value.dtype}'s normal range "
                         f"({tiny:.3g}); store the model in torch.float32 or torch.bfloat16")


def _check_params(row, params, x, allow_nonfinite):
    params = arguments.mapping("params", params, "parameter name -> value")
    arguments.check_param_names(row, params)
    n = x.shape[-1]
    checked = {}
    for param in row.params:
        if param.name in params:
            value = _as_tensor(f"params[{param.name!r}]", params[param.name], x, allow_nonfinite)
        else:
            arguments.require_default(row, param, n)
            value = torch.full(arguments.default_shape(param, n), param.default, dtype=x.dtype, device=x.device)
        arguments.check_param_shape(param, value.shape, n)
        arguments.check_domain(param, value.detach())
        if param.domain != registry.REAL:
            _check_half_range(f"params[{param.name!r}]", value)
        checked[param.name] = value
    return checked


def _check_state(row, state, params, x, allow_nonfinite):
    state = arguments.mapping("state", state, "state variable -> tensor")
    arguments.check_state_names(row, state)
    shape = tuple(x.shape[1:])
    full = {}
    for var in row.state:
        label = f"state[{var.name!r}]"
        if var.name in state:
            value = _as_tensor(label, state[var.name], x, allow_nonfinite)
        elif isinstance(var.initial, str):
            # hxtorch starts the membrane at a parameter: autograd then sums the
            # initial-state path into that parameter's gradient, as the seed does.
            value = params[var.initial]
        else:
            value = torch.full((), float(var.initial), dtype=x.dtype, device=x.device)
        try:
            full[var.name] = value.expand(shape)
        except RuntimeError:
            raise arguments.broadcast_error(label, shape, value.shape) from None
    return full


def _check_inject(row, inject, x, allow_nonfinite):
    if inject is None:
        return {}, x.shape[0]
    inject = arguments.mapping("inject", inject, "observation name -> tensor")
    arguments.check_inject_names(row, inject)
    checked = {}
    for name, value in inject.items():
        if value is None:
            continue
        value = _as_tensor(f"inject[{name!r}]", value, x, allow_nonfinite)
        arguments.check_inject_shape(name, value.shape, x.shape)
        if name == "spikes" and value.numel() and not bool(((value == 0) | (value == 1)).all()):
            stray = value[(value != 0) & (value != 1)].reshape(-1)[0].item()
            raise ValueError(f"inject['spikes']: expected observed spikes of exactly 0 or 1, got {stray!r}")
        checked[name] = value.detach()
    steps = min([x.shape[0]] + [v.shape[0] for v in checked.values()])
    return {k: v[:steps] for k, v in checked.items()}, steps


_CPU_KERNELS = []  # [error or None], once the fused CPU scans were tried


def _cpu_kernels_error():
    """None when the fused CPU scans import (numba is there), else why not."""
    if not _CPU_KERNELS:
        try:
            importlib.import_module(f"{__package__}.kernels.cpu")
            _CPU_KERNELS.append(None)
        except ImportError as error:
            _CPU_KERNELS.append(error)
    return _CPU_KERNELS[0]


def _auto(x):
    if x.is_cuda:
        return "triton" if x.dtype in DTYPES["triton"] else "torch"
    if x.device.type != "cpu" or x.dtype not in DTYPES["cpu"]:
        return "torch"  # whose own checks then name what is wrong
    error = _cpu_kernels_error()
    if error is None:
        return "cpu"
    if len(_CPU_KERNELS) == 1:
        _CPU_KERNELS.append("warned")
        warnings.warn(f"snnref: the fused CPU backend needs numba ({error}); backend='auto' runs the slower "
                      "torch path on CPU tensors instead (pip install numba)", RuntimeWarning, stacklevel=4)
    return "torch"


def _check_backend(row, backend, x):
    """The backend that runs: "auto" is the Triton kernels for CUDA tensors they can
    store, the fused CPU scans for CPU tensors (torch where numba is missing)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__} (snnref.spec.simulate takes NumPy arrays)")
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown name {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = _auto(x)
    if backend == "cpu":
        if x.device.type != "cpu":
            raise ValueError(f"x: backend 'cpu' runs on CPU tensors, got x on {x.device}; "
                             "use backend='triton' or 'torch' there, or move x to the CPU")
        if _cpu_kernels_error() is not None:
            raise ImportError(f"backend: 'cpu' needs numba, which does not import here "
                              f"({_cpu_kernels_error()}); pip install numba, or use backend='torch'")
    if backend == "triton" and importlib.util.find_spec(f"{__package__}.kernels.{row.family}") is None:
        raise ValueError(f"backend: 'triton' has no kernels for {row.key} (family {row.family!r}); "
                         "use backend='torch'")
    return backend


def _check_detached(detached, x):
    if detached is None:
        return None
    detached = arguments.mapping("detached", detached, "stop-gradient values (the dict Trace.detached)")
    checked = {}
    for key, value in detached.items():
        value = _as_tensor(f"detached[{key!r}]", value, x, False)
        if value.shape != x.shape:
            raise arguments.detached_shape_error(key, x.shape, value.shape)
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
    "torch", "triton", "cpu" or "auto" (the Triton kernels for CUDA tensors, the
    fused CPU scans for float32/float64 CPU tensors, torch otherwise; without
    numba "auto" warns once and runs torch on CPU).

    backend="cpu" (``snnref/kernels/cpu``, numba) runs on CPU tensors only and
    computes in x's dtype; a strided (non-contiguous) x or cotangent is copied
    once into a contiguous buffer before the scan.  Its thread count is
    ``snnref.kernels.cpu.set_threads(n)`` (1 to the machine's cores).
    """
    row = registry.model(model)
    if getattr(getattr(x, "device", None), "type", None) == "meta":
        raise ValueError("x: a tensor on the 'meta' device holds no values; expected a CPU or CUDA tensor")
    backend = _check_backend(row, backend, x)
    _check_x(row, x, backend, allow_nonfinite)
    if backend == "triton":
        from .kernels import common

        common.check_launch(x)
    surrogate = arguments.check_surrogate(row, surrogate)
    params = _check_params(row, params, x, allow_nonfinite)
    full_state = _check_state(row, state, params, x, allow_nonfinite)
    inject, steps = _check_inject(row, inject, x, allow_nonfinite)
    x = x[:steps]
    frozen = _check_detached(detached, x)
    family = _family(row, backend)
    check_input = getattr(family, "check_input", None)
    if check_input is not None:
        check_input(row, x, params)
    outputs, final, used = family.run(row, x, params, full_state, surrogate, inject, bool(smooth), frozen)
    if x.dtype in (torch.float16, torch.bfloat16) and not allow_nonfinite:
        # Half storage saturates to inf silently: a quantity that left its range is an error.
        for name, value in list(outputs.items()) + [(f"final {k}", v) for k, v in final.items()]:
            if not _finite(value):
                raise OverflowError(f"outputs[{name!r}]: leaves the {x.dtype} range (stored as inf); "
                                    "use float32 storage for this input")
    return Trace(row.key, surrogate, outputs, final, used)
