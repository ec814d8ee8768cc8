"""torch.nn modules with tether's semantics (SPEC section 2), built on ``snnref.backend.simulate``.

Input is time-major (T, ...).  Each neuron module's state starts at zero and is
carried, detached, from one forward call to the next while the number of
neurons stays the same; ``reset_state()`` zeroes it.  The state is not part of
``state_dict``; a tether checkpoint's state keys load as the carried state.
"""

from .alif import ALIF
from .attention import SpikingSelfAttention
from .lif import LIF, PLIF
from .surrogates import Arctan, FastSigmoid, Sigmoid, SpikeLinear, SuperSpike, Surrogate

__all__ = [
    "ALIF",
    "Arctan",
    "FastSigmoid",
    "LIF",
    "PLIF",
    "Sigmoid",
    "SpikeLinear",
    "SpikingSelfAttention",
    "SuperSpike",
    "Surrogate",
]
