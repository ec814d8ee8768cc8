"""What every fused CPU scan shares: output allocation, zero-copy NumPy views,
per-lane parameters, optional cotangents, the fixed-order parameter-gradient
reduction and thread control.

Layout.  A time-major tensor of shape (T, ..., N) is viewed as a (T, M) array
with M = ``lane_count(x)`` lanes, lane m being neuron m mod N of batch row
m div N.
Initial states, and parameters unless each holds a single value
(``parameters``), are expanded to one value per lane, (M,), so a kernel never
divides lane indices: these are M values against the T * M of the sequences.
A cotangent has T rows, or one when it is the same at every step
(``cotangent``): a kernel reads its row ``t % rows``.

Tiles.  A kernel cuts the lanes into tiles of ``TILE`` (the last one partial)
and runs the whole time loop inside a tile (its state stays in cache);
``run_tiles`` spreads contiguous runs of tiles over threads.  Each lane is
owned by one tile, so no two threads ever write the same element and every
per-lane sum runs in time order: results do not depend on the thread count.
Where every row a tile loop writes starts on a cache line and the rows are
large (``run_tiles``'s ``streamed``), the loop writes them with streaming stores
(``_stream``): no read of each line before it is written.

Threads.  The kernels are compiled serially (``@njit(nogil=True)``) and
threaded here rather than with numba's ``prange``: each ``parallel=True``
function costs seconds of extra compilation, and with 28 kernels (7 families,
forward and backward, two dtypes) that was most of a cold start.  The
threads are torch's own OpenMP team where it can be entered (``_openmp``):
torch's threads keep polling for work for milliseconds after each torch
operation, and threads of the scans' own would share the cores with them.
By default the scans use as many threads as torch does (``get_threads``).

Parameter gradients.  A kernel accumulates each parameter's gradient per lane
in the compute dtype, in time order, as the spec's reverse loops do
(``snnref.spec.sums``): a float32 lane's sum makes the rounding that the
float32 run of the spec makes, which SPEC.md section 7's budget holds.  In
float64 those sums cost tether.LIF's backward kernel 0.85-0.88 against
0.63-0.69 ns per neuron-step (N = 2^20, T = 100, one thread): each float32
value widened to two half-width vectors.  ``reduce_lanes`` sums the lanes into
the parameter's shape in float64 with NumPy's pairwise summation over a fixed
shape, so reruns are bitwise identical.

Allocation.  Fresh outputs are most of a call's cost at large N: a new buffer's
first touch faults in one page at a time (here about 4 GB/s, against 25 GB/s
for writing touched memory).  ``empty`` therefore serves every output of 1 MiB
and more from a cache of blocks that earlier outputs left (a training loop asks
for the same sizes every step, and last step's outputs are gone by then), like
a GPU framework's caching allocator; a new block is asked for transparent huge
pages (``madvise(MADV_HUGEPAGE)``) before its first touch.  Per-lane arrays of
1 MiB and more (``lane_array``: parameters, accumulators, final states) come
from the same cache: at N = 2^20 they were 21 MB (LIF) and 40 MB (CUBA) of
new pages per forward+backward, faulted in on every call.  Every array cut from
a block starts at a staggered offset within a page (``_staggered``).  Nothing
to set up; ``release_memory()`` gives the idle blocks back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import math
import operator
import os
import sys
import threading
import warnings

import numpy as np
import torch

from snnref import _machine

from . import _openmp, _stream

# Lanes per tile (at most).  A tile reads and writes each step's rows as runs of
# TILE contiguous lanes, 4 MB apart at N = 2^20: short runs are slow (a
# stand-alone forward loop moving tether.LIF's bytes: 0.87 ns per neuron-step
# at 2048 lanes, 0.71 at 16384, 0.54 as one sweep of the whole array), while the
# tile's own lane arrays must stay in L2 (1 MB here).  With single-valued
# parameters (``parameters``) those are the states and the gradient sums (then
# float64): tether.LIF and hxtorch.cuba_lif forward+backward at N = 2^20, one
# thread, ran 22% faster at 32768 lanes than at 2048 (16384 and 65536 in between
# or equal).  With per-lane parameters 2048 and 32768 ran within 10%.
TILE = 32768


@contextlib.contextmanager
def tile_size(lanes: int):
    """For tests: every scan inside the ``with`` cuts the lanes into tiles of
    ``lanes`` (read per launch), so a small case runs as several tiles with a
    partial last one, as large ones do."""
    global TILE
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes: expected a positive int, got {lanes!r}")
    previous, TILE = TILE, lanes
    try:
        yield
    finally:
        TILE = previous

_HUGE_PAGE = 2 << 20
# Outputs from 1 MiB up come from the block cache (below, first touch is cheap
# next to the call's fixed costs).
_CACHED_FROM = 1 << 20
_MADV_HUGEPAGE = 14


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


def size_class(size: int) -> int:
    """The block size that serves a request of ``size`` bytes: rounded up to one
    of eight sizes per power of two (at most 12.5% more).  A loop whose lengths
    vary (T = 60, 61, 62, ...) asks for a new size every call; served only by a
    block of the same size, each call left one more idle block, up to the
    cache's limit (an outside user's run: 4.4 GB resident after 100 steps)."""
    step = 1 << max(size.bit_length() - 4, 0)
    return -(-size // step) * step


class _Blocks:
    """Large output buffers kept for reuse.  A block is a NumPy byte array that
    the tensors made from it reference; it is free again when no tensor does
    (only this cache holds it), and the next request of its size class
    (``size_class``) takes it, already touched.  An idle block that no request
    took in the last ``stale`` requests is let go (a size the loop no longer
    asks for), and so are the oldest idle blocks beyond ``limit`` idle bytes.
    Blocks in use do not count: they are their tensors' memory, which the
    caller holds anyway.  Counted, outputs a loop kept alive (the benchmark's
    reused pools, 3.2 GB at hxtorch.cuba_lif's N = 2^20, T = 100) pushed every
    released block out, and every later call touched new memory: 12.6 against
    1.5 ns per neuron-step.  Without ``reuse`` every request gets a new block,
    which the cache does not keep."""

    def __init__(self, limit, stale=1024, reuse=True):
        self.limit = limit
        self.stale = stale
        self.reuse = reuse
        # [block, the request count when it was last handed out], oldest first.
        self.blocks = []
        self.requests = 0
        self.lock = threading.Lock()

    @staticmethod
    def _idle(block):
        # No tensor refers to it: the only references are the entry's list, the
        # caller's variable, this parameter and getrefcount's argument.
        return sys.getrefcount(block) <= 4

    def take(self, size):
        size = size_class(size)
        with self.lock:
            self.requests += 1
            for entry in self.blocks if self.reuse else ():
                block = entry[0]
                if block.nbytes == size and self._idle(block):
                    entry[1] = self.requests
                    self._trim()
                    return block
            block = np.empty(size, dtype=np.uint8)
            if _MADVISE is not None:
                start = -(-block.ctypes.data // _HUGE_PAGE) * _HUGE_PAGE
                stop = (block.ctypes.data + size) // _HUGE_PAGE * _HUGE_PAGE
                if stop > start:
                    _MADVISE(start, stop - start, _MADV_HUGEPAGE)
            if self.reuse:
                self.blocks.append([block, self.requests])
                self._trim()
            return block

    def _trim(self):
        idle = []
        for entry in self.blocks:
            # Through a variable, as in take: _idle's count of references assumes it.
            block = entry[0]
            idle.append(self._idle(block))
        idle_bytes = sum(entry[0].nbytes for entry, free in zip(self.blocks, idle) if free)
        kept = []
        for entry, free in zip(self.blocks, idle):
            if free and (idle_bytes > self.limit or self.requests - entry[1] > self.stale):
                idle_bytes -= entry[0].nbytes
            else:
                kept.append(entry)
        self.blocks = kept

    def release(self):
        with self.lock:
            self.blocks = [entry for entry in self.blocks if not self._idle(entry[0])]


def idle_is_told_apart() -> bool:
    """Whether ``_Blocks._idle`` tells a block that a tensor's view holds from
    one that only the cache holds, on this interpreter: it counts references,
    and what ``sys.getrefcount`` counts is CPython's detail (3.14's says it may
    count fewer).  Told wrong, a block still held would be handed out again: an
    output kept by the caller overwritten by a later call."""
    blocks = _Blocks(limit=1 << 20)
    held = torch.from_numpy(blocks.take(64)[1:])
    # The first block is held: the second request must get a new one ...
    other = blocks.take(64)
    kept_apart = len(blocks.blocks) == 2
    del held, other
    # ... and, both let go, the third one of them again.
    blocks.take(64)
    return kept_apart and len(blocks.blocks) == 2


def _output_blocks():
    """The process's output cache, which reuses blocks where ``idle_is_told_apart``."""
    reuse = idle_is_told_apart()
    if not reuse:
        warnings.warn(f"snnref.kernels.cpu: this Python ({sys.version.split()[0]}) counts references otherwise "
                      "than the output cache expects, so outputs are not reused: each call's outputs are new "
                      "memory (correct, slower at large sizes)", RuntimeWarning, stacklevel=2)
    # Enough for the outputs of a few training steps at N = 2^20, T = 100.
    return _Blocks(limit=4 << 30, reuse=reuse)


