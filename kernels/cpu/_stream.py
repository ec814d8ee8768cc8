"""Streaming (non-temporal) stores for the rows a tile loop writes and no later
step of the same scan reads: the forward's outputs, the backward's dx.

A plain store to memory that is not in cache first reads the line it writes
into (read for ownership), so a sequence written through the caches costs its
bytes twice in memory traffic.  A non-temporal store writes whole lines
without that read and without evicting the tile's state from the caches.
Measured here (one thread, N = 2^20, T = 100, float32, 8 bytes per
neuron-step: a scaled copy of one sequence into another, interleaved, medians
of 7): through the caches 38.7 ms, streamed 24.8 ms, torch's own copy 32.3 ms.
tether.LIF's forward+backward kernels with reused outputs, the code before and
after in consecutive processes: 1.04 -> 0.86 ns per neuron-step on a quiet
machine (1.10 -> 0.84 and 1.32 -> 0.90 on a busier one).  Whole calls with
fresh outputs and a loss's sum, both kinds of store in one process,
interleaved (ns per neuron-step): tether.LIF 1.37 -> 1.16, tether.ALIF 2.29
-> 1.91, rnnbuilder.Adaptive 2.02 -> 1.79, Cooldown 4.44 -> 4.17,
Discontinuous 1.15 -> 0.98, hxtorch.cuba_lif 1.66 -> 1.57,
cuba_refractory_lif 3.10 -> 2.67, cuba_li 1.89 -> 1.71.  Results are the same
bits: a store's value does not depend on how it reaches memory.

Alignment.  A vector non-temporal store of w bytes faults unless its address
is a multiple of w, and LLVM's vectorizer takes a vector store's alignment
from the scalar store it widens (it does not vectorize a non-temporal store
it cannot take as aligned).  ``put`` therefore declares ``ALIGNMENT`` (64
bytes, a zmm register) on every streamed store, which is not true of each: the
vectorized loop's pieces at +32 bytes, its epilogue's narrower vectors and
the scalar remainder carry it too.  What holds, and what the x86 backend
needs (it reads the declared alignment only to choose movntps), is that each
store that runs starts at a multiple of its own width: ``streams`` allows
``put`` only where each written row of a tile starts on a 64-byte boundary
(the array's start, its row length and the tile size are all multiples of 64
bytes), so the tile's width is a multiple of 64 bytes and the vector loop,
its epilogue and any unrolled group of the remainder each start aligned to
their width.  A scalar non-temporal store (movntss; Intel cores drop the
hint) takes any address of its element's alignment.  A row that the same
tile reads back (attention's spikes) is written plainly, or first kept in a
scratch row (ALIF's dx), since a streamed line would be read back from
memory; sigmoid's backward in Cooldown and Discontinuous is not streamed
either.  Elsewhere the kernels store as before.

Size.  A launch streams only where its written rows hold at least
``STREAM_FROM`` bytes, a quarter of the largest cache this machine reports
(8 MiB of 32 here): smaller rows stay in the caches for whoever reads them
next (the backward, the next layer), where streamed ones would come back from
memory.  Whole forward+backward calls (fresh outputs, a loss's sum, float32,
T = 100, one thread), every launch streamed against none, interleaved, by the
MiB the forward writes: tether.LIF 1.17 times the plain call's time at 3.1,
1.18 at 4.7, 1.10 at 6.2, 0.88 at 12.5, 0.92 at 25, 0.89 at 50 and 0.85 at
800; hxtorch.cuba_lif 1.09 at 4.7, 1.00 at 7.0, 0.93 at 9.4, 0.79 at 18.8 and
0.90 at 1200.

Visibility.  Streamed lines sit in write-combining buffers, outside x86's
ordinary store order, until they drain.  ``drain`` (``sfence``) ends every
tile that streamed, before the thread reports the tile done, so whoever reads
the rows next (another thread, the backward, the caller) sees them.

Compilation.  ``streams`` answers with a ``StoreKind``, ``STREAMED`` or
``PLAIN``, which the scans take as an argument and numba types as the
literal True or False (its ``_numba_type_``) and passes on to ``put`` and
``drain``, which read the constant when they are compiled and emit the one
kind of store (or fence) it names: each scan is compiled per kind on its
first call with that kind, neither compiled loop keeps a branch, and a
process whose rows never stream (most tests, every small model) never
compiles the streaming loops.  A plain bool would be one runtime argument
for both kinds (``put`` refuses it); numba's ``literally``
instead re-types the scan on every call (the default test run took 1903 s
against 699).  numba's C dispatcher reads ``_numba_type_`` itself: a launch
took 0.3-0.6 us longer than with a bool (about 2 us through ``typeof_impl``).

Only on x86-64, where this was measured; on other machines ``streams`` is
``PLAIN``, and ``put`` is a plain store.
"""

