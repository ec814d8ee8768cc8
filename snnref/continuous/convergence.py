"""How far each mapped discrete model is from its continuous counterpart as dt -> 0.

A study holds the physical input and time constants fixed: pulses on a grid of
spacing h (t_j = j h, random weights drawn from ``seed``) and runs the discrete
model (``snnref.spec.simulate``) at dt_l = dt_0 / 2^l, l = 0..levels, with the
section-9 correspondence (``correspondence``) for its parameters and input
(x[k] = q_j / input_scale at k = t_j / dt_l, 0 elsewhere).  dt_0 must divide h.
The CUBA studies draw the refractory time as a whole number of dt_0 steps, so
that hxtorch's clamp of ceil(refractory_time / dt) steps is the same time at
every level.

Errors per level (1)-(3), each reported as the maximum and as the median over
spikes (neurons, common times):
(1) spike times: |t_disc - t*| over spikes matched one to one, over the neurons
    whose spike count is the exact one at every level.  t_disc is k dt for the
    exact relations (the membrane only jumps at pulses, so the crossing is the
    jump) and for the Euler models the linear interpolation of the pre-reset
    membrane's crossing within the step:
        t_disc = t_(k-1) + dt (theta - v+[k-1]) / (v[k] - v+[k-1])
    with v[k] the pre-reset membrane of step k (its distance u[k] + theta) and
    v+[k-1] the recorded membrane of the step before (the initial state at k = 0).
(2) first spike: |t_disc - t*| of each neuron's first spike, over the neurons
    that fire at every level exactly when the exact neuron fires at all.
(3) membrane: |v_disc[k] - v(t_k)|.  Exact relations: at every step of every
    level, relative to max(1, |v|) (the pre-reset value v(t_k-) at a spike step
    for models that record it).  Euler models: on the pulse grid, at the times
    where every level has fired exactly as often as the exact neuron so far (a
    time between a discrete and the exact spike compares a reset with a
    non-reset membrane, which is no error of order dt).
(4) fitted order: the least-squares slope of log(median error) against log(dt)
    over the levels with a finite, positive error (at least three).  The median,
    not the maximum: the discrete model resets at the step's time, after the
    interpolated crossing by a fraction of dt that varies from spike to spike and
    level to level, so the largest error is C dt with a C that jumps between
    levels; the median over many spikes is not at the mercy of one spike's phase.
    None for the exact relations, which report ``max_deviation`` instead: the
    largest of (1) and (3) over every level (equal spike counts required).

Surrogate against exact gradients (5): the loss
    L = sum_{n, j} c_nj v_n(t_j) + sum_{n, spikes} w phi(t*),  phi(t) = 1 - t / t_end
(c_nj drawn from ``seed`` and 0 where neuron n fires exactly at t_j; w = threshold
for qualia.ATIF, whose output is spikes * threshold, else 1).  The discrete side
is spec ``vjp`` with the default surrogate, cotangent c on the recorded
membrane at the grid steps and phi(t_k) on the spike output; the continuous
side the exact derivative (``exact.gradients``: sum c dv + sum w phi'(t*) dt*,
plus sum phi(t*) for ATIF's threshold), with the initial state at t = -dt,
where the discrete model's initial state sits (its step 0 starts from it).  Compared: the derivatives with
respect to each pulse's input x (through input_scale), the initial state and
every trainable parameter the two share, each time constant as d/d(log tau)
(decay = exp(-dt/tau): d/d(log tau) = (dt/tau) decay d/d(decay); at fixed x,
so the continuous side adds sum_j q_j d/dq_j for the LIF's q = tau x), a scalar
parameter's continuous derivative summed over neurons; hxtorch's tau_syn is
also the continuous w_in.  Reported: cosine similarity and the relative norm
error |g_disc - g_exact| / |g_exact| per level.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import arguments, registry, spec
from ..testing import tolerance
from ..trace import ArraysByName
from . import correspondence, exact, ivp, nodes

MIN_FIT_POINTS = 3
# Each halving of dt doubles the steps and the time: tether.LIF alone took 2.7 s
# at 6 halvings and 17 s at 9 here, so 12 is minutes per model, and 100 never ends.
MAX_LEVELS = 12
# The finest level's steps: the default CUBA study at MAX_LEVELS takes 655,360 (and
# minutes); pulse_spacing=1.0 for a CUBA model with dt = 2^-21 s asked for 2^37.
MAX_STEPS = 2 ** 20
# The finest step against the longest time constant: below this the decay
# exp(-dt / tau) keeps under 30 bits of its distance from 1 (and at 2^-53 rounds to
# 1, which tether.LIF's counterpart refuses as params['decay']).
FINEST_RESOLUTION = 2.0 ** -30
# Neurons per study: the exact solver runs one neuron at a time (10^6 ran for minutes in
# 3 GB, 10^9 asked for 358 GiB); 32 times the CUBA studies' default.
MAX_NEURONS = 1024
# The drive's scale: 100 times the study's pulses took hxtorch.cuba_lif's surrogate_gap 6.8 s
# at 2 levels here; 10^6 ran 27 s to TooManySpikes, and 1e300 gave NaN cosines without a word.
MAX_DRIVE = 100.0
MARGIN = 1e-6  # the exact relations' cases keep |v - threshold| above this (relative) at every pulse
NEURONS = 4
CUBA_NEURONS = 32  # the medians of (4) need many spikes
# The CUBA studies: pulses every 2^-18 s (about tau / 3), first step 2^-21 s, so
# that the coarsest level already resolves the time constants.
CUBA_SPACING = 2.0 ** -18
CUBA_FIRST_DIVISION = 8
CUBA_PULSES = 16
IVP_NEURONS = 4  # solve_ivp is slow: its agreement is checked on the first four neurons
ERROR_NAMES = ("spike_times", "first_spike", "membrane")


def exact_bound(steps: int) -> float:
    """The largest deviation an exact relation may show after ``steps`` float64 steps.

    SPEC.md section 7's float64 floor (c ulp of the quantity's scale) for each of
    the ~sqrt(steps) random-walk accumulations of one rounding per step: the
    discrete recursion multiplies by a rounded decay once per step where the
    closed form takes one exponential per interval.
    """
    rule = tolerance.POLICY["float64"]
    return rule.c * rule.eps * max(1.0, float(np.sqrt(steps)))


@dataclass(frozen=True)
class Convergence:
    """The result of ``converge``.

    ``dts``: the steps, coarsest first.  ``errors[name]`` / ``median_errors[name]``:
    the maximum / median error per level (NaN where undefined) for each of
    "spike_times", "first_spike", "membrane".  ``order[name]``: the fitted
    order (4), None where the relation is exact or the model has no spikes.
    ``max_deviation`` and ``bound``: exact relations only (else None), the
    largest deviation and ``exact_bound`` at the finest level.
    ``spike_counts_agree``: per level.  ``ivp_agreement``: the largest relative
    difference between the closed form and solve_ivp on the study's case.
    ``spikes``: exact spikes in the case; ``neurons_used``: neurons in (1).
    """

    model: str
    node: str
    relation: str
    dts: np.ndarray
    errors: Dict[str, np.ndarray]
    median_errors: Dict[str, np.ndarray]
    order: Dict[str, Optional[float]]
    max_deviation: Optional[float]
    bound: Optional[float]
    spike_counts_agree: np.ndarray
    ivp_agreement: float
    spikes: int
    neurons_used: int
    notes: List[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("errors", "median_errors", "order"):
            # Frozen: the dataclass's own __init__ sets fields the same way.
            object.__setattr__(self, name, ArraysByName(getattr(self, name), f"{name} of this {self.model} "
                                                                               "convergence"))


@dataclass
class Case:
    """One study's physical input: fixed across levels."""

    row: registry.Model
    physical: dict  # registry parameters that do not change with dt
    taus: dict  # physical time constants of the dimensionless models
    pulse_times: np.ndarray
    jumps: np.ndarray  # (P, N) the discrete input x at each pulse
    spacing: float
    dt0: float
    t_end: float


