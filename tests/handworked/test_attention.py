"""Hand-worked traces for tether.SpikingSelfAttention (SPEC.md sections 2 and 8).

Input (T, B, N, D).  Each of q, k, v is a tether LIF (v = decay v+ + W x,
s = [v - threshold >= 0], detached hard reset to 0) fed by a bias-free linear
map y = x @ W.T; the context accumulates S[t] = S[t-1] + s_k[t] s_v[t] and the
output is out[t] = (s_q[t] S[t]) @ proj_weight.T + proj_bias.  Tiny weights and
D = 1 or 2 keep every expected number checkable on paper.
"""

import numpy as np

import snnref.spec as spec

PI = np.pi
KEY = "tether.SpikingSelfAttention"


def arctan_f(u, alpha=2.0):
    return alpha / (1 + (PI * alpha * u) ** 2)


def arctan_dalpha(u, alpha=2.0):
    return u / (1 + (PI * alpha * u) ** 2)


def tokens(values):
    """A (T, B=1, N=1, D=1) time-major input for one token with one feature."""
    return np.array(values, dtype=float).reshape(-1, 1, 1, 1)


def scalar_params(wq, wk, wv, wp, bias):
    """D = 1 weights, every decay 0.5, threshold 1, alpha 2."""
    params = {
        "q_weight": [[wq]], "k_weight": [[wk]], "v_weight": [[wv]],
        "proj_weight": [[wp]], "proj_bias": [bias],
    }
    for c in ("q", "k", "v"):
        params.update({f"{c}_decay": 0.5, f"{c}_threshold": 1.0, f"{c}_alpha": 2.0})
    return params


