"""An independent solution of the section-9 nodes by numerical integration.

The check of ``exact``: no closed form is used here.  The right-hand sides are
the ODEs of ``nodes`` (1)-(8) as written:

(1) CUBA:    i' = -i / tau_syn,  v' = (v_leak - v + R i) / tau_mem  (CubaIF: R i / tau_mem)
(2) LI, LIF: v' = (v_leak - v) / tau;   I, IF: v' = 0
(3) held (refractory): v' = 0, i as (1)

integrated by ``scipy.integrate.solve_ivp`` (DOP853, rtol = atol = 1e-12 by
default) from event to event: each pulse is a jump applied between two
integrations, each spike a terminal event (v - v_threshold crossing upwards)
after which the reset is applied and the integration restarts, and each hold
ends at t* + tau_ref.  A crossing that only grazes threshold can begin and end
inside one solver step, where the sign test of the event misses it; so the
CUBA leaky nodes also stop at every maximum of v (a second terminal event,
v' crossing downwards), and a maximum at or above threshold means the crossing
lies before it: it is found on the solver's dense output by brentq.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize

from . import nodes

RTOL = 1e-12
ATOL = 1e-12


class _Ode:
    def __init__(self, row, p):
        self.row = row
        self.p = p

    def rhs(self, held):
        row, p = self.row, self.p
        if row.current:
            def f(t, y):
                di = -y[1] / p["tau_syn"]
                if held:
                    return [0.0, di]
                drive = p["r"] * y[1] + ((p["v_leak"] - y[0]) if row.leaky else 0.0)
                return [drive / p["tau_mem"], di]
        else:
            def f(t, y):
                if held or not row.leaky:
                    return [0.0]
                return [(p["v_leak"] - y[0]) / p["tau"]]
        return f


def _segment(ode, y0, t0, t1, held, watch, rtol, atol):
    """Integrate [t0, t1], stopping at a crossing or a maximum when ``watch``;
    returns (t_stop, y_stop, dense, crossed)."""
    p = ode.p
    f = ode.rhs(held)
    events = []
    if watch and not held:
        def cross(t, y):
            return y[0] - p["v_threshold"]
        cross.terminal, cross.direction = True, 1
        events.append(cross)
        if ode.row.current and ode.row.leaky:
            def top(t, y):
                return f(t, y)[0]
            top.terminal, top.direction = True, -1
            events.append(top)
    solution = integrate.solve_ivp(f, (t0, t1), y0, method="DOP853", rtol=rtol, atol=atol,
                                   events=events or None, dense_output=True)
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    if solution.status == 1:
        for index, found in enumerate(solution.t_events):
            if not len(found):
                continue
            t_stop, y_stop = float(found[0]), np.array(solution.y_events[index][0])
            if events[index] is cross:
                return t_stop, y_stop, solution.sol, True
            if y_stop[0] >= p["v_threshold"]:
                # A graze inside one step: the crossing precedes the maximum.
                t_cross = optimize.brentq(lambda t: solution.sol(t)[0] - p["v_threshold"], t0, t_stop,
                                          xtol=1e-300, rtol=4 * np.finfo(float).eps)
                return t_cross, solution.sol(t_cross), solution.sol, True
            return t_stop, y_stop, solution.sol, False
    return float(solution.t[-1]), solution.y[:, -1], solution.sol, False


def _neuron(row, p, start, times, weights, t_end, samples, order, rtol, atol):
    y = np.array([start["v"], start["i"]] if row.current else [start["v"]], dtype=np.float64)
    t, next_pulse, next_sample = 0.0, 0, 0
    held_until = None
    # After a maximum below threshold v only falls until the next event.
    falling = False
    spikes, before, after = [], [], []
    out = np.empty((len(samples), len(y)))

    def fire():
        nonlocal held_until
        spikes.append(t)
        before.append(tuple(y))
        y[0] = p["v_reset"] if p["reset"] == "hard" else y[0] - p["v_threshold"]
        if p.get("tau_ref", 0.0) > 0:
            held_until = t + p["tau_ref"]
        after.append(tuple(y))

    while True:
        pulse_at = times[next_pulse] if next_pulse < len(times) else math.inf
        stop = min(pulse_at, held_until if held_until is not None else math.inf, t_end)
        held = held_until is not None
        still = not row.current and (held or not row.leaky)
        if stop > t and still:
            # v' = 0 identically (3): nothing to integrate, the state holds until the event.
            while next_sample < len(samples) and samples[order[next_sample]] < stop:
                out[order[next_sample]] = y
                next_sample += 1
        elif stop > t:
            watch = row.spiking and not falling
            t_stop, y_stop, dense, crossed = _segment(_Ode(row, p), y, t, stop, held, watch, rtol, atol)
            while next_sample < len(samples) and samples[order[next_sample]] < t_stop:
                out[order[next_sample]] = dense(samples[order[next_sample]])
                next_sample += 1
            t, y = t_stop, np.array(y_stop, dtype=np.float64)
            if crossed:
                y[0] = p["v_threshold"]
                fire()
                falling = False
                continue
            if t < stop:
                falling = True
                continue
        t, falling = stop, False
        if held_until is not None and held_until <= t:
            held_until = None
        while next_pulse < len(times) and times[next_pulse] == t:
            q = weights[next_pulse]
            if row.current:
                y[1] += p["w_in"] * q / p["tau_syn"]
            elif held_until is None:
                y[0] += p["r"] * q / p["tau"] if row.leaky else p["r"] * q
            next_pulse += 1
        while row.spiking and held_until is None and y[0] >= p["v_threshold"]:
            fire()
        if t >= t_end:
            while next_sample < len(samples):
                out[order[next_sample]] = y
                next_sample += 1
            break
        while next_sample < len(samples) and samples[order[next_sample]] == t:
            out[order[next_sample]] = y
            next_sample += 1
    return spikes, before, after, out


def simulate(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None, rtol=RTOL, atol=ATOL):
    """``exact.simulate``'s contract, solved by ``solve_ivp``: a ``ContinuousTrace``."""
    row = nodes.node(node)
    times, weights = nodes.check_pulses(pulse_times, pulse_weights)
    n = weights.shape[1]
    checked = nodes.check_params(row, params, n)
    start = nodes.check_state(row, checked, state, n)
    end, sample_times = nodes.check_times(t_end, samples)
    order = np.argsort(sample_times, kind="stable")
    variables = nodes.variables(row)
    runs = []
    for neuron in range(n):
        p = {name: float(value[neuron]) for name, value in checked.items() if name != "reset"}
        if row.spiking:
            p["reset"] = checked["reset"]
        first = {var: float(start[var][neuron]) for var in variables}
        runs.append(_neuron(row, p, first, times, weights[:, neuron], end, sample_times, order, rtol, atol))
    return nodes.ContinuousTrace(
        node=row.name,
        params=checked,
        t_end=end,
        spike_times=tuple(np.array(run[0], dtype=np.float64) for run in runs),
        samples=sample_times,
        states={var: np.stack([run[3][:, k] for run in runs], axis=1).reshape(len(sample_times), n)
                for k, var in enumerate(variables)},
        before_spike={var: tuple(np.array([s[k] for s in run[1]], dtype=np.float64) for run in runs)
                      for k, var in enumerate(variables)},
        after_spike={var: tuple(np.array([s[k] for s in run[2]], dtype=np.float64) for run in runs)
                     for k, var in enumerate(variables)},
        initial_state=start,
    )
