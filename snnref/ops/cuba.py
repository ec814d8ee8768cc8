"""Torch path of the CUBA family (hxtorch cuba_lif, cuba_refractory_lif, cuba_li,
cuba_iaf, cuba_refractory_iaf): forward Euler, SPEC.md section 5.

With a = dt/tau_mem, b = dt/tau_syn, k = refractory_time/dt, per step t from the
state v, i, r left by step t - 1 (the initial state at t = 0):

    w  = inj(v_obs[t], v + a (leak - v + i))     IAF: v + a i   (the old current)
    i' = (1 - b) i + x[t]
    u  = w - threshold;   z1 = inj(z_obs[t], H(u))   H(u) = [u > 0]; smooth twin F(u)
    v1 = (1 - sg(z1)) w + sg(z1) reset           v1 = w when the membrane is observed
  refractory models, with m = sg([r > 0]) and c = sg(relu(r - m)):
    v' = inj(v_obs[t], (1 - m) v1 + m reset);  z = inj(z_obs[t], (1 - m) z1)
    r' = (1 - z) c + z k
  otherwise v' = v1 and z = z1 (the LI readout stops at w: v' = w, no spikes).

``inj(o, w)`` is the observation o in value and has the gradient of the model
value w: the offset o - w is a stop-gradient, as is every ``sg``.  Outputs:
out = z (LI: v'), and the recorded sequences v', i', r'.  Each stop-gradient
value is returned per step under the spec family's key, and replayed when the
caller passes it back: ``reset_spike`` sg(z1) (without a membrane observation),
``refractory_mask`` m, ``refractory_carry`` c, the offsets ``inject_v``,
``inject_spikes`` of the first injections and ``inject_v_refractory``,
``inject_spikes_refractory`` of those after the clamp.

``_Scan`` is one autograd Function for the whole sequence.  The only tensors it
saves per neuron-step are its recorded v', i' (and r') sequences, which are its
outputs anyway; the reverse scan recomputes w, u, the spikes, the mask and the
carry of each step from the previous step's state with the forward's own code
(``_advance``), so bit-identically.  a, b and k come in as tensors computed
by ``snnref.leak.quotient``, so autograd carries their gradients to tau_mem,
tau_syn, refractory_time and dt.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .. import registry
from ..leak import quotient
from ..second_order import unbatched
from .surrogates import Step


class Config(NamedTuple):
    leak: bool  # the membrane leaks towards `leak` (LIF, LI) or only integrates (IAF)
    spiking: bool
    refractory: bool
    observe_v: bool
    observe_spikes: bool
    replay: bool  # stop-gradient values supplied by the caller
    step: Optional[Step]
    detached_keys: tuple  # registry.detached_keys of the run


class Coefficients(NamedTuple):
    a: torch.Tensor
    leak: Optional[torch.Tensor]
    reset: Optional[torch.Tensor]
    threshold: Optional[torch.Tensor]
    k: Optional[torch.Tensor]


class _Stops:
    """The stop-gradient values of step t: replayed from ``held``, or computed
    (and written into ``record`` when the forward is recording them)."""

    def __init__(self, t, held, record):
        self.t = t
        self.held = held
        self.record = record

    def value(self, key, computed):
        if self.held is not None:
            return self.held[key][self.t]
        if self.record is not None:
            self.record[key][self.t] = computed
        return computed

    def inject(self, key, observed, model):
        if self.held is not None:
            return model + self.held[key][self.t]
        if self.record is not None:
            self.record[key][self.t] = observed - model
        # Exactly the observation: model + (observed - model) could round.
        return observed


class _Local(NamedTuple):
    """What one step computes besides the new current; the backward's inputs."""

    base: torch.Tensor  # dw/da: leak - v + i (IAF: i)
    u: Optional[torch.Tensor]
    reset_spike: Optional[torch.Tensor]  # None where the reset is skipped
    mask: Optional[torch.Tensor]
    carry: Optional[torch.Tensor]
    spikes: Optional[torch.Tensor]  # z, after clamp and injection
    v: torch.Tensor  # v'


