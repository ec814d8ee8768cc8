"""What every kernel family shares: launch checks and output allocation (the
launch itself, block sizes and gradient buffers are in ``_launch``).

Kernels run natively on CUDA tensors, and on CPU tensors under Triton's
interpreter, which must be switched on (``TRITON_INTERPRET=1``) before the
kernels are imported: ``triton.jit`` reads it when a kernel is defined.
"""

from __future__ import annotations

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
