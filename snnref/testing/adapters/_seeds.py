"""Adapters from the seed libraries' functional signatures (tether's
``LIFSubFunction`` contract, hxtorch's ``cuba_*_integration``) to the adapter
contract of ``snnref.testing.assert_conforms``.  Plain functions with the
attributes ``snnref.testing.Implementation.of`` reads: those the wrapped
function declares (``surrogates``, ``dtypes``, ...), narrowed by what the
seed's signature cannot express (``per_neuron``, ``takes_state``)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ... import registry
from ..contract import DECLARED

TETHER_MODELS = ("tether.LIF", "tether.PLIF")
HXTORCH_MODELS = tuple(k for k in registry.MODELS if k.startswith("hxtorch."))


def tether_functional(fn):
    """Wrap ``fn(x_seq, v_init, decay, threshold, alpha, surrogate_type) -> (spikes,
    v_final, v_seq)`` (tether's LIFSubFunction / PLIFSubFunction contract, inputs
    flattened to (T, M)) for tether.LIF and tether.PLIF.  ``surrogate_type`` is
    tether's integer code of the surrogate (``registry.surrogate(key).tether_id``:
    0 arctan, 1 sigmoid, 2 fast_sigmoid).  Parameters the registry declares
    scalar stay scalar (PLIF's decay and threshold are per-neuron)."""
    _check_callable(fn)

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model not in TETHER_MODELS:
            raise ValueError(f"model: the tether adapter covers {', '.join(TETHER_MODELS)}, got {model!r}")
        steps, shape = x.shape[0], x.shape[1:]
        v_init = (state or {}).get("v", torch.zeros(shape, dtype=x.dtype, device=x.device)).expand(shape).reshape(-1)
        key = surrogate or registry.model(model).default_surrogate
        spikes, v_final, v_seq = fn(x.reshape(steps, -1), v_init, params["decay"], params["threshold"],
                                    params["alpha"], registry.surrogate(key).tether_id)
        return SimpleNamespace(outputs={"out": spikes.reshape(x.shape), "v": v_seq.reshape(x.shape)},
                               final_state={"v": v_final.reshape(shape)})

    return _declared(adapted, fn, per_neuron=False)


def hxtorch_functional(fn):
    """Wrap an hxtorch ``cuba_*_integration(input, *, <params>, method, alpha, hw_data,
    dt)`` function (time-major input; returns spikes, membrane, current and the
    MADC trace, or for the LI readout membrane, current and MADC trace)."""
    _check_callable(fn)

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model not in HXTORCH_MODELS:
            raise ValueError(f"model: the hxtorch adapter covers {', '.join(HXTORCH_MODELS)}, got {model!r}")
        row = registry.model(model)
        keywords = dict(params)
        if row.surrogates:
            keywords["method"] = surrogate or row.default_surrogate
        inject = inject or {}
        if row.out is registry.Output.MEMBRANE:
            hw_data = (inject.get("v"), None) if inject else None
            membrane, current, _ = fn(x, hw_data=hw_data, **keywords)
            outputs = {"out": membrane, "v": membrane, "i": current}
        else:
            hw_data = (inject.get("spikes"), inject.get("v"), None) if inject else None
            spikes, membrane, current, _ = fn(x, hw_data=hw_data, **keywords)
            outputs = {"out": spikes, "v": membrane, "i": current}
        return SimpleNamespace(outputs=outputs, final_state={"v": outputs["v"][-1], "i": outputs["i"][-1]})

    return _declared(adapted, fn, takes_state=False)


def _check_callable(fn):
    """The seed function to wrap: anything else failed only when the gate called it."""
    if not callable(fn):
        raise TypeError(f"fn: expected the seed function to wrap, got {type(fn).__name__}")


def _declared(adapted, fn, **narrowed):
    """``adapted`` carrying what ``fn`` declares of itself (``contract.DECLARED``),
    then the seed signature's own limits ``narrowed``: the adapter cannot pass
    what the signature has no place for, whatever ``fn`` says."""
    for attribute in DECLARED:
        if hasattr(fn, attribute):
            setattr(adapted, attribute, getattr(fn, attribute))
    for attribute, value in narrowed.items():
        setattr(adapted, attribute, value)
    return adapted
