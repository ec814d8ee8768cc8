"""The executable spec: float64 NumPy integrators with hand-written BPTT.

NumPy and SciPy only: importing this package never imports torch or triton.
"""

from . import surrogates
from .api import SpikeFunction, Trace, simulate, vjp

__all__ = ["SpikeFunction", "Trace", "simulate", "surrogates", "vjp"]
