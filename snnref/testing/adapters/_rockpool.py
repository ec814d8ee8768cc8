"""Rockpool 3.1 (``nn.modules.LIFTorch``) under the gate's contract.

Observed semantics (rockpool/nn/modules/torch/lif_torch.py), batch-first
``(batch, T, N)``, one synapse per neuron, no noise, per step:

(1) i[t] = beta (i[t-1] + x[t])                beta = exp(-dt / tau_syn)
(2) v'[t] = alpha v[t-1] + i[t] + bias         alpha = exp(-dt / tau_mem)
(3) s[t] = [v' >= threshold] floor(v' / threshold), at most ``max_spikes_per_dt``
(4) v[t] = v'[t] - threshold s[t]              (s not detached)

``StepPWL`` differentiates (3) with ``[v' >= threshold - window] / threshold``.
The spikes are float32 whatever the input's dtype (``.float()`` in StepPWL, and
a float32 record buffer); a module converted to float64 crashes at the second
step, where those spikes meet its float64 recurrent weights (zeros, present
without recurrence).  The adapter declares float32.

Closest registry model: ``hxtorch.cuba_lif``, whose Euler step is
``v = (1 - dt/tau_mem) v + (dt/tau_mem)(leak + i[t-1])``,
``i[t] = (1 - dt/tau_syn) i[t-1] + x[t]``.  The adapter converts parameters
only: time constants whose exact decays equal hxtorch's Euler factors,
``tau' = -dt / log(1 - dt/tau)``, and ``bias = (dt/tau_mem) leak``; the membrane
starts at ``leak`` as hxtorch's does.  What it cannot convert is the model:
(2) reads the current after this step's input and one decay, beta (i + x), unscaled,
and (4) subtracts.
"""

from __future__ import annotations

import torch

from ..contract import Implementation
from ._common import batch_first, require, result, time_major


def rockpool_lif() -> Implementation:
    """``LIFTorch(shape=(lanes,), tau_mem, tau_syn, threshold, bias, dt,
    max_spikes_per_dt=1)`` as ``hxtorch.cuba_lif``; Rockpool copies its
    parameters into its own (so none is differentiated here) and takes no
    per-batch initial state."""
    from rockpool.nn.modules import LIFTorch

    def lif(model, x, params, state, *, surrogate=None, inject=None):
        require("Rockpool LIFTorch", model, "hxtorch.cuba_lif", surrogate or "superspike", ("superspike",))
        lanes = int(x[0].numel())
        dt = params["dt"].detach()
        k_mem, k_syn = dt / params["tau_mem"].detach(), dt / params["tau_syn"].detach()
        module = LIFTorch(shape=(lanes,), tau_mem=-dt / torch.log(1 - k_mem), tau_syn=-dt / torch.log(1 - k_syn),
                          threshold=params["threshold"].detach(), bias=k_mem * params["leak"].detach(),
                          dt=float(dt), max_spikes_per_dt=torch.tensor(1.0)).to(x.dtype)
        module.vmem = params["leak"].detach().expand(lanes).to(x.dtype)
        spikes, _, recorded = module(batch_first(x), record=True)
        membranes = time_major(recorded["vmem"], x)
        currents = time_major(recorded["isyn"].squeeze(-1), x)
        return result({"out": time_major(spikes, x), "v": membranes, "i": currents},
                      {"v": membranes[-1], "i": currents[-1]})

    return Implementation(lif, "hxtorch.cuba_lif", per_neuron=False, surrogates=("superspike",), takes_state=False,
                          takes_inject=False, dtypes=("float32",),
                          fixed=("leak", "reset", "threshold", "tau_syn", "tau_mem", "alpha", "dt"),
                          name="rockpool.LIFTorch(max_spikes_per_dt=1)")