def _rng(model, seed, *salt):
    return np.random.default_rng(zlib.crc32(repr((model, seed) + salt).encode()))


def level_params(case: Case, dt: float) -> dict:
    """The registry parameters at step ``dt`` (section-9 correspondence)."""
    row, params = case.row, dict(case.physical)
    if row.key in ("tether.LIF", "tether.PLIF"):
        params["decay"] = np.exp(-dt / case.taus["tau"])
    elif row.key.startswith("rnnbuilder."):
        params["tau"] = case.taus["tau"] / dt
    elif row.family == "cuba":
        params["dt"] = dt
    return params


def _physical(row, rng, n, dt0):
    """Parameters drawn once per study; time constants held fixed across levels."""
    if row.family == "cuba":
        physical = {"tau_syn": rng.uniform(5e-6, 2e-5), "tau_mem": rng.uniform(5e-6, 2e-5)}
        for name in ("leak", "reset"):
            if any(p.name == name for p in row.params):
                physical[name] = rng.uniform(-0.2, 0.2)
        if row.options.spiking:
            physical["threshold"] = rng.uniform(0.8, 1.2)
        if row.refractory:
            physical["refractory_time"] = int(rng.integers(2, 8)) * dt0
        return physical, {}
    if row.key == "tether.PLIF":
        return {"threshold": rng.uniform(0.6, 1.4, n)}, {"tau": rng.uniform(2.0, 8.0, n)}
    if row.key == "tether.LIF":
        return {"threshold": rng.uniform(0.6, 1.4)}, {"tau": rng.uniform(2.0, 8.0)}
    if row.key.startswith("rnnbuilder."):
        return {}, {"tau": rng.uniform(2.0, 8.0)}
    return {"threshold": rng.uniform(0.6, 1.4, 1)}, {}


