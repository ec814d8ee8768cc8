"""``tether.nn.lif`` at its import path."""

from ....nn.lif import LIF

__all__ = ["LIF"]
