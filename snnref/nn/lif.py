"""tether's LIF and PLIF neurons (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .. import registry
from .carried import TetherNeuron, check_numbers
from .surrogates import Arctan, Surrogate


def _surrogate(surrogate, alpha, model):
    """The user's surrogate module (its own trainable flag), or a trainable Arctan(alpha)."""
    if surrogate is None:
        return Arctan(alpha, trainable=True)
    if not isinstance(surrogate, Surrogate):
        raise TypeError(f"surrogate: expected an snnref.nn.Surrogate module or None, got {type(surrogate).__name__}")
    accepted = registry.model(model).surrogates
    if surrogate.key not in accepted:
        raise ValueError(f"surrogate: {model} does not accept {surrogate.key!r}; it accepts: {', '.join(accepted)}")
    return surrogate


class LIF(TetherNeuron):
    """Leaky integrate-and-fire with a detached hard reset to 0; input (T, ...).

    ``decay`` and ``threshold`` are trainable scalars, so every element of x is
    a neuron whatever its shape (tether flattens x to (T, M); ``n_neurons`` is
    its signature's).  The surrogate's ``alpha`` is trainable by default.
    Returns the spikes; with ``store_traces`` the pre-reset membrane sequence of
    the last call is kept, detached, in ``v_seq``.  ``backend`` (keyword only,
    an attribute after) is ``snnref.simulate``'s.
    """

    model = "tether.LIF"
    state_names = ("v",)

    def __init__(self, n_neurons, decay=0.9, threshold=1.0, alpha=2.0, surrogate=None, store_traces=False, *,
                 backend="auto"):
        check_numbers(decay=decay, threshold=threshold, alpha=alpha)
        super().__init__(n_neurons, store_traces, backend)
        self._initial = {"decay": float(decay), "threshold": float(threshold)}
        self.decay = nn.Parameter(self._initial_tensor(decay))
        self.threshold = nn.Parameter(self._initial_tensor(threshold))
        self.surrogate = _surrogate(surrogate, alpha, self.model)

    def _initial_tensor(self, value):
        return torch.tensor(float(value))

    @property
    def alpha(self) -> torch.Tensor:
        return self.surrogate.alpha

    def params(self):
        return {"decay": self.decay, "threshold": self.threshold}

    def surrogate_for(self, x):
        return self.surrogate.key, self.surrogate.scale_like(x)


class PLIF(LIF):
    """LIF with per-neuron trainable ``decay`` and ``threshold`` of shape (n_neurons,),
    broadcast over the batch: input (T, n_neurons), (T, B, n_neurons) or any
    (T, ..., n_neurons), the parameters along x's last axis (for per-channel
    parameters on (T, B, C, H, W), put the channels last)."""

    model = "tether.PLIF"
    neurons_on_last_axis = True

    def __init__(self, n_neurons, init_decay=0.9, init_threshold=1.0, alpha=2.0, surrogate=None,
                 store_traces=False, *, backend="auto"):
        check_numbers(init_decay=init_decay, init_threshold=init_threshold)
        super().__init__(n_neurons, init_decay, init_threshold, alpha, surrogate, store_traces, backend=backend)

    def _initial_tensor(self, value):
        return torch.full((self.n_neurons,), float(value))
