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
from the scalar store it widens.  ``put`` therefore declares ``ALIGNMENT`` (64
bytes, a zmm register) and is used only where ``streams`` says it is true for
every vector store that runs: each written row of a tile starts on a 64-byte
boundary (the array's start, its row length and the tile size are all
multiples of 64 bytes), so is the tile's width a multiple of 64 bytes, and
the vectorized loop's stores of 16, 32 or 64 bytes each start at a multiple
of their own width.  Only the scalar remainder of that loop (lanes left over
when the vector loop takes more than 64 bytes a pass) stores at a lesser
alignment than declared; a scalar non-temporal store (movnti, movntss) takes
any address of its element's alignment.  So ``put`` serves only lane loops
that vectorize: a loop that stays scalar (sigmoid's exp in Cooldown's and
Discontinuous's backward) is given ``streaming`` false, and a row that the
same tile reads back (attention's spikes) is written plainly, or first kept
in a scratch row (ALIF's dx), since a streamed line would be read back from
memory.  Elsewhere the kernels store as before.

Visibility.  Streamed lines sit in write-combining buffers, outside x86's
ordinary store order, until they drain.  ``drain`` (``sfence``) ends every
tile that streamed, before the thread reports the tile done, so whoever reads
the rows next (another thread, the backward, the caller) sees them.

Only on x86-64, where this was measured; on other machines ``streams`` is
false, and ``put`` is a plain store.
"""

from __future__ import annotations

import platform

import llvmlite.ir
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

ALIGNMENT = 64
STREAMING = platform.machine().lower() in ("x86_64", "amd64")


def streams(tile: int, *rows: np.ndarray) -> bool:
    """Whether a scan cutting its lanes into tiles of ``tile`` lanes may write
    the (T, M) arrays ``rows`` with ``put`` (see Alignment above)."""
    if not STREAMING:
        return False
    for array in rows:
        itemsize = array.itemsize
        if not array.flags.c_contiguous or array.ctypes.data % ALIGNMENT \
                or (array.shape[-1] * itemsize) % ALIGNMENT or (tile * itemsize) % ALIGNMENT:
            return False
    return True


@intrinsic
def put(typingctx, row, index, value):
    """``row[index] = value`` as a non-temporal store declared ``ALIGNMENT``-
    aligned (x86-64), for a C-contiguous 1-D ``row``; a plain store elsewhere."""
    signature = types.none(row, index, value)

    def codegen(context, builder, signature, args):
        array_type, _, value_type = signature.args
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]], wraparound=False,
                                           boundscheck=False)
        converted = context.cast(builder, args[2], value_type, array_type.dtype)
        if not STREAMING:
            builder.store(converted, pointer)
            return context.get_dummy_value()
        store = builder.store(converted, pointer, align=ALIGNMENT)
        store.set_metadata("nontemporal", builder.module.add_metadata([llvmlite.ir.Constant(llvmlite.ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def drain(typingctx):
    """Make every streamed store of this thread visible before what follows
    (x86's ``sfence``; nothing elsewhere)."""

    def codegen(context, builder, signature, args):
        if STREAMING:
            fence = cgutils.get_or_insert_function(builder.module, llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), []),
                                                   "llvm.x86.sse.sfence")
            builder.call(fence, [])
        return context.get_dummy_value()

    return types.none(), codegen
