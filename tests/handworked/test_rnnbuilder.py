"""Hand-worked traces and 2-step gradients for the rnnbuilder models.

Every expected value is written out as arithmetic that can be checked on paper.
``b = exp(-1/5)`` is the membrane decay of tau = 5 (about 0.8187) and the
surrogate is rnnbuilder's spike_linear with gradient_factor 0.3:
f(u) = 0.3 * max(0, 1 - |u|); the forward step is strict, H(u) = [u > 0].
The rnnbuilder.LIF and rnnbuilder.NoReset models live in spec/lif.py.
"""

import math

import numpy as np
import pytest

import snnref.spec as spec
from snnref import registry

b = math.exp(-1 / 5)


def close(actual, expected):
    np.testing.assert_allclose(actual, np.asarray(expected, dtype=float), rtol=0, atol=1e-12)


def column(values):
    """A (T, 1, 1) trace: one batch entry, one neuron."""
    return np.asarray(values, dtype=float).reshape(-1, 1, 1)


# rnnbuilder trains none of its parameters, but these have gradients, which
# the spec's vjp reports (gradient_factor, the surrogate's scale, has none).
DIFFERENTIABLE = {"rnnbuilder.LIF": {"tau"}, "rnnbuilder.NoReset": {"tau"}, "rnnbuilder.Cooldown": {"tau"},
                  "rnnbuilder.Adaptive": {"tau", "tau_thr", "gamma"}, "rnnbuilder.Discontinuous": {"threshold"}}


@pytest.mark.parametrize(
    "key",
    ["rnnbuilder.LIF", "rnnbuilder.NoReset", "rnnbuilder.Cooldown", "rnnbuilder.Adaptive",
     "rnnbuilder.Discontinuous"],
)
def test_rnnbuilder_nothing_is_trainable_but_the_initial_state(key):
    row = registry.model(key)
    assert row.trainable == ()
    x = np.full((2, 1, 2), 0.5)
    grads = spec.vjp(key, x, None, None, {"out": np.ones_like(x)})
    assert set(grads) == {"x"} | {f"state.{var}" for var in row.state_names} | DIFFERENTIABLE[key]


# --- rnnbuilder.LIF: m = b m + x, s = H(m - 1), m <- m - s (not detached) ---

def test_rnnbuilder_lif_trace():
    # Neuron 0: x = 0.7, 0.6, 0.2, 0.9.  Neuron 1: x = 1.0, 0.0, 0.5, 0.0.
    x = np.array([[[0.7, 1.0]], [[0.6, 0.0]], [[0.2, 0.5]], [[0.9, 0.0]]])
    trace = spec.simulate("rnnbuilder.LIF", x)
    # Neuron 0.
    # t=0: m = 0.7                          -> no spike, m = 0.7
    # t=1: m = b*0.7 + 0.6 = 1.173          -> spike, m = b*0.7 + 0.6 - 1
    # t=2: m = b*(b*0.7 - 0.4) + 0.2 = 0.342 -> no spike
    # t=3: m = b*m2 + 0.9 = 1.180           -> spike, minus 1
    m0 = [0.7]
    m0.append(b * 0.7 + 0.6 - 1)
    m0.append(b * m0[1] + 0.2)
    m0.append(b * m0[2] + 0.9 - 1)
    # Neuron 1.
    # t=0: m = 1.0 exactly: u = 0 and H is strict -> no spike (>= would fire)
    # t=1: m = b*1.0 = 0.819                 -> no spike
    # t=2: m = b*b + 0.5 = 1.170             -> spike, minus 1
    # t=3: m = b*(b*b - 0.5) = 0.139         -> no spike
    m1 = [1.0, b, b * b + 0.5 - 1, b * (b * b + 0.5 - 1)]
    close(trace.outputs["out"][:, 0], [[0, 0], [1, 0], [0, 1], [1, 0]])
    close(trace.outputs["m"][:, 0], np.array([m0, m1]).T)
    close(trace.final_state["m"][0], [m0[3], m1[3]])


