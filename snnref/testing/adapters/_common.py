"""What every third-party adapter shares: the covered model and surrogate
checked by name, initial states read from the gate's ``state`` dict, and the
layout conversion between the gate's time-major ``(T, ...)`` tensors and the
batch-first ``(batch, T, lanes)`` layers of Sinabs and Rockpool.

The batch-first layout puts every lane of the gate's input side by side in
one batch row:

(1) x_lib[0, t, m] = x[t].reshape(-1)[m],   m < M = prod(x.shape[1:])

so that a layer's per-neuron state is exactly the gate's per-lane state, and
``time_major`` inverts (1).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch


def require(adapter, model, covered, surrogate=None, accepted=(None,)):
    """Raise a ValueError naming the argument when the adapter is called outside what it covers."""
    if model != covered:
        raise ValueError(f"model: the {adapter} adapter covers {covered}, got {model!r}")
    if surrogate not in accepted:
        names = ", ".join(str(getattr(s, "key", s)) for s in accepted)
        raise ValueError(f"surrogate: the {adapter} adapter accepts {names}, got {surrogate!r}")


def initial(state, name, x, fill=0.0):
    """The initial value of state variable ``name`` over the lanes of ``x``: the
    gate's tensor, or ``fill`` (a number or a tensor) where the gate gives none
    (``state`` None: no initial state at all, as the gate's out_sum case calls)."""
    lanes = x.shape[1:]
    if state and name in state:
        return state[name].expand(lanes)
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return fill.expand(lanes)


def scalar(params, name) -> float:
    """``params[name]``, a parameter the library takes as a Python number.  One that differs
    between neurons is refused: its first element alone would have run every neuron."""
    values = torch.as_tensor(params[name]).detach().reshape(-1)
    if len(values) == 0 or bool((values != values[0]).any()):
        raise ValueError(f"params[{name!r}]: this library takes one number, got {values.tolist()}; the "
                         "adapter's Implementation must not declare it per-neuron")
    return float(values[0])


def batch_first(x):
    """Equation (1): time-major ``(T, ...)`` as ``(1, T, M)``."""
    return x.reshape(x.shape[0], -1).unsqueeze(0)


def lanes(value):
    """A per-lane tensor of shape ``x.shape[1:]`` as the ``(1, M)`` state of equation (1)."""
    return value.reshape(1, -1)


def time_major(y, x):
    """The inverse of equation (1): ``(1, T, M)`` back to ``x``'s shape."""
    return y.squeeze(0).reshape(x.shape)


def result(outputs, final_state):
    return SimpleNamespace(outputs=outputs, final_state=final_state)
