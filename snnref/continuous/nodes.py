"""The continuous-time nodes of SPEC.md section 9, their arguments and their result type.

Nodes (NIR 1.0 names and parameters; ``R`` is ``r``, ``S(t)`` the input pulse train):

(1) LI       tau v' = (v_leak - v) + R I(t)
(2) I        v' = R I(t)
(3) LIF      LI with a threshold and a reset (4)
(4)          a spike at the instant t* where v reaches v_threshold from below, then
             v(t*+) = v_reset                 reset "hard" (NIR's)
             v(t*+) = v(t*-) - v_threshold    reset "subtract" (snnref extension)
(5) IF       I with the threshold and reset of (4)
(6) CubaLI   tau_syn I' = -I + w_in S(t),  tau_mem v' = (v_leak - v) + R I
(7) CubaLIF  CubaLI with (4)
(8) CubaIF   tau_syn I' = -I + w_in S(t),  tau_mem v' = R I, with (4)   (extension);
             a current I still raises v by R I tau_syn/tau_mem, so that ratio must be a
             normal float64 (2.2e-308 to 1.8e308)
(9) Threshold  z = [v > v_threshold]: stateless, applied to a simulated membrane
             by ``threshold`` (a Dirac input has no value to threshold).

Refractory time (extension, every spiking node with the hard reset): for ``tau_ref``
after each spike ``v`` is held at ``v_reset`` and pulses do not move it (the synaptic
current of a CUBA node keeps integrating).  The hold is the half-open interval
[t*, t* + tau_ref): a pulse at exactly t* + tau_ref acts.  SPEC.md section 9 holds v at
v_reset, which a subtractive reset does not reach, so ``tau_ref > 0`` with reset
"subtract" is refused (no registry model combines them).

Input (10): ``S(t) = sum_k q_k delta(t - t_k)``.  A pulse raises ``I`` by
``w_in q_k / tau_syn`` (CUBA nodes), ``v`` by ``R q_k / tau`` (LI, LIF) or by
``R q_k`` (I, IF).  Pulses at the same instant add up.  A current that leaves the
float64 range, or the rise R I it drives (CubaIF: R I tau_syn/tau_mem), is refused, naming
``pulse_weights`` (or ``state['i']``).

Time constants (tau, tau_syn, tau_mem): normal float64, at least 2.2e-308 s (a subnormal
one has no finite reciprocal).

Initial state: the state at t = 0-, before any pulse at t = 0.  Default
``v = v_leak`` for the leaky nodes, ``v = v_reset`` for IF and CubaIF, ``v = 0``
for I, and ``I = 0``.

Sample times (11): the state at a sample time t is the state after every event
at t (right-continuous): after a pulse at t and after a reset at t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Tuple

import numpy as np

from ..trace import ArraysByName


@dataclass(frozen=True)
class Node:
    name: str
    params: Tuple[str, ...]  # numeric NIR parameters, in this order
    required: Tuple[str, ...]  # parameters without a default
    current: bool  # has a synaptic current I (CUBA)
    leaky: bool  # the membrane relaxes to v_leak
    spiking: bool


NODES: Mapping[str, Node] = {
    n.name: n
    for n in (
        Node("LI", ("tau", "r", "v_leak"), ("tau",), False, True, False),
        Node("I", ("r",), (), False, False, False),
        Node("LIF", ("tau", "r", "v_leak", "v_threshold", "v_reset"), ("tau", "v_threshold"), False, True, True),
        Node("IF", ("r", "v_threshold", "v_reset"), ("v_threshold",), False, False, True),
        Node("CubaLI", ("tau_syn", "tau_mem", "r", "v_leak", "w_in"), ("tau_syn", "tau_mem"), True, True, False),
        Node("CubaLIF", ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
             ("tau_syn", "tau_mem", "v_threshold"), True, True, True),
        Node("CubaIF", ("tau_syn", "tau_mem", "r", "v_threshold", "v_reset", "w_in"),
             ("tau_syn", "tau_mem", "v_threshold"), True, False, True),
    )
}

DEFAULTS = {"r": 1.0, "v_leak": 0.0, "v_reset": 0.0, "w_in": 1.0, "tau_ref": 0.0}
TIME_CONSTANTS = ("tau", "tau_syn", "tau_mem")
SMALLEST_TIME_CONSTANT = float(np.finfo(np.float64).tiny)
RESETS = ("hard", "subtract")


@dataclass(frozen=True)
class ContinuousTrace:
    """The exact solution of one node for N neurons (``snnref.continuous.simulate``).

    ``node``: the node name.  ``params``: every numeric parameter as a float64
    array of shape (N,) (defaults filled in, ``tau_ref`` included for spiking
    nodes), plus ``params["reset"]``, "hard" or "subtract".  ``t_end``: the end of
    the simulated interval [0, t_end].
    ``spike_times``: a tuple of N sorted float64 arrays, the spike times of each
    neuron in [0, t_end] (a time repeats when one pulse makes a subtractive-reset
    neuron fire more than once).
    ``samples``: the sample times, shape (S,), sorted as given.
    ``states[var]``: the state at the sample times, shape (S, N), for ``var`` in
    ``variables`` ("v", and "i" for the CUBA nodes); right-continuous (after
    any pulse and reset at that instant).
    ``before_spike[var]`` / ``after_spike[var]``: a tuple of N arrays, one value
    per spike of that neuron: the state at the spike instant just before and just
    after its reset (``before_spike["v"]`` is ``v_threshold`` for a crossing
    between pulses and the post-pulse membrane for a crossing made by a pulse).
    ``initial_state[var]``: the state at t = 0- used, shape (N,).
    """

    node: str
    params: Dict[str, object]
    t_end: float
    spike_times: Tuple[np.ndarray, ...]
    samples: np.ndarray
    states: Dict[str, np.ndarray]
    before_spike: Dict[str, Tuple[np.ndarray, ...]]
    after_spike: Dict[str, Tuple[np.ndarray, ...]]
    initial_state: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("params", "states", "before_spike", "after_spike", "initial_state"):
            # Frozen: the dataclass's own __init__ sets fields the same way.
            object.__setattr__(self, name, ArraysByName(getattr(self, name), f"{name} of this {self.node} trace"))

    @property
    def variables(self) -> Tuple[str, ...]:
        return tuple(self.states)


def node(name) -> Node:
    """The row of node ``name``; an unknown name lists the valid ones."""
    if isinstance(name, Node):
        return name
    if name == "Threshold":
        raise ValueError("node: 'Threshold' is stateless (z = [v > v_threshold]); simulate the node that "
                         "drives it and apply snnref.continuous.threshold to its membrane")
    try:
        return NODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"node: unknown name {name!r}; expected one of: {', '.join(NODES)}") from None


def threshold(v, v_threshold):
    """(9): the NIR Threshold node, ``[v > v_threshold]`` as float64, of the shape of ``v``.

    ``v_threshold`` broadcasts to that shape (a scalar, or one level per neuron on
    the last axis); both must be finite (a NaN membrane or level decides nothing).
    """
    membrane = _real("v", v)
    level = _real("v_threshold", v_threshold)
    try:
        level = np.broadcast_to(level, membrane.shape)
    except ValueError:
        raise ValueError(f"v_threshold: expected a shape that broadcasts to the shape of v, {membrane.shape}, "
                         f"got {level.shape}") from None
    return (membrane > level).astype(np.float64)


def _real(name, value):
    """``value`` as float64: numbers only (``np.asarray`` would read the string '1' or True as 1.0), finite."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RuntimeError):  # a ragged nested sequence, a tensor on 'meta' or a GPU
        array = np.asarray(None)
    if array.dtype.kind not in "iuf":
        shown = repr(value) if len(repr(value)) <= 60 else type(value).__name__
        raise TypeError(f"{name}: expected a real number or an array of real numbers, got {shown}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return array


def check_pulses(pulse_times, pulse_weights):
    """(P,) times and (P, N) weights as float64; non-finite, negative or unsorted times are refused."""
    times = _real("pulse_times", pulse_times)
    if times.ndim != 1:
        raise ValueError(f"pulse_times: expected shape (P,), got {times.shape}")
    if np.any(times < 0):
        raise ValueError(f"pulse_times: expected times >= 0, got {times[times < 0][0]!r}")
    if np.any(np.diff(times) < 0):
        raise ValueError("pulse_times: expected non-decreasing times (refused, not sorted: reorder the "
                         "times and the rows of pulse_weights together, e.g. with numpy.argsort(kind='stable'))")
    weights = _real("pulse_weights", pulse_weights)
    if weights.ndim != 2 or weights.shape[0] != times.shape[0]:
        raise ValueError(f"pulse_weights: expected shape (P, N) with P = {times.shape[0]} pulses, "
                         f"got {weights.shape}")
    if weights.shape[1] == 0:
        raise ValueError("pulse_weights: expected at least one neuron (N >= 1), got shape "
                         f"{weights.shape}")
    return times, weights


def check_params(row: Node, params, n: int) -> Dict[str, object]:
    """Every parameter of ``row`` as an (N,) float64 array, plus ``reset`` and ``tau_ref``."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of NIR parameter name -> value, got {type(params).__name__}")
    accepted = row.params + (("tau_ref", "reset") if row.spiking else ())
    for name in params:
        if name not in accepted:
            raise ValueError(f"params: node {row.name} has no parameter {name!r}; expected among: "
                             f"{', '.join(accepted)}")
    checked: Dict[str, object] = {}
    for name in row.params + (("tau_ref",) if row.spiking else ()):
        label = f"params[{name!r}]"
        if name in params:
            value = _real(label, params[name])
        elif name in row.required:
            raise ValueError(f"{label}: required by node {row.name} (a scalar or an array of shape ({n},))")
        else:
            value = np.asarray(DEFAULTS[name])
        if value.shape not in ((), (1,), (n,)):
            shapes = "a scalar or (1,)" if n == 1 else f"a scalar, (1,) or ({n},) (one per neuron)"
            raise ValueError(f"{label}: expected {shapes}, got {value.shape}")
        value = np.array(np.broadcast_to(value, (n,)), dtype=np.float64)
        if name in TIME_CONSTANTS and np.any(value <= 0):
            raise ValueError(f"{label}: expected a positive time constant, got {value[value <= 0][0]!r}")
        if name in TIME_CONSTANTS and np.any(value < SMALLEST_TIME_CONSTANT):
            # exact (4): 1/tau must be finite (a subnormal tau's reciprocal overflows to inf, then 0 x inf = NaN).
            raise ValueError(f"{label}: expected a time constant of at least {SMALLEST_TIME_CONSTANT!r} s (the "
                             f"smallest normal float64), got {float(value[value < SMALLEST_TIME_CONSTANT][0])!r}")
        if name == "tau_ref" and np.any(value < 0):
            raise ValueError(f"{label}: expected a non-negative refractory time, got {value[value < 0][0]!r}")
        checked[name] = value
    if row.current and not row.leaky:
        normal = np.finfo(np.float64)
        with np.errstate(over="ignore", under="ignore"):
            ratio = checked["tau_syn"] / checked["tau_mem"]
        outside = ~((ratio >= normal.tiny) & (ratio <= normal.max))
        if np.any(outside):
            # (8): v moves by R I tau_syn/tau_mem; an overflowed ratio made NaN, a subnormal one lost digits.
            k = int(np.argmax(outside))
            tau_syn, tau_mem = float(checked["tau_syn"][k]), float(checked["tau_mem"][k])
            raise ValueError(f"params['tau_syn']: node {row.name} needs tau_syn/tau_mem between "
                             f"{float(normal.tiny)!r} and {float(normal.max)!r} (a normal float64), "
                             f"got tau_syn = {tau_syn!r} and tau_mem = {tau_mem!r}")
    if row.spiking:
        reset = params.get("reset", "hard")
        if reset not in RESETS:
            raise ValueError(f"params['reset']: expected one of {', '.join(map(repr, RESETS))}, got {reset!r}")
        checked["reset"] = reset
        if reset == "hard" and np.any(checked["v_reset"] >= checked["v_threshold"]):
            raise ValueError("params['v_reset']: expected v_reset < v_threshold (a hard reset at or above "
                             "threshold would fire without end)")
        if reset == "subtract" and np.any(checked["v_threshold"] <= 0):
            raise ValueError("params['v_threshold']: a subtractive reset needs v_threshold > 0 "
                             "(otherwise one crossing fires without end)")
        if reset == "subtract" and np.any(checked["tau_ref"] > 0):
            raise ValueError("params['tau_ref']: a refractory time needs reset 'hard' (SPEC.md section 9 holds v "
                             "at v_reset for tau_ref after each spike, which a subtractive reset does not reach); "
                             "with reset 'subtract' expected tau_ref 0")
    return checked


def variables(row: Node) -> Tuple[str, ...]:
    return ("v", "i") if row.current else ("v",)


def default_state(row: Node, params) -> Dict[str, np.ndarray]:
    if row.leaky:
        v = params["v_leak"]
    elif row.spiking:
        v = params["v_reset"]
    else:
        v = np.zeros_like(params["r"])
    state = {"v": v.copy()}
    if row.current:
        state["i"] = np.zeros_like(v)
    return state


def check_state(row: Node, params, state, n: int) -> Dict[str, np.ndarray]:
    full = default_state(row, params)
    if state is None:
        return full
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict of state variable -> value, got {type(state).__name__}")
    for name, value in state.items():
        if name not in full:
            raise ValueError(f"state: node {row.name} has no state variable {name!r}; expected among: "
                             f"{', '.join(full)}")
        array = _real(f"state[{name!r}]", value)
        if array.shape not in ((), (1,), (n,)):
            raise ValueError(f"state[{name!r}]: expected a scalar, (1,) or ({n},), got {array.shape}")
        full[name] = np.array(np.broadcast_to(array, (n,)), dtype=np.float64)
    return full


def check_times(t_end, samples) -> Tuple[float, np.ndarray]:
    end = _real("t_end", t_end)
    if end.shape != () or end < 0:
        raise ValueError(f"t_end: expected one finite time >= 0, got {t_end!r}")
    if samples is None:
        return float(end), np.zeros(0)
    times = _real("samples", samples)
    if times.ndim != 1:
        raise ValueError(f"samples: expected shape (S,), got {times.shape}")
    outside = times[(times < 0) | (times > end)]
    if outside.size:
        raise ValueError(f"samples: expected times inside the simulated interval [0, t_end = {float(end)!r}], "
                         f"got {outside[0]!r}")
    return float(end), times
