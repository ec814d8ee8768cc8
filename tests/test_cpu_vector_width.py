"""The LIF family's CPU scans on 512-bit vectors (kernels/cpu/_vector_width.py):
the function that calls ``wide_vectors()`` carries the two LLVM attributes
(and not on the Skylake-SP-era cores left out), its tile loop compiles to zmm
code on an AVX-512 target, and results are the bits of LLVM's own width."""

import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding
import numpy as np
import pytest
import torch
from numba import njit, types
from numba.core.errors import TypingError

from fixtures import width_digest
from snnref.kernels.cpu import _stream, _vector_width, lif

FIXTURES = str(Path(__file__).parent)

AVX512 = llvmlite.binding.get_host_cpu_features().get("avx512f", False)
WIDE_HOST = AVX512 and _vector_width.target_cpu() not in _vector_width.CLOCKED_DOWN


def _tile_arguments(steps=7, lanes=301, stores=_stream.PLAIN):
    """Arguments of tether.LIF's float32 tile loop ``lif._forward_tile`` and
    backward scan ``lif.tile_backward_scan(lif.ZERO, True, False)`` over one
    tile of ``lanes``, writing with ``stores``: hard reset, v recorded before
    it, arctan, single-valued parameters and per-lane gradient sums in the
    compute dtype, as the launcher passes them (so the plain forms are the
    ones tether.LIF compiles).  The written rows start on a cache line
    (torch's allocations do)."""
    rng = np.random.default_rng(4)
    f32 = np.float32
    x = (rng.normal(0.4, 0.6, (steps, lanes))).astype(f32)
    lam, theta, scale = f32(0.9), f32(1.0), f32(2.0)
    c = np.array([1.0, np.pi], f32)
    spikes, recorded, g_x = (torch.empty(x.shape).numpy() for _ in range(3))
    final = np.zeros(lanes, f32)
    forward = (x, lam, theta, spikes, recorded, final, 0, lanes, lif.ZERO, True, False, c, stores)
    sums = [np.zeros(lanes, f32) for _ in range(3)]
    backward = (x, np.zeros(lanes, f32), lam, theta, scale, recorded, np.ones((1, lanes), f32),
                np.zeros((1, lanes), f32), np.zeros(lanes, f32), g_x, np.zeros(lanes, f32), *sums,
                True, False, False, False, 0, False, c, stores, lanes, 0, 1)
    return forward, backward


def _fresh_copy(dispatcher, arguments):
    """A copy of a compiled scan, compiled afresh (no cache) by a call with
    ``arguments``, and the signature it was compiled for."""
    copy = njit(error_model="numpy")(dispatcher.py_func)
    copy(*arguments)
    return copy, copy.signatures[0]


def test_the_calling_function_gets_both_attributes(monkeypatch):
    arguments = _tile_arguments()[0]
    copy, signature = _fresh_copy(lif._forward_tile, arguments)
    ir = copy.inspect_llvm(signature)
    for attribute in _vector_width.WIDE:
        assert attribute in ir
    monkeypatch.setattr(_vector_width, "target_cpu", lambda: "cascadelake")
    copy, signature = _fresh_copy(lif._forward_tile, arguments)
    ir = copy.inspect_llvm(signature)
    assert not any(attribute in ir for attribute in _vector_width.WIDE)


@pytest.mark.skipif(not WIDE_HOST, reason="zmm code needs an AVX-512 target outside CLOCKED_DOWN")
def test_the_lif_backward_tile_loop_runs_on_zmm_registers():
    copy, signature = _fresh_copy(lif.tile_backward_scan(lif.ZERO, True, False), _tile_arguments()[1])
    assembly = copy.inspect_asm(signature)
    assert "zmm" in assembly


@pytest.mark.skipif(not _stream.STREAMING, reason="streaming stores on x86-64 only")
def test_the_streamed_tile_loops_store_rows_with_non_temporal_vector_stores():
    """``_stream.put`` reaches the machine code as vector non-temporal stores
    (movntps): LLVM vectorizes such a store only where it is declared aligned
    (declared at its element's alignment, the copy of a sequence ran at plain
    stores' speed).  The plain variants have none.  304 lanes: float32 rows of
    19 cache lines."""
    for stores in (_stream.STREAMED, _stream.PLAIN):
        forward, backward = _tile_arguments(lanes=304, stores=stores)
        tile_loop, signature = _fresh_copy(lif._forward_tile, forward)
        # Typed as the constant it is, not as a runtime bool.
        assert signature[-1] == types.literal(bool(stores))
        scan, scan_signature = _fresh_copy(lif.tile_backward_scan(lif.ZERO, True, False), backward)
        for assembly in (tile_loop.inspect_asm(signature), scan.inspect_asm(scan_signature)):
            assert ("movntps" in assembly) is bool(stores)


def test_a_kind_of_store_given_as_a_plain_bool_is_refused_by_name():
    """``_stream.put`` chooses its store when it is compiled, so the flag must
    be a constant: a runtime bool would compile one loop for both kinds.  A
    fresh copy, so that numba types the loop here rather than loading it."""
    forward = _tile_arguments()[0][:-1] + (True,)
    with pytest.raises(TypingError, match="streaming: expected a StoreKind"):
        njit(error_model="numpy")(lif._forward_tile.py_func)(*forward)


@pytest.mark.skipif(not WIDE_HOST, reason="one width only: no AVX-512 target outside CLOCKED_DOWN")
def test_results_are_the_bits_of_llvms_own_width(tmp_path):
    """The same calls compiled for this CPU (512-bit), here, and, in a fresh
    process with a fresh cache, for cascadelake with this CPU's features
    (LLVM's 256-bit preference)."""
    env = dict(os.environ, NUMBA_CPU_NAME="cascadelake", NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join(filter(None, [FIXTURES, os.environ.get("PYTHONPATH")])))
    # Started in the empty tmp_path: the checkout's root on sys.path would shadow the installed snnref.
    done = subprocess.run([sys.executable, "-m", "fixtures.width_digest"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    narrow_cpu, narrow = done.stdout.split()
    assert _vector_width.target_cpu() not in _vector_width.CLOCKED_DOWN and narrow_cpu == "cascadelake"
    assert width_digest.digest() == narrow
