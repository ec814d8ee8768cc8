"""Meta-tests: every planted torch mutant (tests/fixtures/torch_mutants.py) makes
the equivalence checks fail for each model it concerns, and the unpatched copy
passes them, so the gate has no hole for any of the SPEC.md section 6 bugs."""

import pytest
import torch

from fixtures.mutant_cases import cases
from fixtures.torch_mutants import MUTANTS, Mutant, install
from snnref.testing import _equivalence as equivalence


def caught(key, mutant):
    for case in cases(key, mutant.exact_threshold, mutant.surrogate):
        for dtype in (torch.float64, torch.float32):
            if not equivalence.compare(case, "torch", dtype).passed:
                return True
    return False


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_caught(mutant, monkeypatch):
    install(mutant, monkeypatch)
    survivors = [key for key in mutant.models if not caught(key, mutant)]
    assert not survivors, f"{mutant.name} survives the checks of {survivors}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_unpatched_copy_passes(mutant, monkeypatch):
    # The planting mechanism itself changes nothing: an identity patch passes.
    identity = Mutant(mutant.name, mutant.module, mutant.old, mutant.old, mutant.models,
                      mutant.exact_threshold, mutant.surrogate)
    install(identity, monkeypatch)
    for key in mutant.models:
        assert not caught(key, identity), key