def _check_grid(spacing, dt):
    ratio = spacing / dt
    if not (np.isfinite(ratio) and ratio >= 1 and abs(ratio - round(ratio)) <= 1e-9 * ratio):
        raise ValueError(f"dt: {dt!r} does not divide the pulse grid spacing {spacing!r} "
                         f"(pulse times must fall on steps: spacing / dt must be a whole number)")
    return int(round(ratio))


def counterpart_of(case: Case) -> correspondence.Counterpart:
    return correspondence.counterpart(case.row, level_params(case, case.dt0), case.dt0)


def pulse_weights(case: Case, cp) -> np.ndarray:
    """The continuous pulse weights q = input_scale x."""
    return case.jumps * np.broadcast_to(np.asarray(cp.input_scale, dtype=np.float64), case.jumps.shape[1:])


def continuous(case: Case, samples, gradients=False, shift=0.0):
    """The exact run (or its ``Gradients``) of the case's counterpart.

    ``shift``: start the initial state that much before t = 0 (every time in the
    result is then later by ``shift``): a discrete model's initial state is the
    state one step before its first step, t = -dt.
    """
    cp = counterpart_of(case)
    run = exact.gradients if gradients else exact.simulate
    return run(cp.node, cp.params, case.pulse_times + shift, pulse_weights(case, cp), t_end=case.t_end + shift,
               samples=np.asarray(samples) + shift, state=cp.state)


def _margin_ok(case, n):
    """Exact relations: no pulse leaves the membrane within MARGIN of threshold."""
    cp = counterpart_of(case)
    trace = continuous(case, case.pulse_times)
    level = cp.threshold if cp.threshold is not None else cp.params["v_threshold"]
    level = np.broadcast_to(np.asarray(level, dtype=np.float64), (n,))
    v = trace.states["v"].copy()
    for neuron in range(n):
        for spike_time, before in zip(trace.spike_times[neuron], trace.before_spike["v"][neuron]):
            v[np.searchsorted(case.pulse_times, spike_time), neuron] = before
    return bool(np.all(np.abs(v - level) > MARGIN * np.abs(level)))


def draw_case(model, seed=0, dt=None, pulse_spacing=None, neurons=None, drive=1.0, levels=0) -> Case:
    """The study's case for ``model`` (see the module docstring); ``drive`` scales
    every input (a small drive gives a case without spikes); ``levels``: the
    halvings of dt it will be run at (``_check_time_scales``)."""
    row = registry.model(model)
    rng = _rng(row.key, _seed(seed))
    _positive("dt", dt, "a finite step > 0")
    _positive("pulse_spacing", pulse_spacing, "a finite time > 0")
    _positive("drive", drive, "a finite scale > 0")
    if drive > MAX_DRIVE:
        raise ValueError(f"drive: expected a scale > 0 of at most {MAX_DRIVE:g}, got {drive!r}")
    _neurons(neurons)
    cuba = row.family == "cuba"
    n = neurons if neurons is not None else (CUBA_NEURONS if cuba else NEURONS)
    spacing = (CUBA_SPACING if cuba else 1.0) if pulse_spacing is None else float(pulse_spacing)
    dt0 = (spacing / CUBA_FIRST_DIVISION if cuba else spacing) if dt is None else float(dt)
    _check_grid(spacing, dt0)
    pulses = CUBA_PULSES if cuba else 48
    t_end = (pulses + (4 if cuba else 8)) * spacing
    if not np.isfinite(t_end):
        raise ValueError(f"pulse_spacing: {spacing!r} makes the study's length ({pulses} pulses and a tail) "
                         "overflow float64")
    times = np.arange(pulses) * spacing
    for _ in range(50):
        physical, taus = _physical(row, rng, n, dt0)
        if cuba:
            jumps = drive * np.where(rng.random((pulses, n)) < 0.5, rng.uniform(-0.5, 2.0, (pulses, n)), 0.0)
        else:
            theta = np.broadcast_to(np.asarray(physical.get("threshold", 1.0), dtype=np.float64), (n,))
            # A jump below threshold: a subtractive reset always ends below it.
            jumps = drive * np.where(rng.random((pulses, n)) < 0.5, rng.uniform(-0.3, 0.9, (pulses, n)) * theta, 0.0)
        case = Case(row, physical, taus, times, jumps, spacing, dt0, t_end)
        _check_time_scales(case, levels, dt is not None)
        if cuba or _margin_ok(case, n):
            return case
    raise RuntimeError(f"converge: no case with a threshold margin found for {row.key} (seed {seed})")


