"""The seeds' functional names, kept at this import path: thin re-exports.

tether's ``lif``, ``plif`` and ``alif`` live in ``snnref.compat.tether``;
hxtorch's ``Unterjubel``, ``cuba_*``, ``refractory_update`` and ``spiking_threshold`` in
``snnref.compat.hxtorch``.  Each name here is the same object as there.
"""

from .compat.hxtorch import (
    Unterjubel,
    cuba_iaf_integration,
    cuba_li_integration,
    cuba_lif_integration,
    cuba_lif_step,
    cuba_refractory_iaf_integration,
    cuba_refractory_lif_integration,
    refractory_update,
    spiking_threshold,
)
from .compat.tether import alif, lif, plif

__all__ = [
    "Unterjubel",
    "alif",
    "cuba_iaf_integration",
    "cuba_li_integration",
    "cuba_lif_integration",
    "cuba_lif_step",
    "cuba_refractory_iaf_integration",
    "cuba_refractory_lif_integration",
    "lif",
    "plif",
    "refractory_update",
    "spiking_threshold",
]
