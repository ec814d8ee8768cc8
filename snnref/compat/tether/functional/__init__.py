"""``tether.functional`` at its import path: its modules ``lif``, ``plif`` and ``alif``
(as in tether, these names are the modules; the plain functions are
``snnref.compat.tether.lif`` and so on) and its autograd Functions by name."""

from .. import LIFSubFunction, PLIFSubFunction
from . import alif, lif, plif

__all__ = ["LIFSubFunction", "PLIFSubFunction", "alif", "lif", "plif"]