def test_spiking_self_attention_forward_by_hand():
    # tether.SpikingSelfAttention, D = 1: W_q = 1, W_k = 2, W_v = 1.5, proj 0.5, bias 0.1.
    x = tokens([0.8, 0.4, 0.8, 0.4])
    trace = spec.simulate(KEY, x, scalar_params(1.0, 2.0, 1.5, 0.5, 0.1))
    # q: y = x.      t0 v = 0.8 no | t1 v = 0.4 + 0.4 = 0.8 no | t2 v = 0.4 + 0.8 = 1.2 spike | t3 v = 0 + 0.4 no
    # k: y = 2 x.    t0 v = 1.6 spike | t1 v = 0 + 0.8 no | t2 v = 0.4 + 1.6 = 2.0 spike | t3 v = 0 + 0.8 no
    # v: y = 1.5 x.  t0 v = 1.2 spike | t1 v = 0 + 0.6 no | t2 v = 0.3 + 1.2 = 1.5 spike | t3 v = 0 + 0.6 no
    expected = {
        "q_v": [0.8, 0.5 * 0.8 + 0.4, 0.5 * (0.5 * 0.8 + 0.4) + 0.8, 0.5 * 0 + 0.4],
        "k_v": [1.6, 0.5 * 0 + 0.8, 0.5 * 0.8 + 1.6, 0.5 * 0 + 0.8],
        "v_v": [1.2, 0.5 * 0 + 0.6, 0.5 * 0.6 + 1.2, 0.5 * 0 + 0.6],
        # S[t] = S[t-1] + s_k s_v: 0 + 1*1, + 0*0, + 1*1, + 0*0
        "context": [1.0, 1.0, 2.0, 2.0],
        # o = s_q S = [0, 0, 1*2, 0]; out = 0.5 o + 0.1
        "out": [0.1, 0.1, 0.5 * 2 + 0.1, 0.1],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(trace.outputs[name].ravel(), values, rtol=0, atol=1e-12, err_msg=name)
    # Final state: v+ after the last step (no spike at t3) and the context.
    assert trace.final_state["q_v"].ravel().tolist() == [0.4]
    assert trace.final_state["context"].ravel().tolist() == [2.0]
    assert trace.detached["k_reset_spike"].ravel().tolist() == [1, 0, 1, 0]


def test_spiking_self_attention_fires_at_exact_threshold():
    # tether.SpikingSelfAttention compares with >=: with every weight 1 and x = 1.0,
    # each membrane is exactly 1.0 = threshold and fires; S = 1*1, out = 0.5 * (1 * 1) + 0.1.
    trace = spec.simulate(KEY, tokens([1.0]), scalar_params(1.0, 1.0, 1.0, 0.5, 0.1))
    for c in ("q", "k", "v"):
        assert trace.detached[f"{c}_reset_spike"].ravel().tolist() == [1.0], c
    assert trace.outputs["out"].ravel().tolist() == [0.5 * 1.0 + 0.1]


def test_spiking_self_attention_weight_orientation_by_hand():
    # tether.SpikingSelfAttention, D = 2, one step: y = x @ W.T, so y[i] = sum_j W[i, j] x[j].
    # x = [1, 0]: only column 0 of each weight matters.
    x = np.array([1.0, 0.0]).reshape(1, 1, 1, 2)
    params = {
        # q: y = [W[0,0], W[1,0]] = [0, 1.2] -> only feature 1 spikes (the transpose would give [0, 0]).
        "q_weight": [[0.0, 0.0], [1.2, 0.0]],
        # k and v: y = [1.5, 1.1] -> both features spike, context S = 0 + 1*1 = [1, 1].
        "k_weight": [[1.5, 0.0], [1.1, 0.0]],
        "v_weight": [[1.5, 0.0], [1.1, 0.0]],
        # o = s_q S = [0, 1]; out[i] = sum_j P[i, j] o[j] + b[i] = [P[0,1], P[1,1]] + b = [0.3, -0.2] + [0.1, 0.2]
        "proj_weight": [[0.0, 0.3], [0.7, -0.2]],
        "proj_bias": [0.1, 0.2],
    }
    trace = spec.simulate(KEY, x, params)
    np.testing.assert_allclose(trace.outputs["q_v"].ravel(), [0.0, 1.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.outputs["context"].ravel(), [1.0, 1.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.outputs["out"].ravel(), [0.3 + 0.1, -0.2 + 0.2], rtol=0, atol=1e-12)


def test_spiking_self_attention_gradient_by_hand():
    # tether.SpikingSelfAttention, D = 1, W_q = 1, W_k = 2, W_v = 1.5, proj 0.5, bias 0.1,
    # every decay 0.5, threshold 1, alpha 2; initial context 0.5, membranes 0; x = [0.8, 0.7].
    # q: y = [0.8, 0.7]:  t0 v = 0.8,  u = -0.2 no spike, v+ = 0.8 | t1 v = 0.4 + 0.7 = 1.1, u = 0.1 spike
    # k: y = [1.6, 1.4]:  t0 v = 1.6,  u = 0.6 spike, v+ = 0       | t1 v = 1.4, u = 0.4 spike
    # v: y = [1.2, 1.05]: t0 v = 1.2,  u = 0.2 spike, v+ = 0       | t1 v = 1.05, u = 0.05 spike
    # S0 = 0.5 + 1*1 = 1.5, S1 = 1.5 + 1*1 = 2.5; o = [0*1.5, 1*2.5]; out = [0.1, 0.5*2.5 + 0.1]
    x = tokens([0.8, 0.7])
    params = scalar_params(1.0, 2.0, 1.5, 0.5, 0.1)
    state = {"context": 0.5}
    trace = spec.simulate(KEY, x, params, state)
    np.testing.assert_allclose(trace.outputs["out"].ravel(), [0.1, 0.5 * 2.5 + 0.1], rtol=0, atol=1e-12)
    uq0, uq1 = 0.8 - 1, (0.5 * 0.8 + 0.7) - 1
    uk0, uk1 = 1.6 - 1, 1.4 - 1
    uv0, uv1 = 1.2 - 1, 1.05 - 1
    # Cotangent 1 on both outputs, nothing on the states.
    grads = spec.vjp(KEY, x, params, state, {"out": np.ones_like(x)})
    # Output layer: g bias = 1 + 1; g proj = g out[0] o[0] + g out[1] o[1] = 0 + 2.5;
    # g o[t] = proj * g out[t] = 0.5.
    np.testing.assert_allclose(grads["proj_bias"], [2.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["proj_weight"], [[2.5]], rtol=0, atol=1e-12)
    # t1: g S1 = g o1 s_q1 = 0.5; g s_q1 = g o1 S1 = 0.5*2.5; g s_k1 = g S1 s_v1 = 0.5; g s_v1 = g S1 s_k1 = 0.5
    g_sq1, g_sk1, g_sv1 = 0.5 * 2.5, 0.5, 0.5
    # t0: g S0 = g S1 + g o0 s_q0 = 0.5 + 0; g s_q0 = g o0 S0 = 0.5*1.5; g s_k0 = g S0 s_v0 = 0.5; g s_v0 = 0.5
    g_sq0, g_sk0, g_sv0 = 0.5 * 1.5, 0.5, 0.5
    # The initial context receives g S0.
    np.testing.assert_allclose(grads["state.context"].ravel(), [0.5], rtol=0, atol=1e-12)
    # Membrane adjoints: g v[1] = g s[1] f(u1); g v[0] = 0.5 (1 - s[0]) g v[1] + g s[0] f(u0).
    # q did not spike at t0, so its later adjoint flows back; k and v reset at t0 (detached), so it does not.
    g_vq1 = g_sq1 * arctan_f(uq1)
    g_vq0 = 0.5 * (1 - 0) * g_vq1 + g_sq0 * arctan_f(uq0)
    g_vk1, g_vk0 = g_sk1 * arctan_f(uk1), g_sk0 * arctan_f(uk0)
    g_vv1, g_vv0 = g_sv1 * arctan_f(uv1), g_sv0 * arctan_f(uv0)
    # Weights: g W_c = sum_t g v_c[t] x[t] = g v_c[0] 0.8 + g v_c[1] 0.7.  All three must be
    # nonzero (B6: the fused seed gave the q/k/v weights no gradient at all).
    expected_w = {"q": 0.8 * g_vq0 + 0.7 * g_vq1, "k": 0.8 * g_vk0 + 0.7 * g_vk1, "v": 0.8 * g_vv0 + 0.7 * g_vv1}
    for c, value in expected_w.items():
        np.testing.assert_allclose(grads[f"{c}_weight"], [[value]], rtol=0, atol=1e-12, err_msg=c)
        assert abs(grads[f"{c}_weight"][0, 0]) > 0.01, c
    # x feeds all three branches: g x[t] = 1 g v_q[t] + 2 g v_k[t] + 1.5 g v_v[t].
    np.testing.assert_allclose(
        grads["x"].ravel(),
        [g_vq0 + 2 * g_vk0 + 1.5 * g_vv0, g_vq1 + 2 * g_vk1 + 1.5 * g_vv1],
        rtol=0, atol=1e-12,
    )
    # decay: g v[0] v_init + g v[1] v+[0] = g v[1] * (0.8 for q, 0 for k and v after their reset).
    np.testing.assert_allclose(grads["q_decay"], 0.8 * g_vq1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["k_decay"], 0.0, rtol=0, atol=1e-12)
    # Initial membranes: decay * g v[0].
    np.testing.assert_allclose(grads["state.q_v"].ravel(), [0.5 * g_vq0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["state.v_v"].ravel(), [0.5 * g_vv0], rtol=0, atol=1e-12)
    # threshold: -sum g s f(u); alpha: sum g s dF/dalpha(u), per branch.
    np.testing.assert_allclose(
        grads["k_threshold"], -(g_sk0 * arctan_f(uk0) + g_sk1 * arctan_f(uk1)), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        grads["q_alpha"], g_sq0 * arctan_dalpha(uq0) + g_sq1 * arctan_dalpha(uq1), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        grads["v_alpha"], g_sv0 * arctan_dalpha(uv0) + g_sv1 * arctan_dalpha(uv1), rtol=0, atol=1e-12
    )