def test_rnnbuilder_lif_gradient_reset_not_detached():
    # x = 1.2, 0.9 from m = 0; cotangents: out = 1, 1 and final m = 0.5.
    # t=0: v0 = 1.2, u0 = 0.2, s0 = 1, m0 = v0 - s0 = 0.2
    # t=1: v1 = b*0.2 + 0.9 = 1.064, u1 = v1 - 1, s1 = 1, m1 = v1 - s1
    u0 = 0.2
    u1 = b * 0.2 + 0.9 - 1
    f0 = 0.3 * (1 - u0)  # 0.24
    f1 = 0.3 * (1 - u1)
    # Reverse, t=1: g m1 = 0.5.  m1 = v1 - s1(v1), so
    #   g s1 = cot_out1 - g m1 = 1 - 0.5
    #   g v1 = g m1 + g s1 f1            (the reset is differentiated)
    g_m1 = 0.5
    g_s1 = 1 - g_m1
    g_v1 = g_m1 + g_s1 * f1
    g_x1 = g_v1
    # t=0: g m0 = b g v1; g s0 = 1 - g m0; g v0 = g m0 + g s0 f0
    #      = g m0 (1 - f0) + f0: the -f0 term is the non-detached reset
    #      (a detached reset would give g v0 = g m0 + f0).
    g_m0 = b * g_v1
    g_s0 = 1 - g_m0
    g_v0 = g_m0 + g_s0 * f0
    g_x0 = g_v0
    g_init = b * g_v0
    grads = spec.vjp("rnnbuilder.LIF", column([1.2, 0.9]), None, None,
                     {"out": column([1.0, 1.0]), "final.m": np.full((1, 1), 0.5)})
    close(grads["x"][:, 0, 0], [g_x0, g_x1])
    close(grads["state.m"][0, 0], g_init)
    # The detached variant differs by g s0 f0 - f0 = -g m0 f0.
    assert abs(g_x0 - (g_m0 + f0)) > 0.05


# --- rnnbuilder.NoReset: m = b m + x, s = H(m - 1), no reset ---

def test_rnnbuilder_noreset_trace():
    # Neuron 0: x = 0.7, 0.6, 0.2, 1.0.  Neuron 1: x = 1.0, 0, 0, 0.  From m = 0.
    x = np.array([[[0.7, 1.0]], [[0.6, 0.0]], [[0.2, 0.0]], [[1.0, 0.0]]])
    trace = spec.simulate("rnnbuilder.NoReset", x)
    # Neuron 0.
    # t=0: m = 0.7                  -> no spike
    # t=1: m = b*0.7 + 0.6 = 1.173  -> spike, nothing subtracted
    # t=2: m = b*1.173 + 0.2 = 1.160 -> spike
    # t=3: m = b*1.160 + 1.0 = 1.950 -> spike
    m = [0.7]
    m.append(b * m[0] + 0.6)
    m.append(b * m[1] + 0.2)
    m.append(b * m[2] + 1.0)
    # Neuron 1: m = 1.0 exactly at t=0 (u = 0, strict: no spike), then b, b^2, b^3.
    n = [1.0, b, b * b, b * b * b]
    close(trace.outputs["m"][:, 0], np.array([m, n]).T)
    close(trace.outputs["out"][:, 0], [[0, 0], [1, 0], [1, 0], [1, 0]])
    close(trace.final_state["m"][0], [m[3], n[3]])


def test_rnnbuilder_noreset_gradient():
    # x = 0.5, 0.6 from m = 0.4; cotangents: out = 1, 1; m = 0.25, 0; final m = 0.5.
    # t=0: m0 = b*0.4 + 0.5 = 0.827, u0 = m0 - 1 = -0.173, s0 = 0
    # t=1: m1 = b*m0 + 0.6 = 1.277, u1 = m1 - 1 = 0.277, s1 = 1
    m0 = b * 0.4 + 0.5
    u0 = m0 - 1
    u1 = b * m0 + 0.6 - 1
    f0 = 0.3 * (1 + u0)  # -1 < u0 < 0
    f1 = 0.3 * (1 - u1)  # 0 < u1 < 1
    # Reverse: g m1 = final 0.5 + cot_out1 f1 (no reset: nothing multiplies by 1 - s)
    g_m1 = 0.5 + f1
    # g m0 = b g m1 + recorded-m cotangent 0.25 + cot_out0 f0
    g_m0 = b * g_m1 + 0.25 + f0
    grads = spec.vjp("rnnbuilder.NoReset", column([0.5, 0.6]), None, {"m": 0.4},
                     {"out": column([1.0, 1.0]), "m": column([0.25, 0.0]),
                      "final.m": np.full((1, 1), 0.5)})
    close(grads["x"][:, 0, 0], [g_m0, g_m1])
    close(grads["state.m"], b * g_m0)