def _advance(config, co, v, i, r, v_obs, z_obs, stops):
    base = co.leak - v + i if config.leak else i
    w = v + co.a * base
    if config.observe_v:
        w = stops.inject("inject_v", v_obs, w)
    if not config.spiking:
        return _Local(base, None, None, None, None, None, w)
    u = w - co.threshold
    z = config.step(u)
    if config.observe_spikes:
        z = stops.inject("inject_spikes", z_obs, z)
    reset_spike = None
    v_new = w
    if not config.observe_v:
        reset_spike = stops.value("reset_spike", z)
        v_new = (1 - reset_spike) * w + reset_spike * co.reset
    mask = carry = None
    if config.refractory:
        mask = stops.value("refractory_mask", (r > 0).to(v.dtype))
        carry = stops.value("refractory_carry", torch.relu(r - mask))
        v_new = (1 - mask) * v_new + mask * co.reset
        z = (1 - mask) * z
        if config.observe_v:
            v_new = stops.inject("inject_v_refractory", v_obs, v_new)
        if config.observe_spikes:
            z = stops.inject("inject_spikes_refractory", z_obs, z)
    return _Local(base, u, reset_spike, mask, carry, z, v_new)


def _at(trace, t):
    return None if trace is None else trace[t]


def _previous(sequence, initial, t):
    return sequence[t - 1] if t > 0 else initial


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, i0, r0, a, b, leak, reset, threshold, k, v_obs, z_obs, held, record, config):
        co = Coefficients(a, leak, reset, threshold, k)

        def sequence():
            return torch.empty(x.shape, dtype=x.dtype, device=x.device)

        v_seq, i_seq = sequence(), sequence()
        z_seq = sequence() if config.spiking else None
        r_seq = sequence() if config.refractory else None
        if not config.replay:
            record.update({key: sequence() for key in config.detached_keys})
        v, i, r = v0, i0, r0
        for t in range(x.shape[0]):
            stops = _Stops(t, held if config.replay else None, None if config.replay else record)
            local = _advance(config, co, v, i, r, _at(v_obs, t), _at(z_obs, t), stops)
            i = (1 - b) * i + x[t]
            v = local.v
            v_seq[t], i_seq[t] = v, i
            if config.spiking:
                z_seq[t] = local.spikes
            if config.refractory:
                r = (1 - local.spikes) * local.carry + local.spikes * k
                r_seq[t] = r
        # Saved: the recorded state sequences (outputs, so no extra memory),
        # the initial state and the coefficients; the observations and the
        # replayed values are the caller's tensors.
        ctx.save_for_backward(v0, i0, r0, a, b, leak, reset, threshold, k, v_obs, z_obs, v_seq, i_seq, r_seq)
        ctx.held = held if config.replay else None
        ctx.config = config
        sequences = [s for s in (z_seq, v_seq, i_seq, r_seq) if s is not None]
        finals = [s[-1].clone() for s in (v_seq, i_seq, r_seq) if s is not None]
        return tuple(sequences + finals)

    @staticmethod
    @unbatched
    def backward(ctx, *grads):
        v0, i0, r0, a, b, leak, reset, threshold, k, v_obs, z_obs, v_seq, i_seq, r_seq = ctx.saved_tensors
        config = ctx.config
        co = Coefficients(a, leak, reset, threshold, k)
        names = [n for n, on in (("z", config.spiking), ("v", True), ("i", True), ("r", config.refractory)) if on]
        g_seq = dict(zip(names, grads))
        g_final = dict(zip([n for n in names if n != "z"], grads[len(names):]))

        def accumulator():
            return torch.zeros(v_seq.shape[1:], dtype=v_seq.dtype, device=v_seq.device)

        g_a, g_b, g_leak, g_reset, g_threshold, g_k = (accumulator() for _ in range(6))
        g_x = torch.empty_like(v_seq)
        g_v, g_i = g_final["v"], g_final["i"]
        steps = v_seq.shape[0]
        for t in reversed(range(steps)):
            v_prev, i_prev = _previous(v_seq, v0, t), _previous(i_seq, i0, t)
            r_prev = _previous(r_seq, r0, t) if config.refractory else None
            local = _advance(config, co, v_prev, i_prev, r_prev, _at(v_obs, t), _at(z_obs, t),
                             _Stops(t, ctx.held, None))
            g_v = g_v + g_seq["v"][t]
            g_i = g_i + g_seq["i"][t]
            if config.spiking:
                g_z = g_seq["z"][t]
            if config.refractory:
                # r' reaches later steps only through the mask: its adjoint is
                # this step's cotangent (and the final state's at the end).
                g_r = g_seq["r"][t] + g_final["r"] if t == steps - 1 else g_seq["r"][t]
                g_z = g_z + g_r * (k - local.carry)
                g_k += g_r * local.spikes
                g_reset += local.mask * g_v
                g_v = (1 - local.mask) * g_v
                g_z = (1 - local.mask) * g_z
            if local.reset_spike is not None:
                g_reset += local.reset_spike * g_v
                g_v = (1 - local.reset_spike) * g_v
            if config.spiking:
                g_u = g_z * config.step.grad(local.u)
                g_v = g_v + g_u
                g_threshold -= g_u
            # g_v is now the adjoint of the model's w = v + a base (an
            # injection passes it through unchanged).
            g_a += g_v * local.base
            g_x[t] = g_i
            g_b -= g_i * i_prev
            g_i = (1 - b) * g_i + a * g_v
            if config.leak:
                g_leak += a * g_v
                g_v = (1 - a) * g_v
        return (
            g_x,
            g_v,
            g_i,
            None if r0 is None else torch.zeros_like(r0),  # r0 acts only through the mask
            g_a.sum_to_size(a.shape),
            g_b.sum_to_size(b.shape),
            None if leak is None else g_leak.sum_to_size(leak.shape),
            None if reset is None else g_reset.sum_to_size(reset.shape),
            None if threshold is None else g_threshold.sum_to_size(threshold.shape),
            None if k is None else g_k.sum_to_size(k.shape),
            None,
            None,
            None,
            None,
            None,
        )


