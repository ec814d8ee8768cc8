"""The CUBA family: hxtorch's current-based LIF, IAF and LI neurons (forward Euler).

State: membrane ``v``, synaptic current ``i`` and, for the refractory models, the
refractory counter ``r`` (steps left).  ``a = dt / tau_mem``, ``b = dt / tau_syn``,
``k = refractory_time / dt``.  ``inj(o, w)`` is a hardware injection: its value is
the observation ``o`` and its gradient is that of the model value ``w`` (the
offset ``o - w`` is a stop-gradient constant); without an observation it is ``w``.
``sg`` is a stop-gradient.  Per step t, from v[t-1], i[t-1] (the initial state at
t = 0; hxtorch starts at v = leak, or v = reset for IAF, and i = 0):

(1) dv[t]  = a (leak - v[t-1] + i[t-1])         with the OLD current (LIF, LI)
    dv[t]  = a i[t-1]                            no leak (IAF)
(2) i[t]   = (1 - b) i[t-1] + x[t]               so x[T-1] never reaches v
(3) w[t]   = inj(v_obs[t], v[t-1] + dv[t])
(4) u[t]   = w[t] - threshold
    z1[t]  = inj(z_obs[t], H(u[t]))              H strict (u > 0); smooth twin F(u)
(5) v1[t]  = (1 - zb[t]) w[t] + zb[t] reset,  zb[t] = sg(z1[t])
                                                 only without a membrane observation
    v1[t]  = w[t]                                with one (the reset is skipped)
Refractory models only, with the mask m[t] = sg([r[t-1] > 0]):
(6) v[t]   = inj(v_obs[t], (1 - m[t]) v1[t] + m[t] reset)
(7) z[t]   = inj(z_obs[t], (1 - m[t]) z1[t])
(8) r[t]   = (1 - z[t]) c[t] + z[t] k,  c[t] = sg(relu(r[t-1] - m[t]))
Otherwise v[t] = v1[t] and z[t] = z1[t].  Outputs: out[t] = z[t] (LI: out[t] = v[t],
no spikes); the recorded sequences are v[t] (after reset and clamp), i[t] and
r[t]; the final state is v[T-1], i[T-1], r[T-1].  r reaches later steps only
through the mask (no gradient), but the recorded r[t] depends on z[t]
differentiably; a spike clamps v for exactly ceil(k) following steps.

Every stop-gradient value is kept per step for replay: ``reset_spike`` (zb),
``refractory_mask`` (m), ``refractory_carry`` (c) and the injection offsets
``inject_v``, ``inject_spikes`` (steps 3, 4) and ``inject_v_refractory``,
``inject_spikes_refractory`` (steps 6, 7).

    model                          dv (1)        spikes   refractory   v starts at
    hxtorch.cuba_lif               leak          yes      no           leak
    hxtorch.cuba_refractory_lif    leak          yes      yes          leak
    hxtorch.cuba_li                leak          no       no           leak
    hxtorch.cuba_iaf               no leak       yes      no           reset
    hxtorch.cuba_refractory_iaf    no leak       yes      yes          reset

Reverse loop (adjoints written ``g``), from g v = cotangent of the final v and
g i = cotangent of the final i; an injection passes its adjoint to the model
value unchanged:

(9)  g v += cot_v[t] (+ cot_out[t] for LI);  g i += cot_i[t]
(10) g z  = cot_out[t];  g r = cot_r[t] (+ cot of the final r at t = T-1)
(11) g z += g r (k - c[t])                                      (8)
(12) g reset += m[t] g v;  g v = (1 - m[t]) g v;  g z = (1 - m[t]) g z   (6, 7)
(13) g reset += zb[t] g v;  g v = (1 - zb[t]) g v      (5, unless v observed)
(14) g u = g z f(u[t]);  g v += g u;  g threshold -= g u                  (4)
(15) g leak += a g v;  g a += g v (leak - v[t-1] + i[t-1])   (IAF: g a += g v i[t-1])
(16) g x[t] = g i;  g b -= g i i[t-1]
(17) g i[t-1] = (1 - b) g i + a g v;  g v[t-1] = (1 - a) g v   (IAF: g v)
(18) g tau_mem = -g a a / tau_mem;  g tau_syn = -g b b / tau_syn
(19) g k += g r z[t]                                            (8)
(20) g refractory_time = g k / dt;  g dt = (g a a + g b b - g k k) / dt
The initial r receives no gradient: it acts only through the mask.  hxtorch
fixes dt and refractory_time, but both have gradients (20): dt through a, b
and k, refractory_time through the recorded counter r (8); the clamp's
length acts only through the stop-gradient mask.
"""