# --- rnnbuilder.Cooldown: s = H(sgn (m[t-1] - 1)), m = b m + (1 - b) exp(x) ---

def test_rnnbuilder_cooldown_trace():
    # Two neurons: sgn = +1 for neuron 0 (F//2 = 1), -1 for neuron 1.
    # Neuron 0: x = 2, -3, -3, -3.  Neuron 1: x = 1.5 at every step.
    x = np.array([[[2.0, 1.5]], [[-3.0, 1.5]], [[-3.0, 1.5]], [[-3.0, 1.5]]])
    trace = spec.simulate("rnnbuilder.Cooldown", x)
    a = 1 - b  # 0.1813
    # Neuron 0 (fires while the previous m > 1):
    # t=0: s from m = 0: H(0 - 1) = 0; m = a e^2 = 1.339 (> 1, but the spike
    #      used the previous m, so no spike yet)
    # t=1: s = H(1.339 - 1) = 1;  m = b*1.339 + a e^-3 = 1.106
    # t=2: s = H(1.106 - 1) = 1;  m = b*1.106 + a e^-3 = 0.914
    # t=3: s = H(0.914 - 1) = 0;  m = b*0.914 + a e^-3 = 0.758
    n0 = [a * math.exp(2.0)]
    for _ in range(3):
        n0.append(b * n0[-1] + a * math.exp(-3.0))
    # Neuron 1 (fires while the previous m < 1):
    # t=0: s = H(-(0 - 1)) = 1;     m = a e^1.5 = 0.812
    # t=1: s = H(-(0.812 - 1)) = 1; m = b*0.812 + a e^1.5 = 1.478
    # t=2: s = H(-(1.478 - 1)) = 0; m = b*1.478 + a e^1.5 = 2.022
    # t=3: s = H(-(2.022 - 1)) = 0; m = b*2.022 + a e^1.5 = 2.468
    n1 = [a * math.exp(1.5)]
    for _ in range(3):
        n1.append(b * n1[-1] + a * math.exp(1.5))
    close(trace.outputs["out"][:, 0], [[0, 1], [1, 1], [1, 0], [0, 0]])
    close(trace.outputs["m"][:, 0], np.array([n0, n1]).T)
    close(trace.final_state["m"][0], [n0[3], n1[3]])


def test_rnnbuilder_cooldown_sign_split_and_strict_test():
    # Three neurons: sgn = +1, -1, -1 (only the first F//2 = 1 fires above 1).
    # From m = 1.0, 0.0, 1.0 with x = 0 (exp(0) = 1): m = b*m0 + (1 - b)*1.
    x = np.zeros((2, 1, 3))
    trace = spec.simulate("rnnbuilder.Cooldown", x, None, {"m": [1.0, 0.0, 1.0]})
    # t=0: u = +(1 - 1) = 0, -(0 - 1) = 1, -(1 - 1) = 0  -> strict H: 0, 1, 0
    #      (neuron 1 with sgn = +1 would not fire: the split is F//2, not (F+1)//2)
    # m[0] = b*1 + (1 - b) = 1 (up to rounding), (1 - b), 1 (up to rounding)
    # t=1: neuron 1 is still below 1 -> fires again; neurons 0 and 2 sit at
    #      m ~ 1 (u within 1e-16 of 0), so only their membranes are checked.
    m_first = [b + (1 - b), 1 - b, b + (1 - b)]
    close(trace.outputs["out"][0, 0], [0, 1, 0])
    close(trace.outputs["out"][1, 0, 1], 1)
    close(trace.outputs["m"][0, 0], m_first)
    close(trace.outputs["m"][1, 0, 1], b * (1 - b) + (1 - b))


