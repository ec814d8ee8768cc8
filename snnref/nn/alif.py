"""tether's adaptive LIF neuron (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .. import backend
from .carried import CarriedState, check_input
from .surrogates import Arctan


class ALIF(CarriedState):
    """LIF whose threshold ``threshold + beta * a`` rises with each spike; input (T, ..., n_neurons).

    ``a`` decays by ``decay_a`` and grows by the spikes (differentiated through
    the surrogate).  All five scalars are trainable; the surrogate is a trainable
    Arctan(alpha).  With ``store_traces`` the pre-reset membrane sequence of the
    last call is kept in ``v_seq``.
    """

    model = "tether.ALIF"
    state_names = ("v", "a")

    def __init__(self, n_neurons, decay_v=0.9, decay_a=0.9, threshold=1.0, beta=0.5, alpha=2.0,
                 store_traces=False):
        super().__init__()
        self.n_neurons = n_neurons
        self.store_traces = store_traces
        self.decay_v = nn.Parameter(torch.tensor(float(decay_v)))
        self.decay_a = nn.Parameter(torch.tensor(float(decay_a)))
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.surrogate = Arctan(alpha, trainable=True)
        self.v_seq = None

    @property
    def alpha(self) -> torch.Tensor:
        return self.surrogate.alpha

    def forward(self, x):
        check_input(x, self.n_neurons, "n_neurons")
        params = {"decay_v": self.decay_v, "decay_a": self.decay_a, "threshold": self.threshold,
                  "beta": self.beta, "alpha": self.alpha}
        trace = backend.simulate(self.model, x, params, self.carried(x), surrogate=self.surrogate.key)
        self.carry(trace.final_state)
        if self.store_traces:
            self.v_seq = trace.outputs["v"]
        return trace.outputs["out"]

    def reset_state(self):
        super().reset_state()
        self.v_seq = None

    def extra_repr(self):
        return f"n_neurons={self.n_neurons}, store_traces={self.store_traces}"
