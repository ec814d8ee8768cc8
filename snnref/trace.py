"""``Trace``: what one run of a model produced, the same record for every path.

``snnref.spec.simulate`` fills it with NumPy arrays and ``snnref.simulate``
with torch tensors; both key it by the registry's names.  Plain data: this
module imports neither NumPy nor torch, so every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


class ArraysByName(dict):
    """A dict of a record's arrays by name whose missing key is an error that
    says what the record has: a bare ``KeyError: 'spikes'`` left a caller to
    guess the names (a tether.LIF trace records "out" and "v")."""

    def __init__(self, values, what):
        super().__init__(values)
        self.what = what

    def __missing__(self, key):
        held = ", ".join(map(repr, self)) or "nothing"
        raise KeyError(f"{self.what}: no {key!r}; it holds {held}")


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

    def __post_init__(self):
        for field in ("outputs", "final_state", "detached"):
            # Frozen: the dataclass's own __init__ sets fields the same way.
            object.__setattr__(self, field, ArraysByName(getattr(self, field), f"{field} of this {self.model} trace"))
