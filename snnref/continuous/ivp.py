"""An independent solution of the section-9 nodes by numerical integration.

The check of ``exact``: no closed form is used here.  The right-hand sides are
the ODEs of ``nodes`` (1)-(8), written for the membrane's distance from its rest
value, w = v - v_leak (w = v for I, IF and CubaIF, which have no leak):

(1) CUBA:    i' = -i / tau_syn,  w' = (-w + R i) / tau_mem  (CubaIF: R i / tau_mem)
(2) LI, LIF: w' = -w / tau;   I, IF: w' = 0
(3) held (refractory): w' = 0, i as (1)

integrated by ``scipy.integrate.solve_ivp`` (DOP853, rtol = atol = 1e-12 by
default) from event to event: each pulse is a jump applied between two
integrations, each spike a terminal event after which the reset is applied and
the integration restarts, and each hold ends at t* + tau_ref.  The threshold
event is the distance to threshold in the form the exact solution decides on,
(v_leak - v_threshold) + w crossing 0 upwards.  Where v_leak = v_threshold a
membrane that relaxes to its rest value approaches threshold and never reaches
it; integrated as v, its error (about atol) would cross threshold and fire at a
time set by that error.  w decays to 0 without changing sign, and so does the
numerical w while every step is at most the node's shortest time constant
(``max_step``): each step then multiplies the decaying solution by DOP853's
stability polynomial R at -h/tau in [-1, 0], where R lies within 1e-7 (relative)
of exp(-h/tau) and so is positive, however far below atol w has fallen (R first
changes sign near -4.35, a step that the error control of an atol-sized w takes).  The limits of this
check: w leaves the float64 range after about 745 time constants without input,
and a membrane that approaches threshold for longer than that is not decided
here; nor is a CubaIF membrane whose limit v0 + R i0 tau_syn / tau_mem (which the
integration does not know) lies within about atol of threshold.

A crossing that only grazes threshold can begin and end inside one solver step,
where the sign test of the event misses it; so the CUBA leaky nodes also stop at
every maximum of v (a second terminal event, w' crossing downwards), and a
maximum at or above threshold means the crossing lies before it: it is found on
the solver's dense output by brentq.
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
        self.rest = p["v_leak"] if row.leaky else 0.0  # v = w + rest
        self.shortest = min(p[name] for name in nodes.TIME_CONSTANTS if name in p) if row.current or row.leaky \
            else math.inf
        if row.spiking:
            self.limit = self.rest - p["v_threshold"]  # the distance to threshold is limit + w

    def rhs(self, held):
        row, p = self.row, self.p
        if row.current:
            def f(t, y):
                di = -y[1] / p["tau_syn"]
                if held:
                    return [0.0, di]
                drive = p["r"] * y[1] - (y[0] if row.leaky else 0.0)
                return [drive / p["tau_mem"], di]
        else:
            def f(t, y):
                if held or not row.leaky:
                    return [0.0]
                return [-y[0] / p["tau"]]
        return f


def _segment(ode, y0, t0, t1, held, watch, rtol, atol):
    """Integrate [t0, t1], stopping at a crossing or a maximum when ``watch``;
    returns (t_stop, y_stop, dense, crossed)."""
    f = ode.rhs(held)
    events = []
    if watch and not held:
        def cross(t, y):
            return ode.limit + y[0]
        cross.terminal, cross.direction = True, 1
        events.append(cross)
        if ode.row.current and ode.row.leaky:
            def top(t, y):
                return f(t, y)[0]
            top.terminal, top.direction = True, -1
            events.append(top)
    # Where w has decayed below about 1e-150 the squares in DOP853's error norm underflow and it divides
    # 0 by 0; the NaN norm only rejects the step and shrinks it, so the warning says nothing about the result.
    with np.errstate(invalid="ignore"):
        solution = integrate.solve_ivp(f, (t0, t1), y0, method="DOP853", rtol=rtol, atol=atol,
                                       events=events or None, dense_output=True, max_step=ode.shortest)
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    if solution.status == 1:
        for index, found in enumerate(solution.t_events):
            if not len(found):
                continue
            t_stop, y_stop = float(found[0]), np.array(solution.y_events[index][0])
            if events[index] is cross:
                t_cross = _refined(cross, solution.sol, t0, t_stop)
                return t_cross, solution.sol(t_cross), solution.sol, True
            if cross(t_stop, y_stop) >= 0:
                # A graze inside one step: the crossing precedes the maximum.
                t_cross = optimize.brentq(lambda t: cross(t, solution.sol(t)), t0, t_stop,
                                          xtol=1e-300, rtol=4 * np.finfo(float).eps)
                return t_cross, solution.sol(t_cross), solution.sol, True
            return t_stop, y_stop, solution.sol, False
    return float(solution.t[-1]), solution.y[:, -1], solution.sol, False


def _refined(cross, dense, t0, t_found):
    """The crossing that solve_ivp found at ``t_found``, to 4 eps of t.

    solve_ivp locates an event to an absolute 4 eps of time (its brentq's xtol),
    1e-10 of a 1e-5 s time constant; the spike then set v to v_threshold at a
    time that was not its crossing, with i read at that time, and a CubaIF run
    of 31 subtractive resets drifted 1.3e-9 from the exact solution (4e-12 with
    this).  The root is bracketed around ``t_found`` on the same dense output
    and searched again to a relative tolerance."""
    def distance(t):
        return cross(t, dense(t))

    high, step = t_found, 8 * np.finfo(float).eps * max(abs(t_found), t_found - t0, np.finfo(float).tiny)
    while distance(high) < 0:
        high += step
        step *= 2
    low = max(t0, t_found - step)
    while low > t0 and distance(low) >= 0:
        low = max(t0, low - step)
        step *= 2
    if distance(low) >= 0:
        return low
    return optimize.brentq(distance, low, high, xtol=1e-300, rtol=4 * np.finfo(float).eps)


def _neuron(row, p, start, times, weights, t_end, samples, order, rtol, atol):
    ode = _Ode(row, p)
    y = np.array([start["v"] - ode.rest] + ([start["i"]] if row.current else []), dtype=np.float64)
    t, next_pulse, next_sample = 0.0, 0, 0
    held_until = None
    # After a maximum below threshold v only falls until the next event.
    falling = False
    spikes, before, after = [], [], []
    out = np.empty((len(samples), len(y)))
    shift = np.array([ode.rest] + ([0.0] if row.current else []))  # state = y + shift

    def fire():
        nonlocal held_until
        spikes.append(t)
        before.append(tuple(y + shift))
        y[0] = p["v_reset"] - ode.rest if p["reset"] == "hard" else y[0] - p["v_threshold"]
        if p.get("tau_ref", 0.0) > 0:
            held_until = t + p["tau_ref"]
        after.append(tuple(y + shift))

    while True:
        pulse_at = times[next_pulse] if next_pulse < len(times) else math.inf
        stop = min(pulse_at, held_until if held_until is not None else math.inf, t_end)
        held = held_until is not None
        still = not row.current and (held or not row.leaky)
        if stop > t and still:
            # v' = 0 identically (3): nothing to integrate, the state holds until the event.
            while next_sample < len(samples) and samples[order[next_sample]] < stop:
                out[order[next_sample]] = y + shift
                next_sample += 1
        elif stop > t:
            watch = row.spiking and not falling
            t_stop, y_stop, dense, crossed = _segment(ode, y, t, stop, held, watch, rtol, atol)
            while next_sample < len(samples) and samples[order[next_sample]] < t_stop:
                out[order[next_sample]] = dense(samples[order[next_sample]]) + shift
                next_sample += 1
            t, y = t_stop, np.array(y_stop, dtype=np.float64)
            if crossed:
                y[0] = -ode.limit  # v = v_threshold
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
        while row.spiking and held_until is None and ode.limit + y[0] >= 0:
            fire()
        if t >= t_end:
            while next_sample < len(samples):
                out[order[next_sample]] = y + shift
                next_sample += 1
            break
        while next_sample < len(samples) and samples[order[next_sample]] == t:
            out[order[next_sample]] = y + shift
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