def test_rnnbuilder_cooldown_gradient():
    # Two neurons (sgn = +1, -1) from m = 1.2, 0.7; x = 0 then 1 for both.
    # Cotangents: out = 1 everywhere, recorded m = 0.25 at t=0, final m = 0.5.
    a = 1 - b
    # Neuron 0: u0 = +(1.2 - 1) = 0.2, s0 = 1;  m0 = b*1.2 + a e^0 = 1.164
    #           u1 = +(m0 - 1) = 0.164, s1 = 1;  m1 = b*m0 + a e^1
    # Neuron 1: u0 = -(0.7 - 1) = 0.3, s0 = 1;  m0 = b*0.7 + a e^0 = 0.754
    #           u1 = -(m0 - 1) = 0.246, s1 = 1;  m1 = b*m0 + a e^1
    sgn = [1.0, -1.0]
    init = [1.2, 0.7]
    m0 = [b * init[n] + a for n in range(2)]
    u0 = [sgn[n] * (init[n] - 1) for n in range(2)]
    u1 = [sgn[n] * (m0[n] - 1) for n in range(2)]
    f0 = [0.3 * (1 - u) for u in u0]  # 0 < u0 < 1
    f1 = [0.3 * (1 - u) for u in u1]  # 0 < u1 < 1
    # Reverse, t=1: g m1 = 0.5.  x1 only reaches m1 (the spike s1 read m0):
    #   g x1 = g m1 * a e^1
    #   g m0 = b g m1 + cot_out1 * f(u1) * sgn + recorded-m cotangent 0.25
    # t=0:  g x0 = g m0 * a e^0
    #   g init = b g m0 + cot_out0 * f(u0) * sgn
    # The sgn factor makes neuron 1's spike gradient negative: raising m
    # makes a "fire below 1" neuron less likely to fire.
    g_m1 = [0.5, 0.5]
    g_x1 = [g * a * math.e for g in g_m1]
    g_m0 = [b * g_m1[n] + f1[n] * sgn[n] + 0.25 for n in range(2)]
    g_x0 = [g * a for g in g_m0]
    g_init = [b * g_m0[n] + f0[n] * sgn[n] for n in range(2)]
    x = np.array([[[0.0, 0.0]], [[1.0, 1.0]]])
    cot = {"out": np.ones_like(x), "m": np.array([[[0.25, 0.25]], [[0.0, 0.0]]]),
           "final.m": np.full((1, 2), 0.5)}
    grads = spec.vjp("rnnbuilder.Cooldown", x, None, {"m": [1.2, 0.7]}, cot)
    close(grads["x"][:, 0], [g_x0, g_x1])
    close(grads["state.m"], g_init)
    # A cotangent on out[1] alone never reaches x[1].
    only_last = spec.vjp("rnnbuilder.Cooldown", x, None, {"m": [1.2, 0.7]},
                         {"out": np.array([[[0.0, 0.0]], [[1.0, 1.0]]])})
    close(only_last["x"][1, 0], [0.0, 0.0])


def test_rnnbuilder_cooldown_rejects_overflowing_exp():
    limit = math.log(np.finfo(np.float64).max)  # 709.78
    spec.simulate("rnnbuilder.Cooldown", column([0.0, 709.0]))
    with pytest.raises(ValueError, match=r"^x: .*maximum allowed is 709\.78"):
        spec.simulate("rnnbuilder.Cooldown", column([0.0, limit + 0.01]))
    # float32: exp overflows above about 88.72.
    with pytest.raises(ValueError, match=r"^x: .*float32.*maximum allowed is 88\.72"):
        spec.simulate("rnnbuilder.Cooldown", column([89.0]), dtype=np.float32)


# --- rnnbuilder.Adaptive: A = 1 + r, s = H((m - A) / A), m = b m + x - s A, r = bt r + 0.25 s ---

