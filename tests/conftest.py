"""Hypothesis profiles: "ci" (default: fast, derandomized) and "thorough" (local fuzzing).
Registry-driven tests take their examples per model from the loaded profile
(tests/fixtures/examples.py).

Select with ``python -m pytest --hypothesis-profile=thorough``.  Every failure
prints the falsifying example and a ``@reproduce_failure`` blob.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The tests run the Triton kernels on CPU tensors under Triton's interpreter,
# on a GPU machine too (the same checks as CI; the interpreter must be on
# before the kernels are first imported).  On a GPU, `snnref verify --backend
# triton` runs them compiled on CUDA tensors.
os.environ.setdefault("TRITON_INTERPRET", "1")

import snnref.spec.api as api
from snnref import registry
from snnref.testing.strategies import register_profiles

# tests/test_families.py collects the suite with a toy family installed (a
# registry row and its modules, tests/toyfamily): every registry-driven suite
# must pick it up with no edit.
if os.environ.get("SNNREF_TOY_FAMILY"):
    import toyfamily

    toyfamily.install()

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(config, items):
        # Every collected id, written before -k selects the ones to run.
        record = os.environ.get("SNNREF_TOY_COLLECTED")
        if record:
            Path(record).write_text("\n".join(item.nodeid for item in items))

# The package's profiles (snnref.testing.strategies), under this suite's short names.
register_profiles(ci="ci", thorough="thorough")
settings.load_profile("ci")


@pytest.fixture
def plant_backward(monkeypatch):
    """Plant a mutant into a model's hand-written backward for one test.

    ``plant_backward(key, mutate)`` makes the backward of ``key`` call
    ``mutate(grads, params, state, tape, cot)`` on its result before returning
    it; other models of the same family are left alone.
    """

    def plant(key, mutate):
        family = api._family(registry.model(key))
        original = family.backward

        def mutant(row, x, params, state, spike, inject, tape, cot):
            grads = original(row, x, params, state, spike, inject, tape, cot)
            if row.key == key:
                mutate(grads, params, state, tape, cot)
            return grads

        monkeypatch.setattr(family, "backward", mutant)

    return plant