def discrete_input(case: Case, dt):
    per_pulse = _check_grid(case.spacing, dt)
    steps = int(round(case.t_end / dt)) + 1
    x = np.zeros((steps, case.jumps.shape[1]))
    x[np.arange(len(case.pulse_times)) * per_pulse] = case.jumps
    return x, per_pulse


def _spiking(row):
    return row.out.spiking and row.key != "rnnbuilder.NoReset"


def discrete_spike_times(trace, dt, cp):
    """(1): the spike times of each neuron of a discrete run."""
    fired = trace.outputs["out"] != 0
    n = fired.shape[1]
    times = []
    for neuron in range(n):
        steps = np.flatnonzero(fired[:, neuron])
        if cp.relation == "exact":
            times.append(steps * dt)
            continue
        theta = float(np.broadcast_to(cp.params["v_threshold"], (n,))[neuron])
        before_first = float(np.broadcast_to(cp.state["v"], (n,))[neuron])
        recorded = trace.outputs["v"][:, neuron]
        pre = trace.distance[:, neuron] + theta
        found = []
        for k in steps:
            before = recorded[k - 1] if k > 0 else before_first
            found.append((k - 1) * dt + dt * (theta - before) / (pre[k] - before))
        times.append(np.array(found, dtype=np.float64))
    return times


def fit_order(dts, errors) -> float:
    """(4): the slope of log(error) against log(dt); NaN with fewer than three usable levels."""
    dts, errors = np.asarray(dts, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    good = np.isfinite(errors) & (errors > 0)
    if good.sum() < MIN_FIT_POINTS:
        return float("nan")
    return float(np.polyfit(np.log(dts[good]), np.log(errors[good]), 1)[0])


def ivp_agreement(case: Case, samples=None) -> float:
    """The largest relative difference between ``exact`` and ``ivp`` on the case's first
    IVP_NEURONS neurons: spike times relative to max(|t*|, the shortest time
    constant), states to max(1, |state|)."""
    cp = counterpart_of(case)
    samples = case.pulse_times if samples is None else samples
    weights = pulse_weights(case, cp)[:, :IVP_NEURONS]
    params = {name: (value if isinstance(value, str) else _first(value, case)) for name, value in cp.params.items()}
    state = {name: _first(value, case) for name, value in cp.state.items()}
    mine = exact.simulate(cp.node, params, case.pulse_times, weights, t_end=case.t_end, samples=samples,
                          state=state)
    other = ivp.simulate(cp.node, params, case.pulse_times, weights, t_end=case.t_end, samples=samples,
                         state=state)
    return trace_agreement(mine, other)


def _first(value, case):
    """A per-neuron value restricted to the first IVP_NEURONS neurons (scalars unchanged)."""
    array = np.asarray(value, dtype=np.float64)
    return array[:IVP_NEURONS] if array.ndim == 1 and array.shape[0] == case.jumps.shape[1] else array


def trace_agreement(mine, other) -> float:
    """The largest relative difference between two ``ContinuousTrace`` of one case
    (inf when a spike count differs, NaN when either has a NaN), scaled as in ``ivp_agreement``."""
    taus = [np.min(mine.params[name]) for name in nodes.TIME_CONSTANTS if name in mine.params]
    scale = float(min(taus)) if taus else 1.0
    gaps = [0.0]
    for a, b in zip(mine.spike_times, other.spike_times):
        if len(a) != len(b):
            return float("inf")
        if len(a):
            gaps.append(float(np.max(np.abs(a - b) / np.maximum(np.abs(a), scale))))
    for var in mine.states:
        a, b = mine.states[var], other.states[var]
        gaps.append(float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a)), initial=0.0)))
    # np.max, which keeps a NaN (a run that failed is no agreement): max(0.0, nan) is 0.0, and NaN states agreed.
    return float(np.max(gaps))


