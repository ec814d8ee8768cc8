"""Fused CPU scans compiled with numba, installed as ``snnref.kernels.cpu``
(``backend="cpu"``; ``"auto"`` picks them for CPU tensors).

One module per model family, with the stems of ``snnref/spec``; each has a
forward and a backward scan (``@njit(nogil=True, cache=True)``) over tiles of
neurons with the time loop inside the tile (tiles spread over threads by
``_launch.run_tiles``), and one autograd Function whose
``run(row, x, params, state, surrogate, inject, smooth, detached)`` has the
contract of ``snnref/ops/<family>.py``.  ``_launch`` holds what they share:
allocation, zero-copy views, the fixed-order gradient reduction, threads
(torch's own OpenMP team, entered by ``_openmp``, where there is one).

Compiled kernels are cached next to the sources (``__pycache__``); where that
folder is not writable numba caches under ``NUMBA_CACHE_DIR`` or, unset, a
user cache directory of its own choosing.  ``njit`` is ``_cache_lock``'s:
numba's, with that cache read and written under a lock, so that processes
compiling at the same time cannot mix up their machine code, and kept only
while every file the machine code may hold is unchanged.
"""

import importlib

# The scans need numba: probing it here makes this package fail to import
# without it, and backend "auto" then falls back to the torch path.
_numba = importlib.import_module("numba")
if _numba.config.DISABLE_JIT:
    # numba's switch for debugging and coverage runs njit functions as Python, where the scans'
    # own LLVM intrinsics do not exist: every CPU call failed deep in a scan ("<intrinsic
    # wide_vectors> is not usable in pure-python"), backend "auto" included.
    raise ImportError("numba's JIT is off (NUMBA_DISABLE_JIT=1), and the fused scans run compiled only")

from ._launch import get_threads, release_memory, set_threads

__all__ = ["get_threads", "release_memory", "set_threads"]
