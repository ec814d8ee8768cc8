"""``hxtorch.spiking.functional``'s names (SPEC section 5), from ``snnref.functional``."""

from ..functional import (
    cuba_iaf_integration,
    cuba_li_integration,
    cuba_lif_integration,
    cuba_lif_step,
    cuba_refractory_iaf_integration,
    cuba_refractory_lif_integration,
    refractory_update,
    spiking_threshold,
)

__all__ = [
    "cuba_iaf_integration",
    "cuba_li_integration",
    "cuba_lif_integration",
    "cuba_lif_step",
    "cuba_refractory_iaf_integration",
    "cuba_refractory_lif_integration",
    "refractory_update",
    "spiking_threshold",
]
