"""tether's spiking self-attention (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .. import arguments, backend
from .carried import CarriedState, check_input, check_like_module, check_numbers, names

BRANCHES = ("q", "k", "v")
STATE_NAMES = ("q_v", "k_v", "v_v", "context")
# The registry's weights are the linear maps' parameters.
_NAMES = names(STATE_NAMES, {f"{layer}_{part}": f"{layer}.{part}" for layer in (*BRANCHES, "proj")
                             for part in ("weight", "bias")})


class SpikingSelfAttention(CarriedState):
    """Input (T, B, N, dim).  ``q``, ``k``, ``v`` are bias-free linear maps feeding three
    LIF populations, each with its own trainable ``<c>_decay``, ``<c>_threshold`` and
    arctan ``<c>_alpha`` (2.0); the context accumulates ``S += k * v`` and the output
    is ``proj(q * S)``.  No softmax: ``num_heads`` only has to divide ``dim``.
    ``backend`` (keyword only, an attribute after) is ``snnref.simulate``'s.
    """

    model = "tether.SpikingSelfAttention"
    state_names = STATE_NAMES

    def __init__(self, dim, num_heads=8, decay=0.9, threshold=1.0, *, backend="auto"):
        super().__init__(backend)
        dim = arguments.check_count("dim", dim)
        num_heads = arguments.check_count("num_heads", num_heads)
        check_numbers(decay=decay, threshold=threshold)
        if dim % num_heads:
            raise ValueError(f"num_heads: expected a positive divisor of dim={dim}, got {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self._initial = {}
        for c in BRANCHES:
            setattr(self, c, nn.Linear(dim, dim, bias=False))
            self._initial.update({f"{c}_decay": float(decay), f"{c}_threshold": float(threshold), f"{c}_alpha": 2.0})
            for name in ("decay", "threshold", "alpha"):
                setattr(self, f"{c}_{name}", nn.Parameter(torch.tensor(self._initial[f"{c}_{name}"])))
        self.proj = nn.Linear(dim, dim)

    @backend.untraced
    @backend.float32_under_autocast
    def forward(self, x):
        check_input(x, self.dim, "dim", rank=4)
        check_like_module(self, x)
        self.check_not_recomputed()
        params = {"proj_weight": self.proj.weight, "proj_bias": self.proj.bias}
        for c in BRANCHES:
            params[f"{c}_weight"] = getattr(self, c).weight
            for name in ("decay", "threshold", "alpha"):
                params[f"{c}_{name}"] = getattr(self, f"{c}_{name}")
        trace = backend.simulate(self.model, x, params, self.carried(x), backend=self.backend, names=_NAMES)
        self.carry(trace.final_state)
        return trace.outputs["out"]

    def reset_states(self):
        """Zero the membranes and the context (tether's name for ``reset_state``)."""
        self.reset_state()

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}, backend={self.backend!r}"