def test_rnnbuilder_adaptive_trace():
    # tau_thr = 2: bt = e^-0.5 = 0.6065.  gamma = 0.25 (default).
    bt = math.exp(-1 / 2)
    # Neuron 0 from m = 0, r = 0: x = 1.5, 0.4, 0.8, 0.2.
    # Neuron 1 from m = 1, r = 0: x = 0.5, 0, 0, 0.
    x = np.array([[[1.5, 0.5]], [[0.4, 0.0]], [[0.8, 0.0]], [[0.2, 0.0]]])
    trace = spec.simulate("rnnbuilder.Adaptive", x, {"tau_thr": 2.0}, {"m": [0.0, 1.0]})
    # Neuron 0.
    # t=0: A = 1,      u = (0 - 1)/1 = -1,          s = 0; m = 1.5;              r = 0
    # t=1: A = 1,      u = (1.5 - 1)/1 = 0.5,       s = 1; m = b*1.5 + 0.4 - 1;  r = 0.25
    # t=2: A = 1.25,   u = (0.628 - 1.25)/1.25 < 0, s = 0; m = b*0.628 + 0.8;    r = bt*0.25
    # t=3: A = 1.152,  u = (1.314 - 1.152)/1.152 > 0, s = 1;
    #      m = b*1.314 + 0.2 - (1 + bt*0.25);  r = bt*bt*0.25 + 0.25
    m0 = [1.5, b * 1.5 + 0.4 - 1]
    m0.append(b * m0[1] + 0.8)
    m0.append(b * m0[2] + 0.2 - (1 + bt * 0.25))
    r0 = [0.0, 0.25, bt * 0.25, bt * bt * 0.25 + 0.25]
    # Neuron 1.
    # t=0: A = 1, u = (1 - 1)/1 = 0: strict, s = 0; m = b*1 + 0.5 = 1.319; r = 0
    # t=1: A = 1, u = 0.319, s = 1; m = b*1.319 + 0 - 1 = 0.080;  r = 0.25
    # t=2: A = 1.25, u < 0, s = 0;  m = b*0.080;                  r = bt*0.25
    # t=3: A = 1.152, u < 0, s = 0; m = b*b*0.080;                r = bt*bt*0.25
    m1 = [b + 0.5, b * (b + 0.5) - 1]
    m1 += [b * m1[1], b * b * m1[1]]
    r1 = [0.0, 0.25, bt * 0.25, bt * bt * 0.25]
    close(trace.outputs["out"][:, 0], [[0, 0], [1, 1], [0, 0], [1, 0]])
    close(trace.outputs["m"][:, 0], np.array([m0, m1]).T)
    close(trace.outputs["r"][:, 0], np.array([r0, r1]).T)
    close(trace.final_state["m"][0], [m0[3], m1[3]])
    close(trace.final_state["r"][0], [r0[3], r1[3]])


