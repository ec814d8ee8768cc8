"""The LIF family: tether LIF and PLIF, rnnbuilder LIF and NoReset, qualia IFSRL and ATIF.

One membrane ``v`` per neuron, threshold ``theta``, leak factor ``lam``.  Per step t:

(1) v[t]  = lam * v+[t-1] + x[t]                 (v+[-1] is the initial state)
(2) u[t]  = v[t] - theta
(3) s[t]  = H(u[t])            (smooth twin: F(u[t]))
(4) v+[t] = 0 where sg(s[t]) = 1, else v[t] * (1 - sg(s[t]))   hard reset to 0, the spike detached
    v+[t] = v[t] - theta * s[t]                  soft (subtractive) reset, differentiated
    v+[t] = v[t] - theta * sg(s[t])              soft reset, the spike detached
    v+[t] = v[t]                                 no reset
(5) out[t] = s[t]              (qualia.ATIF: theta * s[t])

``sg`` is a stop-gradient: the detached spike (registry ``Reset.detached``) is
recorded as ``reset_spike`` and replayed from ``detached`` when given; the
threshold of a detached soft reset keeps its gradient, as in snnTorch's and
SpikingJelly's detached resets.  A hard reset whose spike is differentiated is
not part of the reference and is refused by name.  The recorded sequence is v[t] ("pre") or v+[t] ("post"); the final state
is v+[T-1].  Per model (registry options and row):

    model               lam              theta            H       reset          record
    tether.LIF / PLIF   decay            threshold        >=      hard, detached pre
    rnnbuilder.LIF      exp(-1/tau)      1                >       soft           post
    rnnbuilder.NoReset  exp(-1/tau)      1                >       none           post
    qualia.IFSRL / ATIF 1                threshold        >=      soft           post

Reverse loop (adjoints written ``g``), from g v+[T-1] = cotangent of the final state:

(6)  g v+[t] += cot_seq[t]                                  (record post)
(7)  g v[t]   = g v+[t] (1 - s[t])  or  g v+[t]              (hard / otherwise)
(8)  g s[t]   = cot_out[t] (theta for ATIF) - theta g v+[t] (the last term: soft, differentiated)
(9)  g v[t]  += cot_seq[t] (record pre) + g s[t] f(u[t])
(10) g x[t] = g v[t];  g v+[t-1] = lam g v[t];  g lam += g v[t] v+[t-1]
(11) g theta += -g s[t] f(u[t]) - s[t] g v+[t] (soft, either) + s[t] cot_out[t] (ATIF)
(12) g alpha += g s[t] dF/dalpha(u[t])
(13) g tau = g lam lam / tau^2                               (lam = exp(-1/tau))
"""

from __future__ import annotations

import numpy as np

from ..registry import HARD_RESET, NO_RESET, SOFT_RESET, Leak, Output, Record, Reset, ResetKind
from .sums import Sums

# The resets of (4) (the family contract, snnref/families.py).
RESETS = (HARD_RESET, SOFT_RESET, Reset(kind=ResetKind.SUBTRACT, detached=True), NO_RESET)


def decay_of(tau):
    """lam = exp(-1/tau) (the table above; rnnbuilder's beta in adaptive.py and
    cooldown.py too).  A subnormal tau's 1/tau overflows to inf and lam is 0,
    the exact limit; NumPy's overflow warning on the way is silenced (under
    ``-W error`` it was an exception from inside the reference that named no argument)."""
    with np.errstate(over="ignore"):
        return np.exp(-1 / tau)


def reset_to_zero(v, r):
    """The hard reset of (4): 0 where the detached spike r is 1 (SPEC.md section 2:
    v+ = 0 if s), else v (1 - r), which is v where r is 0 and the smooth twin's
    fractional reset between.  Written as a product alone, a membrane that overflowed
    to inf and spiked became inf * 0 = NaN, and the neuron stayed NaN from there on."""
    with np.errstate(invalid="ignore"):
        return np.where(r == 1, 0, v * (1 - r))


def _leak(row, params):
    if row.options.leak is Leak.DECAY:
        return params["decay"]
    if row.options.leak is Leak.TAU:
        return decay_of(params["tau"])
    return np.ones((), dtype=params["threshold"].dtype)


def _threshold(params, dtype):
    # rnnbuilder's threshold is the constant 1 (no parameter).
    return params["threshold"] if "threshold" in params else np.ones((), dtype=dtype)


