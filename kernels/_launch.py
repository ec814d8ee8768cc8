"""The host side of every Triton kernel family: launch grid, buffers, optional
cotangents and the parameter-gradient reduction, written once.

Layout.  A time-major tensor of shape (T, ..., N) is M = x[0].numel() lanes
(lane m is neuron m mod N of batch row m div N); its step t, lane m is element
t M + m.  A launch runs

    (1) P = ceil(M / B) programs of B lanes, B = min(limit, next_pow2(M)),

program k owning lanes k B to k B + B - 1 (the last block partial, its tail
masked) for every time step.  The limit is ``GPU_BLOCK`` (256) lanes on a GPU
and 16384 under the interpreter (large blocks amortise its per-operation
cost), or what a test forces with ``block_size``: no realistic test shape
reaches 16384 lanes, so without the override every interpreted test would run
one program.

Optional cotangents.  A backward kernel takes one HAS_G_<NAME> flag per
differentiable output; an absent cotangent's pointer is a stand-in tensor the
kernel never reads, because its flag is off.

Parameter gradients.  A backward kernel stores each parameter's gradient as
per-lane float32 partial sums g[m] (each lane summed over time in its own
program), and torch reduces them to the parameter's shape:

    (2) dL/dtheta = sum over the axes theta is broadcast along of g,

over a fixed shape in a fixed order (no atomics): reruns are bitwise identical.

The generic launch (``Scan``).  A family declares its kernel pair and what
flows through it; the host side is then the same for every family.  Kernel
arguments are matched by name:

    (3) buffer b     -> argument b_ptr (an absent one: a stand-in never read)
        output o     -> forward o_ptr; backward g_o_ptr and HAS_G_O (cotangent present)
        input i      -> backward g_i_ptr (its gradient)
        parameter p  -> P_PER_NEURON (shape (N,)); backward g_p_ptr (per-lane sums, eq. 2)
        option name  -> constexpr NAME

and each kernel is given only the arguments it takes, so the declaration
holds no per-kernel argument lists.

Compile variants.  Each family module states, as ``COMPILE_VARIANTS``, the
launches the offline sm_90 compile test builds (``CompileVariants``), so a new
family needs no test edit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterator, Mapping, Optional, Sequence, Tuple

import torch
import triton

from snnref.second_order import first_order

from . import common

# Lanes per program on a GPU.  Measured on an H200 (132 multiprocessors):
# tether.LIF and hxtorch.cuba_lif through backend="triton", float32, forward
# and forward+backward, blocks of 64 to 2048 interleaved.  Where the kernels'
# time shows (T = 1000 from N = 2^16, T = 100 from N = 2^18 to 2^24), 256 was
# within 4% of the best block; 1024 left too few programs to fill the card at
# N = 2^16 (forward+backward at T = 1000: tether.LIF 3.16 against 2.40 ms,
# hxtorch.cuba_lif 3.04 against 2.71 ms).  256 against 1024 alone, 15 rounds:
# from N = 2^20 up, 256 at most 3% slower (hxtorch.cuba_lif) and up to 12%
# faster (tether.LIF forward+backward at T = 1000).
# At smaller sizes a call's fixed cost (about 0.6 ms forward, 1.4-2 ms
# forward+backward) hides the block.
GPU_BLOCK = 256
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


def float32_values(record: torch.Tensor) -> torch.Tensor:
    """Where a forward keeps the float32 values the backward reads: the record
    itself when it is stored in float32, else a float32 buffer of its shape."""
    if record.dtype == torch.float32:
        return record
    return common.empty(record.shape, torch.float32, record.device)


@dataclass(frozen=True)
class Output:
    """A buffer the forward kernel writes (``<name>_ptr``) and the scan returns.
    Its cotangent reaches the backward kernel as ``g_<name>_ptr`` with the flag
    ``HAS_G_<NAME>`` (a kernel without the flag gets zeros for an absent one).
    Shape: (T, ...) per step, else the state's (...), behind a leading axis of
    ``branches`` when that is set; dtype: the storage dtype, or float32."""

    name: str
    per_step: bool = True
    branches: int = 0
    float32: bool = False
    # Written only where this holds of the constexprs (else returned as None).
    when: Optional[Callable[[Mapping[str, object]], bool]] = None
    differentiable: bool = True


@dataclass(frozen=True)
class Saved:
    """Float32 values the forward writes for the backward (``<name>_ptr``): the
    output ``of`` itself when that is stored in float32 (and the option
    ``shared_if`` is on, where one is named), else a float32 buffer of its
    shape.  The option SAVE_SEPARATE says which, to kernels that take it."""

    name: str
    of: str
    shared_if: Optional[str] = None


def _no_scalars(steps: int, neurons: int, features: int) -> Mapping[str, int]:
    return {}


def sum_to(partial: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """Eq. (2): the per-lane sums reduced to the parameter's shape and dtype."""
    return partial.sum_to_size(shape).to(dtype)


