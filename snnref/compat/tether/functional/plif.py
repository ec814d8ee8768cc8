"""``tether.functional.plif`` at its import path."""

from .. import PLIFSubFunction, plif

__all__ = ["PLIFSubFunction", "plif"]
