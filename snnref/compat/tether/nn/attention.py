"""``tether.nn.attention`` at its import path."""

from ....nn.attention import SpikingSelfAttention

__all__ = ["SpikingSelfAttention"]
