"""``tether.nn.plif`` at its import path."""

from ....nn.plif import PLIF

__all__ = ["PLIF"]
