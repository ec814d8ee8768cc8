"""The membrane's leak factor, computed by torch for every production path.

The torch ops, the Triton kernels and the fused CPU scans all receive the
leak lam as a tensor computed here, so autograd carries its gradient to the
parameter the caller holds (SPEC.md sections 2-4, dt = 1):

    (1) lam = decay                 tether LIF, PLIF (``Leak.DECAY``)
    (2) lam = exp(-1 / tau)         rnnbuilder LIF, NoReset (``Leak.TAU``)
    (3) no leak (lam = 1)           qualia IFSRL, ATIF (``Leak.NONE``)

The reference (``snnref/spec``) derives lam on its own, in float64 NumPy.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch

from .registry import Leak


def decay_of(tau: torch.Tensor) -> torch.Tensor:
    """Eq. (2): the per-step decay of a time constant ``tau`` in steps."""
    return torch.exp(-1 / tau)


def leak_factor(row, params: Mapping[str, torch.Tensor], dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
    """lam of eqs. (1)-(3) for a LIF-family row, or None for no leak; computed
    in ``dtype`` (default: the parameter's own)."""
    kind = row.options.leak
    if kind is Leak.NONE:
        return None
    source = params["decay"] if kind is Leak.DECAY else params["tau"]
    if dtype is not None:
        source = source.to(dtype)
    return source if kind is Leak.DECAY else decay_of(source)
