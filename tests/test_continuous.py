"""snnref.continuous: exact event-driven neurons (SPEC.md section 9).

Expected values are written here from the textbook closed forms (or decimal
arithmetic at 40 digits), never taken from the code under test; the
independent solver (solve_ivp) and finite differences are the other witnesses.
"""

import math
import subprocess
import sys
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from snnref import registry
from snnref.continuous import (MAPPED, counterpart, exact, fdcheck, gradients, ivp, simulate, threshold)
from snnref.continuous.convergence import trace_agreement

IVP_BOUND = 1e-9
EPS = np.finfo(np.float64).eps


def test_reference_layer_never_imports_torch():
    code = ("import sys\n"
            "import snnref.continuous, snnref.continuous.ivp, snnref.continuous.fdcheck\n"
            "import snnref.continuous.convergence, snnref.continuous.verify, snnref.continuous.cli\n"
            "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- closed forms, written independently --------------------------------------------------


def test_lif_pulse_decays_by_the_textbook_exponential():
    tau, r, q = 2.0, 1.5, 0.4
    trace = simulate("LIF", {"tau": tau, "r": r, "v_threshold": 1.0}, [0.5], [[q]], t_end=3.0,
                     samples=[0.0, 0.5, 1.7, 3.0])
    jump = r * q / tau
    expected = [0.0, jump, jump * math.exp(-1.2 / tau), jump * math.exp(-2.5 / tau)]
    np.testing.assert_allclose(trace.states["v"][:, 0], expected, rtol=4 * EPS, atol=0)
    assert trace.spike_times[0].size == 0


def _cuba_v(t, i0, tau_syn, tau_mem, r=1.0):
    """Textbook CUBA membrane from v = 0, I = i0: R i0 tau_syn (e^-t/ts - e^-t/tm) / (ts - tm)
    (the limit R i0 (t/tm) e^-t/tm when ts = tm)."""
    if tau_syn == tau_mem:
        return r * i0 * t / tau_mem * math.exp(-t / tau_mem)
    return r * i0 * tau_syn * (math.exp(-t / tau_syn) - math.exp(-t / tau_mem)) / (tau_syn - tau_mem)


def _peak_time(tau_syn, tau_mem):
    """Where the kernel of one pulse peaks: ln(ts/tm) ts tm / (ts - tm), or tm when equal."""
    if tau_syn == tau_mem:
        return tau_mem
    return math.log(tau_syn / tau_mem) * tau_syn * tau_mem / (tau_syn - tau_mem)


def test_cuba_pulse_matches_the_textbook_two_exponential_kernel():
    tau_syn, tau_mem, w_in, q = 3e-6, 7e-6, 3e-6, 0.8
    samples = np.array([1e-6, 4e-6, 9e-6, 2e-5])
    trace = simulate("CubaLI", {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": w_in}, [0.0], [[q]],
                     t_end=2e-5, samples=samples)
    i0 = w_in * q / tau_syn
    np.testing.assert_allclose(trace.states["v"][:, 0], [_cuba_v(t, i0, tau_syn, tau_mem) for t in samples],
                               rtol=1e-13)
    np.testing.assert_allclose(trace.states["i"][:, 0], i0 * np.exp(-samples / tau_syn), rtol=4 * EPS)


def _decimal_kernel(t, tau_syn, tau_mem):
    """tau_syn (e^-t/ts - e^-t/tm) / (ts - tm) at 40 digits (the limit (t/tm) e^-t/tm when equal)."""
    getcontext().prec = 40
    t, ts, tm = Decimal(t), Decimal(tau_syn), Decimal(tau_mem)
    if ts == tm:
        return float(t / tm * (-t / tm).exp())
    return float(ts * ((-t / ts).exp() - (-t / tm).exp()) / (ts - tm))


@pytest.mark.parametrize("relative", [0.0, 1e-12, -1e-9, 1e-7, -1e-6, 1e-6, 1e-3])
def test_removable_singularity_tau_syn_near_tau_mem(relative):
    tau_mem = 1e-5
    tau_syn = tau_mem * (1 + relative)
    samples = np.array([1e-7, 3e-6, 1e-5, 4e-5])
    trace = simulate("CubaLI", {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn}, [0.0], [[1.0]],
                     t_end=4e-5, samples=samples)
    expected = [_decimal_kernel(t, tau_syn, tau_mem) for t in samples]  # R I0 = w_in q / tau_syn = 1
    np.testing.assert_allclose(trace.states["v"][:, 0], expected, rtol=1e-6 * 1e-6)


def test_cuba_spike_time_is_a_root_to_a_few_ulp():
    tau_syn, tau_mem, i0, theta = 5e-6, 1e-5, 5.0, 0.9  # peak 0.25 i0 = 1.25
    trace = simulate("CubaLIF", {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn, "v_threshold": theta},
                     [0.0], [[i0]], t_end=5e-5)
    (spike,) = trace.spike_times[0][:1]
    ulp = np.spacing(spike)
    # The textbook membrane crosses theta within a few ulp of the reported time.
    assert _cuba_v(spike - 8 * ulp, i0, tau_syn, tau_mem) < theta < _cuba_v(spike + 8 * ulp, i0, tau_syn, tau_mem)
    assert trace.before_spike["v"][0][0] == theta and trace.after_spike["v"][0][0] == 0.0


def test_jump_crossings_fire_at_the_pulse_and_subtractive_reset_can_fire_twice():
    trace = simulate("IF", {"v_threshold": 1.0, "reset": "subtract"}, [1.0, 2.0], [[0.6], [1.9]], t_end=3.0,
                     samples=[1.0, 2.0])
    np.testing.assert_array_equal(trace.spike_times[0], [2.0, 2.0])
    np.testing.assert_allclose(trace.before_spike["v"][0], [2.5, 1.5])
    np.testing.assert_allclose(trace.after_spike["v"][0], [1.5, 0.5])
    np.testing.assert_allclose(trace.states["v"][:, 0], [0.6, 0.5])  # right-continuous: after the resets


def test_refractory_hold_drops_pulses_and_a_pulse_at_the_release_acts():
    params = {"v_threshold": 1.0, "v_reset": -0.5, "tau_ref": 1.0}
    held = simulate("IF", params, [0.0, 0.5, 1.0], [[1.2], [0.3], [0.25]], t_end=2.0, samples=[0.5, 1.0, 2.0],
                    state={"v": 0.0})
    np.testing.assert_array_equal(held.spike_times[0], [0.0])
    # 0.5 lands in the hold [0, 1) and is dropped; 1.0 lands at the release and acts.
    np.testing.assert_allclose(held.states["v"][:, 0], [-0.5, -0.25, -0.25])


def test_leak_above_threshold_fires_periodically_at_the_log_time():
    tau, v_leak, theta = 2.0, 1.5, 1.0
    trace = simulate("LIF", {"tau": tau, "v_leak": v_leak, "v_threshold": theta}, [], np.zeros((0, 1)),
                     t_end=10.0, state={"v": 0.0})
    period = tau * math.log(v_leak / (v_leak - theta))
    np.testing.assert_allclose(trace.spike_times[0], period * np.arange(1, 1 + int(10.0 // period)), rtol=1e-14)


def test_threshold_node_is_strict():
    np.testing.assert_array_equal(threshold([0.5, 1.0, 1.5], 1.0), [0.0, 0.0, 1.0])


# --- solve_ivp agreement, hypothesis cases including the hard ones ------------------------


def _agree(node, params, times, weights, t_end, samples, state=None):
    mine = simulate(node, params, times, weights, t_end=t_end, samples=samples, state=state)
    other = ivp.simulate(node, params, times, weights, t_end=t_end, samples=samples, state=state)
    gap = trace_agreement(mine, other)
    assert gap <= IVP_BOUND, f"closed form vs solve_ivp: {gap:.3e} (spikes {mine.spike_times} / {other.spike_times})"
    return mine


@st.composite
def cuba_cases(draw):
    node = draw(st.sampled_from(["CubaLIF", "CubaIF", "CubaLI"]))
    tau_mem = draw(st.floats(0.5, 2.0)) * 1e-5
    near = draw(st.booleans())
    # Half the cases put tau_syn within 1e-6 (relative) of tau_mem: the removable singularity.
    tau_syn = tau_mem * (1 + draw(st.floats(-1e-6, 1e-6))) if near else draw(st.floats(0.3, 3.0)) * 1e-5
    params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn, "r": draw(st.floats(0.5, 1.5))}
    if node != "CubaIF":
        params["v_leak"] = draw(st.floats(-0.2, 0.2))
    if node != "CubaLI":
        params.update(v_threshold=draw(st.floats(0.6, 1.4)), v_reset=draw(st.floats(-0.3, 0.0)),
                      tau_ref=draw(st.sampled_from([0.0, 2e-6])), reset=draw(st.sampled_from(["hard", "subtract"])))
    count = draw(st.integers(1, 8))
    times = np.sort(np.array(draw(st.lists(st.floats(0, 4e-5), min_size=count, max_size=count))))
    weights = np.array(draw(st.lists(st.lists(st.floats(-0.5, 2.5), min_size=2, max_size=2),
                                     min_size=count, max_size=count)))
    return node, params, times, weights


@given(cuba_cases())
def test_closed_form_agrees_with_solve_ivp_on_cuba_nodes(case):
    node, params, times, weights = case
    t_end = 6e-5
    _agree(node, params, times, weights, t_end, np.linspace(0, t_end, 13),
           state={"v": 0.0} if node != "CubaLI" else None)


# v_leak rounded: a subnormal-sized leak makes solve_ivp's step-size heuristic divide 0 by 0.
@given(st.sampled_from(["LIF", "IF", "LI", "I"]), st.floats(0.5, 4.0), st.floats(-0.2, 1.6).map(lambda v: round(v, 6)),
       st.sampled_from([0.0, 0.3]), st.integers(0, 2 ** 31))
def test_closed_form_agrees_with_solve_ivp_on_dirac_nodes(node, tau, v_leak, tau_ref, seed):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 8, 10))
    weights = rng.uniform(-0.5, 0.9, (10, 2))
    params = {"r": 1.2}
    if node in ("LIF", "LI"):
        params.update(tau=tau, v_leak=v_leak)
    if node in ("LIF", "IF"):
        params.update(v_threshold=1.0, v_reset=-0.2, tau_ref=tau_ref)
    _agree(node, params, times, weights, 10.0, np.linspace(0, 10, 21), state={"v": 0.0})


@given(st.floats(1e-4, 1e-2), st.floats(0.4, 2.5))
def test_grazing_crossing_agrees_with_solve_ivp(below_peak, ratio):
    tau_mem = 1e-5
    tau_syn = ratio * tau_mem
    t_max = _peak_time(tau_syn, tau_mem)
    peak = _cuba_v(t_max, 1.0, tau_syn, tau_mem)
    params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn, "v_threshold": peak * (1 - below_peak)}
    trace = _agree("CubaLIF", params, [0.0], [[1.0]], 8e-5, [t_max, 8e-5])
    assert trace.spike_times[0].size == 1 and trace.spike_times[0][0] < t_max


def test_grazes_are_resolved_down_to_rounding():
    tau_syn, tau_mem = 2e-5, 1e-5
    t_max = _peak_time(tau_syn, tau_mem)
    peak = _cuba_v(t_max, 1.0, tau_syn, tau_mem)
    base = {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn}
    for below, fires in ((1e-10, True), (1e-6, True), (-1e-10, False), (-1e-6, False)):
        trace = simulate("CubaLIF", dict(base, v_threshold=peak * (1 - below)), [0.0], [[1.0]], t_end=8e-5)
        assert (trace.spike_times[0].size == 1) == fires, below


@given(st.integers(0, 2 ** 31), st.sampled_from(["CubaLIF", "CubaIF"]))
def test_pulse_exactly_at_a_spike_time_agrees_with_solve_ivp(seed, node):
    rng = np.random.default_rng(seed)
    params = {"tau_syn": 8e-6, "tau_mem": 1.1e-5, "w_in": 8e-6, "v_threshold": 1.0, "v_reset": -0.1}
    times, weights = np.array([0.0, 1e-5]), rng.uniform(1.5, 3.0, (2, 1))
    first = simulate(node, params, times, weights, t_end=6e-5, state={"v": 0.0})
    assume(first.spike_times[0].size)
    spike = first.spike_times[0][0]
    order = np.argsort(np.append(times, spike), kind="stable")
    moved = np.append(times, spike)[order]
    # A positive pulse: the crossing stays a crossing whichever side of the pulse a solver
    # lands (a negative one could turn it into an exact tie between firing and not).
    extra = np.vstack([weights, rng.uniform(0.1, 1.0, (1, 1))])[order]
    trace = _agree(node, params, moved, extra, 6e-5, np.linspace(0, 6e-5, 25), state={"v": 0.0})
    assert abs(trace.spike_times[0][0] - spike) <= 4 * np.spacing(spike)


@given(st.integers(0, 2 ** 31))
def test_refractory_period_ending_exactly_at_a_pulse_agrees_with_solve_ivp(seed):
    rng = np.random.default_rng(seed)
    params = {"tau_syn": 6e-6, "tau_mem": 9e-6, "w_in": 6e-6, "v_threshold": 1.0, "tau_ref": 3e-6}
    times, weights = np.array([0.0]), rng.uniform(2.0, 4.0, (1, 1))
    first = simulate("CubaLIF", params, times, weights, t_end=6e-5)
    assume(first.spike_times[0].size)
    release = first.spike_times[0][0] + params["tau_ref"]
    _agree("CubaLIF", params, [0.0, release], np.vstack([weights, rng.uniform(0.5, 3.0, (1, 1))]), 6e-5,
           np.linspace(0, 6e-5, 25))


# --- exact gradients against finite differences -------------------------------------------


GRADIENT_CASES = [
    ("CubaLIF", {"tau_syn": 1e-5, "tau_mem": 1.2e-5, "w_in": 1e-5, "v_leak": 0.1, "v_reset": -0.1, "r": 1.1,
                 "v_threshold": 1.0}, 1e-5),
    ("CubaLIF", {"tau_syn": 1e-5, "tau_mem": 1.0000001e-5, "w_in": 1e-5, "v_leak": 0.1, "v_threshold": 1.0,
                 "tau_ref": 2e-6, "reset": "subtract"}, 1e-5),
    ("CubaIF", {"tau_syn": 1e-5, "tau_mem": 1.2e-5, "w_in": 1e-5, "v_reset": -0.1, "v_threshold": 1.0,
                "tau_ref": 2e-6}, 1e-5),
    ("CubaLI", {"tau_syn": 7e-6, "tau_mem": 1.2e-5, "w_in": 1e-5, "v_leak": 0.1}, 1e-5),
    ("LIF", {"tau": 1.0, "v_leak": 1.3, "v_reset": -0.1, "v_threshold": 1.0, "r": 1.1, "tau_ref": 0.2}, 1.0),
    ("LIF", {"tau": 1.0, "v_leak": 1.3, "v_threshold": 1.0, "reset": "subtract"}, 1.0),
    ("IF", {"v_threshold": 1.0, "v_reset": -0.1, "r": 1.1, "reset": "subtract"}, 1.0),
    ("LI", {"tau": 2.0, "v_leak": 0.3}, 1.0),
]


@pytest.mark.parametrize("node, params, unit", GRADIENT_CASES, ids=[f"{c[0]}-{i}" for i, c in
                                                                  enumerate(GRADIENT_CASES)])
def test_exact_gradients_match_finite_differences(node, params, unit):
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 5 * unit, 6))
    weights = rng.uniform(-0.3, 2.0 if node.startswith("Cuba") else 0.6, (6, 3))
    samples = np.linspace(0.05 * unit, 6 * unit, 9)
    report = fdcheck.check(node, params, times, weights, t_end=6 * unit, samples=samples, state={"v": 0.0})
    assert report.checked > 0
    assert report.worst <= fdcheck.FD_BOUND, report


