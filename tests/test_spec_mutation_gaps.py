"""Tests that close the gaps a mutation pass over ``snnref.spec`` found.

Each test is named after the behaviour it pins; the comment above it says which
planted bug (in ``snnref/spec``) it kills and what else noticed it.  Every expected value is
worked by hand from SPEC.md and the update equations of the family's module
docstring, never by running the code under test at another point.
"""

import math

import numpy as np
import pytest

import snnref.spec as spec

PI = math.pi


def column(values):
    """A (T, 1, 1) time-major input for one neuron."""
    return np.asarray(values, dtype=float).reshape(-1, 1, 1)


def arctan_f(u, alpha=2.0):
    return alpha / (1 + (PI * alpha * u) ** 2)


# ---------------------------------------------------------------- teacher forcing (spec/api.py)
# Planted: SpikeFunction ignored ``force_spikes`` and decided by itself.  The property tests force
# a run's own spikes, which that bug reproduces; only a gate budget test in test_gate.py failed, far
# from the cause.  Forcing spikes the model would not make shows it at the spec, forward and backward.


def test_forced_spikes_replace_the_decisions_in_the_forward_run():
    # tether.LIF, decay 0.5, threshold 1, v0 = 0, x = [1.5, 0.2, 0.2], forced spikes [0, 1, 0].
    # t0: v = 1.5   (own decision: spike)      forced 0: no reset, v+ = 1.5
    # t1: v = 0.5*1.5 + 0.2 = 0.95 (own: none)  forced 1: reset,    v+ = 0
    # t2: v = 0.5*0 + 0.2 = 0.2                 forced 0:           v+ = 0.2
    trace = spec.simulate("tether.LIF", column([1.5, 0.2, 0.2]), {"decay": 0.5, "threshold": 1.0},
                          force_spikes=column([0.0, 1.0, 0.0]))
    assert trace.outputs["out"].ravel().tolist() == [0.0, 1.0, 0.0]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [1.5, 0.5 * 1.5 + 0.2, 0.2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(trace.final_state["v"].ravel(), [0.2], rtol=0, atol=1e-15)
    # The distance to threshold is still recorded, decision by decision: v - 1.
    np.testing.assert_allclose(trace.distance.ravel(), [0.5, 0.5 * 1.5 + 0.2 - 1, 0.2 - 1], rtol=0, atol=1e-15)


def test_forced_spikes_set_the_reset_factors_of_the_gradient():
    # The same run; cotangent 1 on the final v+[2] only.  By lif.py (7) and (10), with the forced spikes:
    # g v[2] = 1 (1 - 0) = 1, g x[2] = 1;  g v+[1] = 0.5;  g v[1] = 0.5 (1 - 1) = 0, g x[1] = 0;
    # g v+[0] = 0, g x[0] = 0, g state.v = 0.  (The model's own spikes [1, 0, 0] give g x = [0, 0.5, 1].)
    x = column([1.5, 0.2, 0.2])
    grads = spec.vjp("tether.LIF", x, {"decay": 0.5, "threshold": 1.0}, {}, {"final.v": np.ones((1, 1))},
                     force_spikes=column([0.0, 1.0, 0.0]))
    assert grads["x"].ravel().tolist() == [0.0, 0.0, 1.0]
    assert grads["state.v"].ravel().tolist() == [0.0]


# ---------------------------------------------------------------- truncated time (spec/api.py)
# Planted: vjp's x-gradient beyond a truncated T (injected traces shorter than x) was not zero.


def test_the_x_gradient_beyond_a_truncated_run_is_zero():
    # hxtorch.cuba_lif with a membrane trace of 2 steps and x of 4: the run stops after 2 steps
    # (SPEC.md section 5), so x[2:] reaches nothing.  a = b = 0.5 (dt = 1, taus = 2).  Cotangent 1 on
    # every recorded current i[0], i[1]: by cuba.py (2), i[1] = 0.5 i[0] + x[1], i[0] = 0.5 i0 + x[0],
    # so dL/dx[1] = 1 and dL/dx[0] = 1 + 0.5 = 1.5 (the membrane carries no cotangent: the observed
    # v passes the model's gradient, which is 0 here).
    params = {"tau_mem": 2.0, "tau_syn": 2.0, "dt": 1.0, "leak": 0.0, "reset": 0.0, "threshold": 1.0}
    x = column([0.3, 0.4, 5.0, 5.0])
    inject = {"v": column([0.1, 0.2])}
    grads = spec.vjp("hxtorch.cuba_lif", x, params, {}, {"i": np.ones((2, 1, 1))}, inject=inject)
    assert grads["x"].shape == x.shape
    np.testing.assert_allclose(grads["x"].ravel(), [1.5, 1.0, 0.0, 0.0], rtol=0, atol=1e-15)


# ---------------------------------------------------------------- long-sum magnitudes (spec/sums.py)
# Planted: Discontinuous reported the signed sum -g x as its threshold's magnitude.  The existing checks
# ask A >= |gradient| (met by random cases without cancellation) or look at other families' sums.
# SPEC.md section 7: A is the sum of the absolute values of the contributions.


def test_the_discontinuous_threshold_magnitude_does_not_cancel():
    # rnnbuilder.Discontinuous, threshold 1, spike_linear gamma 0.3: x = [0.5, 1.5] gives u = -0.5, 0.5
    # and f = 0.3 (1 - 0.5) = 0.15 both times.  Cotangents +1, -1: the threshold's gradient
    # -(0.15 - 0.15) = 0 cancels, its magnitude 0.15 + 0.15 does not.
    sizes = {}
    grads = spec.vjp("rnnbuilder.Discontinuous", column([0.5, 1.5]), None, None, {"out": column([1.0, -1.0])},
                     magnitudes=sizes)
    assert float(grads["threshold"]) == 0.0
    assert sizes["threshold"][0] == pytest.approx(0.3, rel=1e-12)
    assert sizes["threshold"][1] == 2


# Planted: the count of roundings of an adjoint long sum (api._adjoint_sum_size) added the merged lanes
# without the "- 1" (a state given at the run's shape merges one lane: no addition), which widens the
# gate's budget for x and the initial state; test_precision.py checks n for parameters only, and
# test_long_sums.py compares a broadcast state with a full one, where the extra 1 cancels.  Counted by
# hand from attention.py (21): T = 2, D = 2 gives n_state = 4*3 + 2*2 = 16 and n_x = 16 + 3*2 = 22.


def test_the_attention_long_sums_count_their_roundings_as_equation_21_states():
    steps, dim = 2, 2
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 1.2, (steps, 1, 1, dim))
    params = {f"{c}_weight": rng.uniform(-0.8, 0.8, (dim, dim)) for c in ("q", "k", "v", "proj")}
    params["proj_bias"] = np.zeros(dim)
    state = {name: np.zeros((1, 1, dim)) for name in ("q_v", "k_v", "v_v", "context")}
    sizes = {}
    spec.vjp("tether.SpikingSelfAttention", x, params, state, {"out": np.ones_like(x)}, magnitudes=sizes)
    n_state = 4 * (steps + 1) + 2 * dim
    assert sizes["x"][1] == n_state + 3 * dim == 22
    for name in ("q_v", "k_v", "v_v", "context"):
        assert sizes[f"state.{name}"][1] == n_state == 16, name


