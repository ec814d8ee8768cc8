"""Sinabs 3.1 (``layers.IAF``, ``layers.LIF``) under the gate's contract.

Observed semantics (sinabs/layers/functional/lif.py, activation/), batch-first
``(batch, T, ...)``, per step, without synaptic current (``tau_syn=None``):

(1) v'[t] = a v[t-1] + c x[t]      LIF: a = exp(-1/tau_mem), c = 1 - a
                                   (norm_input=True) or 1; IAF: a = c = 1
(2) s[t] = spike_fn(v'[t]):  MultiSpike (default) floor(v'/theta) spikes for v' > 0;
                             SingleSpike [v' - theta >= 0], as float32
(3) v[t] = v'[t] - theta s[t]       (MembraneSubtract, the default; s not detached)

SingleSpike returns float32 spikes from float64 inputs, so the adapters declare
float32 (the matrix records the float64 run as a failure).

The backward of (2) is ``surrogate_grad_fn(v', theta)``; ``Gaussian(mu=0,
sigma)`` is ``exp(-u^2 / (2 sigma^2)) / (sigma sqrt(2 pi))`` of ``u = v' - theta``,
a surrogate the registry does not have: it is declared as a custom surrogate
(``GAUSSIAN_ALPHA``, ``GAUSSIAN_GRADIENT_FACTOR``, the scale named after the
model's parameter that carries sigma), proven by finite differences and then
used by the spec.  ``spike_threshold`` is a parameter with
``requires_grad=False``, ``tau_mem`` a float32 parameter of the layer's own and
sigma a Python number: the adapters declare them fixed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ...spec.surrogates import Custom
from ..contract import Implementation
from ._common import batch_first, initial, lanes, require, result, scalar, time_major


def _gaussian(u, sigma):
    return np.exp(-0.5 * (np.asarray(u) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def _gaussian_primitive(u, sigma):
    return 0.5 * (1 + special.erf(np.asarray(u) / (sigma * math.sqrt(2))))


GAUSSIAN_ALPHA = Custom("sinabs_gaussian", _gaussian, _gaussian_primitive, None, scale="alpha")
GAUSSIAN_GRADIENT_FACTOR = Custom("sinabs_gaussian", _gaussian, _gaussian_primitive, None, scale="gradient_factor")


def _run(layer, x, v0):
    """``layer`` over ``x`` (time-major) from the per-lane membrane ``v0``: spikes,
    the recorded post-reset membrane and the final one, time-major."""
    layer.init_state_with_shape((1, int(np.prod(x.shape[1:]))))
    layer.v_mem = lanes(v0)
    spikes = layer(batch_first(x))
    return (time_major(spikes, x), time_major(layer.recordings["v_mem"], x),
            layer.v_mem.reshape(x.shape[1:]))


def sinabs_iaf(**options) -> Implementation:
    """``IAF(spike_threshold=threshold, spike_fn=SingleSpike, surrogate_grad_fn=
    Gaussian(sigma=alpha))`` as ``qualia.IFSRL``: (1) with a = c = 1, the test
    ``>=`` and the differentiated subtractive reset (3).  ``options`` go to
    ``IAF`` (``spike_fn=activation.MultiSpike`` checks the library's default)."""
    from sinabs import activation, layers

    def iaf(model, x, params, state, *, surrogate=None, inject=None):
        require("Sinabs IAF", model, "qualia.IFSRL", surrogate, (GAUSSIAN_ALPHA,))
        settings = dict(spike_fn=activation.SingleSpike) | options
        layer = layers.IAF(spike_threshold=scalar(params, "threshold"),
                           surrogate_grad_fn=activation.Gaussian(sigma=scalar(params, "alpha")),
                           record_states=True, **settings).to(x.dtype)
        spikes, membranes, final = _run(layer, x, initial(state, "v", x))
        return result({"out": spikes, "v": membranes}, {"v": final})

    spike_fn = getattr(options.get("spike_fn"), "__name__", "SingleSpike")
    return Implementation(iaf, "qualia.IFSRL", per_neuron=False, surrogates=(GAUSSIAN_ALPHA,),
                          fixed=("threshold", "alpha"), dtypes=("float32",),
                          name=f"sinabs.IAF(spike_fn={spike_fn}, surrogate_grad_fn=Gaussian(sigma=alpha))")


def sinabs_lif() -> Implementation:
    """``LIF(tau_mem=tau, norm_input=False, spike_threshold=1, spike_fn=SingleSpike,
    surrogate_grad_fn=Gaussian(sigma=gradient_factor))`` as ``rnnbuilder.LIF``:
    (1) is ``beta m + x``, the reset (3) subtracts 1 undetached; the test is ``>=``
    where rnnbuilder's is ``>``."""
    from sinabs import activation, layers

    def lif(model, x, params, state, *, surrogate=None, inject=None):
        require("Sinabs LIF", model, "rnnbuilder.LIF", surrogate, (GAUSSIAN_GRADIENT_FACTOR,))
        layer = layers.LIF(tau_mem=scalar(params, "tau"), norm_input=False, spike_threshold=1.0,
                           spike_fn=activation.SingleSpike,
                           surrogate_grad_fn=activation.Gaussian(sigma=scalar(params, "gradient_factor")),
                           record_states=True).to(x.dtype)
        spikes, membranes, final = _run(layer, x, initial(state, "m", x))
        return result({"out": spikes, "m": membranes}, {"m": final})

    return Implementation(lif, "rnnbuilder.LIF", per_neuron=False, surrogates=(GAUSSIAN_GRADIENT_FACTOR,),
                          dtypes=("float32",), fixed=("tau", "gradient_factor"),
                          name="sinabs.LIF(norm_input=False, spike_fn=SingleSpike, "
                               "surrogate_grad_fn=Gaussian(sigma=gradient_factor))")
