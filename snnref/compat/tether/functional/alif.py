"""``tether.functional.alif`` at its import path."""

from .. import alif

__all__ = ["alif"]