def _time_constants(case: Case) -> np.ndarray:
    """Every physical time constant the study drew (none for the qualia IF models)."""
    taus = [case.taus.get("tau")] + [case.physical.get(name) for name in ("tau_syn", "tau_mem")]
    return np.concatenate([np.ravel(np.asarray(t, dtype=np.float64)) for t in taus if t is not None] or [[]])


def _check_time_scales(case: Case, levels: int, dt_given: bool) -> None:
    """The study's steps against its length and its drawn time constants, refused by
    the argument that set them (``dt``, or ``pulse_spacing`` where dt is its
    default): a spacing in another unit (pulse_spacing=1.0 for a CUBA model, whose
    time constants are about 1e-5 s) ran solve_ivp's check for hours, and 1e308 or
    1e-20 for tether.LIF was refused as params['decay'], a value the caller never
    gave."""
    name = "dt" if dt_given else "pulse_spacing"
    given = case.dt0 if dt_given else case.spacing
    finest = case.dt0 / 2.0 ** levels
    steps = case.t_end / finest
    if steps > MAX_STEPS:
        raise ValueError(f"{name}: {given!r} with {levels} halvings takes {steps:.4g} steps at the finest level "
                         f"over the study's {case.t_end!r}; expected at most {MAX_STEPS} (pass a larger dt or "
                         "fewer levels)")
    taus = _time_constants(case)
    if not taus.size:
        return
    span = f"{taus.min():.4g}" if taus.min() == taus.max() else f"{taus.min():.4g} to {taus.max():.4g}"
    if case.dt0 > taus.min():
        raise ValueError(f"{name}: {given!r} makes the first step {case.dt0!r} longer than the study's time "
                         f"constants ({span}), which the coarsest level must resolve; pass a smaller "
                         f"{name}" + ("" if dt_given else " or dt"))
    if finest < taus.max() * FINEST_RESOLUTION:
        raise ValueError(f"{name}: {given!r} makes the finest step {finest!r}, below 2^-30 of the study's time "
                         f"constants ({span}), where exp(-dt/tau) is 1 to within 30 bits; pass a larger "
                         f"{name} or fewer levels")


def _levels(levels):
    if (not isinstance(levels, (int, np.integer)) or isinstance(levels, bool)
            or not MIN_FIT_POINTS - 1 <= levels <= MAX_LEVELS):
        raise ValueError(f"levels: expected a whole number of halvings from {MIN_FIT_POINTS - 1} to {MAX_LEVELS}, "
                         f"got {levels!r}")
    return int(levels)


def _seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a whole number >= 0, got {seed!r}")
    return int(seed)


