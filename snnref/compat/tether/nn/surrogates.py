"""``tether.nn.surrogates`` at its import path."""

from ....nn.surrogates import Arctan, FastSigmoid, Sigmoid, Surrogate

__all__ = ["Arctan", "FastSigmoid", "Sigmoid", "Surrogate"]
