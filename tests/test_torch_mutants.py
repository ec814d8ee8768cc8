"""Meta-tests: every planted torch mutant (tests/fixtures/torch_mutants.py) makes
the equivalence checks fail for each model it concerns, and the unpatched copy
passes them, so the gate has no hole for any of the SPEC.md section 6 bugs."""

import numpy as np
import pytest
import torch

from fixtures.torch_mutants import MUTANTS, Mutant, install
from snnref import checks, equivalence, registry


def cases(key, exact_threshold, surrogate=None):
    row = registry.model(key)
    if exact_threshold:
        # Dyadic inputs, leak 1/2 and threshold 1: membranes land exactly on threshold.
        rng = np.random.default_rng(0)
        case = checks.random_case(key, rng, steps=12, batch=2, neurons=4, random_state=False,
                                  surrogate=surrogate)
        case.x = rng.integers(0, 5, case.x.shape) / 4.0
        for leak in ("decay", "decay_v"):
            if leak in case.params:
                case.params[leak] = np.asarray(0.5)
        if "beta" in case.params:
            case.params["beta"] = np.asarray(0.0)
        if "threshold" in case.params:
            case.params["threshold"] = np.full(np.shape(case.params["threshold"]), 1.0)
        if row.family == "cuba":
            # a = b = 1/2 and threshold 1/2: exact binary fractions all the way.
            exact = dict(tau_mem=2e-6, tau_syn=2e-6, dt=1e-6, threshold=0.5, leak=0.0, reset=0.0)
            case.params.update({k: v for k, v in exact.items() if k in case.params})
        yield case
        return
    for seed in (1, 2):
        yield checks.random_case(key, np.random.default_rng(seed), steps=12, batch=3, neurons=5,
                                 per_neuron=True, surrogate=surrogate)


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
