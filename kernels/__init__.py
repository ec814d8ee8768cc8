"""Fused Triton scan kernels, installed as ``snnref.kernels``.

The kernels themselves arrive with the Triton backend; this package exists now
so that the installed layout (``kernels/`` mapped to ``snnref.kernels``) is fixed
from the start and checked by the tests.
"""