def _positive(name, value, what):
    """An optional positive number (None keeps the default)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                              or not (np.isfinite(value) and value > 0)):
        raise ValueError(f"{name}: expected {what}, got {value!r}")


def _neurons(neurons):
    if neurons is not None and (isinstance(neurons, bool) or not isinstance(neurons, (int, np.integer))
                                or not 1 <= neurons <= MAX_NEURONS):
        raise ValueError(f"neurons: expected a whole number from 1 to {MAX_NEURONS}, got {neurons!r}")


def _mapped(model):
    row = registry.model(model)
    if row.key not in correspondence.MAPPED:
        raise ValueError(f"model: {row.key} has no continuous counterpart (SPEC.md section 9); "
                         f"the models that have one: {', '.join(correspondence.MAPPED)}")
    return row


def converge(model, *, levels=6, seed=0, dt=None, pulse_spacing=None, neurons=None) -> Convergence:
    """The convergence study of a mapped registry model (see the module docstring).

    ``levels``: halvings of dt (levels + 1 runs), from ``MIN_FIT_POINTS - 1`` (2) to
    ``MAX_LEVELS``.  ``dt``: the first step (default:
    the pulse spacing, h / 8 for the CUBA models); ``pulse_spacing``: h (default 1,
    2^-18 s for the CUBA models); ``neurons``: per study (default 4, 32 for CUBA).
    """
    row = _mapped(model)
    levels = _levels(levels)
    case = draw_case(row, seed, dt, pulse_spacing, neurons, levels=levels)
    cp = counterpart_of(case)
    dts = case.dt0 / 2.0 ** np.arange(levels + 1)
    spiking = _spiking(row)
    grid_trace = continuous(case, case.pulse_times)
    exact_spikes = grid_trace.spike_times
    runs = []
    for step in dts:
        x, _ = discrete_input(case, step)
        trace = spec.simulate(row.key, x, level_params(case, step))
        runs.append((trace, discrete_spike_times(trace, step, cp) if spiking else None))
    errors = {name: np.full(levels + 1, np.nan) for name in ERROR_NAMES}
    medians = {name: np.full(levels + 1, np.nan) for name in ERROR_NAMES}
    agree = np.ones(levels + 1, dtype=bool)
    used = 0
    if spiking:
        agree[:] = [all(len(a) == len(b) for a, b in zip(disc, exact_spikes)) for _, disc in runs]
        used = _spike_errors(runs, exact_spikes, errors, medians)
    if cp.relation == "exact":
        deviation, bound = _exact_membranes(case, cp, runs, dts, errors, medians, agree, spiking)
        order = {name: None for name in ERROR_NAMES}
    else:
        deviation = bound = None
        _euler_membranes(case, runs, dts, grid_trace, errors, medians, spiking)
        order = {name: (fit_order(dts, medians[name]) if spiking or name == "membrane" else None)
                 for name in ERROR_NAMES}
    notes = []
    if spiking and not agree.all():
        notes.append(f"spike counts differ from the exact ones at levels {np.flatnonzero(~agree).tolist()}")
    return Convergence(row.key, cp.node, cp.relation, dts, errors, medians, order, deviation, bound, agree,
                       ivp_agreement(case), int(sum(len(s) for s in exact_spikes)), used, notes)


def _spike_errors(runs, exact_spikes, errors, medians):
    """(1), (2); returns the number of neurons used by (1)."""
    n = len(exact_spikes)
    counted = [all(len(disc[k]) == len(exact_spikes[k]) for _, disc in runs) for k in range(n)]
    fire_alike = [all((len(disc[k]) > 0) == (len(exact_spikes[k]) > 0) for _, disc in runs) for k in range(n)]
    for level, (_, disc) in enumerate(runs):
        gaps = [np.abs(disc[k] - exact_spikes[k]) for k in range(n) if counted[k] and len(disc[k])]
        if any(counted):
            every = np.concatenate(gaps) if gaps else np.zeros(1)
            errors["spike_times"][level], medians["spike_times"][level] = np.max(every), np.median(every)
        firsts = np.array([abs(disc[k][0] - exact_spikes[k][0]) for k in range(n) if fire_alike[k] and len(disc[k])])
        if firsts.size:
            errors["first_spike"][level], medians["first_spike"][level] = np.max(firsts), np.median(firsts)
    return int(sum(counted))


def _exact_membranes(case, cp, runs, dts, errors, medians, agree, spiking):
    """(3) for the exact relations; returns (max_deviation, bound)."""
    var = case.row.state_names[0]
    deviation = 0.0
    for level, ((trace, _), step) in enumerate(zip(runs, dts)):
        steps = trace.outputs[var].shape[0]
        exact_trace = continuous(case, np.arange(steps) * step)
        expected = exact_trace.states["v"].copy()
        if cp.recorded == "pre":
            for neuron in range(expected.shape[1]):
                for t_spike, before in zip(exact_trace.spike_times[neuron], exact_trace.before_spike["v"][neuron]):
                    expected[int(round(t_spike / step)), neuron] = before
        if cp.threshold is not None:
            # rnnbuilder.NoReset: the Threshold node of the exact membrane is the spike output.
            agree[level] = bool(np.array_equal(trace.outputs["out"], nodes.threshold(expected, cp.threshold)))
        gap = np.abs(trace.outputs[var] - expected) / np.maximum(1.0, np.abs(expected))
        errors["membrane"][level], medians["membrane"][level] = np.max(gap), np.median(gap)
        deviation = max(deviation, float(errors["membrane"][level]))
        if spiking:
            deviation = max(deviation, float(errors["spike_times"][level]))
        if not agree[level]:
            deviation = float("inf")
    return deviation, exact_bound(runs[-1][0].outputs[var].shape[0])


def _euler_membranes(case, runs, dts, grid_trace, errors, medians, spiking):
    """(3) for the Euler models, at the common grid times of the module docstring."""
    valid = np.ones(case.jumps.shape, dtype=bool)
    exact_spikes = grid_trace.spike_times
    if spiking:
        for (trace, disc), step in zip(runs, dts):
            for neuron in range(case.jumps.shape[1]):
                so_far = np.searchsorted(exact_spikes[neuron], case.pulse_times, side="right")
                interpolated = np.searchsorted(np.sort(disc[neuron]), case.pulse_times, side="right")
                stepped = np.flatnonzero(trace.outputs["out"][:, neuron] != 0) * step
                at_steps = np.searchsorted(stepped, case.pulse_times, side="right")
                valid[:, neuron] &= (interpolated == so_far) & (at_steps == so_far)
    for level, ((trace, _), step) in enumerate(zip(runs, dts)):
        per_pulse = _check_grid(case.spacing, step)
        gap = np.abs(trace.outputs["v"][np.arange(len(case.pulse_times)) * per_pulse] - grid_trace.states["v"])
        gap = gap[valid]
        if gap.size:
            errors["membrane"][level], medians["membrane"][level] = np.max(gap), np.median(gap)


# --- (5) surrogate gradients against the exact gradient --------------------------------------


@dataclass(frozen=True)
class GradientGap:
    """``surrogate_gap``: per level, the cosine similarity and relative norm error
    of the discrete surrogate gradient against the exact one; ``names`` the
    compared entries; ``exact_norm`` the exact gradient's norm."""

    model: str
    surrogate: Optional[str]
    dts: np.ndarray
    cosine: np.ndarray
    relative_error: np.ndarray
    names: Tuple[str, ...]
    exact_norm: float


