"""What is particular to the fused CPU backend (snnref.kernels.cpu); its
equivalence with the spec is the shared template of tests/test_backends.py and
its mutants are in tests/test_cpu_mutants.py.

Tiling: several tiles with a partial last one give the spec's results and the
same bits as one tile, on one thread or two.  Dispatch: "auto" picks it for CPU
tensors and the module classes use it; without numba "auto" warns once and runs
torch.  Bad input: a tensor off the CPU, integer and complex dtypes, thread
counts outside 1..cores.  The surrogate forms stay finite and equal the torch
path's for any finite u."""

import ast
import dataclasses
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from numba import njit

import snnref
import snnref.backend as backend
from snnref import checks, equivalence, registry
from snnref.kernels import cpu
from snnref.kernels.cpu import _launch
from snnref.kernels.cpu import _stream
from snnref.kernels.cpu._stream import STREAMING
from snnref.kernels.cpu.surrogates import KINDS, derivatives, primitive
from snnref.ops.surrogates import SURROGATES as TORCH_SURROGATES

MODELS = sorted(registry.MODELS)
X = torch.full((4, 2, 3), 0.5)


@pytest.mark.parametrize("key", MODELS)
def test_several_tiles_with_a_partial_last_one(key, monkeypatch):
    row = registry.MODELS[key]
    # 3 x 5 = 15 lanes (attention: 3 x 5 x 5 = 75) in tiles of 4: the last tile is partial.
    case = checks.random_case(key, np.random.default_rng(8), steps=7, batch=3, neurons=5, per_neuron=True,
                              inject=bool(row.inject))
    one_tile = equivalence.run_backend(case, "cpu", torch.float32)
    monkeypatch.setattr(_launch, "TILE", 4)
    # A case this small would run in the calling thread (PARALLEL_FROM).
    monkeypatch.setattr(_launch, "PARALLEL_FROM", 0)
    report = equivalence.compare(case, "cpu", torch.float32)
    assert report.passed, "; ".join(report.failures)
    # A list of this test's own: the counts set here go with it.
    monkeypatch.setattr(_launch, "_THREADS", [None])
    for count in sorted({1, 2, _launch.machine_threads()} & set(range(1, _launch.machine_threads() + 1))):
        cpu.set_threads(count)
        tiled = equivalence.run_backend(case, "cpu", torch.float32)
        for name in one_tile:
            # Tiling and threads never change a lane's arithmetic or a sum's order.
            assert np.array_equal(tiled[name], one_tile[name]), (count, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", MODELS)
def test_streamed_rows_give_the_bits_of_stores_through_the_caches(key, dtype, monkeypatch):
    """Where every row a tile loop writes starts on a cache line, the loops
    write them with streaming stores (kernels/cpu/_stream.py), forward and
    backward: the same bits as plain stores.  3 x 48 lanes (rows of 576 bytes
    in float32) in tiles of 64: two whole tiles and one of 16 lanes, on two
    threads; 7 steps, so a backward that takes steps in pairs ends with step 0
    alone.  Single-valued parameters in float32, per-neuron ones in float64
    (the tile loops' two compiled forms).  Streamed at any size here."""
    case = checks.random_case(key, np.random.default_rng(21), steps=7, batch=3, neurons=48,
                              per_neuron=dtype == torch.float64)
    monkeypatch.setattr(_stream, "STREAM_FROM", 0)
    monkeypatch.setattr(_launch, "TILE", 64)
    monkeypatch.setattr(_launch, "PARALLEL_FROM", 0)
    monkeypatch.setattr(_launch, "_THREADS", [min(2, _launch.machine_threads())])
    answers = []
    streams = _stream.streams

    def spy(tile, *rows):
        answers.append(streams(tile, *rows))
        return answers[-1]

    monkeypatch.setattr(_stream, "streams", spy)
    result = equivalence.run_backend(case, "cpu", dtype)
    # Asked once by the forward and once by the backward, and both streamed.
    assert answers == [_stream.STREAMED if STREAMING else _stream.PLAIN] * 2, answers
    monkeypatch.setattr(_stream, "streams", lambda tile, *rows: _stream.PLAIN)
    cached = equivalence.run_backend(case, "cpu", dtype)
    assert result.keys() == cached.keys()
    for name in result:
        assert np.array_equal(result[name], cached[name], equal_nan=True), name


# Every model, forward and backward, at a size whose rows fit in the caches;
# then, for each compiled signature of the package's functions that take a
# kind of store, the type it was compiled for.
PLAIN_PROCESS = """
import collections, importlib, inspect, pkgutil
import numpy as np, torch
from numba.core.registry import CPUDispatcher
from snnref import checks, equivalence, registry
from snnref.kernels import cpu
for key in sorted(registry.MODELS):
    case = checks.random_case(key, np.random.default_rng(3), steps=5, batch=2, neurons=64)
    equivalence.run_backend(case, "cpu", torch.float32)
kinds = collections.Counter()
for info in pkgutil.iter_modules(cpu.__path__):
    module = importlib.import_module(cpu.__name__ + "." + info.name)
    for value in vars(module).values():
        parameters = list(inspect.signature(value.py_func).parameters) if isinstance(value, CPUDispatcher) else []
        if "streaming" in parameters:
            kinds.update(str(signature[parameters.index("streaming")]) for signature in value.signatures)
print(dict(kinds))
"""


def test_a_process_whose_rows_never_stream_compiles_no_streaming_loop():
    """The kind of store is a scan's argument that numba types as a constant
    (kernels/cpu/_stream.py, Compilation): each function is compiled per kind
    on its first call with it, and neither compiled form branches on it.  A
    fresh process that runs every model at a size that fits in the caches
    has the tile loops compiled (or loaded) for plain stores only, and never
    with the kind as a runtime bool."""
    run = subprocess.run([sys.executable, "-c", PLAIN_PROCESS], capture_output=True, text=True, check=True)
    kinds = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert set(kinds) == {"Literal[bool](False)"}, kinds


def _cache_line_aligned(shape, dtype, offset=0):
    """A C-contiguous NumPy array of ``shape`` whose first element lies
    ``offset`` elements past a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    buffer = np.zeros((math.prod(shape) + offset) * itemsize + 64, dtype=np.uint8)
    skip = -buffer.ctypes.data % 64 + offset * itemsize
    return buffer[skip:skip + math.prod(shape) * itemsize].view(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_stream_only_where_every_vector_store_is_aligned(dtype, monkeypatch):
    """A misaligned streaming vector store faults: ``streams`` allows them only
    where the array starts on a cache line and a row and a tile are whole
    cache lines (kernels/cpu/_stream.py), only on x86-64, and only for rows
    that do not fit in the largest cache."""
    line = 64 // np.dtype(dtype).itemsize  # lanes per cache line
    aligned = _cache_line_aligned((3, 4 * line), dtype)
    # 3 x 4 cache lines fit in any cache; streamed from a threshold at their size.
    assert not _stream.streams(2 * line, aligned)
    monkeypatch.setattr(_stream, "STREAM_FROM", aligned.nbytes + 1)
    assert not _stream.streams(2 * line, aligned)
    monkeypatch.setattr(_stream, "STREAM_FROM", aligned.nbytes)
    assert _stream.streams(2 * line, aligned) is (_stream.STREAMED if STREAMING else _stream.PLAIN)
    monkeypatch.setattr(_stream, "STREAM_FROM", 0)
    assert _stream.streams(2 * line, aligned, aligned[1:]) is (_stream.STREAMED if STREAMING else _stream.PLAIN)
    assert not _stream.streams(2 * line, aligned, _cache_line_aligned((3, 4 * line), dtype, offset=1))
    assert not _stream.streams(2 * line, _cache_line_aligned((3, 4 * line - 1), dtype))
    assert not _stream.streams(2 * line + 1, aligned)
    assert not _stream.streams(2 * line, _cache_line_aligned((3, 8 * line), dtype)[:, ::2])
    # A launch that names no rows (Cooldown's sigmoid backward) gets plain stores.
    assert _stream.streams(2 * line) is _stream.PLAIN
    monkeypatch.setattr(_stream, "STREAMING", False)
    assert not _stream.streams(2 * line, aligned)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", MODELS)
def test_single_valued_parameters_give_the_bits_of_the_same_values_per_neuron(key, dtype):
    """Single-valued parameters reach the kernels as scalars (``_launch.parameters``),
    per-neuron ones as lane arrays: two compiled paths that must compute the
    same bits.  Outputs, final states and the gradients of x and the initial
    state are compared; the parameters' gradients have different shapes (the
    equivalence template checks each against the spec)."""
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(12), steps=7, batch=3, neurons=5, inject=bool(row.inject))
    neurons = case.x.shape[-1]
    single_valued = [name for name, value in case.params.items() if np.size(value) == 1]
    assert single_valued, f"{key}: the case has no single-valued parameter"
    per_neuron = dataclasses.replace(case, params={
        name: np.full(neurons, np.asarray(value).reshape(-1)[0]) if name in single_valued else value
        for name, value in case.params.items()})
    single = equivalence.run_backend(case, "cpu", dtype)
    lanes = equivalence.run_backend(per_neuron, "cpu", dtype)
    compared = [name for name in single if not name.startswith("grad:") or name[5:] not in case.params]
    for name in compared:
        assert np.array_equal(single[name], lanes[name]), name


def test_tiles_hold_at_most_TILE_lanes_and_leave_no_thread_without_one(monkeypatch):
    monkeypatch.setattr(_launch, "_THREADS", [2])
    assert _launch.tile_lanes(1 << 20) == _launch.TILE
    # Two threads, 2^15 lanes: two tiles of 2^14, not one of 2^15.
    assert _launch.tile_lanes(1 << 15) == 1 << 14
    assert _launch.tile_lanes(100) == 64
    monkeypatch.setattr(_launch, "TILE", 4)
    assert _launch.tile_lanes(15) == 4


def test_auto_runs_the_cpu_scans_on_cpu_tensors():
    row = registry.model("tether.LIF")
    assert backend._check_backend(row, "auto", X) == "cpu"
    assert backend._check_backend(row, "auto", X.double()) == "cpu"
    # Half precision runs on CUDA only: the message says what "auto" takes on the CPU.
    with pytest.raises(TypeError, match=r"x: backend 'auto' on cpu \(half precision on CUDA only\) expects dtype "
                                        r"torch.float32 or torch.float64, got torch.float16"):
        backend._check_backend(row, "auto", X.half())


@pytest.fixture
def used_backends(monkeypatch):
    names = []
    original = backend._family

    def recording(row, name="torch"):
        names.append(name)
        return original(row, name)

    monkeypatch.setattr(backend, "_family", recording)
    return names


def test_module_classes_use_the_cpu_scans_by_default(used_backends):
    from snnref import functional, nn
    from snnref.compat import rnnbuilder

    x = torch.rand(5, 2, 4)
    nn.LIF(4)(x).sum().backward()
    nn.ALIF(4)(x)
    rnnbuilder.Adaptive()(x)
    functional.lif(x.reshape(5, 8), torch.zeros(8), torch.tensor(0.9), torch.tensor(1.0), torch.tensor(2.0), 0)
    assert used_backends and set(used_backends) == {"cpu"}, used_backends


def test_without_numba_auto_warns_once_and_runs_torch(monkeypatch, used_backends):
    monkeypatch.setattr(backend, "_CPU_KERNELS", [ModuleNotFoundError("No module named 'numba'")])
    with pytest.warns(RuntimeWarning, match=r"^snnref: the fused CPU backend cannot run here \(No module named "
                                            r"'numba'\); backend='auto' runs the slower torch path on CPU tensors "
                                            r"instead \(pip install numba\)$"):
        first = snnref.simulate("tether.LIF", X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snnref.simulate("tether.LIF", X)
    assert used_backends == ["torch", "torch"]
    assert torch.equal(first.outputs["out"], snnref.simulate("tether.LIF", X, backend="torch").outputs["out"])
    with pytest.raises(ImportError, match=r"^backend: 'cpu' cannot run here \(No module named 'numba'\); pip install "
                                          r"numba, or use backend='torch'$"):
        snnref.simulate("tether.LIF", X, backend="cpu")


def test_with_numba_s_jit_off_auto_warns_and_runs_torch_and_cpu_says_why():
    # Found by an outside user: under NUMBA_DISABLE_JIT=1 (numba's switch for debugging and coverage)
    # every CPU call, backend "auto" included, failed inside a scan ("<intrinsic wide_vectors> is not
    # usable in pure-python").
    code = (
        "import warnings, torch, snnref\n"
        "x = torch.rand(6, 2, 3)\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    out = snnref.simulate('tether.LIF', x).outputs['out']\n"
        "assert torch.equal(out, snnref.simulate('tether.LIF', x, backend='torch').outputs['out'])\n"
        "print(str(seen[0].message))\n"
        "try:\n"
        "    snnref.simulate('tether.LIF', x, backend='cpu')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    off = "numba's JIT is off (NUMBA_DISABLE_JIT=1), and the fused scans run compiled only"
    assert result.stdout.splitlines() == [
        f"snnref: the fused CPU backend cannot run here ({off}); backend='auto' runs the slower torch path on CPU "
        "tensors instead",
        f"backend: 'cpu' cannot run here ({off}); use backend='torch'"]


def test_bad_input_is_refused_before_any_kernel_runs(monkeypatch):
    def no_kernel(*args):
        raise AssertionError("a kernel allocated its outputs before the input was refused")

    monkeypatch.setattr(_launch, "empty", no_kernel)
    # A tensor off the CPU (CUDA where there is a GPU; the meta device stands in
    # for it here, which simulate itself refuses even earlier).
    with pytest.raises(ValueError, match=r"x: backend 'cpu' runs on CPU tensors, got x on meta; "
                                         r"use backend='triton' or 'torch' there"):
        backend._check_backend(registry.model("tether.LIF"), "cpu", torch.zeros(4, 3, device="meta"))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"x: backend 'cpu' runs on CPU tensors, got x on cuda"):
            snnref.simulate("tether.LIF", torch.zeros(4, 3, device="cuda"), backend="cpu")
    for dtype in (torch.int64, torch.int32, torch.complex64, torch.float16):
        with pytest.raises(TypeError, match=f"x: backend 'cpu' expects dtype torch.float32 or torch.float64, "
                                            f"got {dtype}"):
            snnref.simulate("tether.LIF", torch.zeros(4, 3, dtype=dtype), backend="cpu")
    # What simulate refuses on every backend is refused with the same message.
    for name in ("torch", "cpu"):
        with pytest.raises(ValueError, match="x: expected finite values"):
            snnref.simulate("tether.LIF", torch.tensor([[0.0], [float("nan")]]), backend=name)
        with pytest.raises(ValueError, match=r"x: rnnbuilder.Cooldown integrates exp\(x\), which overflows"):
            snnref.simulate("rnnbuilder.Cooldown", torch.full((2, 3), 100.0), backend=name)


def test_thread_counts_outside_the_machine_are_refused():
    limit = _launch.machine_threads()
    with pytest.raises(ValueError, match=f"threads: expected 1 to {limit} .this machine's maximum., got {limit + 1}"):
        cpu.set_threads(limit + 1)
    with pytest.raises(ValueError, match="threads: expected 1 to"):
        cpu.set_threads(0)
    with pytest.raises(TypeError, match="threads: expected an int from 1 to"):
        cpu.set_threads(1.5)
    for refused in (True, np.float64(1.0), "1"):
        with pytest.raises(TypeError, match="threads: expected an int from 1 to"):
            cpu.set_threads(refused)
    assert cpu.get_threads() <= limit


def test_a_numpy_integer_thread_count_is_taken_as_an_int():
    # Found by an outside user: a count read from a NumPy array (a sweep's grid) was refused.
    try:
        cpu.set_threads(np.int64(1))
        assert cpu.get_threads() == 1 and type(cpu.get_threads()) is int
    finally:
        cpu.set_threads(None)


def test_strided_and_broadcast_tensors_are_copied_once_and_give_the_same_result():
    x = torch.rand(6, 3, 8)
    params = {"decay": torch.tensor(0.8, requires_grad=True)}
    results = []
    for make in (lambda: x.clone(), lambda: x.transpose(1, 2).contiguous().transpose(1, 2)):
        inp = make().requires_grad_(True)
        trace = snnref.simulate("tether.PLIF", inp, params, backend="cpu")
        # An expanded (stride 0) cotangent: sum() hands the backward a broadcast tensor.
        (trace.outputs["out"].sum() + trace.outputs["v"].sum()).backward()
        results.append((trace.outputs["out"], trace.outputs["v"], inp.grad, params["decay"].grad.clone()))
        params["decay"].grad = None
    for ours, reference in zip(*results):
        assert torch.equal(ours, reference)


@pytest.mark.parametrize("key", MODELS)
def test_a_strided_x_is_copied_at_most_once_over_forward_and_backward(key, monkeypatch):
    # Before, the LIF (post-reset record), Cooldown and Discontinuous backwards copied x again.
    case = checks.random_case(key, np.random.default_rng(9), steps=5, batch=2, neurons=3, random_state=False)
    x = torch.tensor(case.x).transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)
    assert not x.is_contiguous()
    copies = []
    original = _launch.contiguous

    def counted(tensor):
        result = original(tensor)
        if result.shape == x.shape and result.data_ptr() != tensor.data_ptr():
            copies.append(tensor.shape)
        return result

    monkeypatch.setattr(_launch, "contiguous", counted)
    params = {name: torch.tensor(np.asarray(value)) for name, value in case.params.items()}
    trace = snnref.simulate(key, x, params, backend="cpu", surrogate=case.surrogate)
    trace.outputs["out"].sum().backward()
    # At most once: the attention model's input maps are torch matrix products, which read any strides.
    assert len(copies) <= 1 and x.grad is not None


def _gradients_of_a_loss_constant_in_time(key, case, smooth):
    """Gradients of sum_t <w, y[t]> over every differentiable output sequence y,
    as ``y.sum(0)``: the backward gets a cotangent with stride 0 in time."""
    row = registry.MODELS[key]
    x = torch.tensor(case.x, requires_grad=True)
    params = {k: torch.tensor(np.asarray(v), requires_grad=k in row.differentiable) for k, v in case.params.items()}
    state = {k: torch.tensor(v, requires_grad=True) for k, v in case.state.items()}
    inject = {k: torch.tensor(v) for k, v in case.inject.items()} if case.inject else None
    trace = snnref.simulate(key, x, params, state, backend="cpu", surrogate=case.surrogate, inject=inject,
                            smooth=smooth)
    weights = np.random.default_rng(6)
    loss = 0
    for name, sequence in sorted(trace.outputs.items()):
        if sequence.requires_grad:
            loss = loss + (sequence.sum(0) * torch.tensor(weights.normal(size=tuple(sequence.shape[1:])))).sum()
    wrt = [x] + [v for v in (*params.values(), *state.values()) if v.requires_grad]
    return torch.autograd.grad(loss, wrt, allow_unused=True)


@pytest.mark.parametrize("smooth", [False, True], ids=["H", "smooth"])
@pytest.mark.parametrize("key", MODELS)
def test_a_cotangent_constant_in_time_is_read_as_one_row(key, smooth, monkeypatch):
    """A loss such as ``y.sum()`` hands the backward a cotangent that is the
    same at every step (stride 0 in time).  The scans read it as one row
    (``_launch.cotangent``), with the same bits as from it written out at every
    step (which the torch ops around a scan would not all give: attention's
    differ in their own rounding, so both runs here take the same torch path)."""
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(5), steps=6, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    rows_read = []
    read = _launch.cotangent

    def spy(tensor, dtype):
        view, present = read(tensor, dtype)
        rows_read.append(view.shape[0] if present else None)
        return view, present

    monkeypatch.setattr(_launch, "cotangent", spy)
    one_row = _gradients_of_a_loss_constant_in_time(key, case, smooth)
    assert 1 in rows_read, rows_read
    monkeypatch.setattr(_launch, "cotangent", _launch.optional)
    written_out = _gradients_of_a_loss_constant_in_time(key, case, smooth)
    for ours, reference in zip(one_row, written_out):
        assert (ours is None) == (reference is None)
        if ours is not None:
            assert torch.equal(ours, reference)


@njit(cache=False, error_model="numpy")
def _probe(u, scale, kind, c, f, dF, F):
    for index in range(u.shape[0]):
        f[index], dF[index] = derivatives(u[index], scale, kind, c)
        F[index] = primitive(u[index], scale, kind, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("key", sorted(registry.SURROGATES))
def test_surrogate_forms_are_finite_and_equal_the_torch_path(key, dtype):
    u = np.array([-1e30, -50.0, -1.5, -1.0, -0.3, -1e-20, 0.0, 1e-20, 0.2, 0.999, 1.0, 3.0, 1e4, 3e38], dtype=dtype)
    outputs = [np.empty_like(u) for _ in range(3)]
    _probe(u, dtype(1.7), KINDS[key], np.array([1.0, np.pi], dtype=dtype), *outputs)
    reference = TORCH_SURROGATES[key]
    u64, a = torch.from_numpy(u.astype(np.float64)), torch.tensor(1.7, dtype=torch.float64)
    expected = (reference.f(u64, a), reference.dF(u64, a) if reference.dF else torch.zeros_like(u64),
                reference.F(u64, a))
    tolerance = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-300)
    for got, want in zip(outputs, expected):
        assert np.all(np.isfinite(got)), key
        torch.testing.assert_close(torch.from_numpy(got.astype(np.float64)), want, **tolerance)


def test_an_unknown_surrogate_kind_gives_nan():
    u = np.array([0.5, -0.5])
    outputs = [np.empty_like(u) for _ in range(3)]
    _probe(u, 1.0, len(KINDS), np.array([1.0, np.pi]), *outputs)
    assert all(np.isnan(o).all() for o in outputs)


def test_large_outputs_reuse_the_blocks_of_released_ones(monkeypatch):
    monkeypatch.setattr(_launch, "_BLOCKS", _launch._Blocks(limit=1 << 30))
    shape = (2, 1 << 22)  # 32 MiB of float32: served from blocks (1 MiB and up)
    first = _launch.empty(shape, torch.float32).fill_(1.0)
    # The block's address only: a reference to the block would keep it in use.
    address = next(block.ctypes.data for block, _ in _launch._BLOCKS.blocks if np.shares_memory(block, first.numpy()))
    live = _launch.empty(shape, torch.float32)
    assert not np.shares_memory(live.numpy(), first.numpy())  # in use: never handed out twice
    del first
    again = _launch.empty(shape, torch.float32)
    # The same block, its start staggered within the first page.
    assert 0 <= again.data_ptr() - address < 4096 and again.shape == shape and again.dtype == torch.float32
    row = again[0].fill_(2.0)
    del again
    other = _launch.empty(shape, torch.float32).fill_(3.0)
    assert not 0 <= other.data_ptr() - address < 4096  # a view keeps its block alive
    assert float(row.sum()) == 2.0 * (1 << 22)
    del other
    del row, live
    cpu.release_memory()
    assert not _launch._BLOCKS.blocks


def test_blocks_in_use_do_not_count_against_the_limit_of_idle_ones(monkeypatch):
    # Counted, outputs a loop kept alive pushed every released block out, and each later call
    # touched new memory (hxtorch.cuba_lif, N = 2^20, T = 100: 12.6 against 1.5 ns per neuron-step).
    blocks = _launch._Blocks(limit=5 << 20)
    monkeypatch.setattr(_launch, "_BLOCKS", blocks)
    shape = (2, 1 << 18)  # 2 MiB
    kept = [_launch.empty(shape, torch.float32) for _ in range(2)]
    # A call's two outputs, released; the next call takes them again, one request at a time.
    released = [_launch.empty(shape, torch.float32) for _ in range(2)]
    # The blocks' addresses only: a reference to a block would keep it in use.
    addresses = sorted(block.ctypes.data for block, _ in blocks.blocks
                       if any(np.shares_memory(block, tensor.numpy()) for tensor in released))
    del released
    again = [_launch.empty(shape, torch.float32) for _ in range(2)]
    assert sorted(next(a for a in addresses if 0 <= tensor.data_ptr() - a < 4096) for tensor in again
                  if any(0 <= tensor.data_ptr() - a < 4096 for a in addresses)) == addresses, \
        "an idle block was let go"
    # Idle bytes past the limit are let go, the oldest first.
    del kept, again
    _launch.empty((4, 1 << 18), torch.float32)
    assert sum(block.nbytes for block, _ in blocks.blocks) <= (5 << 20) + _launch.size_class((4 << 20) + 4096)


def test_this_interpreter_reuses_output_blocks():
    # The cache counts references (_Blocks._idle); on an interpreter whose counts it misreads it
    # turns reuse off (below), and this test names that interpreter.
    assert _launch.idle_is_told_apart() and _launch._BLOCKS.reuse


@pytest.mark.parametrize("misread", [-1, 1])
def test_an_interpreter_whose_reference_counts_the_cache_misreads_gets_new_blocks(monkeypatch, misread):
    # An outside user's doubt: Python 3.14 may count fewer references, and a held block counted as
    # idle would be handed out again (a kept output overwritten).  Planted both ways here.
    counted = sys.getrefcount
    monkeypatch.setattr(_launch._Blocks, "_idle", staticmethod(lambda block: counted(block) + misread <= 4))
    assert not _launch.idle_is_told_apart()
    blocks = _launch._Blocks(limit=1 << 30, reuse=False)
    monkeypatch.setattr(_launch, "_BLOCKS", blocks)
    shape = (2, 1 << 18)  # 2 MiB: served from blocks where they are reused
    first = _launch.empty(shape, torch.float32).fill_(1.0)
    second = _launch.empty(shape, torch.float32).fill_(2.0)
    del second
    third = _launch.empty(shape, torch.float32).fill_(3.0)
    assert float(first.sum()) == first.numel() and float(third.sum()) == 3.0 * third.numel()
    assert blocks.blocks == []


def test_requests_of_nearby_sizes_share_blocks_and_a_stale_block_is_let_go(monkeypatch):
    # Found by an outside user: a loop whose T changed every call (60, 61, ...) held 4.4 GB after 100
    # steps, one idle block per size ever asked for, up to the cache's 4 GiB limit.
    blocks = _launch._Blocks(limit=1 << 30, stale=50)
    monkeypatch.setattr(_launch, "_BLOCKS", blocks)
    for steps in range(60, 100):
        output = _launch.empty((steps, 4, 2048), torch.float32)  # 1.9 to 3.1 MiB
        assert output.shape == (steps, 4, 2048) and output.is_contiguous()
        del output
    sizes = sorted(block.nbytes for block, _ in blocks.blocks)
    # Eight sizes per power of two: 40 lengths share a handful of blocks, each at most 12.5% over.
    assert len(sizes) <= 6, sizes
    assert all(_launch.size_class(size) == size for size in sizes)
    assert [_launch.size_class(n) for n in (1 << 20, (1 << 20) + 1, 3 << 20, (3 << 20) + 1)] == [
        1 << 20, (1 << 20) + (1 << 17), 3 << 20, (3 << 20) + (1 << 18)]
    # A size nothing asks for any more is let go once 50 requests have passed it by.
    for _ in range(60):
        _launch.empty((1, 1 << 19), torch.float64)  # 4 MiB, let go at once: one block, taken again each time
    assert [block.nbytes for block, _ in blocks.blocks] == [_launch.size_class((1 << 22) + _launch._PAGE)]


def test_large_per_lane_arrays_reuse_the_blocks_of_released_ones(monkeypatch):
    """A per-lane array of 1 MiB and more is cut from a block of the output
    cache, and a released one's block serves the next request (no new pages
    to fault in on every call)."""
    monkeypatch.setattr(_launch, "_BLOCKS", _launch._Blocks(limit=1 << 30))
    shape = (1 << 19,)  # 4 MiB of float64
    first = _launch.lane_array(shape, np.float64)
    assert any(np.shares_memory(block, first) for block, _ in _launch._BLOCKS.blocks)
    live = _launch.lane_array(shape, np.float64)
    assert not np.shares_memory(first, live)  # in use: never handed out twice
    # The block's address only: a reference to the block would keep it in use.
    address = next(block.ctypes.data for block, _ in _launch._BLOCKS.blocks if np.shares_memory(block, first))
    del first
    again = _launch.lane_array(shape, np.float64)
    assert 0 <= again.ctypes.data - address < 4096 and again.shape == shape and again.dtype == np.float64
    assert len(_launch._BLOCKS.blocks) == 2
    small = _launch.lane_array((1000,), np.float32)
    assert not any(np.shares_memory(block, small) for block, _ in _launch._BLOCKS.blocks)


def test_per_lane_arrays_and_large_outputs_start_at_staggered_page_offsets():
    """Per-lane arrays and large outputs start at distinct offsets within a
    page (``_staggered``: equal offsets make a tile loop's loads and stores
    alias), and per-lane arrays hold the broadcast values."""
    arrays = [_launch.lane_array((3, 5000), np.float64) for _ in range(12)]
    assert len({array.ctypes.data % 4096 for array in arrays}) == 12
    outputs = [_launch.empty((2, 1 << 18), torch.float32) for _ in range(12)]  # 2 MiB each: from the cache
    assert len({output.data_ptr() % 4096 for output in outputs}) == 12
    assert all(output.is_contiguous() and output.shape == (2, 1 << 18) for output in outputs)
    assert all(array.flags.c_contiguous and array.shape == (3, 5000) for array in arrays)
    lanes = _launch.per_lane(torch.tensor([1.0, 2.0, 3.0]), (2, 3))
    assert lanes.dtype == np.float32 and lanes.tolist() == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    final = _launch.empty_lanes((2, 3), torch.float64)
    assert final.dtype == torch.float64 and final.shape == (2, 3) and final.is_contiguous()


@pytest.mark.parametrize("rows", [1, 3])
def test_float32_lane_sums_are_reduced_in_float64(rows):
    """The kernels sum each lane in the compute dtype (as the spec's float32 run
    does); ``reduce_lanes`` adds the lanes in float64, so it adds no float32
    rounding of its own: 2^24 + 1 - 2^24 is 1 here, 0 in float32."""
    lanes = np.zeros((rows, 3), dtype=np.float32)
    lanes[0] = [2.0**24, 1.0, -(2.0**24)]
    per_lane = lanes.ravel()
    scalar = _launch.reduce_lanes(per_lane, torch.ones((), dtype=torch.float32), neurons=3)
    assert scalar.dtype == torch.float32 and scalar.shape == () and scalar.item() == 1.0
    # Per neuron: each neuron's lanes over the batch rows; a float32 sum over
    # rows of 2^24, 1 and -2^24 in one neuron's column would lose the 1.
    column = np.zeros((3, 2), dtype=np.float32)
    column[:, 0] = [2.0**24, 1.0, -(2.0**24)]
    per_neuron = _launch.reduce_lanes(column.ravel(), torch.ones(2, dtype=torch.float32), neurons=2)
    assert per_neuron.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("rows", [1, 3])
def test_lane_sums_of_opposite_infinities_give_nan_without_a_warning(rows):
    """+inf + -inf is NaN, which torch's sum returns on the torch path without a
    word; a GradScaler run expects such gradients on its overflowing steps.
    NumPy's reduction warned ("invalid value encountered in reduce"), an error
    under -W error (found by an outside user's GradScaler run)."""
    lanes = np.zeros((rows, 2), dtype=np.float32)
    lanes[0] = [np.inf, -np.inf]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scalar = _launch.reduce_lanes(lanes.ravel(), torch.ones((), dtype=torch.float32), neurons=2)
        column = _launch.reduce_lanes(lanes.T.copy().ravel(), torch.ones(rows, dtype=torch.float32), neurons=rows)
    assert scalar.isnan().item()
    # Per neuron: neuron 0's lanes are +inf and -inf (NaN), the others' zeros.
    assert column[0].isnan().item() and column[1:].tolist() == [0.0] * (rows - 1)


def test_a_gradient_from_opposite_infinite_cotangents_is_nan_silently_as_on_the_torch_path():
    """End to end: lane 0 gets a cotangent of +inf, lane 1 of -inf on spikes whose
    surrogate is nonzero, so threshold's gradient -sum(g sg) adds -inf and +inf."""
    x = torch.tensor([[[0.5, 0.5]]])
    threshold = torch.tensor(1.0, requires_grad=True)
    cotangent = torch.tensor([[[np.inf, -np.inf]]])
    grads = {}
    for name in ("cpu", "torch"):
        threshold.grad = None
        trace = snnref.simulate("tether.LIF", x, {"threshold": threshold}, backend=name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            trace.outputs["out"].backward(cotangent)
        grads[name] = threshold.grad.item()
    assert np.isnan(grads["cpu"]) and np.isnan(grads["torch"])
