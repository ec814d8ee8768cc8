"""Hand-worked traces for tether.ALIF (SPEC.md section 2).

Every expected number is written out as arithmetic from the update equations
v[t] = decay_v v+[t-1] + x[t], theta[t] = threshold + beta a[t],
s[t] = [v[t] >= theta[t]], hard reset to 0 (detached), a[t+1] = decay_a a[t] + s[t],
so it can be checked on paper.
"""

import numpy as np

import snnref.spec as spec

PI = np.pi


def arctan_f(u, alpha=2.0):
    return alpha / (1 + (PI * alpha * u) ** 2)


def arctan_dalpha(u, alpha=2.0):
    return u / (1 + (PI * alpha * u) ** 2)


def column(values):
    """A (T, 1, 1) time-major input for one neuron."""
    return np.array(values, dtype=float).reshape(-1, 1, 1)


PARAMS = {"decay_v": 0.5, "decay_a": 0.5, "threshold": 1.0, "beta": 0.5, "alpha": 2.0}


def test_tether_alif_forward_by_hand():
    # tether.ALIF, decay_v = decay_a = 0.5, threshold 1, beta 0.5, v = a = 0 initially.
    x = column([0.6, 0.6, 0.8, 1.2])
    trace = spec.simulate("tether.ALIF", x, PARAMS)
    # t0: v = 0.5*0 + 0.6 = 0.6,    theta = 1 + 0.5*0 = 1:   no spike, v+ = 0.6, a -> 0.5*0 + 0 = 0
    # t1: v = 0.5*0.6 + 0.6 = 0.9,  theta = 1:               no spike, v+ = 0.9, a -> 0
    # t2: v = 0.5*0.9 + 0.8 = 1.25, theta = 1:               spike,    v+ = 0,   a -> 0.5*0 + 1 = 1
    # t3: v = 0.5*0 + 1.2 = 1.2,    theta = 1 + 0.5*1 = 1.5: no spike (the adaptation blocks it),
    #     v+ = 1.2, a -> 0.5*1 + 0 = 0.5
    expected_v = [0.6, 0.5 * 0.6 + 0.6, 0.5 * (0.5 * 0.6 + 0.6) + 0.8, 0.5 * 0 + 1.2]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), expected_v, rtol=0, atol=1e-12)
    assert trace.outputs["out"].ravel().tolist() == [0, 0, 1, 0]
    # a is recorded before each step's update: a[0..3] = [0, 0, 0, 1]; the final a[4] = 0.5.
    assert trace.outputs["a"].ravel().tolist() == [0, 0, 0, 1]
    assert trace.final_state["a"].ravel().tolist() == [0.5 * 1 + 0]
    # The final v is post-reset: v+[3] = 1.2 (no spike at t3).
    assert trace.final_state["v"].ravel().tolist() == [1.2]
    # The detached reset spike is recorded for replay.
    assert trace.detached["reset_spike"].ravel().tolist() == [0, 0, 1, 0]


def test_tether_alif_fires_at_exact_adapted_threshold():
    # tether.ALIF compares with >=: a_init = 1, so theta = 1 + 0.5*1 = 1.5, and v = 1.5 fires.
    trace = spec.simulate("tether.ALIF", column([1.5, 1.0]), PARAMS, {"a": 1.0})
    # t1: v = 0.5*0 + 1.0 = 1.0, theta = 1 + 0.5*(0.5*1 + 1) = 1.75: no spike.
    assert trace.outputs["out"].ravel().tolist() == [1, 0]
    assert trace.outputs["a"].ravel().tolist() == [1.0, 0.5 * 1 + 1]