# ---------------------------------------------------------------- Cooldown's input limit (spec/cooldown.py)
# Planted: check_input refused the largest x whose exp is finite (x >= limit instead of x > limit).
# The limit is found here with Python's float arithmetic, not with the spec's search.


def _largest_finite_exp_input():
    # Bisection between 709 (exp finite) and 710 (exp overflows) down to adjacent floats.
    low, high = 709.0, 710.0
    while math.nextafter(low, math.inf) < high:
        middle = (low + high) / 2
        try:
            math.exp(middle)
            low = middle
        except OverflowError:
            high = middle
    return low


def test_cooldown_accepts_the_largest_input_whose_exp_is_finite():
    limit = _largest_finite_exp_input()  # 709.782712893384
    trace = spec.simulate("rnnbuilder.Cooldown", column([limit]))
    # m = b 0 + (1 - b) exp(limit) is finite.
    assert np.isfinite(trace.outputs["m"]).all()
    with pytest.raises(ValueError, match=r"^x: .*overflows"):
        spec.simulate("rnnbuilder.Cooldown", column([math.nextafter(limit, math.inf)]))


# ---------------------------------------------------------------- Cooldown's sign split (spec/cooldown.py)
# Planted: with N = 1 the single unit fired above 1 (sgn = +1).  SPEC.md section 3: sgn = +1 for the
# first N // 2 = 0 units, -1 for the rest, so the only unit fires while m < 1: at t = 0 from m = 0.
# Only test_backends.py noticed, because the torch backend disagreed; this pins it at the spec.