from __future__ import annotations

import glob
import platform

import llvmlite.ir
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

ALIGNMENT = 64
STREAMING = platform.machine().lower() in ("x86_64", "amd64")


def _largest_cache(default: int = 32 << 20) -> int:
    """Bytes of the largest cache of CPU 0 (Linux's sysfs), else ``default``."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for entry in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(entry) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text[:-1].isdigit() and text[-1] in units:
            sizes.append(int(text[:-1]) * units[text[-1]])
    return max(sizes, default=default)


STREAM_FROM = _largest_cache() // 4


class StoreKind:
    """How a scan writes its output rows: with ``put`` (``STREAMED``) or
    plainly (``PLAIN``).  True for ``STREAMED``; a scan's argument of this
    class is a constant in its compiled code (see Compilation above)."""

    __slots__ = ("streaming", "_numba_type_")

    def __init__(self, streaming: bool):
        self.streaming = streaming
        # The type numba gives the argument: the literal, not bool.
        self._numba_type_ = types.literal(streaming)

    def __bool__(self) -> bool:
        return self.streaming

    def __repr__(self) -> str:
        return "STREAMED" if self.streaming else "PLAIN"


STREAMED, PLAIN = StoreKind(True), StoreKind(False)


def streams(tile: int, *rows: np.ndarray) -> StoreKind:
    """``STREAMED`` where a scan cutting its lanes into tiles of ``tile``
    lanes may write the (T, M) arrays ``rows`` with ``put`` (see Alignment
    and Size above), else ``PLAIN`` (also where there are no ``rows``)."""
    if not STREAMING or not rows or sum(array.nbytes for array in rows) < STREAM_FROM:
        return PLAIN
    for array in rows:
        itemsize = array.itemsize
        if not array.flags.c_contiguous or array.ctypes.data % ALIGNMENT \
                or (array.shape[-1] * itemsize) % ALIGNMENT or (tile * itemsize) % ALIGNMENT:
            return PLAIN
    return STREAMED


def _constant_kind(streaming) -> bool:
    """The value of a scan's ``streaming`` argument, which numba must have typed
    as a literal (a ``StoreKind``; see Compilation above)."""
    if not isinstance(streaming, types.BooleanLiteral):
        raise TypingError(f"streaming: expected a StoreKind (STREAMED or PLAIN), a constant of the compiled loop; "
                          f"got {streaming}")
    return STREAMING and streaming.literal_value


@intrinsic
def put(typingctx, row, index, value, streaming):
    """``row[index] = value`` for a C-contiguous 1-D ``row``: where
    ``streaming`` is ``STREAMED`` (on x86-64), a non-temporal store declared
    ``ALIGNMENT``-aligned, else a plain store."""
    nontemporal = _constant_kind(streaming)
    signature = types.none(row, index, value, streaming)

    def codegen(context, builder, signature, args):
        array_type, _, value_type, _ = signature.args
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]], wraparound=False,
                                           boundscheck=False)
        converted = context.cast(builder, args[2], value_type, array_type.dtype)
        if not nontemporal:
            builder.store(converted, pointer)
            return context.get_dummy_value()
        store = builder.store(converted, pointer, align=ALIGNMENT)
        hint = builder.module.add_metadata([llvmlite.ir.Constant(llvmlite.ir.IntType(32), 1)])
        store.set_metadata("nontemporal", hint)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def drain(typingctx, streaming):
    """Where ``streaming`` is ``STREAMED`` (on x86-64), make every streamed
    store of this thread visible before what follows (``sfence``); nothing
    otherwise."""
    fence = _constant_kind(streaming)

    def codegen(context, builder, signature, args):
        if fence:
            signature_type = llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [])
            sfence = cgutils.get_or_insert_function(builder.module, signature_type, "llvm.x86.sse.sfence")
            builder.call(sfence, [])
        return context.get_dummy_value()

    return types.none(streaming), codegen