@given(cuba_cases())
def test_exact_gradients_match_finite_differences_on_hypothesis_cases(case):
    node, params, times, weights = case
    report = fdcheck.check(node, params, times, weights, t_end=6e-5, samples=np.linspace(1e-6, 6e-5, 7),
                           state={"v": 0.0} if node != "CubaLI" else None)
    assert report.worst <= fdcheck.FD_BOUND, report


def test_gradient_names_cover_parameters_state_and_each_pulse():
    grads = gradients("CubaLIF", {"tau_syn": 1e-5, "tau_mem": 1e-5, "w_in": 1e-5, "v_threshold": 1.0}, [0.0, 1e-6],
                      [[2.0], [1.0]], t_end=3e-5, samples=[2e-5])
    assert grads.names == ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "tau_ref",
                           "state.v", "state.i", "weight[0]", "weight[1]")
    assert grads.states["v"].shape == (1, 1, 12) and grads.spike_times[0].shape[1] == 12


def test_spike_time_gradient_is_the_implicit_function_form():
    # LIF with v_leak above threshold from v = 0: t* = tau ln(v_leak / (v_leak - theta)).
    tau, v_leak, theta = 2.0, 1.5, 1.0
    grads = gradients("LIF", {"tau": tau, "v_leak": v_leak, "v_threshold": theta}, [], np.zeros((0, 1)),
                      t_end=5.0, state={"v": 0.0})
    at = {name: k for k, name in enumerate(grads.names)}
    first = grads.spike_times[0][0]
    np.testing.assert_allclose(first[at["tau"]], math.log(v_leak / (v_leak - theta)), rtol=1e-13)
    np.testing.assert_allclose(first[at["v_threshold"]], tau / (v_leak - theta), rtol=1e-13)
    np.testing.assert_allclose(first[at["v_leak"]], tau * (1 / v_leak - 1 / (v_leak - theta)), rtol=1e-13)