def run(row, x, params, state, surrogate, inject, smooth, detached):
    spiking = row.options.spiking
    dt = params["dt"]
    a = quotient(dt, params["tau_mem"])
    b = quotient(dt, params["tau_syn"])
    k = quotient(params["refractory_time"], dt) if row.refractory else None
    step = Step(surrogate, params["alpha"], row.spike_test == ">", smooth) if spiking else None
    v_obs, z_obs = inject.get("v"), inject.get("spikes")
    config = Config(row.options.leak, spiking, row.refractory, v_obs is not None, z_obs is not None,
                    detached is not None, step, registry.detached_keys(row, inject))
    held = None
    if config.replay:
        missing = [key for key in config.detached_keys if key not in detached]
        if missing:
            raise ValueError(f"detached: {row.key} with these observations needs {', '.join(missing)}")
        held = {key: detached[key] for key in config.detached_keys}
    record = {}
    results = _Scan.apply(
        x, state["v"], state["i"], state.get("r"), a, b, params.get("leak"), params.get("reset"),
        params.get("threshold"), k, v_obs, z_obs, held, record, config,
    )
    names = ["v", "i"] + (["r"] if row.refractory else [])
    if spiking:
        out, *results = results
    sequences, finals = results[:len(names)], results[len(names):]
    outputs = dict(zip(names, sequences))
    outputs["out"] = out if spiking else outputs["v"]
    return outputs, dict(zip(names, finals)), held if config.replay else record