def test_rnnbuilder_adaptive_gradient_through_threshold():
    # tau_thr = 2 (bt = e^-0.5), gamma = 0.25; from m = 1.3, r = 0.2; x = 1.8, 0.5.
    # Cotangents: out = 1, 1; final m = 0.5, final r = 1.
    bt = math.exp(-1 / 2)
    # t=0: A0 = 1.2, u0 = (1.3 - 1.2)/1.2 = 0.083, s0 = 1
    #      m0 = b*1.3 + 1.8 - 1.2 = 1.664;  r0 = bt*0.2 + 0.25 = 0.371
    # t=1: A1 = 1 + r0 = 1.371, u1 = (m0 - A1)/A1 = 0.214, s1 = 1
    #      m1 = b*m0 + 0.5 - A1;  r1 = bt*r0 + 0.25
    a0 = 1.2
    u0 = (1.3 - a0) / a0
    m0 = b * 1.3 + 1.8 - a0
    a1 = 1 + bt * 0.2 + 0.25
    u1 = (m0 - a1) / a1
    f0 = 0.3 * (1 - u0)  # 0 < u0 < 1
    f1 = 0.3 * (1 - u1)  # 0 < u1 < 1
    # Reverse, t=1: g m1 = 0.5, g r1 = 1.
    #   s1 enters out (1), the reset (-A1) and r1 (+0.25):
    #   g s1 = 1 - A1 g m1 + 0.25 g r1;  g u1 = g s1 f1
    #   u1 = m0/A1 - 1:  du1/dm0 = 1/A1,  du1/dA1 = -m0/A1^2
    #   g A1 = -s1 g m1 + g u1 (-m0/A1^2)   (reset and normalisation)
    #   g x1 = g m1;  g m0 = b g m1 + g u1/A1;  g r0 = bt g r1 + g A1
    g_m1, g_r1 = 0.5, 1.0
    g_s1 = 1 - a1 * g_m1 + 0.25 * g_r1
    g_u1 = g_s1 * f1
    g_a1 = -1 * g_m1 - g_u1 * m0 / a1**2
    g_x1 = g_m1
    g_m0 = b * g_m1 + g_u1 / a1
    g_r0 = bt * g_r1 + g_a1
    # t=0, the same with A0 = 1 + r_init and m_init = 1.3:
    g_s0 = 1 - a0 * g_m0 + 0.25 * g_r0
    g_u0 = g_s0 * f0
    g_a0 = -1 * g_m0 - g_u0 * 1.3 / a0**2
    g_x0 = g_m0
    g_m_init = b * g_m0 + g_u0 / a0
    g_r_init = bt * g_r0 + g_a0
    grads = spec.vjp("rnnbuilder.Adaptive", column([1.8, 0.5]), {"tau_thr": 2.0},
                     {"m": 1.3, "r": 0.2},
                     {"out": column([1.0, 1.0]), "final.m": np.full((1, 1), 0.5),
                      "final.r": np.full((1, 1), 1.0)})
    close(grads["x"][:, 0, 0], [g_x0, g_x1])
    close(grads["state.m"], g_m_init)
    close(grads["state.r"], g_r_init)


# --- rnnbuilder.Discontinuous: s = H(x - threshold), stateless ---

def test_rnnbuilder_discontinuous_trace():
    # threshold 1 (default): x - 1 = -0.5, 0, 0.5 | 1, -2, 0.25
    x = np.array([[[0.5, 1.0, 1.5]], [[2.0, -1.0, 1.25]]])
    trace = spec.simulate("rnnbuilder.Discontinuous", x)
    # x = 1.0 sits on the threshold: strict H gives 0.
    close(trace.outputs["out"], [[[0, 0, 1]], [[1, 0, 1]]])
    assert set(trace.outputs) == {"out"}
    assert trace.final_state == {}
    # Per-neuron threshold 0.5, 1.0, 2.0; any rank (T, B, C, F) keeps its shape.
    y = np.array([0.6, 0.9, 1.9]).reshape(1, 1, 1, 3)
    out = spec.simulate("rnnbuilder.Discontinuous", y, {"threshold": [0.5, 1.0, 2.0]}).outputs["out"]
    close(out, np.array([1.0, 0.0, 0.0]).reshape(1, 1, 1, 3))


def test_rnnbuilder_discontinuous_gradient():
    # Two steps, threshold 1, cotangent 1, 2 on the steps:
    # g x = cot * 0.3 * max(0, 1 - |x - 1|)
    #   x = 0.5  -> 1 * 0.3 * (1 - 0.5)  = 0.15
    #   x = 1.0  -> 1 * 0.3 * (1 - 0)    = 0.3   (peak, although out = 0)
    #   x = 1.5  -> 1 * 0.3 * (1 - 0.5)  = 0.15
    #   x = 2.0  -> 2 * 0.3 * (1 - 1)    = 0
    #   x = -1.0 -> 2 * 0.3 * max(0, 1 - 2) = 0
    #   x = 1.25 -> 2 * 0.3 * (1 - 0.25) = 0.45
    x = np.array([[[0.5, 1.0, 1.5]], [[2.0, -1.0, 1.25]]])
    cot = np.array([[[1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0]]])
    grads = spec.vjp("rnnbuilder.Discontinuous", x, None, None, {"out": cot})
    assert set(grads) == {"x", "threshold"}
    close(grads["x"], [[[0.15, 0.3, 0.15]], [[0.0, 0.0, 2 * 0.3 * 0.75]]])
    # u = x - threshold: the threshold's gradient is minus the sum of x's.
    close(grads["threshold"], -(0.15 + 0.3 + 0.15 + 0.45))
