"""``tether.functional.lif`` at its import path."""

from .. import LIFSubFunction, lif

__all__ = ["LIFSubFunction", "lif"]