def forward(row, x, params, state, spike, inject, detached):
    lam = _leak(row, params)
    theta = _threshold(params, x.dtype)
    steps = x.shape[0]
    v_pre = np.empty_like(x)
    v_post = np.empty_like(x)
    v_prev = np.empty_like(x)
    u = np.empty_like(x)
    s = np.empty_like(x)
    reset_spike = np.empty_like(x)
    v_plus = state["v" if "v" in state else "m"]
    for t in range(steps):
        v_prev[t] = v_plus
        v = lam * v_plus + x[t]
        u[t] = v - theta
        s[t] = spike(u[t])
        if row.reset.detached:
            reset_spike[t] = s[t] if detached is None else detached["reset_spike"][t]
        # (4)
        if row.reset.kind is ResetKind.TO_VALUE:
            v_plus = reset_to_zero(v, reset_spike[t])
        elif row.reset.kind is ResetKind.SUBTRACT:
            v_plus = v - theta * (reset_spike[t] if row.reset.detached else s[t])
        else:
            v_plus = v
        v_pre[t] = v
        v_post[t] = v_plus
    var = row.state_names[0]
    out = s * theta if row.out is Output.SCALED_SPIKES else s.copy()
    recorded = v_pre if row.options.record is Record.PRE else v_post
    outputs = {"out": out, var: recorded}
    used = {"reset_spike": reset_spike} if row.reset.detached else {}
    tape = {"v_prev": v_prev, "u": u, "s": s, "reset_spike": reset_spike}
    return outputs, {var: v_plus.copy()}, used, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    lam = _leak(row, params)
    theta = _threshold(params, x.dtype)
    var = row.state_names[0]
    record_pre = row.options.record is Record.PRE
    out_scale = theta if row.out is Output.SCALED_SPIKES else 1
    g_x = np.zeros_like(x)
    # (10)-(12): the parameter gradients, with the size of what they sum (spec/sums.py).
    sums = Sums({name: x.shape[1:] for name in ("lam", "threshold", "alpha")}, x.dtype)
    g_plus = cot[f"final.{var}"].copy()
    for t in reversed(range(x.shape[0])):
        u, s = tape["u"][t], tape["s"][t]
        if not record_pre:
            g_plus = g_plus + cot[var][t]
        g_s = cot["out"][t] * out_scale
        if row.out is Output.SCALED_SPIKES:
            sums.add("threshold", cot["out"][t] * s)
        if row.reset.kind is ResetKind.TO_VALUE:
            g_v = g_plus * (1 - tape["reset_spike"][t])
        elif row.reset.kind is ResetKind.SUBTRACT:
            g_v = g_plus
            if row.reset.detached:
                sums.add("threshold", -(tape["reset_spike"][t] * g_plus))
            else:
                g_s = g_s - theta * g_plus
                sums.add("threshold", -(s * g_plus))
        else:
            g_v = g_plus
        if record_pre:
            g_v = g_v + cot[var][t]
        g_u = g_s * spike.grad(u)
        g_v = g_v + g_u
        sums.add("threshold", -g_u)
        if spike.math.dF is not None:
            sums.add("alpha", g_s * spike.scale_grad(u))
        g_x[t] = g_v
        sums.add("lam", g_v * tape["v_prev"][t])
        g_plus = lam * g_v
    grads = {"x": g_x, f"state.{var}": g_plus, "threshold": sums.total["threshold"], "alpha": sums.total["alpha"]}
    magnitudes = {"threshold": sums.magnitude["threshold"], "alpha": sums.magnitude["alpha"]}
    if row.options.leak is Leak.DECAY:
        grads["decay"], magnitudes["decay"] = sums.total["lam"], sums.magnitude["lam"]
    elif row.options.leak is Leak.TAU:
        # (13) scales the sum by |lam / tau^2|, divided by tau twice: below tau = 1.5e-162 (1e-23 in
        # float32) tau^2 is 0 and so is lam, a 0/0 where the derivative is 0.
        factor = lam / params["tau"] / params["tau"]
        grads["tau"], magnitudes["tau"] = sums.total["lam"] * factor, sums.magnitude["lam"] * np.abs(factor)
    grads["magnitudes"] = magnitudes
    return grads


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): by (1) and (4), given
    the spikes, v+[t] = lam v+[t-1] + x[t] - theta s[t] for a subtractive reset
    and v+[t] = lam v+[t-1] + x[t] between spikes otherwise (pre = post there)."""
    pole = _leak(row, params)
    theta = params.get("threshold", 1.0)
    drive = x - theta * spikes if row.reset.kind is ResetKind.SUBTRACT else x
    var = row.state_names[0]
    return {var: first_order(pole, drive, state[var])}


def linear_given_spikes(row):
    """A subtractive reset is part of the drive: linear on any run, given its spikes."""
    return row.reset.kind is ResetKind.SUBTRACT
