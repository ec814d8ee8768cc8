"""tether's adaptive LIF neuron (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .carried import TetherNeuron, check_numbers


class ALIF(TetherNeuron):
    """LIF whose threshold ``threshold + beta * a`` rises with each spike; input (T, ...).

    ``a`` decays by ``decay_a`` and grows by the spikes (differentiated through
    the surrogate).  All five scalars are trainable parameters, the arctan
    surrogate's ``alpha`` among them (under that name, as in tether), and every
    element of x is a neuron.  With ``store_traces`` the last call's pre-reset
    membrane and adaptation sequences are kept, detached, in ``v_seq`` and
    ``a_seq``.  ``backend`` (keyword only, an attribute after) is
    ``snnref.simulate``'s.
    """

    model = "tether.ALIF"
    state_names = ("v", "a")
    kept_sequences = {"v_seq": "v", "a_seq": "a"}

    def __init__(self, n_neurons, decay_v=0.9, decay_a=0.9, threshold=1.0, beta=0.5, alpha=2.0,
                 store_traces=False, *, backend="auto"):
        check_numbers(decay_v=decay_v, decay_a=decay_a, threshold=threshold, beta=beta, alpha=alpha)
        # As a surrogate module refuses it: at construction, not at the first forward.
        if not float(alpha) > 0:
            raise ValueError(f"alpha: expected a value > 0, got {alpha!r}")
        super().__init__(n_neurons, store_traces, backend)
        self._initial = {"decay_v": float(decay_v), "decay_a": float(decay_a), "threshold": float(threshold),
                         "beta": float(beta), "alpha": float(alpha)}
        for name, value in self._initial.items():
            setattr(self, name, nn.Parameter(torch.tensor(value)))

    def params(self):
        return {"decay_v": self.decay_v, "decay_a": self.decay_a, "threshold": self.threshold, "beta": self.beta}

    def surrogate_for(self, x):
        return "arctan", self.alpha

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # snnref before 2026-12-06 kept alpha in an Arctan submodule: its checkpoints still load.
        if prefix + "surrogate.alpha" in state_dict and prefix + "alpha" not in state_dict:
            state_dict[prefix + "alpha"] = state_dict.pop(prefix + "surrogate.alpha")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
