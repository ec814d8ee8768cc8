"""Exact event-driven solution of the section-9 nodes, with exact forward sensitivities.

Between events (pulses, spikes, the end of a refractory hold) each node is linear.
From the state (v0, i0) at the start of an interval, after a time s:

(1) i(s) = i0 exp(-s/tau_syn)
(2) LI, LIF:        v(s) = v_leak + (v0 - v_leak) exp(-s/tau)
(3) I, IF:          v(s) = v0
(4) CubaLI, CubaLIF: v(s) = v_leak + (v0 - v_leak) E_m + R i0 (s/tau_mem) K0(s)
(5) CubaIF:         v(s) = v0 + R i0 (tau_syn/tau_mem) (1 - E_s)
with E_m = exp(-s/tau_mem), E_s = exp(-s/tau_syn), x = s delta,
delta = 1/tau_mem - 1/tau_syn = (tau_syn - tau_mem)/(tau_syn tau_mem), and

(6) K0 = E_m X(x),   X(x) = (e^x - 1)/x  (X(0) = 1)
(7) K1 = E_m X'(x),  X'(x) = (x e^x - e^x + 1)/x^2 = sum_{n>=1} n x^(n-1)/(n+1)!
(4) is the textbook tau_syn (E_s - E_m)/(tau_syn - tau_mem), rewritten so that it
has no singularity at tau_syn = tau_mem (the limit is (s/tau_mem) E_m).  For
|x| <= 1 X and X' are evaluated as X = exprel (SciPy) and the series (7); for
|x| > 1, where E_s - E_m has no cancellation, as K0 = (E_s - E_m)/x and
K1 = (x E_s - E_s + E_m)/x^2.

(8) velocity: v' = (v_leak - v + R i)/tau_mem (CUBA leaky), R i/tau_mem (CubaIF),
    (v_leak - v)/tau (LI, LIF), 0 (I, IF); 0 while held (refractory).

Spike times.  On each interval between events, f(s) = v(s) - v_threshold starts
negative.  v' has at most one sign change on an interval (tau_mem v' is
E_m (A + B e^{s delta}) for the CUBA leaky nodes, of constant sign otherwise), so:
(9)  if f(end) >= 0 the first root is the only root in [0, end];
(10) otherwise a root exists iff v' goes from + to - at some s_max (a root of v',
     found by brentq) and f(s_max) >= 0 (a graze counts as reaching); the root
     is then in [0, s_max].
Roots are found by scipy.optimize.brentq to rtol = 4 eps (a few ulp of s).
A pulse whose jump takes v to >= v_threshold fires at the pulse time.

Sensitivities (forward mode, a tangent vector d over all inputs p per state
variable, the derivative at fixed time t).  Flow (1)-(5) over a fixed s:
(11) d i(s) = E_s d i0 + i0 E_s s/tau_syn^2 e[tau_syn]
(12) CUBA leaky: d v(s) = E_m d v0 + (1 - E_m) e[v_leak] + (s/tau_mem) K0 (R d i0 + i0 e[r])
         + ((v0 - v_leak) E_m s/tau_mem^2 + R i0 (s/tau_mem^2)(-K0 + (s/tau_mem)(K0 - K1))) e[tau_mem]
         + R i0 (s/tau_mem) K1 (s/tau_syn^2) e[tau_syn]
(13) CubaIF: d v(s) = d v0 + (tau_syn/tau_mem) G (R d i0 + i0 e[r])
         + R i0 (G - (s/tau_syn) E_s)/tau_mem e[tau_syn] - R i0 tau_syn G/tau_mem^2 e[tau_mem],
     G = 1 - E_s
(14) LI, LIF: d v(s) = E d v0 + (1 - E) e[v_leak] + (v0 - v_leak) E s/tau^2 e[tau]
Pulses (fixed times): (15) CUBA: d i += (q/tau_syn) e[w_in] - w_in q/tau_syn^2 e[tau_syn]
+ (w_in/tau_syn) e[q]; LI, LIF: d v += (q/tau) e[r] - R q/tau^2 e[tau] + (R/tau) e[q];
I, IF: d v += q e[r] + R e[q].
Spike by a crossing at t* (implicit function theorem on v(t*) = v_threshold):
(16) d t* = -(d v(t*-) - e[v_threshold]) / v'(t*-)
and the jump of the tangent across the reset (the saltation relation, with v+ = R(v-)):
(17) d v(t*+) = R_v d v(t*-) + R_p + (R_v v'(t*-) - v'(t*+)) d t*
     hard: R_v = 0, R_p = e[v_reset];  subtract: R_v = 1, R_p = -e[v_threshold].
A spike made by a pulse has d t* = 0.  The end of a hold at t_r = t* + tau_ref:
(18) d v(t_r+) = d v(t_r-) - v'(t_r+) (d t* + e[tau_ref]);  d i is continuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy import optimize, special

from . import nodes

ROOT_RTOL = 4 * np.finfo(np.float64).eps  # brentq's smallest allowed rtol: a few ulp
ROOT_XTOL = 1e-300  # no absolute floor: the relative tolerance decides
SERIES_TERMS = 20  # (7): x^n/(n+1)! < 1e-19 for |x| <= 1 beyond 20 terms


def _dexprel(x):
    """X'(x) of (7) by its series, for |x| <= 1."""
    total = 0.0
    term = 0.5  # x^(n-1)/(n+1)! at n = 1
    for n in range(1, SERIES_TERMS + 1):
        total += n * term
        term *= x / (n + 2)
    return total