from __future__ import annotations

import numpy as np

from ..registry import Reset, ResetKind, detached_keys
from .sums import Sums

# (5) to the parameter `reset`, the spike detached.  The LI readout has no
# spikes and so no reset (families.check_reset).
RESETS = (Reset(kind=ResetKind.TO_VALUE, detached=True, to="reset"),)


def _rates(params):
    dt = params["dt"]
    return dt / params["tau_mem"], dt / params["tau_syn"]


class _Detached:
    """The per-step stop-gradient values of one run: recorded, or replayed."""

    def __init__(self, keys, like, replay):
        self.replay = replay
        if replay is None:
            self.used = {key: np.empty_like(like) for key in keys}
        else:
            self.used = {key: np.array(replay[key], dtype=like.dtype) for key in keys}

    def value(self, key, t, computed):
        # A replayed run holds the stop-gradient value of the recorded run.
        if self.replay is None:
            self.used[key][t] = computed
        return self.used[key][t]

    def inject(self, key, t, observed, model_value):
        """Straight-through injection: the observation forward, the model's gradient."""
        if observed is None:
            return model_value
        if self.replay is None:
            self.used[key][t] = observed[t] - model_value
            # Assigned, not model + offset, so the observation comes back exactly.
            return observed[t]
        return model_value + self.used[key][t]


