"""Every kernel run as several programs with a partial last block, in every dtype.

A Triton kernel runs one program per block of lanes (``snnref.kernels._launch``,
eq. 1) and a fused CPU scan one loop per tile (``snnref.kernels.cpu._launch``).
The interpreter's block is 16,384 lanes and the CPU tile up to 32,768, wider than any
other test case, so elsewhere every kernel runs as a single program: a kernel
whose offsets ignore ``tl.program_id`` (or a scan that ignores its tile index)
passes there and is wrong on a GPU for every block after the first.

Here the block (tile) is forced to 16 lanes, and each model's case is
3 batch rows of 13 neurons: 39 lanes (78 for the models whose input has a token
axis), so 3 programs, the last one partial (7 of 16 lanes), and per-neuron
parameters that do not line up with block boundaries.  For every registry
model, every dtype the backend stores (``snnref.backend.DTYPES``) and both
kernel backends, outputs, state sequences, final states and gradients are
compared with the spec under the SPEC.md section 7 budget
(``snnref.testing._equivalence.compare``), with every kernel output poisoned
(NaN, then a NaN guard zone) so an unwritten element or a store past the end
fails.  The meta-tests plant a backward kernel (a CPU backward scan) that
ignores the program (tile) index and show that these cases catch it while the
same case as a single program does not.
"""

import importlib
import importlib.util

import numpy as np
import pytest
import torch

from fixtures.cpu_mutants import install as install_cpu_mutant, poison_outputs, stores_past_the_end
from fixtures.torch_mutants import Mutant, planted
from snnref import backend as backends
from snnref import registry
from snnref.testing import _checks, _equivalence

FORCED_LANES = 16
BATCH, NEURONS, STEPS = 3, 13, 4
MODELS = sorted(registry.MODELS)


class KernelBackend:
    """How to force small blocks on one kernel backend."""

    def __init__(self, name, package, requires):
        self.name, self.package, self.requires = name, package, requires

    @property
    def available(self):
        return importlib.util.find_spec(self.requires) is not None

    def allocator(self):
        """The module whose ``empty`` allocates every kernel output."""
        return importlib.import_module(f"{self.package}.common" if self.name == "triton"
                                       else f"{self.package}._launch")

    def forced(self, lanes=FORCED_LANES):
        launch = importlib.import_module(f"{self.package}._launch")
        return launch.block_size(lanes) if self.name == "triton" else launch.tile_size(lanes)


KERNEL_BACKENDS = {
    "triton": KernelBackend("triton", "snnref.kernels", "triton"),
    "cpu": KernelBackend("cpu", "snnref.kernels.cpu", "numba"),
}


def _params():
    """(backend, dtype, model) for every storable combination: no run is skipped
    for a dtype the model cannot be stored in; the backend is skipped, visibly,
    where its package is missing."""
    params = []
    for name, kernels in KERNEL_BACKENDS.items():
        marks = () if kernels.available else pytest.mark.skip(f"{kernels.requires} is not installed")
        for dtype in backends.DTYPES[name]:
            for key in MODELS:
                if _equivalence.storable(registry.MODELS[key], dtype):
                    params.append(pytest.param(name, dtype, key, marks=marks,
                                               id=f"{name}-{str(dtype).replace('torch.', '')}-{key}"))
    return params


def small_block_case(key, seed=7):
    row = registry.MODELS[key]
    return _checks.random_case(key, np.random.default_rng(seed), steps=STEPS, batch=BATCH, neurons=NEURONS,
                               per_neuron=True, inject=bool(row.inject))


def lanes_of(case):
    return int(np.prod(np.shape(case.x)[1:]))


@pytest.fixture
def poisoned(monkeypatch):
    """Returns a function that poisons the outputs of a backend's kernels; the
    guard zones are checked when the test ends."""
    buffers = []

    def poison(kernels):
        buffers.extend(poison_outputs(monkeypatch, kernels.allocator()))
        return buffers

    yield poison
    assert not stores_past_the_end(buffers), "a kernel stored past the end of its output"


