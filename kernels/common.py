"""What every kernel family shares: launch checks, output allocation and the
decorator of device functions (the launch itself, block sizes and gradient
buffers are in ``_launch``).

Kernels run natively on CUDA tensors, and on CPU tensors under Triton's
interpreter, which must be switched on (``TRITON_INTERPRET=1``) before the
kernels are imported: ``triton.jit`` reads it when a kernel is defined.
"""

from __future__ import annotations

import functools
import os

import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
MAX_NEURONS = 2**31 - 1  # lane offsets are int32; time offsets are int64


def check_launch(x: torch.Tensor) -> None:
    """A clear error before any launch for what the kernels cannot run (the
    storage dtype is checked with the other arguments, in snnref.backend)."""
    if x.device.type == "cpu" and not INTERPRETED:
        raise ValueError("backend: 'triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
                         "before importing snnref, move the tensors to CUDA, or use backend='torch'")
    if x.device.type == "cpu":
        # Imported here: the launch checks need no Triton on CUDA tensors.
        from . import _interpreter

        fault = _interpreter.fault()
        if fault is not None:
            raise RuntimeError(f"backend: 'triton' on CPU tensors runs under Triton's interpreter, and here {fault}; "
                               "upgrade triton, install numpy<2.4, move the tensors to CUDA, or use "
                               "backend='cpu' or 'torch'")
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"x: the triton backend runs on CUDA (or CPU under the interpreter), got {x.device}")
    neurons = x[0].numel()
    if neurons > MAX_NEURONS:
        raise ValueError(f"x: at most {MAX_NEURONS} neurons per step in one launch, got {neurons}")


def empty(shape, dtype, device) -> torch.Tensor:
    """Every kernel output comes from here, so tests can poison it with NaN."""
    return torch.empty(shape, dtype=dtype, device=device)


def per_neuron(param: torch.Tensor) -> bool:
    """A parameter read per neuron (shape (N,)) rather than as one value."""
    return param.numel() > 1


@functools.lru_cache(maxsize=None)
def _direct_class():
    """A subclass of the interpreter's jit function whose call runs the
    rewritten body directly, or None where this Triton's interpreter does not
    have the ``InterpretedFunction.rewrite`` it relies on."""
    # Imported here, not above: the launch checks need no Triton.
    import triton.runtime.interpreter as interpreter

    interpreted = getattr(interpreter, "InterpretedFunction", None)
    if interpreted is None or not callable(getattr(interpreted, "rewrite", None)):
        return None

    class DirectDeviceFunction(interpreted):
        def __call__(self, *args, **kwargs):
            return self.rewrite()(*args, **kwargs)

    return DirectDeviceFunction


def device_function(fn):
    """``triton.jit`` for a function that kernels call and nothing launches.

    On a GPU it is ``triton.jit`` itself.  Under the interpreter, Triton's own
    call of a device function first re-applies its patches of
    ``triton.language``, inspecting every member of the language modules:
    about 1 ms a call here, and the kernels call device functions at every
    step (23,844 calls in tether.LIF's row of ``snnref verify``), a third of
    the Triton rows' time.  The launch that runs the calling kernel has
    applied those patches already, for its whole grid, and a device function
    shares the kernel's ``triton.language``; so a device function of this
    package runs its rewritten body directly (the same code, the same
    results: a test compares both calls).  Where the interpreter lacks what
    this relies on (``InterpretedFunction.rewrite``), Triton's own call.

    For the same reason the kernels write zeros as ``tl.full(shape, 0.0,
    dtype)`` (or ``offs * 0``) and the sigmoid's expression rather than call
    ``tl.zeros``, ``tl.zeros_like`` and ``tl.sigmoid``, jit functions of
    Triton's standard library with those same expressions (4,356 calls in
    that row)."""
    import triton

    jitted = triton.jit(fn)
    direct = _direct_class() if INTERPRETED else None
    if direct is not None and isinstance(jitted, direct.__mro__[1]):
        jitted.__class__ = direct
    return jitted
