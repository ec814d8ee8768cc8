"""Adapters from other people's SNN code to the contract of
``snnref.testing.assert_conforms`` (``snnref.simulate``'s signature).

Seed functional signatures (``_seeds``): ``tether_functional`` and
``hxtorch_functional`` wrap tether's ``LIFSubFunction`` contract and hxtorch's
``cuba_*_integration`` functions; plain functions with the attributes
``Implementation.of`` reads.

Third-party libraries, one module each, each adapter returning an
``Implementation`` of the registry model it is closest to (the library is
imported when the adapter is built; an adapter only converts parameters and
layout and calls the library, never computes part of the model itself):

- ``snntorch_leaky``, ``snntorch_synaptic`` (snnTorch 1.0, ``_snntorch``);
- ``spikingjelly_lif``, ``spikingjelly_if`` (SpikingJelly 2.0, ``_spikingjelly``);
- ``norse_lif_box``, ``norse_lif`` (Norse 1.1, ``_norse``);
- ``sinabs_iaf``, ``sinabs_lif`` (Sinabs 3.1, ``_sinabs``);
- ``rockpool_lif`` (Rockpool 3.1, ``_rockpool``).

Which configurations conform and which do not, and why, is
``snnref.testing.conformance`` (``snnref conformance``).

A seed-style function declares what it covers with the attributes
``Implementation.of`` reads.  It may keep some parameters fixed
(``fixed_parameters``: their gradients are not compared), store only some
dtypes (``dtypes``), be unable to take an initial state (hxtorch's functions
start from their parameters: ``takes_state = False``), take no per-neuron
values for the parameters the registry declares scalar (``per_neuron =
False``), or leave out a recorded sequence (hxtorch returns no refractory
counter).  The gate then checks what the function can express and lists the
quantities it could not check.
"""

from ._norse import norse_lif, norse_lif_box
from ._rockpool import rockpool_lif
from ._seeds import HXTORCH_MODELS, TETHER_MODELS, hxtorch_functional, tether_functional
from ._sinabs import GAUSSIAN_ALPHA, GAUSSIAN_GRADIENT_FACTOR, sinabs_iaf, sinabs_lif
from ._snntorch import snntorch_leaky, snntorch_synaptic
from ._spikingjelly import spikingjelly_if, spikingjelly_lif

__all__ = [
    "GAUSSIAN_ALPHA", "GAUSSIAN_GRADIENT_FACTOR", "HXTORCH_MODELS", "TETHER_MODELS", "hxtorch_functional",
    "norse_lif", "norse_lif_box", "rockpool_lif", "sinabs_iaf", "sinabs_lif", "snntorch_leaky",
    "snntorch_synaptic", "spikingjelly_if", "spikingjelly_lif", "tether_functional",
]
