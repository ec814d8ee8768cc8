"""snnref: a numerically verified reference and gradient-testing suite for spiking neural networks.

``snnref.spec`` is the float64 NumPy reference (no torch); ``snnref.simulate``
is the production entry point on torch tensors, imported on first use so that
the spec never pulls in torch.  The subpackages (``snnref.nn``,
``snnref.testing``, ...) are attributes imported on first use too.
"""

from . import _imports

__version__ = "0.1.0"

_submodule = _imports.submodules_on_use(__name__)
__dir__ = _imports.listing(__name__, "simulate")


def __getattr__(name):
    if name == "simulate":
        from .backend import simulate

        return simulate
    return _submodule(name)
