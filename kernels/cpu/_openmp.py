"""The scans' threads as a parallel region of torch's own OpenMP team.

Why.  torch runs its parallel operations (a sum, a matmul) on an OpenMP team,
whose threads keep polling for the next region for a while after each one
(libgomp waits actively by default: milliseconds here) before they sleep.  A
scan on threads of its own then shares the cores with polling threads whenever
a torch operation ran just before it, which in a training step is always (the
layer before, the input's finiteness check, the loss).  Measured here,
tether.LIF forward+backward on two threads, the scans alone, both launchers
interleaved in one process (two runs), ns per neuron-step: at N = 2^16,
T = 100 (a call of about 10 ms) 1.78-2.15 on threads of their own against
1.13-1.40 on torch's team; at N = 2^20 1.10-1.17 against 1.03-1.11.

How.  ``launch`` enters a parallel region through GCC's OpenMP entry point
``GOMP_parallel(body, data, threads, flags)``, which libgomp exports and the
LLVM and Intel runtimes provide for compatibility.  It is looked up among the
process's global symbols, where importing torch put the runtime that torch
calls (had another runtime been loaded there first, torch would bind to that
one too).  ``body`` is one ctypes callback for every launch: each member of the
team (the calling thread is member 0) takes the GIL, computes its contiguous
run of tiles from its number and the team's size, which can be smaller than
asked (a launch from inside a region runs as a team of one), and calls the
kernel, which releases the GIL while it computes.  An exception in any member
is raised in the caller once the region has ended.

Thread states.  A callback entered on a thread that Python does not know makes
a Python thread state for the call and deletes it on return: a launch on two
threads of a body that does nothing took 28-37 us here, 2.8 once the states
were kept.  A member of the main thread's team therefore keeps its thread's
state on its first call (one ``PyGILState_Ensure`` never released), so later
calls on the same thread only take the GIL.  ``launch`` of a kernel that does
no work, two threads, alternating processes: 31-64 us right after a torch sum
and 58-78 after 5 ms idle, against 15-36 and 33-49 with the states kept.
What this keeps is a thread state per thread of that team, a few kilobytes
each, for as long as the process runs.  Another Python thread's team is left
as it was: libgomp ends that team when the thread exits, and a kept state
would be left behind (200 short-lived threads that each launched a scan kept
about 1 MB more).

``AVAILABLE`` is False where torch does not run on OpenMP, where its runtime is
not among the global symbols, and in a child process forked from this one (an
OpenMP team does not survive a fork: libgomp waits forever for the parent's
threads, and so do torch's own parallel operations there); ``_launch.run_tiles``
then runs the tiles on a thread pool of its own.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading

import torch


def _entry_points():
    """(GOMP_parallel, omp_get_thread_num, omp_get_num_threads) of the runtime
    torch calls, or None."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        symbols = ctypes.CDLL(None)
        parallel, member, team_size = symbols.GOMP_parallel, symbols.omp_get_thread_num, symbols.omp_get_num_threads
    except (OSError, AttributeError, TypeError):  # no such symbols, or no global namespace (Windows)
        return None
    parallel.argtypes = (_BODY_TYPE, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
    parallel.restype = None
    for query in (member, team_size):
        query.argtypes = ()
        query.restype = ctypes.c_int
    return parallel, member, team_size


_BODY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_ENTRY_POINTS = _entry_points()
AVAILABLE = _ENTRY_POINTS is not None

# Launches in progress, by number: the callback's data is the number, so that
# launches from several Python threads at once each find their own.
_LAUNCHES = {}
_NUMBERS = itertools.count(1)


def _state_keeper():
    """``PyGILState_Ensure`` (see Thread states above), or None outside CPython."""
    try:
        ensure = ctypes.pythonapi.PyGILState_Ensure
    except AttributeError:
        return None
    ensure.argtypes = ()
    ensure.restype = ctypes.c_int
    return ensure


_KEEP_STATE = _state_keeper()
# Set on a member's thread once its thread state is kept: a threading.local
# lives in the thread state, so it is set only while the state persists.
_KEPT = threading.local()


def _member(number):
    kernel, args, tile, tiles, errors, keep = _LAUNCHES[number]
    if keep and not getattr(_KEPT, "state", False):
        _KEEP_STATE()
        _KEPT.state = True
    _, member, team_size = _ENTRY_POINTS
    try:
        size, rank = team_size(), member()
        first, last = tiles * rank // size, tiles * (rank + 1) // size
        if first < last:
            kernel(*args, tile, first, last)
    except BaseException as error:  # raised in the caller once the region ends
        errors.append(error)


_BODY = _BODY_TYPE(_member)


def launch(kernel, args, tile: int, tiles: int, threads: int) -> None:
    """``kernel(*args, tile, first, last)`` over tiles [0, tiles), split into
    contiguous runs over a team of ``threads`` (or fewer) of torch's OpenMP
    threads, this one among them."""
    number = next(_NUMBERS)
    errors = []
    keep = _KEEP_STATE is not None and threading.current_thread() is threading.main_thread()
    _LAUNCHES[number] = (kernel, args, tile, tiles, errors, keep)
    try:
        _ENTRY_POINTS[0](_BODY, number, threads, 0)
    finally:
        del _LAUNCHES[number]
    if errors:
        raise errors[0]


def _forked():
    global AVAILABLE
    AVAILABLE = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
