"""snnref: a numerically verified reference and gradient-testing suite for spiking neural networks."""

__version__ = "0.1.0"
