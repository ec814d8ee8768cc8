"""``tether.nn`` at its import path: the same classes as ``snnref.nn``'s."""

from ....nn import ALIF, LIF, PLIF, Arctan, FastSigmoid, Sigmoid, SpikingSelfAttention, Surrogate
from . import alif, attention, lif, plif, surrogates

__all__ = ["ALIF", "Arctan", "FastSigmoid", "LIF", "PLIF", "Sigmoid", "SpikingSelfAttention", "Surrogate"]