_BLOCKS = _output_blocks()


@functools.lru_cache(maxsize=None)
def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of a torch dtype (asked of torch once per dtype: a few
    microseconds that each call of a scan paid about ten times)."""
    return torch.empty((), dtype=dtype).numpy().dtype


def empty(shape, dtype) -> torch.Tensor:
    """A new CPU tensor for a kernel's output.  Small ones come from torch; one of
    1 MiB and more is cut from a block of ``_BLOCKS`` (the memory of an output
    that is no longer referenced, or a new buffer asked for huge pages before
    its first touch) at a staggered start within a page (``_staggered``)."""
    count = 1
    for extent in shape:
        count *= int(extent)
    itemsize = numpy_dtype(dtype).itemsize
    if count * itemsize < _CACHED_FROM:
        return torch.empty(shape, dtype=dtype)
    block = _BLOCKS.take(count * itemsize + _PAGE)
    return torch.from_numpy(_staggered(block, count * itemsize, itemsize)).view(dtype).view(tuple(shape))


def release_memory() -> None:
    """Give back the cached output blocks that no tensor uses any more."""
    _BLOCKS.release()


def untracked(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without autograd history, which ``.numpy()`` refuses.  Most
    tensors here have none (outputs, cotangents, a backward's results), and
    detaching each anyway was 40 of a cuba_lif call's 162 torch operations:
    each costs microseconds, more when a scan has just flushed the caches
    (``tools/bench_cpu.py --flatness`` measures a call's fixed cost)."""
    return tensor.detach() if tensor.requires_grad else tensor


def contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself when contiguous, else one contiguous copy (into a
    buffer from ``empty``: a strided input or a broadcast cotangent such as
    that of ``out.sum()`` is as large as an output)."""
    tensor = untracked(tensor)
    if tensor.is_contiguous():
        return tensor
    return empty(tensor.shape, tensor.dtype).copy_(tensor)


def lane_count(tensor: torch.Tensor) -> int:
    """M, the lanes of a time-major tensor: the elements of one step (from
    the shape: indexing a step would be one more torch operation)."""
    return math.prod(tensor.shape[1:])


def sequence(tensor: torch.Tensor) -> np.ndarray:
    """A (T, M) view of a time-major tensor (copied once if it is strided)."""
    tensor = contiguous(tensor)
    return tensor.numpy().reshape(tensor.shape[0], lane_count(tensor))


def lanes(tensor: torch.Tensor) -> np.ndarray:
    """The (M,) view of a contiguous per-step tensor (a kernel's output)."""
    return untracked(tensor).numpy().reshape(-1)


_PAGE = 4096
# Start offsets (bytes, mod the page) of successive large arrays: 12 distinct
# multiples of the cache line.
_STAGGER = 320
_SLOTS = itertools.count()


def _staggered(buffer: np.ndarray, nbytes: int, itemsize: int) -> np.ndarray:
    """``nbytes`` of a byte ``buffer`` that has a page to spare, from a start
    staggered against the previous calls' within a page.  A tile loop loads
    and stores element i of many per-lane arrays and rows; large allocations
    all start at the same offset in a page (and a row of N = 2^k lanes is a
    whole number of pages), so those accesses collide in the core's
    page-offset store-to-load check (4K aliasing).  Staggering the per-lane
    arrays took LIF's backward kernel from about 1.7 to 1.5 ns per
    neuron-step here (N = 2^20), ALIF's float64 backward about 10% faster;
    staggering the outputs' rows as well (a backward reads the recorded rows
    and writes dx's) took whole forward+backward calls at N = 2^20 on two
    threads from 1.77 to 1.60 ns (tether.LIF) and 2.61 to 2.18 (cuba_lif)."""
    wanted = _STAGGER * (next(_SLOTS) % 12)
    skip = (wanted - buffer.ctypes.data) % _PAGE // itemsize * itemsize
    return buffer[skip:skip + nbytes]


# Per-lane arrays smaller than this are plain NumPy arrays, not staggered: a
# scan whose lanes fit in a page is all fixed cost (each staggered array cost
# a call about 3 us, of tether.LIF's 150 us forward+backward at 64 lanes).
_STAGGERED_FROM = _PAGE


def lane_array(shape, dtype) -> np.ndarray:
    """A new per-lane array (per-step ``shape``, NumPy ``dtype``) at a
    staggered start (``_staggered``) from a page up.  One of 1 MiB and more
    is cut from a block of the output cache (see Allocation above)."""
    dtype = np.dtype(dtype)
    count = math.prod(int(extent) for extent in shape)
    if count * dtype.itemsize < _STAGGERED_FROM:
        return np.empty(tuple(shape), dtype=dtype)
    size = count * dtype.itemsize + _PAGE
    buffer = _BLOCKS.take(size) if size >= _CACHED_FROM else np.empty(size, dtype=np.uint8)
    return _staggered(buffer, count * dtype.itemsize, dtype.itemsize).view(dtype).reshape(tuple(shape))


def empty_lanes(shape, dtype) -> torch.Tensor:
    """A new CPU tensor of one step's shape (a final state or an initial
    state's gradient): a ``lane_array`` the kernels write into."""
    return torch.from_numpy(lane_array(shape, numpy_dtype(dtype)))


def per_lane(value: torch.Tensor, step_shape) -> np.ndarray:
    """One value per lane: a parameter or state broadcast to a step's shape, (M,)."""
    value = untracked(value)
    lanes = lane_array(step_shape, numpy_dtype(value.dtype))
    lanes[...] = value.expand(step_shape).numpy()
    return lanes.reshape(-1)


def parameters(values, step_shape) -> list:
    """A scan's parameter tensors as NumPy scalars when every one is a single
    value, else as per-lane arrays (``per_lane``), all of them.  All or none,
    so that a kernel is compiled for two kinds of arguments, not for every mix
    (see ``_parameters``)."""
    if all(value.numel() == 1 for value in values):
        # item() is exact: a float32 value is a float64 one, and back.
        return [numpy_dtype(value.dtype).type(value.item()) for value in values]
    return [per_lane(value, step_shape) for value in values]


def constants(dtype) -> np.ndarray:
    """1 and pi in the compute dtype: a kernel reads its constants from here, so
    that no Python float literal promotes float32 arithmetic to float64."""
    return np.array([1.0, math.pi], dtype=numpy_dtype(dtype))


def placeholder(dtype, rank: int) -> np.ndarray:
    """A stand-in for an absent optional array (its flag says not to read it)."""
    return np.zeros((1,) * rank, dtype=numpy_dtype(dtype))


def optional(tensor, dtype, rank: int = 2):
    """(view, present) of a cotangent or observation that may be None."""
    if tensor is None:
        return placeholder(dtype, rank), False
    return (sequence(tensor) if rank == 2 else contiguous(tensor).numpy().reshape(-1)), True


def cotangent(tensor, dtype):
    """(view, present) of a sequence's cotangent that may be None.  One that is
    the same at every step, stride 0 in time (the broadcast gradient of
    ``out.sum()`` or ``out.mean()``), is passed as its one row, (1, M): the
    kernels read row ``t % rows`` of a cotangent.  Materialized, it would be
    one more sequence written (0.46 of LIF's 3 ns per neuron-step here) and
    held at the backward's peak."""
    if tensor is not None and tensor.dim() > 0 and tensor.shape[0] > 1 and tensor.stride(0) == 0:
        row = contiguous(tensor[0])
        return row.numpy().reshape(1, row.numel()), True
    return optional(tensor, dtype)


def lane_sums(lane_count: int, dtype: torch.dtype) -> np.ndarray:
    """A per-lane accumulator in the compute ``dtype`` (the kernel zeroes it)."""
    return lane_array((lane_count,), numpy_dtype(dtype))


def reduce_lanes(per_lane_sums: np.ndarray, like: torch.Tensor, neurons: int) -> torch.Tensor:
    """Per-lane gradient sums reduced to the parameter ``like``'s shape and dtype,
    in a fixed order: over batch rows per neuron, then over neurons for a scalar."""
    rows = per_lane_sums.reshape(-1, max(neurons, 1))
    # Lanes whose sums are +inf and -inf add to NaN, as torch's sum gives on the
    # torch path, silently: NumPy would warn ("invalid value encountered in
    # reduce"), an error under -W error or pytest's filterwarnings, on every
    # overflowing step of a GradScaler run, which expects non-finite gradients.
    with np.errstate(invalid="ignore", over="ignore"):
        # In float64: the lanes' sums (in the compute dtype) carry their own
        # rounding, and adding them in float32 would put more on top.
        if like.numel() == 1:
            # With one batch row the row is its own sum over rows (the same bits),
            # without the copy that sum(axis=0) makes.
            per_neuron = rows[0] if rows.shape[0] == 1 else rows.sum(axis=0, dtype=np.float64)
            total = per_neuron.sum(dtype=np.float64)
        else:
            total = rows.sum(axis=0, dtype=np.float64)
        # Rounded to the parameter's dtype and shaped in NumPy: one torch
        # operation where torch.tensor, .to and .reshape took 8 us per parameter.
        return torch.from_numpy(np.asarray(total, dtype=numpy_dtype(like.dtype)).reshape(like.shape))


def machine_threads() -> int:
    """The cores this process may run on (the most threads the scans will use)."""
    return _machine.cores()


# The count ``set_threads`` gave, or None: torch's own (``get_threads``).
_THREADS = [None]
# (workers, executor): the threads of the scans' own, where torch's OpenMP team
# cannot be entered (``run_tiles``).
_POOL = []
# Marks the pool's threads: a scan launched from one runs there, serially (the
# pool's other threads may all be waiting on the launch that holds this one).
_POOL_THREAD = threading.local()


def _mark_pool_thread():
    _POOL_THREAD.marked = True


def _forget_pool():
    # A forked child has none of the parent's threads: it starts a pool of its own.
    _POOL.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def check_threads(count) -> int:
    """A thread count for the scans: an integer (a NumPy one too: ``__index__``)
    from 1 to the machine's cores."""
    limit = machine_threads()
    if isinstance(count, bool) or not hasattr(count, "__index__"):
        raise TypeError(f"threads: expected an int from 1 to {limit} (or None: torch's count), got {count!r}")
    count = operator.index(count)
    if not 1 <= count <= limit:
        raise ValueError(f"threads: expected 1 to {limit} (this machine's maximum), got {count}")
    return count


def set_threads(count) -> None:
    """Run the CPU scans on ``count`` threads; None, the default, on as many
    as torch's own parallel operations (``torch.get_num_threads()``)."""
    _THREADS[0] = None if count is None else check_threads(count)


def get_threads() -> int:
    """The scans' thread count: the one ``set_threads`` gave, else torch's.
    Following torch by default, a process that limits torch's threads (a
    DataLoader worker, one of several runs sharing a machine, our own
    ``snnref verify --jobs`` rows) limits the scans' too, rather than each
    process starting a team on every core."""
    if _THREADS[0] is not None:
        return _THREADS[0]
    return max(1, min(torch.get_num_threads(), machine_threads()))


def tile_lanes(lane_count: int) -> int:
    """Lanes per tile for a scan of ``lane_count`` lanes: ``TILE``, or fewer
    (a multiple of 64) where that leaves a thread without a tile."""
    per_thread = -(-lane_count // get_threads())
    return min(TILE, max(64, -(-per_thread // 64) * 64))


# A scan whose largest array (a (T, M) sequence) holds fewer elements runs in
# the calling thread: a launch on two threads costs about 80 us more than one
# in this thread (the members take the GIL in turn to call the kernel; less
# since the main thread's team keeps its thread states, see _openmp).
# Forward+backward with fresh outputs, two threads against one (alternating
# calls, since the threads keep their states): tether.LIF 1.33 times one
# thread's time at 102,400 neuron-steps, 0.99 at 204,800, 0.88 at 409,600;
# hxtorch.cuba_lif 1.09, 0.95 and 0.85.
PARALLEL_FROM = 1 << 18


def run_tiles(kernel, lane_count: int, *args, streamed=None) -> None:
    """``kernel(*args, tile, first_tile, last_tile)`` over every tile of
    ``lane_count`` lanes, ``tile`` lanes each (``tile_lanes``): in this thread
    (one tile, a scan smaller than ``PARALLEL_FROM``, a launch from a thread
    of the pool), or split into contiguous runs of tiles over the threads
    (the kernels release the GIL): torch's OpenMP team (``_openmp``) where it
    can, else a pool of this module's own.  Each lane belongs to one tile and
    is computed alone, so neither the tile size nor the split changes a
    result.

    A kernel that takes a kind of store gets it before ``tile``: ``streamed``
    lists the (T, M) arrays it may write with streaming stores (none: an
    empty list), and ``_stream.streams`` decides at this launch's tile size
    (``empty``'s arrays start on a cache line; the row length and the rows'
    size decide)."""
    tile = tile_lanes(lane_count)
    if streamed is not None:
        args += (_stream.streams(tile, *streamed),)
    tiles = -(-lane_count // tile)
    workers = min(get_threads(), tiles)
    if workers > 1 and max((a.size for a in args if isinstance(a, np.ndarray)), default=0) < PARALLEL_FROM:
        workers = 1
    if workers <= 1 or getattr(_POOL_THREAD, "marked", False):
        kernel(*args, tile, 0, tiles)
        return
    if _openmp.AVAILABLE:
        _openmp.launch(kernel, args, tile, tiles, workers)
        return
    if not _POOL or _POOL[0][0] < workers:
        _POOL[:] = [(workers, concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="snnref-cpu",
                                                                    initializer=_mark_pool_thread))]
    bounds = [tiles * k // workers for k in range(workers + 1)]
    futures = [_POOL[0][1].submit(kernel, *args, tile, first, last) for first, last in zip(bounds, bounds[1:])]
    for future in futures:
        future.result()