@pytest.mark.parametrize("backend, dtype, key", _params())
def test_several_programs_and_a_partial_last_block(backend, dtype, key, poisoned):
    kernels = KERNEL_BACKENDS[backend]
    poisoned(kernels)
    case = small_block_case(key)
    lanes = lanes_of(case)
    # The case spans at least three programs, the last one partial.
    assert lanes > 2 * FORCED_LANES and lanes % FORCED_LANES, lanes
    with kernels.forced():
        report = _equivalence.compare(case, backend, dtype)
    assert report.passed, f"{key} {backend} {report.dtype}, {FORCED_LANES}-lane blocks: " + "; ".join(report.failures)


def test_the_override_is_scoped_and_checked():
    launch = importlib.import_module("snnref.kernels._launch")
    cpu = torch.device("cpu")
    default = launch.lanes_per_program(39, cpu)
    with launch.block_size(16):
        assert launch.lanes_per_program(39, cpu) == 16
        # A case narrower than the forced block still runs one block of its own size.
        assert launch.lanes_per_program(5, cpu) == 8
    assert launch.lanes_per_program(39, cpu) == default == 64
    with pytest.raises(ValueError, match=r"lanes: expected a power of two .*got 24"):
        with launch.block_size(24):
            pass


# A planted change per backend that ignores which program (tile) runs: every
# program computes and stores the first block's lanes.
PROGRAM_BLIND = {
    "triton": Mutant(
        "backward offsets ignore tl.program_id (kernel)", "snnref.kernels.lif",
        'last step first."""\n    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n',
        'last step first."""\n    offs = tl.arange(0, BLOCK)\n',
        ("tether.PLIF",)),
    "cpu": Mutant(
        "backward scan ignores its tile index (cpu)", "snnref.kernels.cpu.lif",
        "        for tile_index in range(first_tile, last_tile):\n            start = tile_index * tile",
        "        for tile_index in range(first_tile, last_tile):\n            start = 0 * tile_index",
        ("tether.PLIF",)),
}


def _install(mutant, backend, monkeypatch):
    if backend == "cpu":
        # Compiled without numba's on-disk cache (a copy has no source file).
        install_cpu_mutant(mutant, monkeypatch)
        return
    copy = planted(mutant)
    family = mutant.module.rpartition(".")[2]
    original = backends._family
    monkeypatch.setattr(backends, "_family",
                        lambda row, name="torch": copy if row.family == family and name == backend
                        else original(row, name))


def _caught(case, backend, buffers):
    """Whether the equivalence check (or the poison's guard zone) fails."""
    del buffers[:]
    try:
        report = _equivalence.compare(case, backend, torch.float32)
    except Exception:  # a crash is a failure of the mutant too
        return True
    return not report.passed or stores_past_the_end(buffers)


@pytest.mark.parametrize("backend", sorted(PROGRAM_BLIND))
def test_a_program_blind_backward_is_caught_only_with_small_blocks(backend, monkeypatch):
    kernels = KERNEL_BACKENDS[backend]
    if not kernels.available:
        pytest.skip(f"{kernels.requires} is not installed")
    mutant = PROGRAM_BLIND[backend]
    _install(mutant, backend, monkeypatch)
    buffers = poison_outputs(monkeypatch, kernels.allocator())
    case = small_block_case(mutant.models[0])
    # One program: the planted change is invisible, as it was to every other test.
    assert not _caught(case, backend, buffers), f"{mutant.name}: already caught by a single program"
    # The mutant computes the first block's lanes only: the per-lane gradient
    # sums of the others stay unwritten memory, whose reduction may overflow
    # (a warning, not the failure this test looks for).
    with kernels.forced(), np.errstate(over="ignore", invalid="ignore"):
        assert _caught(case, backend, buffers), f"{mutant.name} survives {FORCED_LANES}-lane blocks"
