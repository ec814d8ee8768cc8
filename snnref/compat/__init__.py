"""Each seed library's whole public API, on snnref's verified implementations.

- ``snnref.compat.tether``: ``tether.nn``'s modules (``LIF``, ``PLIF``, ``ALIF``,
  ``SpikingSelfAttention``) and surrogates (``Arctan``, ``Sigmoid``,
  ``FastSigmoid``, ``Surrogate``), and ``tether.functional``'s ``lif``,
  ``plif``, ``alif``.
- ``snnref.compat.rnnbuilder``: ``rnnbuilder.snn``'s neurons with explicit state
  and its ``SpikeLinear`` surrogate.
- ``snnref.compat.qualia``: qualia-plugin-snn's ``CustomNode`` (``heaviside``,
  ``SpikeFunctionSigmoid``, ``IFSRL``, ``ATIF``).
- ``snnref.compat.hxtorch``: ``hxtorch.spiking.functional``'s CUBA functions
  (``cuba_lif_step``, ``refractory_update``, ``spiking_threshold``, ``cuba_*_integration``).

``snnref.functional`` re-exports the tether and hxtorch functions under their
old path.
"""

from .. import _imports

# ``snnref.compat.tether`` and the others on first use, without importing each.
__getattr__ = _imports.submodules_on_use(__name__)
__dir__ = _imports.listing(__name__)