def kernels(s, tau_mem, tau_syn):
    """(6), (7): K0 and K1 for a duration s >= 0."""
    delta = (tau_syn - tau_mem) / (tau_syn * tau_mem)
    x = s * delta
    e_m = math.exp(-s / tau_mem)
    if abs(x) <= 1:
        return e_m * float(special.exprel(x)), e_m * _dexprel(x)
    e_s = math.exp(-s / tau_syn)
    return (e_s - e_m) / x, (x * e_s - e_s + e_m) / (x * x)


class _Neuron:
    """The parameters of one neuron and its flow, velocity and tangent maps."""

    def __init__(self, row, p, index):
        self.row = row
        self.p = p
        self.index = index  # input name -> tangent position (None: no tangents)
        self.theta = p.get("v_threshold")

    def flow(self, v, i, s):
        """(1)-(5): the state after a time s from (v, i)."""
        row, p = self.row, self.p
        if row.current:
            i1 = i * math.exp(-s / p["tau_syn"])
            if row.leaky:
                k0, _ = kernels(s, p["tau_mem"], p["tau_syn"])
                v1 = p["v_leak"] + (v - p["v_leak"]) * math.exp(-s / p["tau_mem"]) \
                    + p["r"] * i * (s / p["tau_mem"]) * k0
            else:
                v1 = v - p["r"] * i * (p["tau_syn"] / p["tau_mem"]) * math.expm1(-s / p["tau_syn"])
            return v1, i1
        if row.leaky:
            return p["v_leak"] + (v - p["v_leak"]) * math.exp(-s / p["tau"]), i
        return v, i

    def velocity(self, v, i):
        """(8) for a free (not held) membrane."""
        row, p = self.row, self.p
        if row.current:
            drive = p["r"] * i + (p["v_leak"] - v if row.leaky else 0.0)
            return drive / p["tau_mem"]
        return (p["v_leak"] - v) / p["tau"] if row.leaky else 0.0

    def held_flow(self, v, i, s):
        """A refractory hold: v fixed, the current decays as (1)."""
        return v, (i * math.exp(-s / self.p["tau_syn"]) if self.row.current else i)

    def unit(self, name):
        e = np.zeros(len(self.index))
        e[self.index[name]] = 1.0
        return e

    def flow_tangent(self, v, i, dv, di, s, held):
        """(11)-(14): the tangents after a time s (v, i: the state at the start)."""
        row, p, at = self.row, self.p, self.index
        if row.current:
            tau_syn = p["tau_syn"]
            e_s = math.exp(-s / tau_syn)
            di1 = e_s * di
            di1[at["tau_syn"]] += i * e_s * s / tau_syn ** 2
            if held:
                return dv, di1
            r, tau_mem = p["r"], p["tau_mem"]
            if row.leaky:
                e_m = math.exp(-s / tau_mem)
                k0, k1 = kernels(s, tau_mem, tau_syn)
                dv1 = e_m * dv + (s / tau_mem) * k0 * r * di
                dv1[at["r"]] += (s / tau_mem) * k0 * i
                dv1[at["v_leak"]] += 1 - e_m
                dv1[at["tau_mem"]] += (v - p["v_leak"]) * e_m * s / tau_mem ** 2 \
                    + r * i * (s / tau_mem ** 2) * (-k0 + (s / tau_mem) * (k0 - k1))
                dv1[at["tau_syn"]] += r * i * (s / tau_mem) * k1 * s / tau_syn ** 2
            else:
                g = -math.expm1(-s / tau_syn)
                dv1 = dv + (tau_syn / tau_mem) * g * r * di
                dv1[at["r"]] += (tau_syn / tau_mem) * g * i
                dv1[at["tau_syn"]] += r * i * (g - (s / tau_syn) * e_s) / tau_mem
                dv1[at["tau_mem"]] -= r * i * tau_syn * g / tau_mem ** 2
            return dv1, di1
        if held or not row.leaky:
            return dv, di
        tau = p["tau"]
        e = math.exp(-s / tau)
        dv1 = e * dv
        dv1[at["v_leak"]] += 1 - e
        dv1[at["tau"]] += (v - p["v_leak"]) * e * s / tau ** 2
        return dv1, di

    def pulse(self, v, i, q):
        """nodes (10): the jump of one pulse of weight q."""
        row, p = self.row, self.p
        if row.current:
            return v, i + p["w_in"] * q / p["tau_syn"]
        if row.leaky:
            return v + p["r"] * q / p["tau"], i
        return v + p["r"] * q, i

    def pulse_tangent(self, dv, di, q, j):
        """(15) for pulse number j."""
        row, p, at = self.row, self.p, self.index
        weight = f"weight[{j}]"
        if row.current:
            di = di.copy()
            di[at["w_in"]] += q / p["tau_syn"]
            di[at["tau_syn"]] -= p["w_in"] * q / p["tau_syn"] ** 2
            di[at[weight]] += p["w_in"] / p["tau_syn"]
            return dv, di
        dv = dv.copy()
        if row.leaky:
            dv[at["r"]] += q / p["tau"]
            dv[at["tau"]] -= p["r"] * q / p["tau"] ** 2
            dv[at[weight]] += p["r"] / p["tau"]
        else:
            dv[at["r"]] += q
            dv[at[weight]] += p["r"]
        return dv, di

    def crossing(self, v0, i0, span):
        """(9), (10): the local time of the first threshold crossing in [0, span], or None."""
        if span <= 0:
            return None
        theta = self.theta

        def distance(s):
            return self.flow(v0, i0, s)[0] - theta

        if distance(0.0) >= 0:
            return 0.0  # v0 within rounding of threshold: the flow's v(0) already reaches it
        if distance(span) >= 0:
            return optimize.brentq(distance, 0.0, span, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=500)
        if not (self.row.current and self.row.leaky):
            return None  # monotone between events: (9) is the only case

        def slope(s):
            return self.velocity(*self.flow(v0, i0, s))

        if not (slope(0.0) > 0 and slope(span) < 0):
            return None
        top = optimize.brentq(slope, 0.0, span, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=500)
        if distance(top) < 0:
            return None
        return optimize.brentq(distance, 0.0, top, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=500)