@dataclass(frozen=True)
class Scan:
    """A family's kernel pair and what flows through it, by argument name (eq. 3).

    ``tensors`` (x, the initial states): contiguous; each gets its gradient of
    its own shape and dtype from the backward kernel, or zeros where that
    takes none (the input acts only through stop-gradients).  ``params``: each
    with its per-neuron flag (``per_neuron``), its gradient by eq. (2) with
    ``reduce`` where the backward kernel sums one.  ``constants`` (replayed or
    observed values): no gradient.  ``outputs``: returned in this order.
    ``saved``: the float32 values the backward reads.  Runtime scalars: T, M,
    N (the last axis), LAST = (T - 1) M and the family's ``scalars``."""

    forward: object
    backward: object
    tensors: Tuple[str, ...]
    params: Tuple[str, ...]
    outputs: Tuple[Output, ...]
    constants: Tuple[str, ...] = ()
    saved: Tuple[Saved, ...] = ()
    # The input whose dtype is the storage dtype (default: the first tensor).
    storage: Optional[str] = None
    # The leading axis of each parameter's per-lane sums (0: none).
    param_branches: int = 0
    per_neuron: Callable[[torch.Tensor], bool] = common.per_neuron
    # Eq. (2) for this family: (per-lane sums, parameter shape, dtype) -> gradient.
    reduce: Callable[[torch.Tensor, torch.Size, torch.dtype], torch.Tensor] = sum_to
    scalars: Callable[[int, int, int], Mapping[str, int]] = _no_scalars
    num_warps: int = 4

    def __post_init__(self):
        # A misspelt name fails here, at import, rather than as a silent stand-in.
        forward, backward = _arguments(self.forward), _arguments(self.backward)
        written = [output.name for output in self.outputs] + [keep.name for keep in self.saved]
        unknown = [name for name in self.inputs if f"{name}_ptr" not in forward | backward]
        unknown += [name for name in written if f"{name}_ptr" not in forward]
        if unknown:
            raise TypeError(f"{sorted(unknown)}: not pointer arguments of {self.forward.fn.__name__} "
                            f"or {self.backward.fn.__name__}")

    @property
    def inputs(self) -> Tuple[str, ...]:
        return self.tensors + self.params + self.constants

    @property
    def family(self) -> str:
        """The family's name: the file stem its kernels live in (every layer's)."""
        return self.forward.fn.__module__.rsplit(".", 1)[-1]

    def __call__(self, options: Mapping[str, object], untrained: Sequence[str] = (),
                 **inputs: Optional[torch.Tensor]) -> dict:
        """The outputs by name.  ``options``: the kernels' other compile-time
        options, each ``name`` the constexpr NAME; ``untrained``: parameters
        that get no gradient although the kernel sums one; ``inputs``: every
        tensor, parameter and constant by name (an absent one None)."""
        if set(inputs) != set(self.inputs):
            raise TypeError(f"inputs: expected every one of {self.inputs} (None where absent), got {sorted(inputs)}")
        call = _Call(self, {name.upper(): value for name, value in options.items()}, frozenset(untrained))
        results = _Scan.apply(call, *(inputs[name] for name in self.inputs))
        return {output.name: value for output, value in zip(self.outputs, results)}


@dataclass(frozen=True)
class _Call:
    scan: Scan
    constexprs: Mapping[str, object]
    untrained: FrozenSet[str]


@dataclass(frozen=True)
class _Layout:
    steps: int
    state: torch.Size  # the shape of one step
    features: int
    device: torch.device

    @property
    def neurons(self) -> int:
        return self.state.numel()


@functools.lru_cache(maxsize=None)
def _arguments(kernel) -> FrozenSet[str]:
    return frozenset(inspect.signature(kernel.fn).parameters)


def _launch_by_name(kernel, scan: Scan, layout: _Layout, buffers: Mapping[str, Optional[torch.Tensor]],
                    constexprs: Mapping[str, object]) -> None:
    """Eq. (3): ``kernel`` given the buffers it takes as ``<name>_ptr`` (an
    absent one a stand-in it never reads), the scalars and constexprs it takes."""
    taken = _arguments(kernel)
    stand_in = next(buffer for buffer in buffers.values() if buffer is not None)
    steps, neurons, features = layout.steps, layout.neurons, layout.features
    values = {f"{name}_ptr": stand_in if buffer is None else buffer for name, buffer in buffers.items()}
    values.update(T=steps, M=neurons, N=features, LAST=(steps - 1) * neurons, **scan.scalars(steps, neurons, features))
    values.update(constexprs)
    launch(kernel, neurons, layout.device, **{k: v for k, v in values.items() if k in taken},
           num_warps=scan.num_warps)


