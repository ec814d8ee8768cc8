"""``tether.nn.alif`` at its import path."""

from ....nn.alif import ALIF

__all__ = ["ALIF"]