@dataclass(frozen=True)
class Gradients:
    """Exact derivatives from ``snnref.continuous.gradients``.

    ``names``: the inputs, in tangent order: the node's numeric parameters
    (and ``tau_ref`` for spiking nodes), ``state.v`` (and ``state.i``), then
    ``weight[j]`` for each pulse j (row j of ``pulse_weights``).  Each neuron's
    derivatives are with respect to its own parameters, state and weights.
    ``spike_times``: a tuple of N arrays of shape (n_spikes, len(names)).
    ``states[var]``: shape (S, N, len(names)), the derivative of
    ``trace.states[var]``.  ``trace``: the ``ContinuousTrace`` of the same run.
    A spike time whose crossing only grazes threshold has an infinite or NaN
    derivative (the spike count is not locally constant there).
    """

    names: Tuple[str, ...]
    spike_times: Tuple[np.ndarray, ...]
    states: Dict[str, np.ndarray]
    trace: nodes.ContinuousTrace


def _names(row, pulses):
    inputs = row.params + (("tau_ref",) if row.spiking else ())
    inputs += tuple(f"state.{var}" for var in nodes.variables(row))
    return inputs + tuple(f"weight[{j}]" for j in range(pulses))


def _run_neuron(neuron, start, times, weights, t_end, samples, order, tangents):
    """The event loop of one neuron (samples sorted by ``order``)."""
    row, p = neuron.row, neuron.p
    v, i = start["v"], start.get("i", 0.0)
    if tangents:
        dv, di = neuron.unit("state.v"), (neuron.unit("state.i") if row.current else np.zeros(len(neuron.index)))
    tau_ref = p.get("tau_ref", 0.0)
    spikes, before, after, spike_grads = [], [], [], []
    out_v = np.empty(len(samples))
    out_i = np.empty(len(samples))
    grad_v = np.empty((len(samples), len(neuron.index))) if tangents else None
    grad_i = np.empty((len(samples), len(neuron.index))) if tangents else None
    t, next_pulse, next_sample = 0.0, 0, 0
    held_until, release_grad = None, None

    def emit_until(limit, inclusive):
        # The samples in [t, limit) (or [t, limit]) from the state at t.
        nonlocal next_sample
        while next_sample < len(samples):
            k = order[next_sample]
            at = samples[k]
            if at > limit or (at == limit and not inclusive):
                break
            s = at - t
            held = held_until is not None
            out_v[k], out_i[k] = (neuron.held_flow if held else neuron.flow)(v, i, s)
            if tangents:
                grad_v[k], grad_i[k] = neuron.flow_tangent(v, i, dv, di, s, held)
            next_sample += 1

    def advance(to):
        nonlocal v, i, dv, di, t
        s = to - t
        held = held_until is not None
        if tangents:
            dv, di = neuron.flow_tangent(v, i, dv, di, s, held)
        v, i = (neuron.held_flow if held else neuron.flow)(v, i, s)
        t = to

    def fire(crossed):
        # (16), (17); the spike happens at time t with v = v(t-).
        nonlocal v, dv, held_until, release_grad
        spikes.append(t)
        before.append((v, i))
        v_minus = v
        v = p["v_reset"] if p["reset"] == "hard" else v_minus - p["v_threshold"]
        held = tau_ref > 0
        if held:
            held_until = t + tau_ref
        after.append((v, i))
        if tangents:
            if crossed:
                slope_minus = neuron.velocity(v_minus, i)
                with np.errstate(divide="ignore", invalid="ignore"):  # an exact graze: inf / NaN, documented
                    d_time = -(dv - neuron.unit("v_threshold")) / slope_minus
            else:
                d_time = np.zeros_like(dv)
                slope_minus = 0.0
            slope_plus = 0.0 if held else neuron.velocity(v, i)
            if p["reset"] == "hard":
                dv = neuron.unit("v_reset") - slope_plus * d_time
            else:
                dv = dv - neuron.unit("v_threshold") + (slope_minus - slope_plus) * d_time
            spike_grads.append(d_time)
            if held:
                release_grad = d_time + neuron.unit("tau_ref")

    while True:
        pulse_at = times[next_pulse] if next_pulse < len(times) else math.inf
        event = min(pulse_at, held_until if held_until is not None else math.inf, t_end)
        if row.spiking and held_until is None:
            found = neuron.crossing(v, i, event - t)
            if found is not None:
                crossing_at = t + found
                emit_until(crossing_at, False)
                advance(crossing_at)
                v = p["v_threshold"]  # the root's definition, free of the flow's rounding
                fire(True)
                continue
        emit_until(event, False)
        advance(event)
        if held_until is not None and held_until <= t:
            # (18): the hold ends; a pulse at this instant acts on the free membrane.
            held_until = None
            if tangents:
                dv = dv - neuron.velocity(v, i) * release_grad
        while next_pulse < len(times) and times[next_pulse] == t:
            q = weights[next_pulse]
            if not (held_until is not None and not row.current):
                if tangents:
                    dv, di = neuron.pulse_tangent(dv, di, q, next_pulse)
                v, i = neuron.pulse(v, i, q)
            next_pulse += 1
        while row.spiking and held_until is None and v >= p["v_threshold"]:
            fire(False)
        if t >= t_end:
            emit_until(t_end, True)
            break
    result = {
        "spikes": np.array(spikes, dtype=np.float64),
        "before": before,
        "after": after,
        "v": out_v,
        "i": out_i,
    }
    if tangents:
        result["spike_grads"] = np.array(spike_grads).reshape(len(spikes), len(neuron.index))
        result["grad_v"], result["grad_i"] = grad_v, grad_i
    return result