class _Scan(torch.autograd.Function):
    """Inputs: a _Call, then its scan's inputs in order."""

    @staticmethod
    def forward(ctx, call, *inputs):
        scan = call.scan
        given = dict(zip(scan.inputs, inputs))
        first = given[scan.tensors[0]]
        layout = _Layout(first.shape[0], first.shape[1:], first.shape[-1], first.device)
        storage = given[scan.storage or scan.tensors[0]].dtype
        buffers = {name: None if given[name] is None else given[name].contiguous()
                   for name in scan.tensors + scan.constants}
        buffers.update({name: None if given[name] is None else given[name].detach().contiguous()
                        for name in scan.params})
        flags = {f"{name.upper()}_PER_NEURON": given[name] is not None and scan.per_neuron(given[name])
                 for name in scan.params}
        outputs = {}
        for output in scan.outputs:
            lead = (output.branches,) if output.branches else ()
            shape = lead + ((layout.steps,) if output.per_step else ()) + tuple(layout.state)
            dtype = torch.float32 if output.float32 else storage
            present = output.when is None or output.when(call.constexprs)
            outputs[output.name] = common.empty(shape, dtype, layout.device) if present else None
        saved = {}
        for keep in scan.saved:
            record = outputs[keep.of]
            if record is None:
                saved[keep.name] = None
            elif keep.shared_if is None or call.constexprs[keep.shared_if.upper()]:
                saved[keep.name] = float32_values(record)
            else:
                saved[keep.name] = common.empty(record.shape, torch.float32, layout.device)
        separate = any(saved[keep.name] is not outputs[keep.of] for keep in scan.saved)
        buffers.update(outputs)
        buffers.update(saved)
        _launch_by_name(scan.forward, scan, layout, buffers, dict(call.constexprs, **flags, SAVE_SEPARATE=separate))
        # Only what the backward kernel reads is kept.
        read = _arguments(scan.backward)
        ctx.kept = [name for name in buffers if f"{name}_ptr" in read]
        ctx.save_for_backward(*(buffers[name] for name in ctx.kept))
        ctx.call, ctx.layout, ctx.flags = call, layout, flags
        ctx.inputs = {name: None if given[name] is None else (given[name].shape, given[name].dtype)
                      for name in scan.inputs}
        ctx.returned = {name: None if out is None else (out.shape, out.dtype) for name, out in outputs.items()}
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*(outputs[output.name] for output in scan.outputs
                                      if not output.differentiable and outputs[output.name] is not None))
        return tuple(outputs[output.name] for output in scan.outputs)

    @staticmethod
    @first_order(lambda ctx: ctx.call.scan.family, "triton")
    def backward(ctx, *cotangents):
        call, layout = ctx.call, ctx.layout
        scan = call.scan
        taken = _arguments(scan.backward)
        buffers = dict(zip(ctx.kept, ctx.saved_tensors))
        constexprs = dict(call.constexprs, **ctx.flags)
        for output, cotangent in zip(scan.outputs, cotangents):
            if f"g_{output.name}_ptr" not in taken:
                continue
            flag = f"HAS_G_{output.name.upper()}"
            if flag in taken:
                constexprs[flag] = cotangent is not None
            elif cotangent is None:
                # Without a flag the kernel reads the cotangent: an absent one is zeros.
                shape, dtype = ctx.returned[output.name]
                cotangent = torch.zeros(shape, dtype=dtype, device=layout.device)
            buffers[f"g_{output.name}"] = None if cotangent is None else cotangent.contiguous()
        gradients = {name: None if ctx.inputs[name] is None else common.empty(*ctx.inputs[name], layout.device)
                     for name in scan.tensors if f"g_{name}_ptr" in taken}
        # Every parameter's sums the kernel takes, present or not: a kernel may store unused sums.
        lead = (scan.param_branches,) if scan.param_branches else ()
        sums = {name: common.empty(lead + tuple(layout.state), torch.float32, layout.device)
                for name in scan.params if f"g_{name}_ptr" in taken}
        buffers.update({f"g_{name}": buffer for name, buffer in {**gradients, **sums}.items()})
        _launch_by_name(scan.backward, scan, layout, buffers, constexprs)
        wants = dict(zip(scan.inputs, ctx.needs_input_grad[1:]))
        results = []
        for name in scan.tensors:
            if name in gradients:
                results.append(gradients[name])
            elif ctx.inputs[name] is not None and wants[name]:
                # The input acts only through stop-gradients.
                shape, dtype = ctx.inputs[name]
                results.append(torch.zeros(shape, dtype=dtype, device=layout.device))
            else:
                results.append(None)
        for name in scan.params:
            wanted = (name in sums and ctx.inputs[name] is not None and wants[name]
                      and name not in call.untrained)
            results.append(scan.reduce(sums[name], *ctx.inputs[name]) if wanted else None)
        return (None, *results, *(None for _ in scan.constants))


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
