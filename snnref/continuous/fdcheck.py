"""Finite-difference check of ``exact.gradients`` against ``exact.simulate``.

For every input p (parameter, initial state, pulse weight), all neurons at once
(neurons are independent, so each sees only its own perturbation):

(1) D(h) = (f(p + h) - f(p - h)) / (2 h),  R(h) = (4 D(h/2) - D(h)) / 3  (Richardson:
    the h^2 error of a central difference is large near a slow crossing),
    h = FD_STEP max(|p|, typical |p| of its kind): v_threshold for voltages,
    1 for the initial current, the largest pulse weight for a weight;
    at tau_ref = 0 (hard reset), where tau_ref cannot decrease, the one-sided
    D(h) = (f(p + h) - f(p)) / h,  R(h) = 2 D(h/2) - D(h)  (the right derivative, as
    ``exact`` (18b) reports it), h = FD_STEP times the neuron's shortest time constant
    (t_end for IF, which has none);
    fd = R(h/2), judged only where it has converged: |R(h) - R(h/2)| within a
    quarter of FD_BOUND, by (2).  Elsewhere h shrinks 16-fold for that input and
    neuron, at most REFINEMENTS times.  Near a graze the spike time bends on the
    scale of h: a CubaLIF spike that vanishes 1e-4 away (relative, in r) has
    the derivative -0.00399288 (exact, and central differences at h = 1e-8
    relative), where R(h) at h = 1e-5 gave -0.00397518.
(2) error = |fd - exact| / max(|exact|, |fd|, FLOOR * scale / (h/2))
with scale = t_end for spike times and max(1, |v|) for states: below FLOOR of
the output's scale a change is rounding, not signal.  Skipped, and counted:
(3) a neuron whose spike count changes within +-h (a spike appears or vanishes),
    or one of whose spike or refractory-release times moves across a pulse time
    (the derivative has a kink there; at tau_ref = 0 a release leaves the spike
    time, so a pulse at the spike time itself is not crossed);
(4) a sample that a spike or release time moves across (the state jumps there);
(5) ``tau_ref`` with reset "subtract" (it takes no refractory time: no run at tau_ref > 0);
(6) a neuron whose differences never converged (1): an input the check cannot
    judge, not a wrong gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import exact, nodes

FD_STEP = 1e-5
FLOOR = 1e-8  # a few eps of the output over 2 h is a relative FD noise of ~1e-7 of this
FD_BOUND = 1e-6
# (1): at most two 16-fold refinements, to h = FD_STEP / 256 relative: there a few ulps of a spike
# time over 2 h are still a relative noise of about 1e-9, far below FD_BOUND.
REFINEMENTS = 2
LEVELS = (1.0, 0.5, 0.25)  # the central differences' steps, in units of h
# SPEC.md section 9: relative agreement with finite differences
VOLTAGES = ("v_leak", "v_reset", "v_threshold", "state.v")


@dataclass(frozen=True)
class GradientCheck:
    """``worst``: the largest error (2); ``checked``: compared derivatives;
    ``skipped``: (neuron, input) pairs left out by (3) and (5); ``skipped_samples``: by (4)."""

    worst: float
    checked: int
    skipped: int
    skipped_samples: int

    @property
    def passed(self) -> bool:
        return self.worst <= FD_BOUND and self.checked > 0


def _perturbed(name, trace, params, weights, delta):
    """Arguments of a run with input ``name`` moved by ``delta`` (shape (N,))."""
    params = dict(params)
    weights = np.array(weights, dtype=np.float64, copy=True)
    state = {var: value.copy() for var, value in trace.initial_state.items()}
    if name.startswith("weight["):
        weights[int(name[len("weight["):-1])] += delta
    elif name.startswith("state."):
        state[name[len("state."):]] = state[name[len("state."):]] + delta
    else:
        params[name] = trace.params[name] + delta
    return params, weights, state


def _value(name, trace, weights):
    if name.startswith("weight["):
        return np.asarray(weights, dtype=np.float64)[int(name[len("weight["):-1])]
    if name.startswith("state."):
        return trace.initial_state[name[len("state."):]]
    return trace.params[name]


def _scale(name, value, trace, weights):
    """The size an input is perturbed relative to: its own magnitude, but no less
    than its kind's typical magnitude (a voltage near 0 is not a small voltage)."""
    magnitude = np.abs(np.asarray(value, dtype=np.float64))
    if name.startswith("weight["):
        typical = float(np.max(np.abs(weights), initial=0.0))
    elif name in VOLTAGES:
        typical = np.abs(trace.params["v_threshold"]) if "v_threshold" in trace.params else 1.0
    elif name == "state.i":
        typical = 1.0
    elif name == "tau_ref":
        # (1): a hold of 0 has no size of its own; the neuron's fastest dynamics set the scale.
        taus = [trace.params[tau] for tau in nodes.TIME_CONSTANTS if tau in trace.params]
        typical = np.min(taus, axis=0) if taus else np.full(magnitude.shape, trace.t_end)
        return np.where(magnitude > 0, magnitude, typical)
    else:
        return magnitude  # time constants, r, w_in: positive, their value is their scale
    return np.maximum(np.maximum(magnitude, typical), np.finfo(np.float64).tiny)


