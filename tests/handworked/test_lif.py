"""Hand-worked traces for the tether and qualia members of the LIF family.

Every expected number is written out as arithmetic from the update equations
(SPEC.md sections 2 and 4), so it can be checked on paper.  The rnnbuilder
members of the family are worked in test_rnnbuilder.py.
"""

import numpy as np
import pytest

import snnref.spec as spec

PI = np.pi


def arctan_f(u, alpha=2.0):
    return alpha / (1 + (PI * alpha * u) ** 2)


def arctan_dalpha(u, alpha=2.0):
    return u / (1 + (PI * alpha * u) ** 2)


def sigmoid_f(u):
    # alpha = 1: sigma(u) (1 - sigma(u))
    s = 1 / (1 + np.exp(-u))
    return s * (1 - s)


def column(values):
    """A (T, 1, 1) time-major input for one neuron."""
    return np.array(values, dtype=float).reshape(-1, 1, 1)


def test_tether_lif_forward_by_hand():
    # tether.LIF, decay 0.5, threshold 1, v0 = 0; s = [v - 1 >= 0]; hard reset to 0.
    x = column([0.6, 0.8, 0.3, 1.2])
    trace = spec.simulate("tether.LIF", x, {"decay": 0.5, "threshold": 1.0})
    v0 = 0.5 * 0 + 0.6  # 0.6  < 1: no spike, v+ = 0.6
    v1 = 0.5 * v0 + 0.8  # 1.1 >= 1: spike,    v+ = 0
    v2 = 0.5 * 0 + 0.3  # 0.3  < 1: no spike, v+ = 0.3
    v3 = 0.5 * v2 + 1.2  # 1.35 >= 1: spike,   v+ = 0
    assert trace.outputs["out"].ravel().tolist() == [0, 1, 0, 1]
    # The recorded membrane is the pre-reset one.
    assert trace.outputs["v"].ravel().tolist() == [v0, v1, v2, v3]
    assert trace.final_state["v"].ravel().tolist() == [0.0]


def test_tether_lif_fires_at_exact_threshold():
    # tether.LIF compares with >=: v = 1.0 exactly fires.
    trace = spec.simulate("tether.LIF", column([1.0]), {"decay": 0.5, "threshold": 1.0})
    assert trace.outputs["out"].ravel().tolist() == [1.0]


def test_tether_lif_gradient_by_hand():
    # tether.LIF, decay 0.5, threshold 1, alpha 2 (arctan), v_init 0.4, x = [1.2, 0.3].
    # t0: v = 0.5*0.4 + 1.2 = 1.4, u = 0.4, spike, v+ = 0
    # t1: v = 0.5*0 + 0.3 = 0.3,  u = -0.7, no spike, v+ = 0.3
    # Cotangents: 1 on each spike, 1 on the final state v+[1].
    x = column([1.2, 0.3])
    cot = {"out": np.ones_like(x), "final.v": np.ones((1, 1))}
    grads = spec.vjp("tether.LIF", x, {"decay": 0.5, "threshold": 1.0, "alpha": 2.0}, {"v": 0.4}, cot)
    # t1: g v+[1] = 1 enters with (1 - s[1]) = 1 (B1 would multiply it by decay);
    #     g v[1] = 1 + f(-0.7) (the spike's surrogate path), g x[1] = g v[1].
    g_v1 = 1 + arctan_f(-0.7)
    # t0: g v+[0] = 0.5 g v[1], but the detached reset kills it: g v[0] = g v+[0] (1 - 1) = 0,
    #     then the spike at t0 adds f(0.4).
    g_v0 = arctan_f(0.4)
    np.testing.assert_allclose(grads["x"].ravel(), [g_v0, g_v1], rtol=1e-14)
    # Initial state: decay * g v[0] (B2 would pass the final-state cotangent through).
    np.testing.assert_allclose(grads["state.v"].ravel(), [0.5 * g_v0], rtol=1e-14)
    # decay: g v[0] * v_init + g v[1] * v+[0] = f(0.4) * 0.4 + g_v1 * 0
    np.testing.assert_allclose(grads["decay"], 0.4 * arctan_f(0.4), rtol=1e-14)
    # threshold: minus the surrogate term of every spike cotangent.
    np.testing.assert_allclose(grads["threshold"], -(arctan_f(0.4) + arctan_f(-0.7)), rtol=1e-14)
    # alpha: dF/dalpha at each u, weighted by the spike cotangents (1, 1).
    np.testing.assert_allclose(grads["alpha"], arctan_dalpha(0.4) + arctan_dalpha(-0.7), rtol=1e-14)


