"""Device functions under Triton's interpreter: called directly
(``snnref.kernels.common.device_function``), they give the bits that Triton's
own call gives.

The kernels call this package's device functions at every step; Triton's call
of one re-patches ``triton.language`` first, which the launch running the
kernel has already done.  For every registry model, one small float32 case
(every model's surrogate, per-neuron parameters, injection where the model
takes it) runs on ``backend="triton"`` twice: as installed, and with every
device function of the kernel modules switched back to Triton's own call.
Outputs, final states and gradients must be bitwise equal.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from snnref import registry  # noqa: E402
from snnref.kernels import common  # noqa: E402
from snnref.testing import _checks, _equivalence  # noqa: E402


def _device_functions():
    """Every device function defined in a Triton kernel module of this package."""
    import snnref.kernels as kernels

    found = []
    for module_info in pkgutil.iter_modules(kernels.__path__):
        if module_info.ispkg:
            continue
        module = importlib.import_module(f"snnref.kernels.{module_info.name}")
        found.extend(value for name, value in vars(module).items()
                     if common._direct_class() is not None and type(value) is common._direct_class()
                     and value.fn.__module__ == module.__name__)
    return found


@pytest.fixture
def tritons_own_call():
    """Switches every device function back to Triton's call inside the ``with``."""
    import contextlib

    @contextlib.contextmanager
    def switched():
        functions = _device_functions()
        interpreted = common._direct_class().__mro__[1]
        for function in functions:
            function.__class__ = interpreted
        try:
            yield functions
        finally:
            for function in functions:
                function.__class__ = common._direct_class()

    return switched


def test_the_device_functions_are_called_directly_under_the_interpreter():
    if not common.INTERPRETED or common._direct_class() is None:
        pytest.skip("Triton's interpreter is off, or this Triton has no InterpretedFunction.rewrite")
    names = {function.fn.__name__ for function in _device_functions()}
    # The shared ones (kernels/_jit.py, kernels/surrogates.py) and each family's own.
    assert {"spike", "load_param", "derivatives", "primitive", "_atan", "_post_reset", "_advance"} <= names, sorted(names)


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_direct_calls_give_the_bits_of_tritons_call(key, tritons_own_call):
    if not common.INTERPRETED or common._direct_class() is None:
        pytest.skip("Triton's interpreter is off, or this Triton has no InterpretedFunction.rewrite")
    row = registry.MODELS[key]
    case = _checks.random_case(key, np.random.default_rng(3), steps=5, batch=2, neurons=7, per_neuron=True,
                               inject=bool(row.inject))
    direct = _equivalence.run_backend(case, "triton", torch.float32)
    with tritons_own_call() as functions:
        assert functions and all(type(f) is not common._direct_class() for f in functions)
        patched = _equivalence.run_backend(case, "triton", torch.float32)
    assert direct.keys() == patched.keys()
    for name in direct:
        assert np.array_equal(direct[name], patched[name], equal_nan=True), f"{key}: {name} differs"