def test_tether_alif_gradient_by_hand():
    # tether.ALIF, decay_v 0.5, decay_a 0.8, threshold 1, beta 0.5, alpha 2 (arctan),
    # v_init 0.2, a_init 0.4, x = [1.3, 0.3].
    # t0: v = 0.5*0.2 + 1.3 = 1.4, theta = 1 + 0.5*0.4 = 1.2, u0 = 0.2: spike, v+ = 0,
    #     a[1] = 0.8*0.4 + 1 = 1.32
    # t1: v = 0.5*0 + 0.3 = 0.3, theta = 1 + 0.5*1.32 = 1.66, u1 = -1.36: no spike, v+ = 0.3,
    #     a[2] = 0.8*1.32 + 0 = 1.056
    params = {"decay_v": 0.5, "decay_a": 0.8, "threshold": 1.0, "beta": 0.5, "alpha": 2.0}
    state = {"v": 0.2, "a": 0.4}
    x = column([1.3, 0.3])
    trace = spec.simulate("tether.ALIF", x, params, state)
    assert trace.outputs["out"].ravel().tolist() == [1, 0]
    np.testing.assert_allclose(trace.final_state["a"].ravel(), [0.8 * (0.8 * 0.4 + 1)], rtol=0, atol=1e-12)
    # Cotangents: 0.3 and 0.7 on the spikes, 1 on the final v+[1], 1 on the final a[2].
    cot = {"out": column([0.3, 0.7]), "final.v": np.ones((1, 1)), "final.a": np.ones((1, 1))}
    grads = spec.vjp("tether.ALIF", x, params, state, cot)
    u0, u1 = 0.2, -1.36
    # t1: the spike feeds the output and a[2]:       g s1 = 0.7 + g a[2] = 0.7 + 1
    g_s1 = 0.7 + 1.0
    #     the final v enters with (1 - s1) = 1 (B1 would multiply it by decay_v):
    #     g v1 = 1 * (1 - 0) + g s1 f(u1)
    g_v1 = 1.0 + g_s1 * arctan_f(u1)
    #     a[1] feeds a[2] (factor decay_a) and theta[1] (u = v - 1 - beta a):
    #     g a[1] = 0.8 * 1 - 0.5 * g s1 f(u1)
    g_a1 = 0.8 * 1.0 - 0.5 * g_s1 * arctan_f(u1)
    # t0: g s0 = 0.3 + g a[1]; the reset at t0 is detached and complete, so g v+[0] = 0.5 g v1
    #     is multiplied by (1 - s0) = 0: g v0 = 0 + g s0 f(u0).
    g_s0 = 0.3 + g_a1
    g_v0 = g_s0 * arctan_f(u0)
    g_a0 = 0.8 * g_a1 - 0.5 * g_s0 * arctan_f(u0)
    np.testing.assert_allclose(grads["x"].ravel(), [g_v0, g_v1], rtol=0, atol=1e-12)
    # Initial state: g v_init = decay_v g v0; g a_init = g a[0]
    # (B2 would return the final cotangents, 1 and 1, here).
    np.testing.assert_allclose(grads["state.v"].ravel(), [0.5 * g_v0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["state.a"].ravel(), [g_a0], rtol=0, atol=1e-12)
    # decay_v: g v0 v_init + g v1 v+[0] = g v0 * 0.2 + g v1 * 0
    np.testing.assert_allclose(grads["decay_v"], g_v0 * 0.2, rtol=0, atol=1e-12)
    # decay_a: g a[1] a[0] + g a[2] a[1] = g a[1] * 0.4 + 1 * 1.32.  B12 drops the final
    # term 1 * 1.32; B5 adds g a[0] * a_init = g a[0] * 0.4.
    np.testing.assert_allclose(grads["decay_a"], g_a1 * 0.4 + 1.0 * 1.32, rtol=0, atol=1e-12)
    # threshold: -(g s0 f(u0) + g s1 f(u1)); beta: the same terms weighted by a[t].
    np.testing.assert_allclose(
        grads["threshold"], -(g_s0 * arctan_f(u0) + g_s1 * arctan_f(u1)), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        grads["beta"], -(g_s0 * arctan_f(u0) * 0.4 + g_s1 * arctan_f(u1) * 1.32), rtol=0, atol=1e-12
    )
    # alpha: dF/dalpha at each u, weighted by the spike adjoints.
    np.testing.assert_allclose(
        grads["alpha"], g_s0 * arctan_dalpha(u0) + g_s1 * arctan_dalpha(u1), rtol=0, atol=1e-12
    )


def test_tether_alif_recorded_sequence_cotangents_by_hand():
    # tether.ALIF with PARAMS, no spikes: x = [0.4, 0.2], v = a = 0 initially.
    # t0: v = 0.4, theta = 1, u0 = -0.6; t1: v = 0.5*0.4 + 0.2 = 0.4, u1 = -0.6; a stays 0.
    # Cotangent 1 on the recorded v[1] and 1 on the recorded a[1] (before t1's update).
    x = column([0.4, 0.2])
    cot = {"v": column([0.0, 1.0]), "a": column([0.0, 1.0])}
    grads = spec.vjp("tether.ALIF", x, PARAMS, None, cot)
    # t1: g s1 = 0 (no spike or final cotangent), so g v1 = 1.
    # t0: a[1] = decay_a a[0] + s0 gives g s0 = g a[1] = 1, so
    #     g v0 = decay_v (1 - s0) g v1 + g s0 f(u0) = 0.5 + f(-0.6)
    #     g a[0] = decay_a g a[1] - beta g s0 f(u0) = 0.5 - 0.5 f(-0.6)
    np.testing.assert_allclose(grads["x"].ravel(), [0.5 + arctan_f(-0.6), 1.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["state.a"].ravel(), [0.5 - 0.5 * arctan_f(-0.6)], rtol=0, atol=1e-12)
    # decay_a: g a[1] a[0] = 1 * 0 (the recorded a[1] has no later a[2] cotangent).
    np.testing.assert_allclose(grads["decay_a"], 0.0, rtol=0, atol=1e-12)
