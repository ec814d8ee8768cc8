"""tether's public ``tether.nn`` names (tetherpy 0.2.0), with the semantics of SPEC section 2."""

from ..nn import ALIF, LIF, PLIF, Arctan, FastSigmoid, Sigmoid, SpikingSelfAttention, Surrogate

__all__ = ["ALIF", "Arctan", "FastSigmoid", "LIF", "PLIF", "Sigmoid", "SpikingSelfAttention", "Surrogate"]
