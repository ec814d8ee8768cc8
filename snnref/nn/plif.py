"""``tether.nn.plif``'s import path: PLIF is defined beside LIF, its base, in ``snnref.nn.lif``."""

from .lif import PLIF

__all__ = ["PLIF"]
