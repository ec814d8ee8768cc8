"""Continuous-time ground truth (SPEC.md section 9): exact event-driven neurons.

NumPy and SciPy only (the reference layer): importing this package never imports torch.

``simulate(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None)``
    The exact solution of a section-9 node ("LI", "I", "LIF", "IF", "CubaLI",
    "CubaLIF", "CubaIF") for N neurons driven by Dirac pulses.
    ``params``: NIR parameter names (``tau``, ``tau_syn``, ``tau_mem``, ``r``,
    ``v_leak``, ``v_threshold``, ``v_reset``, ``w_in``), plus ``tau_ref`` (>= 0;
    > 0 only with the hard reset, which it holds v at) and ``reset`` ("hard",
    default, or "subtract") for the spiking nodes; each a
    scalar or an array of shape (1,) or (N,).  Required: the node's time
    constants and ``v_threshold``; defaults r = 1, v_leak = 0, v_reset = 0,
    w_in = 1, tau_ref = 0.  ``pulse_times``: shape (P,), finite, >= 0,
    non-decreasing (unsorted input is refused); a pulse after ``t_end`` does not
    act (the run ends there); ``pulse_weights``: shape (P, N).  A subtractive
    reset fires once per threshold that one instant's pulses lift v past it, at
    most 10^6 times (more is refused by name).
    ``samples``: times in [0, t_end] where the state is reported; ``state``:
    the initial state {"v": ..., "i": ...} (defaults in ``nodes``).
    Returns a ``ContinuousTrace`` (see ``nodes.ContinuousTrace``):
    ``.spike_times`` (a tuple of N sorted float64 arrays), ``.samples`` (S,),
    ``.states["v"]`` / ``.states["i"]`` of shape (S, N), ``.before_spike[var]``
    and ``.after_spike[var]`` (a tuple of N arrays, one value per spike),
    ``.initial_state``, ``.node``, ``.params`` (each an (N,) array), ``.t_end``.

``gradients(...)``: the same arguments; exact derivatives of the spike times
    and sampled states with respect to every parameter, the initial state and
    each pulse weight (``exact.Gradients``).

``counterpart(model, params=None, dt=None)``: the section-9 correspondence of
    a registry model: node name, NIR parameters, initial state and how the
    discrete input ``x[k]`` maps to a pulse weight (``correspondence.Counterpart``).

``converge(model, *, levels=6, seed=0)``: the convergence study of a mapped
    registry model; ``.order`` maps "spike_times", "first_spike", "membrane" to
    the fitted order (None where the relation is exact), ``.max_deviation`` the
    largest deviation of an exact relation.

``threshold(v, v_threshold)``: the stateless NIR Threshold node, ``[v > v_threshold]``
    (finite values; ``v_threshold`` broadcasts to the shape of ``v``).

Modules: ``nodes`` (the ODEs, argument rules, ``ContinuousTrace``), ``exact``
(closed forms, spike-time roots, forward sensitivities), ``ivp`` (the independent
solve_ivp solution, same contract as ``simulate``), ``fdcheck`` (finite
differences of ``exact.gradients``), ``correspondence`` (registry model ->
node), ``convergence`` (``converge``, ``surrogate_gap``: surrogate against exact
gradients), ``verify`` (the ``snnref verify`` rows), ``cli`` (``snnref converge``).
"""

from .nodes import NODES, ContinuousTrace, threshold
from .exact import Gradients, gradients, simulate
from .correspondence import MAPPED, Counterpart, counterpart
from .convergence import Convergence, GradientGap, converge, surrogate_gap

__all__ = [
    "MAPPED",
    "NODES",
    "ContinuousTrace",
    "Convergence",
    "Counterpart",
    "GradientGap",
    "Gradients",
    "converge",
    "counterpart",
    "gradients",
    "simulate",
    "surrogate_gap",
    "threshold",
]
