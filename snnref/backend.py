"""``snnref.simulate``: the production entry point, torch tensors in and out.

Same contract as ``snnref.spec.simulate`` (registry names for models,
parameters, states and outputs) with torch tensors, differentiable by autograd
with respect to ``x``, every trainable parameter and every initial state.  The
model families live in ``snnref/ops/<family>.py`` as custom autograd Functions
whose backward is a hand-written reverse scan (the torch path), in
``snnref/kernels/<family>.py`` (Triton) and ``snnref/kernels/cpu/<family>.py``
(fused numba scans), each with the same ``run`` contract.

Every argument is checked here, before any computation, by the rules of
``snnref.arguments`` (the reference's too): dtype, device, shape and domain
errors name the argument and what was expected.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import warnings
from collections.abc import Mapping

import torch

from . import arguments, families, registry
from .trace import Trace

BACKENDS = ("auto", "torch", "triton", "cpu")
# The half-precision dtypes: stored by Triton only, cast to float32 under autocast.
HALF = (torch.float16, torch.bfloat16)
# Storage dtypes: the torch path and the fused CPU scans compute in the input's
# precision; the Triton kernels accumulate in float32 whatever they store.
DTYPES = {"torch": (torch.float32, torch.float64), "triton": (torch.float32, torch.float16, torch.bfloat16),
          "cpu": (torch.float32, torch.float64)}
# Every dtype some backend stores (the functional and compat layers accept these
# and leave the choice of backend to simulate).
ANY_DTYPE = tuple(dict.fromkeys(DTYPES["torch"] + DTYPES["triton"]))


def untraced(function):
    """``function`` (``simulate``, a module's ``forward``, a seed library's
    function), which torch.compile runs as it is, a graph break around the
    call, instead of tracing into it: its checks, carried state and scan put
    nothing Dynamo could use in a graph.

    - The fused backends: traced, the numba dispatcher crashed Dynamo
      ("exception table entry start instruction has no offset", torch 2.13,
      tether.PLIF with backend="cpu"), and so did the Triton interpreter's
      launch; a first import of the numba kernels ran numba's import-time code
      as Dynamo frames ("hit config.recompile_limit (8)" on register_numpy_ufunc).
    - The torch path: traced, each finiteness check (a host read) was a break
      inside snnref's shared helpers, which Dynamo then compiled as frames of
      their own, once per caller (a model of four neuron types hit
      "config.recompile_limit (8)" on ``convert``), and the unrolled step loop
      ran slower: a compiled Linear + LIF step on the CPU took 98 ms against 8
      ms eager (T = 100, 32 x 64 lanes).
    - Outermost, around ``float32_under_autocast``: traced, that wrapper too was
      compiled as a frame of its own for every caller.
    - The break inside this wrapper makes Dynamo compile the wrapper itself as a
      frame, once per argument pattern, and it counts its limit of recompiles
      per code object: so each wrapper gets a code object of its own, named
      after ``function`` (one for all, a model of nine neuron types hit the
      limit on it).
    - The disabled function is made only where Dynamo traces the wrapper
      (``is_dynamo_compiling()`` is True there and False when it runs): as a
      decorator, ``torch.compiler.disable`` imported Dynamo into every process
      that called simulate, 1.0 of the 1.5 s that a fresh process's first call
      took."""

    def call(*args, **kwargs):
        if torch.compiler.is_dynamo_compiling():
            # torch.export traces with Dynamo too (strict=True), where a graph break is an error: say why first.
            check_not_exported()
            return torch.compiler.disable(function)(*args, **kwargs)
        return function(*args, **kwargs)

    names = {"co_name": function.__name__}
    # Python 3.11 on: the name Dynamo's messages give.
    if hasattr(call.__code__, "co_qualname"):
        names["co_qualname"] = function.__qualname__
    call.__code__ = call.__code__.replace(**names)
    return functools.wraps(function)(call)


def _family(row, backend="torch"):
    """The module of ``row``'s family on ``backend`` (the meta-tests plant their mutant copies here)."""
    return families.module(row.family, backend)


