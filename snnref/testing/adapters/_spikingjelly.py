"""SpikingJelly 2.0 (``neuron.LIFNode``, ``neuron.IFNode``) under the gate's contract.

Observed semantics (activation_based/neuron/lif.py, integrate_and_fire.py),
multi-step mode over a time-major input:

(1) LIFNode, decay_input=False:  h[t] = v[t-1] - (v[t-1] - v_reset) / tau + x[t]
    LIFNode, decay_input=True:   h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau
(2) IFNode:                      h[t] = v[t-1] + x[t]
(3) s[t] = [h[t] - v_threshold >= 0]
(4) v[t] = h[t] (1 - s) + v_reset s   (v_reset a number: hard reset)
         = h[t] - v_threshold s       (v_reset None: soft reset)

with ``s`` detached inside the reset when ``detach_reset=True`` (default
False).  ``Sigmoid(alpha)`` is the registry's ``sigmoid``.  With
``v_reset = 0`` and ``decay_input=False``, (1) is tether's update with decay
``1 - 1/tau``; (2)-(4) with a soft, differentiated reset is qualia's IFSRL.
"""

from __future__ import annotations

from ..contract import Implementation
from ._common import initial, require, result, scalar


def spikingjelly_lif(**options) -> Implementation:
    """``LIFNode(tau = 1/(1 - decay), v_threshold, decay_input=False, v_reset=0,
    detach_reset=True, Sigmoid(alpha))`` as ``tether.LIF``.  Its membrane record is
    post-reset, so only the spikes and the final state are compared; ``tau``, the
    threshold and the surrogate scale are Python numbers there (fixed)."""
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    settings = dict(decay_input=False, v_reset=0.0, detach_reset=True) | options

    def lif_node(model, x, params, state, *, surrogate=None, inject=None):
        require("SpikingJelly LIFNode", model, "tether.LIF", surrogate, ("sigmoid",))
        node = sj_neuron.LIFNode(tau=1.0 / (1.0 - scalar(params, "decay")), v_threshold=scalar(params, "threshold"),
                                 step_mode="m", surrogate_function=sj_surrogate.Sigmoid(alpha=scalar(params, "alpha")),
                                 **settings)
        if state and "v" in state:
            node.v = initial(state, "v", x)
        spikes = node(x)
        return result({"out": spikes}, {"v": node.v})

    return Implementation(lif_node, "tether.LIF", per_neuron=False, surrogates=("sigmoid",),
                          fixed=("decay", "threshold", "alpha"),
                          name="spikingjelly.LIFNode(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")")


def spikingjelly_if(**options) -> Implementation:
    """``IFNode(v_threshold, v_reset=None, detach_reset=False, Sigmoid(alpha))`` as
    ``qualia.IFSRL``: (2)-(4) with the soft reset differentiated, the post-reset
    membrane recorded (``store_v_seq``).  The threshold and the surrogate scale
    are Python numbers there (fixed)."""
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    settings = dict(v_reset=None, detach_reset=False) | options

    def if_node(model, x, params, state, *, surrogate=None, inject=None):
        require("SpikingJelly IFNode", model, "qualia.IFSRL", surrogate, ("sigmoid",))
        node = sj_neuron.IFNode(v_threshold=scalar(params, "threshold"), step_mode="m", store_v_seq=True,
                                surrogate_function=sj_surrogate.Sigmoid(alpha=scalar(params, "alpha")), **settings)
        if state and "v" in state:
            node.v = initial(state, "v", x)
        spikes = node(x)
        return result({"out": spikes, "v": node.v_seq}, {"v": node.v})

    return Implementation(if_node, "qualia.IFSRL", per_neuron=False, surrogates=("sigmoid",),
                          fixed=("threshold", "alpha"),
                          name="spikingjelly.IFNode(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")")