def _loss(case, seed):
    rng = _rng(case.row.key, seed, "loss")
    return rng.uniform(-1.0, 1.0, case.jumps.shape)


def _exact_vector(case, cp, weights_c, spike_weight, dt):
    """The exact gradient of (5) with the initial state at t = -dt: (per neuron and
    input, input positions, sum of phi(t*) per neuron, trace)."""
    grads = continuous(case, case.pulse_times, gradients=True, shift=dt)
    trace = grads.trace
    at = {name: k for k, name in enumerate(grads.names)}
    n = case.jumps.shape[1]
    total = np.einsum("jn,jnp->np", weights_c, grads.states["v"])  # (N, inputs)
    per_spike_phi = np.zeros(n)
    for neuron in range(n):
        if len(trace.spike_times[neuron]):
            # phi'(t) = -1 / t_end
            total[neuron] += spike_weight[neuron] * (-1.0 / case.t_end) * grads.spike_times[neuron].sum(axis=0)
            per_spike_phi[neuron] = np.sum(1.0 - (trace.spike_times[neuron] - dt) / case.t_end)
    return total, at, per_spike_phi, trace


def _compared(case, cp, total, at, per_spike_phi, discrete, dt):
    """Pairs (name, discrete value, exact value) of the entries (5) compares."""
    row = case.row
    n = case.jumps.shape[1]
    scale = np.broadcast_to(np.asarray(cp.input_scale, dtype=np.float64), (n,))
    per_pulse = _check_grid(case.spacing, dt)
    pairs = []
    for j in range(len(case.pulse_times)):
        pairs.append((f"x[{j}]", discrete["x"][j * per_pulse], total[:, at[f"weight[{j}]"]] * scale))
    var = row.state_names[0]
    pairs.append(("state.v", discrete[f"state.{var}"], total[:, at["state.v"]]))
    if "state.i" in discrete:
        pairs.append(("state.i", discrete["state.i"], total[:, at["state.i"]]))

    def shared(name, exact_value):
        value = np.asarray(discrete[name], dtype=np.float64)
        exact_value = exact_value if value.size == n else np.array([exact_value.sum()])
        pairs.append((name, value.reshape(-1), exact_value))

    if row.key in ("tether.LIF", "tether.PLIF"):
        tau = np.broadcast_to(np.asarray(case.taus["tau"], dtype=np.float64), (n,))
        # decay = exp(-dt/tau): d/d(log tau) = (dt/tau) decay d/d(decay)
        per_log_tau = (dt / tau) * np.exp(-dt / tau)
        # At fixed x the pulse weights q = tau x move with tau: d/d(log tau) gains sum_j q_j d/dq_j.
        q = pulse_weights(case, cp)
        by_weight = total[:, [at[f"weight[{j}]"] for j in range(len(case.pulse_times))]]
        exact_log_tau = total[:, at["tau"]] * tau + np.sum(q.T * by_weight, axis=1)
        grad_decay = np.asarray(discrete["decay"], dtype=np.float64).reshape(-1)
        if row.key == "tether.PLIF":
            pairs.append(("log tau", grad_decay * per_log_tau, exact_log_tau))
        else:
            pairs.append(("log tau", grad_decay * per_log_tau[0], np.array([exact_log_tau.sum()])))
        shared("threshold", total[:, at["v_threshold"]])
    elif row.key.startswith("qualia."):
        extra = per_spike_phi if row.out is registry.Output.SCALED_SPIKES else 0.0
        shared("threshold", total[:, at["v_threshold"]] + extra)
    elif row.family == "cuba":
        physical = case.physical
        pairs.append(("log tau_mem", np.atleast_1d(discrete["tau_mem"] * physical["tau_mem"]),
                      np.array([np.sum(total[:, at["tau_mem"]]) * physical["tau_mem"]])))
        pairs.append(("log tau_syn", np.atleast_1d(discrete["tau_syn"] * physical["tau_syn"]),
                      np.array([np.sum(total[:, at["tau_syn"]] + total[:, at["w_in"]]) * physical["tau_syn"]])))
        for mine, theirs in (("leak", "v_leak"), ("reset", "v_reset"), ("threshold", "v_threshold")):
            if mine in discrete:
                pairs.append((mine, np.atleast_1d(discrete[mine]), np.array([np.sum(total[:, at[theirs]])])))
    return pairs


