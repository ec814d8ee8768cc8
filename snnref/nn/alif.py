"""tether's adaptive LIF neuron (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .carried import TetherNeuron, check_numbers
from .surrogates import Arctan


class ALIF(TetherNeuron):
    """LIF whose threshold ``threshold + beta * a`` rises with each spike; input (T, ..., n_neurons).

    ``a`` decays by ``decay_a`` and grows by the spikes (differentiated through
    the surrogate).  All five scalars are trainable; the surrogate is a trainable
    Arctan(alpha).  With ``store_traces`` the pre-reset membrane sequence of the
    last call is kept in ``v_seq``.  ``backend`` (keyword only, an attribute
    after) is ``snnref.simulate``'s.
    """

    model = "tether.ALIF"
    state_names = ("v", "a")

    def __init__(self, n_neurons, decay_v=0.9, decay_a=0.9, threshold=1.0, beta=0.5, alpha=2.0,
                 store_traces=False, *, backend="auto"):
        check_numbers(decay_v=decay_v, decay_a=decay_a, threshold=threshold, beta=beta, alpha=alpha)
        super().__init__(n_neurons, store_traces, backend)
        self.decay_v = nn.Parameter(torch.tensor(float(decay_v)))
        self.decay_a = nn.Parameter(torch.tensor(float(decay_a)))
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.surrogate = Arctan(alpha, trainable=True)

    def params(self):
        return {"decay_v": self.decay_v, "decay_a": self.decay_a, "threshold": self.threshold, "beta": self.beta}