def test_cooldown_with_one_unit_fires_below_the_threshold():
    # u[0] = -1 (0 - 1) = 1 > 0: spike.  m[0] = b 0 + (1 - b) e^0 = 1 - b < 1, so u[1] = b > 0: spike.
    trace = spec.simulate("rnnbuilder.Cooldown", column([0.0, 0.0]))
    assert trace.outputs["out"].ravel().tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- the smooth twin's value (spec/api.py)
# Planted: the smooth twin used 1 - F(-u) for F(u).  For the surrogates whose primitive is point
# symmetric about (0, 1/2) that is the same function; spike_linear's F (SPEC.md section 1) is
# g (u - u|u|/2), centred on 0, and the gradient checks cannot see a constant offset.  Only
# test_backends.py noticed, through the torch backend's smooth twin; this pins it at the spec.


def test_the_smooth_twin_of_spike_linear_outputs_its_primitive():
    # rnnbuilder.Discontinuous, threshold 1, gamma 0.3: x = 1.5, 0.2, 3.0 gives u = 0.5, -0.8, 2.0 and
    # F = 0.3 (0.5 - 0.25/2), 0.3 (-0.8 + 0.64/2), 0.3/2 (|u| > 1).
    trace = spec.simulate("rnnbuilder.Discontinuous", column([1.5, 0.2, 3.0]), smooth=True)
    expected = [0.3 * (0.5 - 0.5 * 0.5 / 2), 0.3 * (-0.8 + 0.8 * 0.8 / 2), 0.3 / 2]
    np.testing.assert_allclose(trace.outputs["out"].ravel(), expected, rtol=0, atol=1e-15)


# Planted: the attention magnitude of the output projection's adjoint (attention.py (16)) took
# |lin_T(|g out|, W)| instead of lin_T(|g out|, |W|).  test_long_sums uses weights of one sign
# (or flips them all), where the two agree; a column of mixed signs tells them apart.


def test_the_attention_context_magnitude_sums_the_projection_s_absolute_values():
    # T = 1, one token, D = 2.  q_weight = 2 I with x = [1, 1] gives v_q = [2, 2] >= 1: s_q = [1, 1].
    # k and v weights 0: no k or v spike, so S stays 0 and only (10) reaches the initial context.
    # proj_weight = [[2, -1], [-2, 1]], g out = [1, 1]:
    #   g o = lin_T(g out, W) = [2 - 2, -1 + 1] = [0, 0]        (the gradient cancels)
    #   M o = lin_T(|g out|, |W|) = [2 + 2, 1 + 1] = [4, 2]     (16)
    # g S[-1] = g S[0] = g o s_q = [0, 0];  M S[-1] = M o |s_q| = [4, 2], largest 4 (17).
    x = np.ones((1, 1, 1, 2))
    params = {"q_weight": 2 * np.eye(2), "k_weight": np.zeros((2, 2)), "v_weight": np.zeros((2, 2)),
              "proj_weight": np.array([[2.0, -1.0], [-2.0, 1.0]]), "proj_bias": np.zeros(2)}
    state = {name: np.zeros((1, 1, 2)) for name in ("q_v", "k_v", "v_v", "context")}
    sizes = {}
    grads = spec.vjp("tether.SpikingSelfAttention", x, params, state, {"out": np.ones_like(x)}, magnitudes=sizes)
    assert grads["state.context"].ravel().tolist() == [0.0, 0.0]
    assert sizes["state.context"][0] == 4.0
