"""``Trace``: what one run of a model produced, the same record for every path.

``snnref.spec.simulate`` fills it with NumPy arrays and ``snnref.simulate``
with torch tensors; both key it by the registry's names.  Plain data: this
module imports neither NumPy nor torch, so every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Trace:
    """What one run produced.

    ``outputs["out"]`` is the model's main output and ``outputs[var]`` the per-step
    sequence of each state variable, time-major.  ``final_state[var]`` is the state
    after the last step.  ``detached`` holds the values of the stop-gradient
    quantities, for replay through ``simulate(..., detached=...)``.  ``distance``
    is the distance to threshold ``u`` of every spike decision, laid out like the
    spikes (None for a model without one decision per neuron-step): it tells
    how close to threshold each decision was.  The arrays are NumPy arrays from
    the reference and torch tensors from ``snnref.simulate``.
    """

    model: str
    surrogate: Optional[Any]
    outputs: Dict[str, Any]
    final_state: Dict[str, Any]
    detached: Dict[str, Any]
    distance: Optional[Any] = None