def test_finite_difference_check_counts_spikes_that_appear():
    tau_syn, tau_mem = 2e-5, 1e-5
    t_max = _peak_time(tau_syn, tau_mem)
    peak = _cuba_v(t_max, 1.0, tau_syn, tau_mem)
    # A graze within the finite-difference step: the spike vanishes on one side.
    params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "w_in": tau_syn, "v_threshold": peak * (1 - 1e-9)}
    report = fdcheck.check("CubaLIF", params, [0.0], [[1.0]], t_end=8e-5, samples=[6e-5])
    assert report.skipped >= 1


def test_finite_difference_check_catches_a_wrong_gradient(monkeypatch):
    original = exact._Neuron.pulse_tangent

    def dropped_tau_term(self, dv, di, q, j):
        dv, di = original(self, dv, di, q, j)
        if self.row.current:
            di = di.copy()
            di[self.index["tau_syn"]] *= 0.999  # a 0.1% error in one term
        return dv, di

    monkeypatch.setattr(exact._Neuron, "pulse_tangent", dropped_tau_term)
    node, params, unit = GRADIENT_CASES[0]
    report = fdcheck.check(node, params, [0.0, 2e-6], [[2.0], [1.0]], t_end=3e-5, samples=[1e-5, 2.5e-5],
                           state={"v": 0.0})
    assert report.worst > fdcheck.FD_BOUND


