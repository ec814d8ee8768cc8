"""tether's spiking self-attention (SPEC section 2) on ``snnref.backend.simulate``."""

from __future__ import annotations

import torch
from torch import nn

from .. import backend
from .carried import CarriedState, check_input

BRANCHES = ("q", "k", "v")


class SpikingSelfAttention(CarriedState):
    """Input (T, B, N, dim).  ``q``, ``k``, ``v`` are bias-free linear maps feeding three
    LIF populations, each with its own trainable ``<c>_decay``, ``<c>_threshold`` and
    arctan ``<c>_alpha`` (2.0); the context accumulates ``S += k * v`` and the output
    is ``proj(q * S)``.  No softmax: ``num_heads`` only has to divide ``dim``.
    """

    model = "tether.SpikingSelfAttention"
    state_names = ("q_v", "k_v", "v_v", "context")

    def __init__(self, dim, num_heads=8, decay=0.9, threshold=1.0):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads: expected a positive divisor of dim={dim}, got {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        for c in BRANCHES:
            setattr(self, c, nn.Linear(dim, dim, bias=False))
            setattr(self, f"{c}_decay", nn.Parameter(torch.tensor(float(decay))))
            setattr(self, f"{c}_threshold", nn.Parameter(torch.tensor(float(threshold))))
            setattr(self, f"{c}_alpha", nn.Parameter(torch.tensor(2.0)))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        check_input(x, self.dim, "dim", rank=4)
        params = {"proj_weight": self.proj.weight, "proj_bias": self.proj.bias}
        for c in BRANCHES:
            params[f"{c}_weight"] = getattr(self, c).weight
            for name in ("decay", "threshold", "alpha"):
                params[f"{c}_{name}"] = getattr(self, f"{c}_{name}")
        trace = backend.simulate(self.model, x, params, self.carried(x))
        self.carry(trace.final_state)
        return trace.outputs["out"]

    def reset_states(self):
        """Zero the membranes and the context (tether's name for ``reset_state``)."""
        self.reset_state()

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}"
