"""Adapters from the seed libraries' functional signatures to the contract of
``snnref.testing.assert_conforms`` (``snnref.simulate``'s signature).

``snntorch_leaky`` and ``spikingjelly_lif`` map those libraries' LIF neurons
onto ``tether.LIF`` (detached hard reset to zero, pre-reset membrane), where
their semantics coincide; they import the library when called.

An adapted function declares what it covers with the attributes
``snnref.testing.Implementation.of`` reads (or is wrapped in an
``Implementation``).  It may keep some parameters fixed (``fixed_parameters``:
their gradients are not compared), store only some dtypes (``dtypes``),
may be unable to take an initial state (hxtorch's
functions start from their parameters: ``takes_state = False``), per-neuron
values for the parameters the registry declares scalar (tether's functions
take scalars there: ``per_neuron = False``), or to return
every recorded sequence (hxtorch returns no refractory counter: it simply
leaves it out).  The gate then checks what the function can express and lists
the quantities it could not check.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from .. import registry

TETHER_MODELS = ("tether.LIF", "tether.PLIF")
HXTORCH_MODELS = tuple(k for k in registry.MODELS if k.startswith("hxtorch."))


def tether_functional(fn):
    """Wrap ``fn(x_seq, v_init, decay, threshold, alpha, surrogate_type) -> (spikes,
    v_final, v_seq)`` (tether's LIFSubFunction / PLIFSubFunction contract, inputs
    flattened to (T, M)) for tether.LIF and tether.PLIF.  Parameters the registry
    declares scalar stay scalar (PLIF's decay and threshold are per-neuron)."""

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model not in TETHER_MODELS:
            raise ValueError(f"model: the tether adapter covers {', '.join(TETHER_MODELS)}, got {model!r}")
        steps, shape = x.shape[0], x.shape[1:]
        v_init = state.get("v", torch.zeros(shape, dtype=x.dtype, device=x.device)).expand(shape).reshape(-1)
        key = surrogate or registry.model(model).default_surrogate
        spikes, v_final, v_seq = fn(x.reshape(steps, -1), v_init, params["decay"], params["threshold"],
                                    params["alpha"], registry.surrogate(key).tether_id)
        return SimpleNamespace(outputs={"out": spikes.reshape(x.shape), "v": v_seq.reshape(x.shape)},
                               final_state={"v": v_final.reshape(shape)})

    adapted.per_neuron = False
    return adapted


def hxtorch_functional(fn):
    """Wrap an hxtorch ``cuba_*_integration(input, *, <params>, method, alpha, hw_data,
    dt)`` function (time-major input; returns spikes, membrane, current and the
    MADC trace, or for the LI readout membrane, current and MADC trace)."""

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model not in HXTORCH_MODELS:
            raise ValueError(f"model: the hxtorch adapter covers {', '.join(HXTORCH_MODELS)}, got {model!r}")
        row = registry.model(model)
        keywords = dict(params)
        if row.surrogates:
            keywords["method"] = surrogate or row.default_surrogate
        inject = inject or {}
        if row.out == "membrane":
            hw_data = (inject.get("v"), None) if inject else None
            membrane, current, _ = fn(x, hw_data=hw_data, **keywords)
            outputs = {"out": membrane, "v": membrane, "i": current}
        else:
            hw_data = (inject.get("spikes"), inject.get("v"), None) if inject else None
            spikes, membrane, current, _ = fn(x, hw_data=hw_data, **keywords)
            outputs = {"out": spikes, "v": membrane, "i": current}
        return SimpleNamespace(outputs=outputs, final_state={"v": outputs["v"][-1], "i": outputs["i"][-1]})

    adapted.takes_state = False
    return adapted


def snntorch_leaky(**options):
    """snnTorch's ``Leaky`` as ``tether.LIF``.

    With ``reset_mechanism="zero"`` and its default one-step reset delay, Leaky
    returns the pre-reset membrane ``beta mem + x`` and zeroes it at the next
    step with a detached spike: tether.LIF's update.  Its ATan(alpha) bump is
    arctan with scale alpha / 2; its threshold test is ``>`` (tether: ``>=``,
    which differs only exactly on threshold).  ``beta`` and ``threshold`` are
    differentiated; the surrogate scale is fixed.  ``options`` go to ``Leaky``
    (e.g. ``reset_mechanism="subtract"`` to check the default, which no
    registry model has).
    """
    import snntorch
    from snntorch import surrogate as snn_surrogate

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model != "tether.LIF" or (surrogate or "arctan") != "arctan":
            raise ValueError(f"model: the snnTorch adapter covers tether.LIF with arctan, got {model!r}")
        settings = dict(reset_mechanism="zero") | options
        neuron = snntorch.Leaky(beta=1.0, threshold=1.0, spike_grad=surrogate_atan(params["alpha"]), **settings)
        # Leaky keeps beta and threshold as buffers when they are not learnable:
        # the canonical parameter tensors go there, so their gradients reach them.
        neuron.beta = params["decay"]
        neuron.threshold = params["threshold"]
        mem = state.get("v", torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)).expand(x.shape[1:])
        spikes, membranes = [], []
        for x_t in x.unbind(0):
            spk, mem = neuron(x_t, mem)
            spikes.append(spk)
            membranes.append(mem)
        spikes, membranes = torch.stack(spikes), torch.stack(membranes)
        # The reset the next call would apply: the detached spike zeroes the membrane.
        final = (1 - spikes[-1].detach()) * membranes[-1]
        return SimpleNamespace(outputs={"out": spikes, "v": membranes}, final_state={"v": final})

    def surrogate_atan(alpha):
        # snnTorch's ATan(a) has the bump (a/2) / (1 + (pi a u / 2)^2): tether's arctan at 2 alpha.
        return snn_surrogate.atan(alpha=2 * float(alpha.detach().reshape(-1)[0]))

    adapted.per_neuron = False
    adapted.surrogates = ("arctan",)
    adapted.fixed_parameters = ("alpha",)
    # Leaky's spike comes back as float32 from float64 inputs (a cast inside snnTorch).
    adapted.dtypes = ("float32",)
    return adapted


def spikingjelly_lif(**options):
    """SpikingJelly's ``LIFNode`` as ``tether.LIF`` with the sigmoid surrogate.

    With ``decay_input=False``, ``v_reset=0`` and ``detach_reset=True`` the
    charge is ``v - v / tau + x`` (decay ``1 - 1/tau``), the test ``v - v_th >= 0``
    and the reset a detached hard reset to 0: tether.LIF.  Its membrane record
    is post-reset, so only the spikes and the final state are compared; ``tau``,
    the threshold and the surrogate scale are fixed.
    """
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    def adapted(model, x, params, state, *, surrogate=None, inject=None):
        if model != "tether.LIF" or surrogate != "sigmoid":
            raise ValueError(f"model: the SpikingJelly adapter covers tether.LIF with sigmoid, got {model!r}")
        tau = 1.0 / (1.0 - float(params["decay"]))
        settings = dict(decay_input=False, v_reset=0.0, detach_reset=True) | options
        node = sj_neuron.LIFNode(tau=tau, v_threshold=float(params["threshold"]), step_mode="m",
                                 surrogate_function=sj_surrogate.Sigmoid(alpha=float(params["alpha"])),
                                 **settings)
        if "v" in state:
            node.v = state["v"].expand(x.shape[1:])
        spikes = node(x)
        return SimpleNamespace(outputs={"out": spikes}, final_state={"v": node.v})

    adapted.per_neuron = False
    adapted.surrogates = ("sigmoid",)
    adapted.fixed_parameters = ("decay", "threshold", "alpha")
    return adapted