# --- the section-9 correspondence -----------------------------------------------------------


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_registry_model_has_a_counterpart_or_a_clear_refusal(key):
    if key in MAPPED:
        found = counterpart(key)
        assert found.relation == ("euler" if registry.model(key).family == "cuba" else "exact")
    else:
        with pytest.raises(ValueError, match="model: .*no continuous counterpart.*tether.LIF"):
            counterpart(key)


def test_counterpart_of_tether_lif_inverts_the_decay():
    found = counterpart("tether.PLIF", {"decay": [0.9, 0.5], "threshold": [1.0, 1.2]}, dt=0.25)
    np.testing.assert_allclose(found.params["tau"], [-0.25 / math.log(0.9), -0.25 / math.log(0.5)])
    np.testing.assert_allclose(found.input_scale, found.params["tau"])
    assert found.node == "LIF" and found.recorded == "pre"


def test_counterpart_of_hxtorch_ties_w_in_to_tau_syn():
    found = counterpart("hxtorch.cuba_refractory_iaf", {"tau_syn": 7e-6, "refractory_time": 2e-6, "reset": 0.1})
    assert found.node == "CubaIF" and found.params["w_in"] == 7e-6 and found.params["tau_ref"] == 2e-6
    assert found.state["v"] == 0.1 and found.dt == 1e-6


