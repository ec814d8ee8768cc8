"""Drop-in names of the seed libraries, on snnref's verified implementations.

- ``snnref.compat.tether``: ``tether.nn``'s modules (``LIF``, ``PLIF``, ``ALIF``,
  ``SpikingSelfAttention``) and surrogates; tether's functional names (``lif``,
  ``plif``, ``alif``) live in ``snnref.functional``.
- ``snnref.compat.rnnbuilder``: ``rnnbuilder.snn``'s neurons with explicit state.
- ``snnref.compat.qualia``: qualia-plugin-snn's ``CustomNode`` (``heaviside``,
  ``SpikeFunctionSigmoid``, ``IFSRL``, ``ATIF``).
- ``snnref.compat.hxtorch``: ``hxtorch.spiking.functional``'s CUBA functions
  (``cuba_lif_step``, ``refractory_update``, ``spiking_threshold``, ``cuba_*_integration``).
"""
