"""The device functions (``common.device_function``, a ``@triton.jit``) that
several kernel families share.

Every helper computes in float32 whatever the storage dtype, and each has a
single return statement: the GPU compiler types every return of a jit function
alike, which the interpreter does not check (tests/test_kernels_compile.py does).

(1) load_param:  the parameter value of each lane, theta[m mod N] for a
    per-neuron parameter of shape (N,) (lane m is neuron m mod N of batch row
    m div N), or the single value broadcast to the block;
(2) spike:       s = H(u) with H(0) = 1 (non-strict, SPEC.md section 2) or
    H(0) = 0 (strict), or s = F(u) for the smooth twin (``surrogates.primitive``);
    a backward takes f and dF from ``surrogates.derivatives``;
(3) reset_to_zero: the hard reset's post-reset membrane v+ = v (1 - r) for the
    detached reset spike r, exactly 0 where r is 1 (SPEC.md section 2: v+ = 0
    if s), an overflowed v too, where inf * 0 would be NaN.
"""

from __future__ import annotations

import triton.language as tl

from .common import device_function
from .surrogates import primitive


@device_function
def load_param(ptr, offs, mask, N, PER_NEURON: tl.constexpr):
    """Eq. (1)."""
    if PER_NEURON:
        value = tl.load(ptr + offs % N, mask=mask, other=0.0).to(tl.float32)
    else:
        value = tl.load(ptr).to(tl.float32) + (offs * 0).to(tl.float32)
    return value


@device_function
def spike(u, a, KIND: tl.constexpr, STRICT: tl.constexpr, SMOOTH: tl.constexpr):
    """Eq. (2)."""
    if SMOOTH:
        s = primitive(u, a, KIND)
    elif STRICT:
        s = (u > 0).to(tl.float32)
    else:
        s = (u >= 0).to(tl.float32)
    return s


@device_function
def reset_to_zero(v, r):
    """Eq. (3)."""
    return tl.where(r == 1.0, 0.0, v * (1.0 - r))
