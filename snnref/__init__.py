"""snnref: a numerically verified reference and gradient-testing suite for spiking neural networks.

``snnref.spec`` is the float64 NumPy reference (no torch); ``snnref.simulate``
is the production entry point on torch tensors, imported on first use so that
the spec never pulls in torch.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "simulate":
        from .backend import simulate

        return simulate
    raise AttributeError(f"module 'snnref' has no attribute {name!r}")