def finite(tensor) -> bool:
    """All values finite, by one reduction in the common case.

    (1) A finite sum implies finite terms: any NaN or inf term makes the sum NaN
        or inf.  Only a sum that overflows from finite terms needs the exact
        elementwise test.  No tensor of the input's size is allocated unless
        then (an elementwise isfinite over a long input costs more than the
        simulation's arithmetic).  Half-precision values are summed in float32,
        where a sum of float16 values (at most 65504 each) cannot overflow.
    """
    if tensor.numel() == 0:
        return True
    if tensor.numel() == 1:
        # A single value (a parameter, most often): one conversion instead of
        # three small ops, which each call of simulate paid per parameter.
        return math.isfinite(tensor.item())
    tensor = tensor.detach()
    wide = torch.float32 if tensor.dtype in HALF else None
    # (1), the sum tested as a Python float: torch's isfinite of a tensor is
    # four more operations (70 us more right after a scan flushed the caches).
    return math.isfinite(tensor.sum(dtype=wide).item()) or bool(torch.isfinite(tensor).all())


# torch's own test of whether a torch.func transform is active (a private name:
# where a torch lacks it, the transforms' own errors are what a caller sees).
_TRANSFORMS_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def check_untransformed():
    """torch.func's transforms (grad, vjp, jvp, vmap, jacrev, ...) need each
    custom autograd Function to split out a ``setup_context`` and, for vmap, a
    batching rule; snnref's scans are Functions written for ``torch.autograd``,
    and the fused backends' backwards read plain NumPy views, which a
    transform's wrapped tensors do not have.  Under a transform they failed
    deep inside torch (its setup_context message, or vmap's refusal of the
    ``.item()`` in the argument checks); this says so by name instead."""
    if _TRANSFORMS_ACTIVE():
        raise NotImplementedError(
            "snnref.simulate: called under a torch.func transform (grad, vjp, jvp, vmap, jacrev, ...), which its "
            "scans do not support; take gradients with torch.autograd.grad or .backward(), and batch by a "
            "dimension of x (time-major (T, ..., N)) instead of vmap")


def check_not_exported():
    """torch.export captures a whole program as one graph, and a call of simulate
    is not one: its checks read values on the host before it runs (no NaN or
    inf in x, each parameter in its domain), and the fused backends run numba
    or Triton kernels that no tracer sees into.  Exported, it failed deep
    inside torch ("Could not guard on data-dependent expression", from the
    finiteness check); this says so by name, and names torch.compile, which runs it."""
    if torch.compiler.is_exporting():
        raise NotImplementedError(
            "snnref.simulate: called under torch.export, which cannot capture it (its checks read the values of x "
            "and of the parameters before a run, and the fused backends run numba or Triton kernels); compile "
            "the model with torch.compile instead, which runs each call of snnref as it is")


def _first_tensor(values):
    """The first tensor among ``values``, looking into dicts, lists and tuples (None if there is none)."""
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (Mapping, list, tuple)):
            found = _first_tensor(value.values() if isinstance(value, Mapping) else value)
            if found is not None:
                return found
    return None