def test_tether_plif_per_neuron_parameters_by_hand():
    # tether.PLIF: decay = [0.5, 0.25], threshold = [1.0, 0.5] per neuron, batch of 2.
    # Neuron n uses decay[n] and threshold[n] in every batch row (B4 indexes by b*N + n).
    x = np.array([[[0.6, 0.4], [0.2, 0.3]], [[0.6, 0.4], [0.9, 0.1]]])  # (T=2, B=2, N=2)
    params = {"decay": np.array([0.5, 0.25]), "threshold": np.array([1.0, 0.5])}
    trace = spec.simulate("tether.PLIF", x, params)
    # row 0, neuron 0: v = 0.6, then 0.5*0.6 + 0.6 = 0.9 < 1 -> no spikes
    # row 0, neuron 1: v = 0.4, then 0.25*0.4 + 0.4 = 0.5 >= 0.5 -> spike at t1
    # row 1, neuron 0: v = 0.2, then 0.5*0.2 + 0.9 = 1.0 >= 1 -> spike at t1
    # row 1, neuron 1: v = 0.3, then 0.25*0.3 + 0.1 = 0.175 < 0.5 -> no spike
    expected_v = np.array(
        [[[0.6, 0.4], [0.2, 0.3]], [[0.5 * 0.6 + 0.6, 0.25 * 0.4 + 0.4], [0.5 * 0.2 + 0.9, 0.25 * 0.3 + 0.1]]]
    )
    np.testing.assert_array_equal(trace.outputs["v"], expected_v)
    np.testing.assert_array_equal(trace.outputs["out"][1], [[0, 1], [1, 0]])
    # Per-neuron decay gradient with a cotangent of 1 on every recorded v (no spike
    # cotangent): g v[1] = 1; g v[0] = 1 + decay[n] (1 - s[0]) = 1 + decay[n];
    # g decay[n] = sum over rows of (g v[1] v+[0] + g v[0] v_init) = sum of v+[0] = x[0].
    grads = spec.vjp("tether.PLIF", x, params, None, {"v": np.ones_like(x)})
    np.testing.assert_allclose(grads["decay"], [0.6 + 0.2, 0.4 + 0.3], rtol=1e-14)
    np.testing.assert_allclose(grads["x"][0], [[1.5, 1.25], [1.5, 1.25]], rtol=1e-14)


def test_qualia_ifsrl_forward_by_hand():
    # qualia.IFSRL, threshold 0.8 (shape (1,)): v += x; z = [v - 0.8 >= 0]; v -= z * 0.8.
    x = column([0.5, 0.5, 0.9])
    trace = spec.simulate("qualia.IFSRL", x, {"threshold": np.array([0.8])})
    v0 = 0 + 0.5  # 0.5 < 0.8: no spike
    v1 = (v0 + 0.5) - 0.8  # 1.0 >= 0.8: spike, soft reset to 0.2
    v2 = (v1 + 0.9) - 0.8  # 1.1 >= 0.8: spike, soft reset to 0.3
    assert trace.outputs["out"].ravel().tolist() == [0, 1, 1]
    # The recorded membrane is the post-reset one.
    assert trace.outputs["v"].ravel().tolist() == [v0, v1, v2]


def test_qualia_atif_forward_by_hand():
    # qualia.ATIF: the dynamics of IFSRL, output spikes * threshold.
    x = column([0.5, 0.5, 0.9])
    trace = spec.simulate("qualia.ATIF", x, {"threshold": np.array([0.8])})
    assert trace.outputs["out"].ravel().tolist() == [0, 0.8, 0.8]


@pytest.mark.parametrize("model", ["qualia.IFSRL", "qualia.ATIF"])
def test_qualia_gradient_by_hand(model):
    # threshold 0.8, sigmoid alpha 1, x = [1.0, 0.5]; cotangent 1 on both outputs.
    # t0: v = 1.0, u = 0.2, spike, v+ = 0.2;  t1: v = 0.7, u = -0.1, no spike, v+ = 0.7.
    theta = 0.8
    x = column([1.0, 0.5])
    grads = spec.vjp(model, x, {"threshold": np.array([theta])}, None, {"out": np.ones_like(x)})
    # Output weight: 1 for IFSRL (out = z), theta for ATIF (out = theta z).
    w = 1.0 if model == "qualia.IFSRL" else theta
    # t1: g s = w; g v[1] = w f(-0.1); g v+[0] = g v[1] (no leak).
    g_v1 = w * sigmoid_f(-0.1)
    # t0: the soft reset v+ = v - theta z is differentiated (not detached):
    #     g s[0] = w - theta g v+[0];  g v[0] = g v+[0] + g s[0] f(0.2).
    g_s0 = w - theta * g_v1
    g_v0 = g_v1 + g_s0 * sigmoid_f(0.2)
    np.testing.assert_allclose(grads["x"].ravel(), [g_v0, g_v1], rtol=1e-14)
    np.testing.assert_allclose(grads["state.v"].ravel(), [g_v0], rtol=1e-14)
    # threshold: -f(u) g s at each step, -z[0] g v+[0] from the reset, and for
    # ATIF z[t] * cotangent[t] from out = theta z (z = [1, 0]).
    g_theta = -g_v1 - g_v1 - g_s0 * sigmoid_f(0.2)
    if model == "qualia.ATIF":
        g_theta += 1.0
    np.testing.assert_allclose(grads["threshold"], [g_theta], rtol=1e-14)