def forward(row, x, params, state, spike, inject, detached):
    leaky = row.options.leak
    spiking = row.options.spiking
    a, b = _rates(params)
    v_obs, z_obs = inject.get("v"), inject.get("spikes")
    frozen = _Detached(detached_keys(row, inject), x, detached)
    if row.refractory:
        # The counter's reload value, computed once for the whole run.
        k = params["refractory_time"] / params["dt"]
        r = state["r"]
    steps = x.shape[0]
    tape = {"v_prev": np.empty_like(x), "i_prev": np.empty_like(x)}
    v_seq, i_seq = np.empty_like(x), np.empty_like(x)
    if spiking:
        tape["u"], z_seq = np.empty_like(x), np.empty_like(x)
    if row.refractory:
        r_seq = np.empty_like(x)
    v, i = state["v"], state["i"]
    for t in range(steps):
        tape["v_prev"][t], tape["i_prev"][t] = v, i
        # (1) the membrane moves with the current of the previous step.
        dv = a * (params["leak"] - v + i) if leaky else a * i
        # (2)
        i = (1 - b) * i + x[t]
        # (3)
        w = frozen.inject("inject_v", t, v_obs, v + dv)
        v = w
        if spiking:
            # (4) the surrogate sees the (possibly observed) membrane.
            u = w - params["threshold"]
            tape["u"][t] = u
            z = frozen.inject("inject_spikes", t, z_obs, spike(u))
            # (5) an observed membrane already contains the hardware's reset.
            if v_obs is None:
                zb = frozen.value("reset_spike", t, z)
                v = (1 - zb) * w + zb * params["reset"]
            if row.refractory:
                m = frozen.value("refractory_mask", t, (r > 0).astype(x.dtype))
                c = frozen.value("refractory_carry", t, np.maximum(r - m, 0))
                # (6), (7)
                v = frozen.inject("inject_v_refractory", t, v_obs, (1 - m) * v + m * params["reset"])
                z = frozen.inject("inject_spikes_refractory", t, z_obs, (1 - m) * z)
                # (8)
                r = (1 - z) * c + z * k
                r_seq[t] = r
            z_seq[t] = z
        v_seq[t], i_seq[t] = v, i
    outputs = {"out": z_seq if spiking else v_seq.copy(), "v": v_seq, "i": i_seq}
    final = {"v": np.array(v, dtype=x.dtype), "i": np.array(i, dtype=x.dtype)}
    if row.refractory:
        outputs["r"] = r_seq
        final["r"] = np.array(r, dtype=x.dtype)
        tape["k"] = k
        tape["z"] = z_seq
    tape.update(frozen.used)
    return outputs, final, frozen.used, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    leaky = row.options.leak
    spiking = row.options.spiking
    a, b = _rates(params)
    last = x.shape[0] - 1
    g_x = np.zeros_like(x)
    # The parameter gradients, with the size of what they sum (spec/sums.py).
    sums = Sums({name: x.shape[1:] for name in ("leak", "reset", "threshold", "a", "b", "k")}, x.dtype)
    g_v = cot["final.v"].copy()
    g_i = cot["final.i"].copy()
    for t in reversed(range(x.shape[0])):
        v_prev, i_prev = tape["v_prev"][t], tape["i_prev"][t]
        # (9)
        g_v = g_v + cot["v"][t]
        g_i = g_i + cot["i"][t]
        if not spiking:
            g_v = g_v + cot["out"][t]
        else:
            # (10)
            g_z = cot["out"][t]
            if row.refractory:
                g_r = cot["r"][t] + (cot["final.r"] if t == last else 0)
                m, c = tape["refractory_mask"][t], tape["refractory_carry"][t]
                # (11), (19)
                g_z = g_z + g_r * (tape["k"] - c)
                sums.add("k", g_r * tape["z"][t])
                # (12)
                sums.add("reset", m * g_v)
                g_v = (1 - m) * g_v
                g_z = (1 - m) * g_z
            # (13)
            if "v" not in inject:
                zb = tape["reset_spike"][t]
                sums.add("reset", zb * g_v)
                g_v = (1 - zb) * g_v
            # (14)
            g_u = g_z * spike.grad(tape["u"][t])
            g_v = g_v + g_u
            sums.add("threshold", -g_u)
        # (15) g_v is now the adjoint of v[t-1] + dv[t].
        if leaky:
            sums.add("leak", a * g_v)
            sums.add("a", g_v * (params["leak"] - v_prev + i_prev))
            g_v_prev = (1 - a) * g_v
        else:
            sums.add("a", g_v * i_prev)
            g_v_prev = g_v
        # (16)
        g_x[t] = g_i
        sums.add("b", -(g_i * i_prev))
        # (17)
        g_i = (1 - b) * g_i + a * g_v
        g_v = g_v_prev
    # (18)
    grads = {
        "x": g_x,
        "state.v": g_v,
        "state.i": g_i,
        "tau_mem": -sums.total["a"] * a / params["tau_mem"],
        "tau_syn": -sums.total["b"] * b / params["tau_syn"],
    }
    # (18) scales each time constant's sum by |a / tau_mem| or |b / tau_syn|.
    magnitudes = {"tau_mem": sums.magnitude["a"] * np.abs(a / params["tau_mem"]),
                  "tau_syn": sums.magnitude["b"] * np.abs(b / params["tau_syn"])}
    names = (("leak",) if leaky else ()) + (("reset", "threshold") if spiking else ())
    for name in names:
        grads[name], magnitudes[name] = sums.total[name], sums.magnitude[name]
    # (20); k = 0 without a refractory clamp, whose g k is then 0 as well.
    dt = params["dt"]
    k = tape.get("k", 0.0)
    grads["dt"] = (sums.total["a"] * a + sums.total["b"] * b - sums.total["k"] * k) / dt
    magnitudes["dt"] = (sums.magnitude["a"] * np.abs(a) + sums.magnitude["b"] * np.abs(b)
                        + sums.magnitude["k"] * np.abs(k)) / np.abs(dt)
    if row.refractory:
        grads["refractory_time"] = sums.total["k"] / dt
        magnitudes["refractory_time"] = sums.magnitude["k"] / np.abs(dt)
    grads["magnitudes"] = magnitudes
    if row.refractory:
        grads["state.r"] = np.zeros_like(x[0])
    return grads


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): between spikes and
    without injection, (2) is i[t] = (1 - b) i[t-1] + x[t] and (1) is
    v[t] = (1 - a) v[t-1] + a leak + a i[t-1] (IAF: v[t] = v[t-1] + a i[t-1])."""
    a, b = params["dt"] / params["tau_mem"], params["dt"] / params["tau_syn"]
    i = first_order(1 - b, x, state["i"])
    i_before = np.concatenate([state["i"][None], i[:-1]])
    if row.options.leak:
        v = first_order(1 - a, a * params["leak"] + a * i_before, state["v"])
    else:
        v = first_order(1.0, a * i_before, state["v"])
    return {"v": v, "i": i}