def surrogate_gap(model, *, levels=6, seed=0, dt=None, pulse_spacing=None, neurons=None, drive=1.0,
                  spike_term=True) -> GradientGap:
    """(5) for a mapped registry model: surrogate (spec ``vjp``) against exact gradients.
    The arguments are ``converge``'s; ``drive`` scales the drawn input;
    ``spike_term=False`` leaves the spike term out of the loss (membranes only)."""
    row = _mapped(model)
    levels = _levels(levels)
    # spike_term="no" would be truthy.
    arguments.check_flags(spike_term=spike_term)
    case = draw_case(row, seed, dt, pulse_spacing, neurons, drive, levels)
    cp = counterpart_of(case)
    spiking = row.out.spiking and spike_term
    n = case.jumps.shape[1]
    weights_c = _loss(case, seed)
    grid_trace = continuous(case, case.pulse_times)
    for neuron in range(n):
        # A sample at the very instant of a spike sees a reset one side and not the other.
        weights_c[np.isin(case.pulse_times, grid_trace.spike_times[neuron]), neuron] = 0.0
    counted_spikes = spiking and row.key != "rnnbuilder.NoReset"
    spike_weight = np.broadcast_to(np.asarray(case.physical.get("threshold", 1.0), dtype=np.float64), (n,)) \
        if row.out is registry.Output.SCALED_SPIKES else np.ones(n)
    dts = case.dt0 / 2.0 ** np.arange(levels + 1)
    cosine, relative, names, norm = [], [], (), 0.0
    var = row.state_names[0]
    for step in dts:
        x, per_pulse = discrete_input(case, step)
        cot = {var: np.zeros_like(x)}
        cot[var][np.arange(len(case.pulse_times)) * per_pulse] = weights_c
        if spiking:
            phi = 1.0 - np.arange(x.shape[0]) * step / case.t_end
            cot["out"] = np.broadcast_to(phi[:, None], x.shape).copy()
        discrete = spec.vjp(row.key, x, level_params(case, step), None, cot)
        total, at, per_spike_phi, _ = _exact_vector(case, cp, weights_c,
                                                    spike_weight if counted_spikes else np.zeros(n), step)
        if not counted_spikes:
            per_spike_phi = np.zeros(n)
        pairs = _compared(case, cp, total, at, per_spike_phi, discrete, step)
        mine = np.concatenate([np.ravel(p[1]) for p in pairs])
        theirs = np.concatenate([np.ravel(p[2]) for p in pairs])
        names, norm = tuple(p[0] for p in pairs), float(np.linalg.norm(theirs))
        cosine.append(float(mine @ theirs / (np.linalg.norm(mine) * norm)) if norm and np.linalg.norm(mine)
                      else float("nan"))
        relative.append(float(np.linalg.norm(mine - theirs) / norm) if norm else float("nan"))
    return GradientGap(row.key, row.default_surrogate, dts, np.array(cosine), np.array(relative), names, norm)