def _float32(value):
    """``value`` with every half-precision tensor in it (in dicts, lists and tuples too)
    cast to float32, through autograd; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in HALF else value
    if isinstance(value, Mapping):
        return {key: _float32(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_float32(item) for item in value]
    if isinstance(value, tuple):
        items = [_float32(item) for item in value]
        # A named tuple keeps its type (its constructor takes the fields one by one).
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


# torch's test of whether autocast is on for any device (a private name: where a
# torch lacks it, every call asks for its own device, 2 us more per call).
_ANY_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _autocast_on(device_type):
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        # A device type autocast does not know ("meta"): its tensors are never cast.
        # torch.amp.is_autocast_available would say so too, at twice this test's cost.
        return False


def float32_under_autocast(function):
    """``function`` (an entry point: simulate, a seed layer's function or
    ``forward``) as one operation on torch.autocast's float32 list.

    Under ``torch.autocast`` for the device of its first tensor argument, its
    float16 and bfloat16 tensor arguments are cast to float32 and it runs with
    autocast off for that device, so its result is the float32 result, under
    the float32 budget.  A neuron is a scan that accumulates its state over the
    steps, like ``torch.cumsum``, which autocast computes in float32 on CUDA;
    the cpu and torch backends store no half precision at all.  Without the
    cast an autocast ``Linear``'s bfloat16 output met float32 parameters
    (refused by name), the cpu backend crashed inside NumPy ("Got unsupported
    ScalarType BFloat16"), and the attention model's matmuls silently ran in
    bfloat16 on float32 inputs.  Outside autocast nothing changes (0.3 us).
    """

    @functools.wraps(function)
    def under_autocast(*args, **kwargs):
        if not _ANY_AUTOCAST():
            return function(*args, **kwargs)
        tensor = _first_tensor((*args, *kwargs.values()))
        device_type = None if tensor is None else tensor.device.type
        if device_type is None or not _autocast_on(device_type):
            return function(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return function(*_float32(args), **_float32(kwargs))

    return under_autocast


def check_has_values(label, tensor):
    """A tensor on the 'meta' device has a shape and no values: every check that
    reads values (finiteness, domains) failed on it inside torch ("Tensor.item()
    cannot be called on meta tensors")."""
    if getattr(getattr(tensor, "device", None), "type", None) == "meta":
        raise ValueError(f"{label}: a tensor on the 'meta' device holds no values; expected a CPU or CUDA tensor")


def _describe(tensor):
    return f"{tensor.dtype} on {tensor.device}"


def check_dense(label, tensor):
    """A sparse, mkldnn or nested tensor holds no plain array of values: the
    scans read one, and the torch path's indexing failed on them deep inside
    torch ("copy_() between dense and sparse Tensors is not implemented",
    "NestedTensorImpl doesn't support sizes", and for a sparse state "expected
    a shape that broadcasts to (3,), got (3,)")."""
    if tensor.is_nested:
        raise ValueError(f"{label}: expected a dense (strided) tensor, got a nested tensor")
    if tensor.layout != torch.strided:
        raise ValueError(f"{label}: expected a dense (strided) tensor, got layout {tensor.layout}; "
                         f"pass {label}.to_dense()")


class TorchArrays:
    """``snnref.arguments``'s description of torch tensors: every value becomes a
    tensor of ``like``'s dtype and device (``reference`` names ``like`` in messages)."""

    def __init__(self, like, reference="x"):
        self.like = like
        self.reference = reference

    def convert(self, label, value):
        if isinstance(value, torch.Tensor):
            check_dense(label, value)
            # Described only when they differ: the two descriptions took 1.2 us
            # per argument, the comparison 0.25.
            if value.dtype != self.like.dtype or value.device != self.like.device:
                arguments.check_like(label, _describe(value), _describe(self.like), self.reference)
            if value.is_inference() and not torch.is_inference_mode_enabled():
                # Made under torch.inference_mode (an evaluation pass's carried
                # state, say): autograd cannot save it for a backward outside
                # that mode ("Inference tensors cannot be saved for backward"),
                # and the torch path saves x, parameters and initial states.
                return value.clone()
            return value
        try:
            return torch.as_tensor(value, dtype=self.like.dtype, device=self.like.device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise arguments.not_a_number_error(label, value, error) from None

    def full(self, shape, value):
        return torch.full(shape, value, dtype=self.like.dtype, device=self.like.device)

    def finite(self, tensor):
        return finite(tensor)

    def broadcast(self, tensor, shape):
        try:
            return tensor.expand(shape)
        except RuntimeError:
            return None

    def plain(self, tensor):
        return tensor.detach()

    def cast(self, tensor):
        return tensor

    def check_scale(self, label, tensor):
        """Half-precision storage must hold a scale (a time constant, dt, a surrogate
        scale: the positive parameters) as a normal number: below that its precision
        is gone (float16 keeps hxtorch's 1e-5 s in a few bits, and the gradients of
        such constants overflow it).  A weight or threshold near 0 is just small."""
        if tensor.dtype not in HALF:
            return
        magnitude = tensor.detach().abs()
        tiny = torch.finfo(tensor.dtype).tiny
        if bool(((magnitude > 0) & (magnitude < tiny)).any()):
            raise arguments.below_normal_error(label, tensor.detach(), tensor.dtype, tiny)


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
        install = " (pip install numba)" if isinstance(error, ModuleNotFoundError) else ""
        warnings.warn(f"snnref: the fused CPU backend cannot run here ({error}); backend='auto' runs the slower "
                      f"torch path on CPU tensors instead{install}", RuntimeWarning, stacklevel=4)
    return "torch"


def check_backend_name(backend):
    """``backend`` must be one of ``BACKENDS`` (a module checks its own when built)."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend: unknown name {backend!r}; expected one of: {', '.join(BACKENDS)}")
    return backend


def _check_backend(row, backend, x, label="x"):
    """The backend that runs: "auto" is the Triton kernels for CUDA tensors they can
    store, the fused CPU scans for CPU tensors (torch where numba is missing).
    ``label`` is x's name in the messages."""
    arguments.check_type(label, x, torch.Tensor, "a torch.Tensor", " (snnref.spec.simulate takes NumPy arrays)")
    check_dense(label, x)
    check_backend_name(backend)
    chosen = backend
    if backend == "auto":
        backend = _auto(x)
        # The caller chose no backend: the message says what "auto" takes on this device.
        half = " (half precision on CUDA only)" if x.dtype in HALF else ""
        arguments.check_dtype(label, x.dtype, DTYPES[backend], f"backend 'auto' on {x.device.type}{half}")
    if backend != "torch" and torch.jit.is_tracing():
        # The fused scans take plain numbers and arrays, which a trace hands over as traced
        # tensors: numba failed with "Cannot determine Numba type of <class 'torch.Tensor'>".
        picked = f" (backend 'auto' picks it for {x.device.type} tensors)" if chosen == "auto" else ""
        raise RuntimeError(f"backend: torch.jit.trace cannot record the {backend!r} backend's fused scans{picked}; "
                           "pass backend='torch' (an argument of snnref.simulate and the compat functions, an "
                           "attribute of the modules), or use torch.compile, which runs the fused scans as they are")
    if backend == "cpu":
        if x.device.type != "cpu":
            raise ValueError(f"{label}: backend 'cpu' runs on CPU tensors, got {label} on {x.device}; "
                             f"use backend='triton' or 'torch' there, or move {label} to the CPU")
        error = _cpu_kernels_error()
        if error is not None:
            install = "pip install numba, or " if isinstance(error, ModuleNotFoundError) else ""
            raise ImportError(f"backend: 'cpu' cannot run here ({error}); {install}use backend='torch'")
    if backend == "triton" and importlib.util.find_spec(f"{__package__}.kernels.{row.family}") is None:
        raise ValueError(f"backend: 'triton' has no kernels for {row.key} (family {row.family!r}); "
                         "use backend='torch'")
    arguments.check_dtype(label, x.dtype, DTYPES[backend], f"backend {backend!r}")
    return backend


@untraced
@float32_under_autocast
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
    names=None,
) -> Trace:
    """Run ``model`` on the time-major tensor ``x`` of shape (T, ..., N).

    The arguments mean what they mean for ``snnref.spec.simulate``; values are
    dense torch tensors, all of ``x``'s dtype and device (a tensor of another is
    refused by name, as is a sparse, mkldnn or nested one), or numbers and
    NumPy arrays, which are converted to ``x``'s dtype and device.  ``backend`` is
    "torch", "triton", "cpu" or "auto" (the Triton kernels for CUDA tensors, the
    fused CPU scans for CPU tensors; without numba "auto" warns once and runs
    torch on CPU).  The torch and cpu backends take float32 and float64; only
    the Triton kernels store float16 and bfloat16 (computing in float32), so a
    half-precision CPU tensor is refused by name outside autocast (below).

    backend="cpu" (``snnref/kernels/cpu``, numba) runs on CPU tensors only and
    computes in x's dtype; a strided (non-contiguous) x or cotangent is copied
    once into a contiguous buffer before the scan, except a cotangent that is
    the same at every step (stride 0 in time, as ``y.sum()`` gives), which is
    read as its one row.  It runs on as many threads as torch's own
    operations (``torch.set_num_threads``), or on
    ``snnref.kernels.cpu.set_threads(n)`` (1 to the machine's cores).

    Under ``torch.autocast`` it computes in float32: float16 and bfloat16
    arguments are cast up and the call runs with autocast off (see
    ``float32_under_autocast``); the seed layers' functions and modules do the same.

    ``names`` (``snnref.arguments.Names``) is for layers built on this
    function: how their error messages name the arguments (the seed layers
    pass theirs, ``x_seq``, ``v_init``, ...).
    """
    check_untransformed()
    check_not_exported()
    row = registry.model(model)
    families.check_reset(row)
    arguments.check_flags(smooth=smooth, allow_nonfinite=allow_nonfinite)
    names = arguments.SIMULATE if names is None else names
    arguments.check_type("names", names, arguments.Names, "a snnref.arguments.Names (or None)")
    check_has_values(names.x, x)
    backend = _check_backend(row, backend, x, names.x)
    return _simulate_on(row, backend, x, params, state, surrogate, inject, smooth, detached, allow_nonfinite,
                        names)


def _simulate_on(row, backend, x, params, state, surrogate, inject, smooth, detached, allow_nonfinite, names):
    """``simulate`` from its arguments' checks on, on the backend chosen."""
    arrays = TorchArrays(x, names.x)
    x = arguments.check_x(row, x, arrays, allow_nonfinite, names)
    if backend == "triton":
        from .kernels import common

        common.check_launch(x)
    surrogate = arguments.check_surrogate(row, surrogate)
    params = arguments.check_params(row, params, x.shape[-1], arrays, allow_nonfinite, names)
    full_state, _ = arguments.check_state(row, state, params, x.shape[1:], arrays, allow_nonfinite, names)
    inject, steps = arguments.check_inject(row, inject, x.shape, arrays, allow_nonfinite, names)
    if steps < x.shape[0]:
        # Only when inject is shorter: an autograd-recorded full slice would cost
        # a zero-filled copy of x's gradient in the backward.
        x = x[:steps]
    frozen = arguments.check_detached(detached, x.shape, arrays, allow_nonfinite, smooth,
                                      registry.detached_keys(row, inject), row.key)
    family = _family(row, backend)
    check_input = getattr(family, "check_input", None)
    if check_input is not None:
        check_input(row, x, params)
    outputs, final, used = family.run(row, x, params, full_state, surrogate, inject, bool(smooth), frozen)
    if x.dtype in HALF and not allow_nonfinite:
        # Half storage saturates to inf silently: a quantity that left its range is an error.
        for name, value in list(outputs.items()) + [(f"final {k}", v) for k, v in final.items()]:
            if not finite(value):
                raise OverflowError(f"outputs[{name!r}]: leaves the {x.dtype} range (stored as inf); "
                                    "use float32 storage for this input")
    return Trace(row.key, surrogate, outputs, final, used)
