"""tether's public API (tetherpy 0.2.0) with the semantics of SPEC section 2.

``tether.nn``'s modules and surrogates (``LIF``, ``PLIF``, ``ALIF``,
``SpikingSelfAttention``, ``Arctan``, ``Sigmoid``, ``FastSigmoid``,
``Surrogate``; defined in ``snnref.nn``) and ``tether.functional``'s autograd
functions as plain functions (``lif``, ``plif``, ``alif``; ``LIFSubFunction.apply``
and ``PLIFSubFunction.apply`` under tether's names), on
``snnref.backend.simulate``.  tether's submodules are here at tether's import paths
(``snnref.compat.tether.nn.surrogates``, ``.functional.lif``, ...): swapping the
prefix ``tether`` for ``snnref.compat.tether`` keeps every import of the seed's docs working.

The functions take sequences flattened to (n_steps, M) with
M = batch * n_neurons, as tether's autograd Functions take them.  Keyword
parameters are numbers or tensors of the input's dtype and device; a tensor
that requires grad receives its gradient.  Every argument is checked before
any computation; an error names the argument.
"""

from __future__ import annotations

import operator

from ... import registry
from ...arguments import Names
from ...backend import float32_under_autocast, simulate, untraced
from ...nn import ALIF, LIF, PLIF, Arctan, FastSigmoid, Sigmoid, SpikingSelfAttention, Surrogate
from .._tensors import float_tensor, like, param, params

__all__ = ["ALIF", "Arctan", "FastSigmoid", "LIF", "LIFSubFunction", "PLIF", "PLIFSubFunction", "Sigmoid",
           "SpikingSelfAttention", "Surrogate", "alif", "lif", "plif"]

_SCALAR = ((), (1,))


def _names(**state):
    """The functions' names for simulate's arguments: x_seq, the keyword
    parameters as given, the initial states (``v`` -> ``v_init``)."""
    return Names(x="x_seq", param_format="{}", state=state, allow_nonfinite=False)


_LIF_NAMES = _names(v="v_init")
_ALIF_NAMES = _names(v="v_init", a="a_init")


def _surrogate_key(surrogate_type):
    """The registry surrogate whose tether kernel id is ``surrogate_type``."""
    ids = {s.tether_id: key for key, s in registry.SURROGATES.items() if s.tether_id is not None}
    valid = ", ".join(f"{i} ({key})" for i, key in sorted(ids.items()))
    try:
        index = operator.index(surrogate_type)
    except TypeError:
        index = None
    if index is None or isinstance(surrogate_type, bool):
        raise TypeError(f"surrogate_type: expected an int id among {valid}, got {type(surrogate_type).__name__}")
    if index not in ids:
        raise ValueError(f"surrogate_type: unknown id {index}; expected one of: {valid}")
    return ids[index]


def _sequence(x_seq):
    float_tensor("x_seq", x_seq)
    if x_seq.dim() != 2:
        raise ValueError(f"x_seq: expected a non-empty (n_steps, batch_size * n_neurons) tensor, "
                         f"got shape {tuple(x_seq.shape)}")
    return x_seq


def _initial(name, value, x_seq):
    like(name, value, x_seq)
    if tuple(value.shape) != (x_seq.shape[1],):
        raise ValueError(f"{name}: expected shape ({x_seq.shape[1]},) (batch_size * n_neurons, like x_seq's "
                         f"second axis), got {tuple(value.shape)}")


@untraced
@float32_under_autocast
def lif(x_seq, v_init, decay, threshold, alpha, surrogate_type, *, backend="auto"):
    """tether's LIFSubFunction: hard reset to 0, returns ``(spikes, v_final, v_seq)``.

    ``v_seq`` is the pre-reset membrane, ``v_final`` the membrane after the last
    reset.  ``surrogate_type`` is tether's kernel id (0 arctan, 1 sigmoid,
    2 fast_sigmoid); ``decay``, ``threshold`` and ``alpha`` are scalars.
    ``backend`` as for ``snnref.simulate``: "auto" runs the Triton kernels on
    CUDA tensors and the fused CPU scans on CPU tensors.
    """
    surrogate = _surrogate_key(surrogate_type)
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    values = params("tether.LIF", {"decay": decay, "threshold": threshold, "alpha": alpha}, x_seq, _SCALAR)
    trace = simulate("tether.LIF", x_seq, values, {"v": v_init}, surrogate=surrogate, backend=backend,
                     names=_LIF_NAMES)
    return trace.outputs["out"], trace.final_state["v"], trace.outputs["v"]


@untraced
@float32_under_autocast
def plif(x_seq, v_init, decay, threshold, alpha, surrogate_type, *, backend="auto"):
    """tether's PLIFSubFunction: ``lif`` with per-neuron ``decay`` and ``threshold`` of shape (n,).

    n must divide M; column j of every batch row uses ``decay[j]`` and
    ``threshold[j]`` (SPEC section 2, not the seed's flat indexing, bug B4).
    """
    surrogate = _surrogate_key(surrogate_type)
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    steps, total = x_seq.shape
    float_tensor("decay", decay)
    if decay.dim() != 1 or total % decay.shape[0]:
        raise ValueError(f"decay: expected shape (n_neurons,) with n_neurons dividing x_seq's {total} "
                         f"columns, got {tuple(decay.shape)}")
    n = decay.shape[0]
    values = params("tether.PLIF", {"decay": decay, "threshold": threshold}, x_seq, ((n,),))
    values["alpha"] = param("tether.PLIF", "alpha", alpha, x_seq, _SCALAR)
    batch = total // n
    trace = simulate("tether.PLIF", x_seq.reshape(steps, batch, n), values, {"v": v_init.reshape(batch, n)},
                     surrogate=surrogate, backend=backend, names=_LIF_NAMES)
    return (trace.outputs["out"].reshape(steps, total), trace.final_state["v"].reshape(total),
            trace.outputs["v"].reshape(steps, total))


class LIFSubFunction:
    """tether's autograd Function by its name: ``LIFSubFunction.apply(x_seq, v_init, decay,
    threshold, alpha, surrogate_type)`` is ``lif(...)``, whose gradients come from
    ``snnref.simulate``'s own Functions (apply is the only use tether's API makes of it)."""

    apply = staticmethod(lif)


class PLIFSubFunction:
    """tether's autograd Function by its name: ``PLIFSubFunction.apply(...)`` is ``plif(...)``."""

    apply = staticmethod(plif)


@untraced
@float32_under_autocast
def alif(x_seq, v_init, a_init, decay_v, decay_a, threshold, beta, alpha, *, backend="auto"):
    """tether's ALIF (arctan surrogate): returns ``(spikes, v_final, a_final, v_seq, a_seq)``.

    ``v_seq`` is the pre-reset membrane, ``a_seq`` the adaptation before each
    step's update, ``a_final`` the adaptation after the last update.
    """
    _sequence(x_seq)
    _initial("v_init", v_init, x_seq)
    _initial("a_init", a_init, x_seq)
    values = {"decay_v": decay_v, "decay_a": decay_a, "threshold": threshold, "beta": beta, "alpha": alpha}
    values = params("tether.ALIF", values, x_seq, _SCALAR)
    trace = simulate("tether.ALIF", x_seq, values, {"v": v_init, "a": a_init}, backend=backend,
                     names=_ALIF_NAMES)
    return (trace.outputs["out"], trace.final_state["v"], trace.final_state["a"],
            trace.outputs["v"], trace.outputs["a"])


# tether's subpackages, as attributes too (``tether.nn.LIF`` after ``import tether``); last,
# since their modules take the names above from this one.
from . import functional, nn  # noqa: E402