# --- bad input --------------------------------------------------------------------------------

GOOD = {"tau": 1.0, "v_threshold": 1.0}


@pytest.mark.parametrize("kwargs, match", [
    (dict(pulse_times=[0.0, float("nan")]), r"pulse_times: expected finite"),
    (dict(pulse_times=[0.0, float("inf")]), r"pulse_times: expected finite"),
    (dict(pulse_times=[-1.0, 0.5]), r"pulse_times: expected times >= 0"),
    (dict(pulse_times=[1.0, 0.5]), r"pulse_times: expected non-decreasing.*refused"),
    (dict(pulse_weights=[[1.0]]), r"pulse_weights: expected shape \(P, N\) with P = 2"),
    (dict(pulse_weights=[[1.0], [float("nan")]]), r"pulse_weights: expected finite"),
    (dict(params={"tau": 0.0, "v_threshold": 1.0}), r"params\['tau'\]: expected a positive time constant"),
    (dict(params={"tau": -2.0, "v_threshold": 1.0}), r"params\['tau'\]: expected a positive time constant"),
    (dict(params={"tau": 1.0, "v_threshold": 1.0, "tau_ref": -1.0}), r"params\['tau_ref'\]"),
    (dict(params={"tau": 1.0}), r"params\['v_threshold'\]: required"),
    (dict(params={"tau": 1.0, "v_threshold": 1.0, "decay": 0.9}), r"params: node LIF has no parameter 'decay'"),
    (dict(params={"tau": 1.0, "v_threshold": 1.0, "reset": "soft"}), r"params\['reset'\]"),
    (dict(params={"tau": 1.0, "v_threshold": 1.0, "v_reset": 1.5}), r"params\['v_reset'\]"),
    (dict(params={"tau": [1.0, 2.0, 3.0], "v_threshold": 1.0}), r"params\['tau'\]: expected a scalar"),
    (dict(samples=[0.5, 3.0]), r"samples: expected times inside the simulated interval"),
    (dict(samples=[-0.1]), r"samples: expected times inside"),
    (dict(t_end=-1.0), r"t_end: expected one finite time >= 0"),
    (dict(state={"v": 2.0}), r"state\['v'\]: expected an initial membrane below v_threshold"),
    (dict(state={"i": 0.0}), r"state: node LIF has no state variable 'i'"),
    (dict(node="Izhikevich"), r"node: unknown name 'Izhikevich'; expected one of: LI, I, LIF"),
    (dict(node="Threshold"), r"node: 'Threshold' is stateless"),
])
def test_bad_input_names_the_argument(kwargs, match):
    arguments = dict(node="LIF", params=GOOD, pulse_times=[0.0, 0.5], pulse_weights=[[1.0], [0.2]], t_end=2.0,
                     samples=None, state=None)
    arguments.update(kwargs)
    node = arguments.pop("node")
    with pytest.raises((ValueError, TypeError), match=match):
        simulate(node, arguments.pop("params"), arguments.pop("pulse_times"), arguments.pop("pulse_weights"),
                 **arguments)


def test_counterpart_refuses_a_decay_without_a_time_constant():
    with pytest.raises(ValueError, match=r"params\['decay'\]: the LIF counterpart needs 0 < decay < 1"):
        counterpart("tether.LIF", {"decay": 1.0})
    with pytest.raises(ValueError, match=r"dt: expected a finite step > 0"):
        counterpart("tether.LIF", dt=0.0)
    with pytest.raises(ValueError, match=r"params: tether.LIF has no parameter 'tau'"):
        counterpart("tether.LIF", {"tau": 3.0})
