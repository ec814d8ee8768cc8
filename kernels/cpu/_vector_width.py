"""512-bit vectors for one compiled scan, where LLVM would pick 256.

On x86 cores with AVX-512, LLVM's loop vectorizer prefers 256-bit vectors
(its "prefer-256-bit" tuning for Intel's AVX-512 cores; llvmlite names this
machine's CPU rocketlake), so a scan's lane loop runs on ymm registers.  numba
offers a change only for the whole process (``NUMBA_CPU_FEATURES``), which
would also recompile a user's own numba code.  ``wide_vectors()``, called
first in a compiled function, sets two LLVM attributes on that function
alone: "prefer-vector-width"="512" (the vectorizer may use zmm registers) and
"min-legal-vector-width"="512" (LLVM keeps the wide vectors when it inlines
the function into a caller without the attribute; inlining merges this one
into the caller).  On a target without AVX-512 both mean nothing.

Results do not change: the scans compile without fastmath and no sum crosses
lanes, so each lane's operations and roundings are the same at any width.

Not on Skylake-SP-era server cores (LLVM's skylake-avx512, cascadelake,
cooperlake): there, 512-bit arithmetic lowers the core's clock for a while
after the loop, and that was not measured here.
"""

from __future__ import annotations

import functools

import llvmlite.binding
import llvmlite.ir
from numba import types
from numba.core import config
from numba.extending import intrinsic

WIDE = ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"')
CLOCKED_DOWN = frozenset({"skylake-avx512", "cascadelake", "cooperlake"})


class _Attributes(llvmlite.ir.FunctionAttributes):
    """llvmlite's function attributes, accepting the two string attributes
    (its own class takes only LLVM's keyword attributes)."""

    _known = llvmlite.ir.FunctionAttributes._known | frozenset(WIDE)


@functools.lru_cache(maxsize=None)
def target_cpu() -> str:
    """The CPU numba compiles for: ``NUMBA_CPU_NAME``, else this host's."""
    return config.CPU_NAME or llvmlite.binding.get_host_cpu_name()


def _widen(function: llvmlite.ir.Function) -> None:
    attributes = _Attributes()
    for name in function.attributes:
        attributes.add(name)
    attributes.alignstack = function.attributes.alignstack
    attributes.personality = function.attributes.personality
    for name in WIDE:
        attributes.add(name)
    function.attributes = attributes


@intrinsic
def wide_vectors(typingctx):
    """Ask LLVM for 512-bit vectors in the compiled function that calls this."""

    def codegen(context, builder, signature, args):
        if target_cpu() not in CLOCKED_DOWN:
            _widen(builder.function)
        return context.get_dummy_value()

    return types.none(), codegen
