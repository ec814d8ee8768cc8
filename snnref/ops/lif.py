"""Torch path of the LIF family (tether LIF/PLIF, rnnbuilder LIF/NoReset, qualia IFSRL/ATIF).

A membrane v with leak factor lam and threshold theta; per step t, from the
membrane after the previous reset p (the initial state at t = 0):

    v = lam p + x[t];  s = H(v - theta);  p = v (1 - sg(s)) | v - theta s | v - theta sg(s) | v
    (the hard reset's p is 0 where sg(s) = 1, an overflowed v too: ``reset_to_zero``)

(hard reset to 0 with the spike detached | soft subtractive reset | soft reset
with the spike detached, the threshold still differentiated | none; the
registry row's ``Reset``).
``_Scan`` is one autograd Function for the whole sequence.  Its forward keeps
the pre-reset membrane (one value per neuron-step, which is also the recorded
output for tether) and the spikes as bytes; everything else the backward
needs (the post-reset membrane, the distance to threshold) is recomputed from
those two in the reverse scan, which computes only the gradients asked for.  The leak comes in as a tensor, so rnnbuilder's exp(-1/tau) and
qualia's 1 are ordinary autograd outside the scan.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..leak import leak_factor
from ..registry import Output, Record, Reset, ResetKind
from ..second_order import first_order
from .surrogates import Step


class Config(NamedTuple):
    reset: Reset
    record_pre: bool
    step: Step
    replay: bool  # detached reset spikes supplied by the caller


def reset_to_zero(v, reset_spike):
    """The hard reset: 0 where the detached spike is 1 (SPEC.md section 2: v+ = 0 if s), else
    v (1 - r) (the smooth twin's fractional r): a membrane that overflowed to inf and spiked
    resets to 0, where the product alone is inf * 0 = NaN."""
    return torch.where(reset_spike == 1, 0.0, v * (1 - reset_spike))


def _post_reset(config, v, spike, reset_spike, theta):
    if config.reset.kind is ResetKind.TO_VALUE:
        return reset_to_zero(v, reset_spike)
    if config.reset.kind is ResetKind.SUBTRACT:
        return v - theta * (reset_spike if config.reset.detached else spike)
    return v


class _Scan(torch.autograd.Function):
    """Inputs (x, v0, lam, theta, scale, replayed, config); lam is None for no leak."""

    @staticmethod
    def forward(ctx, x, v0, lam, theta, scale, replayed, config):
        step = config.step.with_scale(scale)
        v_pre = torch.empty_like(x)
        spikes = torch.empty_like(x)
        recorded = v_pre if config.record_pre else torch.empty_like(x)
        # H(v - theta) as bytes: v >= theta exactly when the rounded v - theta >= 0.
        fired = None if step.smooth else torch.empty(x.shape, dtype=torch.bool, device=x.device)
        p = v0
        for t in range(x.shape[0]):
            v = v_pre[t]
            # Written in place in the output; the same roundings as lam * p + x[t].
            if lam is None:
                torch.add(p, x[t], out=v)
            else:
                torch.mul(p, lam, out=v).add_(x[t])
            if step.smooth:
                spikes[t] = step(v - theta)
            else:
                (torch.gt if step.strict else torch.ge)(v, theta, out=fired[t])
                spikes[t] = fired[t]
            p = _post_reset(config, v, spikes[t], replayed[t] if config.replay else spikes[t], theta)
            if not config.record_pre:
                recorded[t] = p
        final = p.clone()
        # Saved: the pre-reset membrane and the spikes as bytes (floats only for
        # the smooth twin, whose spikes are not 0/1); the final membrane, an
        # output of one step, for second_order.first_order: it leads back to x
        # even where v_pre is no output (the post-reset membrane recorded).
        ctx.save_for_backward(v0, lam, theta, scale, v_pre, spikes if step.smooth else fired, replayed, final)
        ctx.config = config
        ctx.set_materialize_grads(False)
        return spikes, recorded, final

    @staticmethod
    @first_order("lif", "torch")
    def backward(ctx, g_spikes, g_recorded, g_final):
        v0, lam, theta, scale, v_pre, saved_spikes, replayed, _ = ctx.saved_tensors
        config = ctx.config
        step = config.step.with_scale(scale)
        _, _, want_lam, want_theta, want_scale, _, _ = ctx.needs_input_grad
        want_scale = want_scale and step.scale_trainable
        zero = torch.zeros_like(v_pre[0])
        g_x = torch.empty_like(v_pre)
        g_lam, g_theta, g_scale = zero.clone(), zero.clone(), zero.clone()
        g_p = zero.clone() if g_final is None else g_final.clone()

        def spike_and_reset(t):
            s = saved_spikes[t].to(v_pre.dtype)
            return s, (replayed[t] if config.replay else s)

        for t in reversed(range(v_pre.shape[0])):
            s, r = spike_and_reset(t)
            if g_recorded is not None and not config.record_pre:
                g_p = g_p + g_recorded[t]
            g_s = zero if g_spikes is None else g_spikes[t]
            if config.reset.kind is ResetKind.TO_VALUE:
                g_v = g_p * (1 - r)
            elif config.reset.kind is ResetKind.SUBTRACT:
                g_v = g_p
                # A detached reset spike passes no gradient to s; theta keeps its own.
                if not config.reset.detached:
                    g_s = g_s - theta * g_p
                if want_theta:
                    g_theta.addcmul_(r, g_p, value=-1)
            else:
                g_v = g_p
            if g_recorded is not None and config.record_pre:
                g_v = g_v + g_recorded[t]
            u = v_pre[t] - theta
            if want_scale:
                f, dF = step.grads(u)
                g_scale.addcmul_(g_s, dF)
            else:
                f = step.grad(u)
            g_u = g_s * f
            g_v = g_v + g_u
            if want_theta:
                g_theta.sub_(g_u)
            g_x[t] = g_v
            if lam is None:
                g_p = g_v
                continue
            if want_lam:
                # The membrane this step started from, recomputed as the forward did.
                p_before = _post_reset(config, v_pre[t - 1], *spike_and_reset(t - 1), theta) if t > 0 else v0
                g_lam.addcmul_(g_v, p_before)
            g_p = lam * g_v
        return (
            g_x,
            g_p,
            g_lam.sum_to_size(lam.shape) if want_lam else None,
            g_theta.sum_to_size(theta.shape) if want_theta else None,
            g_scale.sum_to_size(scale.shape) if want_scale else None,
            None,
            None,
        )


def run(row, x, params, state, surrogate, inject, smooth, detached):
    if row.reset.kind is ResetKind.TO_VALUE and (not row.reset.detached or row.reset.to != 0):
        raise ValueError(f"reset: the lif family resets to 0 with the spike detached; {row.key} asks for {row.reset}")
    scale_name = "alpha" if "alpha" in params else "gradient_factor"
    step = Step(surrogate, None, row.spike_test == ">", smooth)
    theta = params.get("threshold", torch.ones((), dtype=x.dtype, device=x.device))
    var = row.state_names[0]
    replay = detached is not None and row.reset.detached
    replayed = detached["reset_spike"] if replay else None
    config = Config(row.reset, row.options.record is Record.PRE, step, replay)
    spikes, recorded, final = _Scan.apply(
        x, state[var], leak_factor(row, params), theta, params[scale_name], replayed, config
    )
    out = spikes * theta if row.out is Output.SCALED_SPIKES else spikes
    used = {}
    if row.reset.detached:
        used["reset_spike"] = replayed if replay else spikes.detach()
    return {"out": out, var: recorded}, {var: final}, used
