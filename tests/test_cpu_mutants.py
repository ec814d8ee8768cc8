"""Meta-tests for the fused CPU scans: every planted mutant of
tests/fixtures/cpu_mutants.py (the SPEC.md section 6 seed bugs and the generic
ones, in copies of kernels/cpu compiled without the on-disk cache) makes the
equivalence checks (for a mutant of the general loop: gradcheck of the smooth
twin) fail for each model it concerns, and the unpatched copy of each module
passes them.  Tiles of 4 lanes, so every case has several tiles
and a partial last one; every output buffer is poisoned with NaN and guarded."""

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from fixtures import mutant_cases
from fixtures.cpu_mutants import CPU_MUTANTS, install, poison_outputs, stores_past_the_end
from fixtures.torch_mutants import Mutant
from snnref.kernels.cpu import _launch
from snnref.testing import _equivalence as equivalence
from snnref.testing import _fd

SMALL_TILE = 4


@pytest.fixture(autouse=True)
def small_tiles_and_poison(monkeypatch):
    monkeypatch.setattr(_launch, "TILE", SMALL_TILE)
    return poison_outputs(monkeypatch, _launch)


def cases(key, exact_threshold, surrogate=None):
    return mutant_cases.cases(key, exact_threshold, surrogate, threshold_neurons=5)


def caught(key, mutant, buffers, dtypes=(torch.float64, torch.float32)):
    if mutant.smooth:
        for case in cases(key, mutant.exact_threshold, mutant.surrogate):
            try:
                _fd.smooth_twin_gradcheck(case, "cpu")
            except GradcheckError:
                return True
        return False
    # Every case in float64 before any in float32: most mutants show in float64,
    # and each (case, dtype) that does not catch one costs a compile of its copy.
    for dtype in dtypes:
        for case in cases(key, mutant.exact_threshold, mutant.surrogate):
            # No exception counts as caught: a mutant that does not compile would hide a hole.
            report = equivalence.compare(case, "cpu", dtype)
            if not report.passed or stores_past_the_end(buffers):
                return True
    return False


@pytest.mark.parametrize("mutant", CPU_MUTANTS, ids=[m.name for m in CPU_MUTANTS])
def test_cpu_mutant_is_caught(mutant, monkeypatch, small_tiles_and_poison):
    install(mutant, monkeypatch)
    survivors = [key for key in mutant.models if not caught(key, mutant, small_tiles_and_poison)]
    small_tiles_and_poison.clear()  # a mutant's writes past the end were the point
    assert not survivors, f"{mutant.name} survives the checks of {survivors}"


MODULES = sorted({m.module for m in CPU_MUTANTS})


@pytest.mark.parametrize("module", MODULES)
def test_the_unpatched_copy_passes(module, monkeypatch, small_tiles_and_poison):
    # The planting mechanism itself changes nothing: an identity patch of each
    # module passes every model and exact-threshold case its mutants use (float64).
    mutants = [m for m in CPU_MUTANTS if m.module == module]
    anchor = mutants[0].old
    install(Mutant(f"identity {module}", module, anchor, anchor, ()), monkeypatch)
    for mutant in mutants:
        for key in mutant.models:
            assert not caught(key, mutant, small_tiles_and_poison, (torch.float64,)), (mutant.name, key)
    assert not stores_past_the_end(small_tiles_and_poison)
