"""The toy family's kernel layers (Triton and cpu).  The toy has no kernels of
its own: these layers are its torch op under the kernel contract, with the
compile variants a Triton family declares, so that the kernel suites collect
the toy as they would a new family.  Running those suites on it would compile
and launch kernels it does not have; tests/test_families.py runs only the
reference and torch templates on the toy."""

import torch

from snnref.kernels import _launch

from .ops import run

COMPILE_VARIANTS = _launch.CompileVariants(float32_pointers=frozenset(),
                                           variants=(_launch.variant(torch.float32, KIND=0),))

__all__ = ["COMPILE_VARIANTS", "run"]
