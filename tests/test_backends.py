"""Every production backend equals the spec (SPEC.md section 7): one template,
parametrized over the backends (torch, triton, cpu) and the registry's models.

Hypothesis draws the model, T from 1 up, batch 1 and more, N not a multiple
of any block size, scalar or per-neuron parameters, every accepted surrogate,
hardware injection, contiguous or strided input and each dtype the backend
stores.  Outputs, state sequences, final states and the gradients for x,
every trainable parameter and every initial state are compared with the
float64 and float32 spec under the tolerance policy; spike flips must be
explained by teacher forcing.  For the kernel backends every output buffer
starts as NaN and is followed by a NaN guard zone, so an element a kernel
forgets to write cannot pass and a store past the end is caught.  Reruns must
be bitwise identical; gradcheck runs on every smooth twin where the backend
computes in float64; the cpu backend reproduces the golden traces (the torch
path's are in test_golden.py; the Triton interpreter is too slow for all 85 in CI).
"""

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from fixtures.cpu_mutants import poison_outputs, stores_past_the_end
from snnref import checks, equivalence, golden, gradcheck, registry
from snnref.testing import strategies

MODELS = sorted(registry.MODELS)


@dataclass(frozen=True)
class Backend:
    name: str
    dtypes: Tuple[torch.dtype, ...]
    max_steps: int  # hypothesis case sizes (the Triton interpreter is slow)
    neuron_counts: Tuple[int, ...]
    allocator: Optional[str] = None  # the module whose empty() allocates every kernel output
    requires: Optional[str] = None  # a package the backend needs

    @property
    def float64(self) -> bool:
        return torch.float64 in self.dtypes

    def param(self):
        missing = self.requires and importlib.util.find_spec(self.requires) is None
        return pytest.param(self, id=self.name, marks=pytest.mark.skip(f"{self.requires} is not installed")
                            if missing else ())


BACKENDS = (
    Backend("torch", (torch.float32, torch.float64), 10, (1, 3, 7, 13)),
    Backend("triton", (torch.float32, torch.float16, torch.bfloat16), 6, (1, 3, 7), "snnref.kernels.common",
            "triton"),
    Backend("cpu", (torch.float32, torch.float64), 10, (1, 3, 7, 13), "snnref.kernels.cpu._launch", "numba"),
)
EVERY_BACKEND = [b.param() for b in BACKENDS]
FLOAT64_BACKENDS = [b.param() for b in BACKENDS if b.float64]


@pytest.fixture(params=EVERY_BACKEND)
def backend(request, monkeypatch):
    """The backend, with its kernel outputs poisoned: NaN, then a NaN guard zone
    checked after the test for stores past the end."""
    spec = request.param
    buffers = []
    if spec.allocator is not None:
        buffers = poison_outputs(monkeypatch, importlib.import_module(spec.allocator))
    yield spec
    assert not stores_past_the_end(buffers), f"{spec.name}: a kernel stored past the end of its output"


def storable_dtypes(backend, row):
    return [d for d in backend.dtypes if equivalence.storable(row, d)]


# The backend fixture (its poisoned allocator) is shared by every example on purpose.
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_backend_equals_the_spec(backend, data):
    case = data.draw(strategies.cases(max_steps=backend.max_steps, neuron_counts=list(backend.neuron_counts)),
                     label="case")
    dtype = data.draw(st.sampled_from(storable_dtypes(backend, registry.MODELS[case.model])), label="dtype")
    contiguous = data.draw(st.booleans(), label="contiguous")
    report = equivalence.compare(case, backend.name, dtype, contiguous=contiguous)
    assert report.passed, f"{case.model} {backend.name} {report.dtype}: " + "; ".join(report.failures)


@pytest.mark.parametrize("key", MODELS)
def test_every_model_and_surrogate_on_a_fixed_case(backend, key):
    row = registry.MODELS[key]
    # The Triton interpreter is slow: its fixed cases are float32 only.
    dtypes = [torch.float32] if backend.name == "triton" else storable_dtypes(backend, row)
    for surrogate in row.surrogates or (None,):
        case = checks.random_case(key, np.random.default_rng(11), steps=12 if backend.float64 else 5, batch=2,
                                  neurons=5, surrogate=surrogate, per_neuron=True, inject=bool(row.inject))
        for dtype in dtypes:
            report = equivalence.compare(case, backend.name, dtype)
            assert report.passed, f"{surrogate} {report.dtype}: " + "; ".join(report.failures)
            if dtype == torch.float64:
                # Near machine precision: far inside the float64 budget of 64 ulp.
                assert report.worst < 0.5, report.fractions


@pytest.mark.parametrize("key", MODELS)
def test_reruns_are_bitwise_identical(backend, key):
    case = checks.random_case(key, np.random.default_rng(4), steps=5, batch=3, neurons=5, per_neuron=True)
    first = equivalence.run_backend(case, backend.name, torch.float32)
    second = equivalence.run_backend(case, backend.name, torch.float32)
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), name


@pytest.mark.parametrize("backend_spec", FLOAT64_BACKENDS)
@pytest.mark.parametrize("key", MODELS)
def test_gradcheck_on_the_smooth_twin(backend_spec, key):
    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(5), steps=4, batch=2, neurons=3,
                              per_neuron=True, inject=bool(row.inject))
    assert gradcheck.smooth_twin_gradcheck(case, backend_spec.name)


@pytest.mark.parametrize("backend_spec", [b.param() for b in BACKENDS if b.name == "cpu"])
def test_golden_traces_are_reproduced(backend_spec):
    store = golden.store_dir()
    manifest = golden.read_manifest(store)
    failures = []
    for name, entry in manifest["files"].items():
        arrays = golden.load(store, name, entry)
        case, expected = golden.case_from(arrays, entry), golden.expected_from(arrays)
        for dtype in backend_spec.dtypes:
            report = equivalence.compare(case, backend_spec.name, dtype, reference=expected)
            failures += [f"{name} {report.dtype}: {failure}" for failure in report.failures]
    assert not failures, "\n".join(failures[:10])