def _solve(node_name, params, pulse_times, pulse_weights, t_end, samples, state, tangents):
    row = nodes.node(node_name)
    times, weights = nodes.check_pulses(pulse_times, pulse_weights)
    n = weights.shape[1]
    checked = nodes.check_params(row, params, n)
    start = nodes.check_state(row, checked, state, n)
    if row.spiking and np.any(start["v"] >= checked["v_threshold"]):
        raise ValueError("state['v']: expected an initial membrane below v_threshold (a spike is the "
                         "threshold reached from below)")
    end, sample_times = nodes.check_times(t_end, samples)
    order = np.argsort(sample_times, kind="stable")
    names = _names(row, len(times))
    index = {name: k for k, name in enumerate(names)}
    variables = nodes.variables(row)
    runs = []
    for neuron in range(n):
        p = {name: float(value[neuron]) for name, value in checked.items() if name != "reset"}
        if row.spiking:
            p["reset"] = checked["reset"]
        runs.append(_run_neuron(
            _Neuron(row, p, index), {var: float(start[var][neuron]) for var in variables},
            times, weights[:, neuron], end, sample_times, order, tangents,
        ))
    states = {var: np.stack([run[var] for run in runs], axis=1).reshape(len(sample_times), n)
              for var in variables}
    position = {var: k for k, var in enumerate(variables)}
    trace = nodes.ContinuousTrace(
        node=row.name,
        params=checked,
        t_end=end,
        spike_times=tuple(run["spikes"] for run in runs),
        samples=sample_times,
        states=states,
        before_spike={var: tuple(np.array([s[position[var]] for s in run["before"]], dtype=np.float64)
                                 for run in runs) for var in variables},
        after_spike={var: tuple(np.array([s[position[var]] for s in run["after"]], dtype=np.float64)
                                for run in runs) for var in variables},
        initial_state=start,
    )
    if not tangents:
        return trace
    grads = {var: np.stack([run[f"grad_{var}"] for run in runs], axis=1) for var in variables}
    return Gradients(names, tuple(run["spike_grads"] for run in runs), grads, trace)


def simulate(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None):
    """The exact solution (see the package docstring for the arguments)."""
    return _solve(node, params, pulse_times, pulse_weights, t_end, samples, state, False)


def gradients(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None):
    """Exact derivatives of spike times and sampled states: a ``Gradients``."""
    return _solve(node, params, pulse_times, pulse_weights, t_end, samples, state, True)
