"""The host side of every Triton kernel family: launch grid, buffers, optional
cotangents and the parameter-gradient reduction, written once.

Layout.  A time-major tensor of shape (T, ..., N) is M = x[0].numel() lanes
(lane m is neuron m mod N of batch row m div N); its step t, lane m is element
t M + m.  A launch runs

    (1) P = ceil(M / B) programs of B lanes, B = min(limit, next_pow2(M)),

program k owning lanes k B to k B + B - 1 (the last block partial, its tail
masked) for every time step.  The limit is 1024 lanes on a GPU and 16384 under
the interpreter (large blocks amortise its per-operation cost), or what a test
forces with ``block_size``: no realistic test shape reaches 16384 lanes, so
without the override every interpreted test would run one program.

Optional cotangents.  A backward kernel takes one HAS_G_<NAME> flag per
differentiable output; an absent cotangent's pointer is a stand-in tensor the
kernel never reads, because its flag is off.

Parameter gradients.  A backward kernel stores each parameter's gradient as
per-lane float32 partial sums g[m] (each lane summed over time in its own
program), and torch reduces them to the parameter's shape:

    (2) dL/dtheta = sum over the axes theta is broadcast along of g,

over a fixed shape in a fixed order (no atomics): reruns are bitwise identical.

Compile variants.  Each family module states, as ``COMPILE_VARIANTS``, the
launches the offline sm_90 compile test builds (``CompileVariants``), so a new
family needs no test edit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import FrozenSet, Iterator, Mapping, Optional, Sequence, Tuple

import torch
import triton

from . import common

GPU_BLOCK = 1024
INTERPRETER_BLOCK = 16384
# The lanes per program a test forces (None: the device's limit).
_forced_block = [None]


@contextlib.contextmanager
def block_size(lanes: int) -> Iterator[None]:
    """For tests: every launch inside the ``with`` uses at most ``lanes`` lanes
    per program, so a small case runs as several programs with a partial last
    block, as large ones do on a GPU."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes: expected a power of two (Triton's block sizes), got {lanes!r}")
    previous = _forced_block[0]
    _forced_block[0] = lanes
    try:
        yield
    finally:
        _forced_block[0] = previous


def lanes_per_program(neurons: int, device: torch.device) -> int:
    """B of eq. (1)."""
    limit = _forced_block[0] or (GPU_BLOCK if device.type == "cuda" else INTERPRETER_BLOCK)
    return min(limit, triton.next_power_of_2(max(neurons, 1)))


def launch(kernel, neurons: int, device: torch.device, *args, **constexprs) -> None:
    """``kernel`` over the programs of eq. (1), with BLOCK set to B."""
    lanes = lanes_per_program(neurons, device)
    kernel[(triton.cdiv(neurons, lanes),)](*args, **constexprs, BLOCK=lanes)


def buffers(count: int, shape, dtype: torch.dtype, device: torch.device) -> list:
    """``count`` fresh output buffers (from ``common.empty``, which tests poison)."""
    return [common.empty(shape, dtype, device) for _ in range(count)]


def float32_values(record: torch.Tensor) -> torch.Tensor:
    """Where a forward keeps the float32 values the backward reads: the record
    itself when it is stored in float32, else a float32 buffer of its shape."""
    if record.dtype == torch.float32:
        return record
    return common.empty(record.shape, torch.float32, record.device)


def parameters(params: Sequence[torch.Tensor], names: Sequence[str]):
    """(pointers, flags): each parameter detached and contiguous for the
    kernel, and its <NAME>_PER_NEURON flag (shape (N,) rather than one value)."""
    pointers = [p.detach().contiguous() for p in params]
    flags = {f"{name}_PER_NEURON": common.per_neuron(p) for name, p in zip(names, params)}
    return pointers, flags


def cotangents(grads: Sequence[Optional[torch.Tensor]], names: Sequence[str], stand_in: torch.Tensor):
    """(pointers, flags) of a backward's optional cotangents: each present one
    contiguous, each absent one the never-read ``stand_in``; HAS_G_<NAME> per name."""
    pointers = [g.contiguous() if g is not None else stand_in for g in grads]
    flags = {f"HAS_G_{name}": g is not None for name, g in zip(names, grads)}
    return pointers, flags


def partial_sums(count: int, shape, device: torch.device) -> list:
    """Per-lane float32 accumulators for ``count`` parameter gradients (eq. 2)."""
    return buffers(count, shape, torch.float32, device)


def reduce(partial: torch.Tensor, param: Optional[torch.Tensor], wanted: bool) -> Optional[torch.Tensor]:
    """Eq. (2) in the parameter's dtype, or None where no gradient is wanted."""
    if not wanted or param is None:
        return None
    return partial.sum_to_size(param.shape).to(param.dtype)


@dataclass(frozen=True)
class Variant:
    """One realistic launch of a family's kernels, for the offline GPU compile
    test: the storage dtype, the cotangents present (``HAS_G_<NAME>`` on for
    each name in ``grads``, off for the others) and every other constexpr of
    the forward and backward kernels (each kernel takes the ones it has)."""

    dtype: torch.dtype
    grads: Tuple[str, ...]
    constexprs: Mapping[str, object]


def variant(dtype: torch.dtype, grads: str = "", **constexprs) -> Variant:
    """A Variant; ``grads`` the space-separated names of the present cotangents."""
    return Variant(dtype, tuple(grads.split()), constexprs)


@dataclass(frozen=True)
class CompileVariants:
    """A family's ``COMPILE_VARIANTS`` (read by tests/test_kernels_compile.py):
    ``float32_pointers``, the ``*_ptr`` arguments (without the suffix) that
    hold float32 whatever the storage dtype; ``variants``, launches that
    together cover every storage dtype and both sides of every compile-time
    branch (the test adds a copy per missing surrogate id); ``num_warps``, the
    launch option the family's launches use."""

    float32_pointers: FrozenSet[str]
    variants: Tuple[Variant, ...]
    num_warps: int = 4
