"""snnTorch 1.0 (``snntorch.Leaky``, ``snntorch.Synaptic``) under the gate's contract.

Observed semantics (snntorch/_neurons/leaky.py, synaptic.py), one call per step
with the state passed in and returned:

(1) Leaky:     mem[t] = beta mem[t-1] + x[t] - R(s[t-1], mem[t-1])
(2)            s[t] = [mem[t] - threshold > 0]       (strict)
(3) Synaptic:  syn[t] = alpha syn[t-1] + x[t];  mem[t] = beta mem[t-1] + syn[t] - R(...)

R is the reset the *next* call applies, from the previous spike, detached by
default: ``"zero"`` zeroes Leaky's decayed membrane and Synaptic's whole new
membrane (this step's current included; the synaptic current is not reset),
``"subtract"`` subtracts ``threshold`` without the factor ``beta``.  The
returned membrane is therefore the pre-reset one.  The previous spike is
read again from the membrane a call is given, so an initial membrane at or
above threshold is reset by the first call, where tether's is not: the gate's
initial states lie below threshold, and the verdicts hold for those.  ``ATan(a)`` has the bump
``(a/2) / (1 + (pi a u / 2)^2)``: the registry's ``arctan`` at ``alpha = a/2``;
``fast_sigmoid(slope)`` is ``1 / (slope |u| + 1)^2``: ``superspike`` at
``alpha = slope``.  Spikes come back as float32 from float64 inputs.
"""

from __future__ import annotations

import torch

from ..contract import Implementation
from ._common import initial, require, result, scalar


def _run(neuron, x, states):
    """Call ``neuron`` once per step with its state tuple; the spikes and the returned states per step."""
    spikes, records = [], []
    for x_t in x.unbind(0):
        spk, *states = neuron(x_t, *states)
        spikes.append(spk)
        records.append(states)
    return torch.stack(spikes), [torch.stack(r) for r in zip(*records)]


def snntorch_leaky(**options) -> Implementation:
    """``snntorch.Leaky(beta=decay, threshold, spike_grad=atan(2 alpha), reset_mechanism="zero")``
    as ``tether.LIF``: with the zero reset delayed by one step and detached, (1) is
    tether's update with the pre-reset membrane recorded; the tests differ only
    exactly on threshold (``>`` against ``>=``).  ``beta`` and ``threshold`` are
    differentiated and may be per-neuron, the surrogate scale is fixed.  ``options``
    go to ``Leaky`` (``reset_mechanism="subtract"`` checks the library's default)."""
    import snntorch
    from snntorch import surrogate as snn_surrogate

    def leaky(model, x, params, state, *, surrogate=None, inject=None):
        require("snnTorch Leaky", model, "tether.LIF", surrogate or "arctan", ("arctan",))
        settings = dict(reset_mechanism="zero") | options
        # Equation (1)'s surrogate: ATan(a) is arctan at alpha = a / 2.
        neuron = snntorch.Leaky(beta=1.0, threshold=1.0,
                                spike_grad=snn_surrogate.atan(alpha=2 * scalar(params, "alpha")), **settings)
        # Leaky keeps beta and threshold as buffers when they are not learnable:
        # the gate's tensors go there, so that their gradients reach them.
        neuron.beta = params["decay"]
        neuron.threshold = params["threshold"]
        spikes, (membranes,) = _run(neuron, x, [initial(state, "v", x)])
        # The reset the next call would apply: the detached spike zeroes the membrane.
        final = (1 - spikes[-1].detach()) * membranes[-1]
        return result({"out": spikes, "v": membranes}, {"v": final})

    # snnTorch documents beta and threshold as one value or one per neuron (shape (input_size,)); the
    # surrogate's scale is a Python number in atan().
    return Implementation(leaky, "tether.LIF", per_neuron=("decay", "threshold"), surrogates=("arctan",),
                          fixed=("alpha",), dtypes=("float32",), name=f"snntorch.Leaky({_settings(options, 'zero')})")


def snntorch_synaptic(**options) -> Implementation:
    """``snntorch.Synaptic(alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem, threshold,
    spike_grad=fast_sigmoid(slope=alpha), reset_mechanism="zero")`` as
    ``hxtorch.cuba_lif`` (leak and reset pinned to 0, the values Synaptic cannot
    change): the same Euler decays, but (3) adds this step's current to the
    membrane unscaled, where hxtorch adds ``dt/tau_mem`` times the previous one."""
    import snntorch
    from snntorch import surrogate as snn_surrogate

    def synaptic(model, x, params, state, *, surrogate=None, inject=None):
        require("snnTorch Synaptic", model, "hxtorch.cuba_lif", surrogate or "superspike", ("superspike",))
        settings = dict(reset_mechanism="zero") | options
        neuron = snntorch.Synaptic(alpha=1.0, beta=1.0, threshold=1.0,
                                   spike_grad=snn_surrogate.fast_sigmoid(slope=scalar(params, "alpha")), **settings)
        # The Euler decay factors of hxtorch's time constants, as Synaptic's buffers.
        neuron.alpha = 1 - params["dt"] / params["tau_syn"]
        neuron.beta = 1 - params["dt"] / params["tau_mem"]
        neuron.threshold = params["threshold"]
        spikes, (currents, membranes) = _run(neuron, x, [initial(state, "i", x), initial(state, "v", x)])
        final = (1 - spikes[-1].detach()) * membranes[-1]
        return result({"out": spikes, "v": membranes, "i": currents}, {"v": final, "i": currents[-1]})

    return Implementation(synaptic, "hxtorch.cuba_lif", pin={"leak": 0.0, "reset": 0.0}, per_neuron=False,
                          surrogates=("superspike",), takes_inject=False, dtypes=("float32",), fixed=("alpha",),
                          name=f"snntorch.Synaptic({_settings(options, 'zero')})")


def _settings(options, reset):
    return ", ".join(f"{k}={v!r}" for k, v in (dict(reset_mechanism=reset) | options).items())
