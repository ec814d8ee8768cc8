"""Norse 1.1 (``lif_box_feed_forward_step``, the step of ``LIFBoxCell``, and
``lif_feed_forward_step``, the step of ``LIFCell``) under the gate's contract.

Observed semantics (norse/torch/functional/lif_box.py, lif.py, threshold.py),
one explicit Euler step of ``dt`` per call, ``k_mem = dt tau_mem_inv``,
``k_syn = dt tau_syn_inv``:

(1) LIFBox:  v'[t] = v[t-1] + k_mem (v_leak - v[t-1] + x[t])
(2) LIF:     j[t] = i[t-1] + x[t];  v'[t] = v[t-1] + k_mem (v_leak - v[t-1] + j[t]);
             i[t] = (1 - k_syn) j[t]
(3) z[t] = [v'[t] - v_th > 0]   (strict)
(4) v[t] = reset_method(z, v', v_reset, v_th): reset_value (1 - z) v' + z v_reset,
           reset_subtract v' - z v_th; neither detaches z.

``method="super"`` differentiates (3) with ``1 / (|u| + 1)^2`` whatever its
``alpha`` (the registry's ``superspike`` at alpha = 1); ``method="triangle"``
with ``alpha max(0, 1 - |u|)`` (``spike_linear`` at gradient_factor = alpha).

Norse's input is a current in units of the leak: with ``v_leak = 0``, (1) is
``v' = (1 - k_mem) v + k_mem x``.  The LIFBox adapter passes the registry's
voltage increment ``x`` as the current ``x / k_mem`` (a change of units, not
part of the model), with ``dt = 1`` and ``k_mem = 1 - exp(-1/tau)``, so that
(1) is rnnbuilder's ``beta m + x`` with ``beta = exp(-1/tau)``.
"""

from __future__ import annotations

import torch

from ..contract import Implementation
from ._common import initial, require, result, scalar


def norse_lif_box() -> Implementation:
    """``LIFBoxParameters(tau_mem_inv = 1 - exp(-1/tau), v_th=1, method="triangle",
    alpha=gradient_factor, reset_method=reset_subtract)`` with ``dt = 1`` as
    ``rnnbuilder.LIF``: (1), (3) and the subtractive, differentiated reset (4)."""
    from norse.torch.functional import lif_box
    from norse.torch.functional.reset import reset_subtract

    def box(model, x, params, state, *, surrogate=None, inject=None):
        require("Norse LIFBox", model, "rnnbuilder.LIF", surrogate, ("spike_linear",))
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        k_mem = 1 - torch.exp(-1 / params["tau"])
        p = lif_box.LIFBoxParameters(tau_mem_inv=k_mem, v_leak=zero, v_th=zero + 1, v_reset=zero,
                                     method="triangle", alpha=scalar(params, "gradient_factor"),
                                     reset_method=reset_subtract)
        v = initial(state, "m", x)
        spikes, membranes = [], []
        for x_t in x.unbind(0):
            # The registry's voltage increment as Norse's current (module docstring).
            z, (v,) = lif_box.lif_box_feed_forward_step(x_t / k_mem, lif_box.LIFBoxFeedForwardState(v=v), p, dt=1.0)
            spikes.append(z)
            membranes.append(v)
        membranes = torch.stack(membranes)
        return result({"out": torch.stack(spikes), "m": membranes}, {"m": membranes[-1]})

    # tau_mem_inv is a tensor in Norse's parameters, so tau may be per-neuron; alpha is a Python number.
    return Implementation(box, "rnnbuilder.LIF", per_neuron=("tau",), surrogates=("spike_linear",),
                          fixed=("gradient_factor",),
                          name='norse.LIFBox(method="triangle", reset_method=reset_subtract)')


def norse_lif() -> Implementation:
    """``LIFParameters(tau_syn_inv = 1/tau_syn, tau_mem_inv = 1/tau_mem, v_leak=leak,
    v_th=threshold, v_reset=reset, method="super")`` with hxtorch's ``dt`` as
    ``hxtorch.cuba_lif`` (alpha pinned to 1, the only value Norse's SuperSpike
    has): the same Euler factors, but (2) lets the membrane read the current
    after this step's input, and (4) does not detach the reset."""
    from norse.torch.functional import lif as norse_lif_step

    def lif(model, x, params, state, *, surrogate=None, inject=None):
        require("Norse LIF", model, "hxtorch.cuba_lif", surrogate or "superspike", ("superspike",))
        p = norse_lif_step.LIFParameters(tau_syn_inv=1 / params["tau_syn"], tau_mem_inv=1 / params["tau_mem"],
                                         v_leak=params["leak"], v_th=params["threshold"], v_reset=params["reset"],
                                         method="super", alpha=params["alpha"])
        # hxtorch starts the membrane at leak when no state is given.
        v, i = initial(state, "v", x, params["leak"]), initial(state, "i", x)
        spikes, membranes, currents = [], [], []
        for x_t in x.unbind(0):
            z, (v, i) = norse_lif_step.lif_feed_forward_step(x_t, norse_lif_step.LIFFeedForwardState(v=v, i=i), p,
                                                            dt=scalar(params, "dt"))
            spikes.append(z)
            membranes.append(v)
            currents.append(i)
        membranes, currents = torch.stack(membranes), torch.stack(currents)
        return result({"out": torch.stack(spikes), "v": membranes, "i": currents},
                      {"v": membranes[-1], "i": currents[-1]})

    return Implementation(lif, "hxtorch.cuba_lif", pin={"alpha": 1.0}, per_neuron=False, surrogates=("superspike",),
                          takes_inject=False, fixed=("dt",), name='norse.LIF(method="super")')
