"""Whether Triton's interpreter, where the kernels run on CPU tensors, can run them.

Every scan loops over a runtime step count (``for t in range(T)``).  Triton's
interpreter turns that count into a Python int from a one-element array, which
its releases before the fix of triton-lang/triton#9171 do with ``int(array)``:
NumPy 2.4 and later refuse that conversion for an array of one dimension, and
every launch then fails deep inside the interpreter.  ``fault`` runs one such
loop, once per process, so that the launch checks can name the versions instead.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


@triton.jit
def _count_steps(out_ptr, T):
    total = 0
    for _ in range(T):
        total += 1
    tl.store(out_ptr, total)


@functools.lru_cache(maxsize=None)
def fault():
    """None where the interpreter runs a loop over a runtime count, else what fails."""
    import numpy

    steps = torch.zeros(1, dtype=torch.int32)
    # Any error: the interpreter wraps what fails inside it (InterpreterError
    # since Triton 3.0), and whatever fails here would fail every scan.
    try:
        _count_steps[(1,)](steps, 3)
    except Exception as error:
        return (f"Triton {triton.__version__}'s interpreter cannot run a loop over a runtime count with "
                f"NumPy {numpy.__version__} ({error}; with NumPy 2.4 and later: triton-lang/triton#9171)")
    if steps.item() != 3:
        return f"Triton {triton.__version__}'s interpreter counted {steps.item()} of 3 loop steps"
    return None
