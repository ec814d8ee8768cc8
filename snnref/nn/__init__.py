"""torch.nn modules with tether's semantics (SPEC section 2), built on ``snnref.backend.simulate``.

Input is time-major (T, ...).  Each neuron module's state starts at zero and is
carried, detached, from one forward call to the next while the number of
neurons stays the same; ``reset_state()`` zeroes it.  A state the caller sets
(``neuron.v = torch.full((n,), 0.5)``) is broadcast to the next call's shape,
or refused by name.  Carried detached, it passes no gradient from one call to
the next: a loop of one-step calls trains with one step of backpropagation
through time, where one call on the whole sequence trains with all of them.
The state is not part of ``state_dict``; a tether checkpoint's state keys load
as the carried state.
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