def _moving_times(run, neuron):
    """Spike times and, for the nodes that take a hold, release times of one neuron (at the spike for tau_ref = 0)."""
    spikes = run.spike_times[neuron]
    tau_ref = run.params.get("tau_ref")
    if tau_ref is None:
        return spikes
    return np.concatenate([spikes, spikes + tau_ref[neuron]])


def check(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None) -> GradientCheck:
    """(1)-(6) for every input of ``exact.gradients``."""
    grads = exact.gradients(node, params, pulse_times, pulse_weights, t_end=t_end, samples=samples, state=state)
    trace = grads.trace
    times = np.asarray(pulse_times, dtype=np.float64)
    n = len(trace.spike_times)
    tally = _Tally()
    for k, name in enumerate(grads.names):
        value = _value(name, trace, pulse_weights)
        if name == "tau_ref" and trace.params["reset"] == "subtract":
            tally.skipped += n
            continue
        one_sided = (value == 0) if name == "tau_ref" else np.zeros(n, dtype=bool)
        h = FD_STEP * _scale(name, value, trace, pulse_weights)
        pending = range(n)
        for _ in range(REFINEMENTS + 1):
            # (1): where one-sided, the run "at p - step" is the run at p.
            runs = [_run(node, times, t_end, samples,
                         *_perturbed(name, trace, params, pulse_weights,
                                     np.where(one_sided & (sign < 0), 0.0, sign * level * h)))
                    for level in LEVELS for sign in (1, -1)]
            pending = [neuron for neuron in pending
                       if not _judged(tally, grads, k, trace, runs, times, neuron, float(h[neuron]), t_end,
                                      bool(one_sided[neuron]))]
            h = h / 16
        tally.skipped += len(pending)
    return GradientCheck(tally.worst, tally.checked, tally.skipped, tally.skipped_samples)


def _run(node, times, t_end, samples, params, weights, state):
    return exact.simulate(node, params, times, weights, t_end=t_end, samples=samples, state=state)


class _Tally:
    def __init__(self):
        self.worst, self.checked, self.skipped, self.skipped_samples = 0.0, 0, 0, 0


def _judged(tally, grads, k, trace, runs, times, neuron, step, t_end, one_sided):
    """Compare input ``k``'s derivatives of one neuron (``runs`` at +-step,
    +-step/2, +-step/4; ``one_sided``: at +step, p, +step/2, p, ...), or skip it
    by (3); False where (1) the differences have not converged at this ``step``."""
    base = trace.spike_times[neuron]
    if any(len(run.spike_times[neuron]) != len(base) for run in runs):
        tally.skipped += 1
        return True
    moving = np.stack([_moving_times(run, neuron) for run in [trace] + runs])
    low, high = moving.min(axis=0), moving.max(axis=0)
    # (3): one-sided at tau_ref = 0, a release only leaves its spike: its interval is open at the spike.
    opened = np.zeros(len(low), dtype=bool)
    opened[len(base):] = one_sided

    def crossed(points, a, b, is_open):
        return ((points > a) if is_open else (points >= a)) & (points <= b)

    if any(np.any(crossed(times, a, b, o)) for a, b, o in zip(low, high, opened) if a != b):
        tally.skipped += 1
        return True
    # Per quantity: the runs' values, the exact derivative, the floor (2) of the
    # difference from step / 2 and step / 4, and the samples kept (None: spike times).
    fine = step / 2
    quantities = []
    if len(base):
        quantities.append(([run.spike_times[neuron] for run in runs], grads.spike_times[neuron][:, k],
                           FLOOR * t_end / fine, None))
    for var in trace.states:
        column = trace.states[var][:, neuron]
        keep = np.ones(column.shape, dtype=bool)
        for a, b, o in zip(low, high, opened):
            keep &= ~crossed(trace.samples, a, b, o)
        quantities.append(([run.states[var][keep, neuron] for run in runs], grads.states[var][keep, neuron, k],
                           FLOOR * np.maximum(1.0, np.abs(column[keep])) / fine, keep))
    # (1): R(step) and R(step / 2) per quantity.
    estimates = [(_richardson(values[:4], step, one_sided), _richardson(values[2:], fine, one_sided))
                 for values, *_ in quantities]
    if any(_error(wide, narrow, floor) > FD_BOUND / 4
           for (wide, narrow), (_, _, floor, _) in zip(estimates, quantities)):
        return False
    for (_, fd), (_, exact_value, floor, keep) in zip(estimates, quantities):
        tally.worst = max(tally.worst, _error(fd, exact_value, floor))
        if keep is None:
            tally.checked += len(base)
        else:
            tally.skipped_samples += int(np.sum(~keep))
            tally.checked += int(np.sum(keep))
    return True


def _richardson(values, step, one_sided):
    """R(step) of (1) from the values at +-step and +-step/2 (one-sided: at +step, p, +step/2, p)."""
    # The central difference's error is of order step^2, the one-sided's of order step.
    span, gain = (1, 2) if one_sided else (2, 4)
    wide = (values[0] - values[1]) / (span * step)
    narrow = (values[2] - values[3]) / (span * step / 2)
    return (gain * narrow - wide) / (gain - 1)


def _error(fd, exact_value, floor):
    if np.size(fd) == 0:
        return 0.0
    denominator = np.maximum(np.maximum(np.abs(exact_value), np.abs(fd)), floor)
    return float(np.max(np.abs(fd - exact_value) / denominator))

