"""Hand-worked traces for the hxtorch CUBA models (SPEC.md section 5).

Per step, in hxtorch's order: dv = a (leak - v + i) with the OLD current (IAF:
dv = a i), i <- (1 - b) i + x[t], v <- v + dv, z = [v - threshold > 0] (strict,
superspike surrogate f(u) = 1 / (1 + alpha |u|)^2), detached reset v <- reset
where z = 1.  Refractory models then clamp v to reset and suppress z while the
counter r > 0 and reload r = refractory_time / dt on a spike.  With dt = 1 and
tau_mem = 2 the membrane rate a = dt / tau_mem is exactly 0.5; likewise b.
Every expected number is written out as arithmetic so it can be checked on paper.
"""

import math

import numpy as np
import pytest

import snnref.spec as spec


def column(values):
    """A (T, 1, 1) time-major input for one neuron."""
    return np.array(values, dtype=float).reshape(-1, 1, 1)


def superspike(u, alpha=1.0):
    return 1 / (1 + alpha * abs(u)) ** 2


def flat(grads):
    return {k: np.asarray(v).ravel() for k, v in grads.items()}


# a = 1/2 = 0.5, b = 1/2 = 0.5, alpha = 1 (so f(u) = 1 / (1 + |u|)^2).
HALF = {"tau_mem": 2.0, "tau_syn": 2.0, "dt": 1.0}
LIF_PARAMS = dict(HALF, leak=0.0, reset=0.0, threshold=1.0, alpha=1.0)
IAF_PARAMS = dict(HALF, reset=0.0, threshold=1.0, alpha=1.0)
# The two-step gradient cases start from v = 0.6, i = 1.0 with x = [0.8, 0.3].
X2 = column([0.8, 0.3])
STATE2 = {"v": 0.6, "i": 1.0}


# ---------------------------------------------------------------- hxtorch.cuba_lif


def test_cuba_lif_forward_by_hand():
    # hxtorch.cuba_lif, leak 0.2, reset -0.5, threshold 1, a = b = 0.5; v0 = leak = 0.2, i0 = 0.
    params = dict(HALF, leak=0.2, reset=-0.5, threshold=1.0)
    trace = spec.simulate("hxtorch.cuba_lif", column([1.0, 1.0, 1.0, 0.0]), params)
    # t0: dv = 0.5*(0.2 - 0.2 + 0) = 0      i = 0.5*0 + 1 = 1          v = 0.2
    # t1: dv = 0.5*(0.2 - 0.2 + 1) = 0.5    i = 0.5*1 + 1 = 1.5        v = 0.7
    # t2: dv = 0.5*(0.2 - 0.7 + 1.5) = 0.5  i = 0.5*1.5 + 1 = 1.75     v = 1.2 > 1: spike, v = -0.5
    # t3: dv = 0.5*(0.2 + 0.5 + 1.75)       i = 0.5*1.75 + 0 = 0.875   v = -0.5 + 1.225 = 0.725
    expected_v = [0.2, 0.2 + 0.5, -0.5, -0.5 + 0.5 * (0.2 + 0.5 + 1.75)]
    expected_i = [1.0, 0.5 * 1 + 1, 0.5 * 1.5 + 1, 0.5 * 1.75 + 0]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), expected_v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.outputs["i"].ravel(), expected_i, rtol=0, atol=1e-12)
    assert trace.outputs["out"].ravel().tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(trace.final_state["v"].ravel(), expected_v[-1:], rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.final_state["i"].ravel(), [0.875], rtol=0, atol=1e-12)
    # The detached reset spike is kept for replay.
    assert trace.detached["reset_spike"].ravel().tolist() == [0, 0, 1, 0]


def test_cuba_lif_threshold_is_strict():
    # hxtorch.cuba_lif with leak 0, reset 0: every number below is an exact binary fraction.
    params = dict(HALF, leak=0.0, reset=0.0, threshold=1.0)
    trace = spec.simulate("hxtorch.cuba_lif", column([1.0, 1.0, 1.0, 0.0]), params)
    # t0: v = 0 + 0.5*(0 - 0 + 0) = 0         i = 1
    # t1: v = 0 + 0.5*(0 - 0 + 1) = 0.5       i = 1.5
    # t2: v = 0.5 + 0.5*(0 - 0.5 + 1.5) = 1.0 exactly at threshold: no spike (strict >)
    # t3: v = 1 + 0.5*(0 - 1 + 1.75) = 1.375  spike, v = 0
    assert trace.outputs["v"].ravel().tolist() == [0.0, 0.5, 1.0, 0.0]
    assert trace.outputs["out"].ravel().tolist() == [0, 0, 0, 1]


def test_cuba_lif_hardware_module_defaults():
    # hxtorch.cuba_lif with the hardware modules' values: leak = reset = 80, threshold 125,
    # tau_syn = tau_mem = 10e-6, dt = 1e-6 (a = b = 0.1), alpha = 50.
    a = 1e-6 / 10e-6
    params = {"leak": 80.0, "reset": 80.0, "threshold": 125.0, "tau_syn": 10e-6,
              "tau_mem": 10e-6, "alpha": 50.0, "dt": 1e-6}
    x = column([200.0, 0.0, 0.0, 0.0])
    trace = spec.simulate("hxtorch.cuba_lif", x, params)
    # t0: v = 80 + a*(80 - 80 + 0) = 80          i = 200
    # t1: v = 80 + a*(80 - 80 + 200) = 100       i = 200 (1 - a) = 180
    # t2: v = 100 + a*(80 - 100 + 180) = 116     i = 180 (1 - a) = 162
    # t3: v = 116 + a*(80 - 116 + 162) = 128.6 > 125: spike, v = reset 80;  i = 145.8
    v1 = 80 + a * 200
    v2 = v1 + a * (80 - v1 + 200 * (1 - a))
    v3 = v2 + a * (80 - v2 + 200 * (1 - a) ** 2)
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [80, v1, v2, 80], rtol=0, atol=1e-12)
    np.testing.assert_allclose(v3, 128.6, rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.outputs["i"].ravel(), [200, 180, 162, 145.8], rtol=0, atol=1e-12)
    assert trace.outputs["out"].ravel().tolist() == [0, 0, 0, 1]
    # A cotangent 1 on the spike at t3 reaches the threshold as -f(u3), u3 = 128.6 - 125,
    # with alpha = 50: -1 / (1 + 50*3.6)^2 = -1/181^2.
    cot = {"out": column([0, 0, 0, 1.0])}
    grads = spec.vjp("hxtorch.cuba_lif", x, params, None, cot)
    np.testing.assert_allclose(grads["threshold"], -superspike(v3 - 125, 50.0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["threshold"], -1 / 181**2, rtol=0, atol=1e-12)


def test_cuba_lif_gradient_by_hand():
    # hxtorch.cuba_lif, leak = reset = 0, threshold 1, a = b = 0.5, alpha 1, v0 = 0.6, i0 = 1.
    # Forward:
    #   t0: dv = 0.5*(0 - 0.6 + 1.0) = 0.2, i = 0.5*1.0 + 0.8 = 1.3, w = 0.8,
    #       u0 = -0.2, no spike, v = 0.8
    #   t1: dv = 0.5*(0 - 0.8 + 1.3) = 0.25 (OLD current 1.3), i = 0.5*1.3 + 0.3 = 0.95,
    #       w = 1.05, u1 = 0.05, spike, v = reset 0
    trace = spec.simulate("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2)
    assert trace.outputs["out"].ravel().tolist() == [0, 1]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.8, 0.0], rtol=0, atol=1e-12)
    # Cotangents: 1 on each spike, 2 on the final v.
    cot = {"out": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2, cot))
    g1, g0 = superspike(0.05), superspike(-0.2)
    # t1: the final v is after a detached reset: g reset = z g = 2, g w1 = (1 - z) 2 = 0
    #     (no -w f term); the spike adds g u1 = f(0.05) = g1, so g w1 = g1.
    #     g x[1] = g i[1] = 0: x[T-1] never reaches v.
    #     g i0-path: g i[0] = a g w1 = 0.5 g1; g v[0] = (1 - a) g w1 = 0.5 g1.
    # t0: no spike, so g w0 = 0.5 g1 + f(-0.2) = 0.5 g1 + g0.
    #     g x[0] = g i[0] = 0.5 g1
    #     g v0 = (1 - a) g w0 = 0.25 g1 + 0.5 g0
    #     g i0 = (1 - b) g i[0] + a g w0 = 0.25 g1 + 0.25 g1 + 0.5 g0
    # leak: a g w1 + a g w0 = 0.5 g1 + 0.5 (0.5 g1 + g0)
    # a: g w1 (0 - 0.8 + 1.3) + g w0 (0 - 0.6 + 1.0); tau_mem = -g_a a / tau_mem = -g_a / 4
    # b: -g i[0] * i0 = -0.5 g1 * 1.0;                 tau_syn = -g_b b / tau_syn = -g_b / 4
    g_a = g1 * 0.5 + (0.5 * g1 + g0) * 0.4
    expected = {
        "x": [0.5 * g1, 0.0],
        "threshold": [-(g1 + g0)],
        "reset": [1 * 2.0],
        "leak": [0.5 * g1 + 0.5 * (0.5 * g1 + g0)],
        "tau_mem": [-g_a * 0.5 / 2.0],
        "tau_syn": [0.5 * g1 * 1.0 * 0.5 / 2.0],
        "state.v": [0.5 * (0.5 * g1 + g0)],
        "state.i": [0.5 * 0.5 * g1 + 0.5 * (0.5 * g1 + g0)],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)
    # x[T-1] has exactly no gradient.
    assert grads["x"][-1] == 0.0


def test_cuba_lif_initial_state_path_is_reported_separately():
    # hxtorch.cuba_lif with no v given: v0 = leak, but "leak" holds only the direct path;
    # the initial-state path is "state.v" (the seed's total is their sum).
    cot = {"out": column([1.0, 1.0]), "final.v": 2.0}
    implicit = spec.vjp("hxtorch.cuba_lif", X2, LIF_PARAMS, {"i": 1.0}, cot)
    explicit = spec.vjp("hxtorch.cuba_lif", X2, LIF_PARAMS, {"v": 0.0, "i": 1.0}, cot)
    np.testing.assert_allclose(implicit["leak"], explicit["leak"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(implicit["state.v"], explicit["state.v"], rtol=0, atol=1e-12)


def test_cuba_lif_membrane_injection_by_hand():
    # hxtorch.cuba_lif with a hardware membrane [1.5, 0.4]: returned exactly, the surrogate
    # is evaluated there, the next step integrates from it, and the model's reset is skipped.
    inject = {"v": column([1.5, 0.4])}
    trace = spec.simulate("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2, inject=inject)
    # t0: model w = 0.6 + 0.5*(0 - 0.6 + 1.0) = 0.8, observed 1.5: u0 = 0.5, spike, no reset
    # t1: dv = 0.5*(0 - 1.5 + 1.3) = -0.1 (from the OBSERVED 1.5), model w = 1.4, observed 0.4:
    #     u1 = -0.6, no spike
    assert trace.outputs["v"].ravel().tolist() == [1.5, 0.4]
    assert trace.outputs["out"].ravel().tolist() == [1, 0]
    np.testing.assert_allclose(trace.outputs["i"].ravel(), [1.3, 0.95], rtol=0, atol=1e-12)
    # The straight-through offsets observed - model: 1.5 - 0.8 and 0.4 - 1.4.
    np.testing.assert_allclose(trace.detached["inject_v"].ravel(), [1.5 - 0.8, 0.4 - (1.5 - 0.1)],
                               rtol=0, atol=1e-12)
    cot = {"out": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2, cot, inject=inject))
    g1, g0 = superspike(-0.6), superspike(0.5)
    # t1: no reset, so the final-v cotangent passes unmasked: g w1 = 2 + g1.
    #     g x[1] = 0; g i[0] = 0.5 (2 + g1); g v[0] = 0.5 (2 + g1).
    # t0: the spike did not reset (membrane observed), so no (1 - z) factor either:
    #     g w0 = 0.5 (2 + g1) + g0; g v0 = 0.5 g w0; reset gets nothing.
    gw1 = 2 + g1
    gw0 = 0.5 * gw1 + g0
    expected = {
        "x": [0.5 * gw1, 0.0],
        "threshold": [-(g0 + g1)],
        "reset": [0.0],
        "leak": [0.5 * gw1 + 0.5 * gw0],
        "state.v": [0.5 * gw0],
        "state.i": [0.5 * 0.5 * gw1 + 0.5 * gw0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)


def test_cuba_lif_spike_injection_by_hand():
    # hxtorch.cuba_lif with hardware spikes [1, 0]: the model would not fire at t0
    # (w = 0.8), but the observed spike is returned and resets v (detached).
    inject = {"spikes": column([1.0, 0.0])}
    trace = spec.simulate("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2, inject=inject)
    # t0: w = 0.8, observed spike: v = reset 0
    # t1: dv = 0.5*(0 - 0 + 1.3) = 0.65, w = 0.65, u1 = -0.35, no spike
    assert trace.outputs["out"].ravel().tolist() == [1.0, 0.0]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.0, 0.65], rtol=0, atol=1e-12)
    assert trace.detached["reset_spike"].ravel().tolist() == [1.0, 0.0]
    cot = {"out": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_lif", X2, LIF_PARAMS, STATE2, cot, inject=inject))
    g1, g0 = superspike(-0.35), superspike(-0.2)
    # t1: g w1 = 2 + g1 (no spike); g i[0] = 0.5 (2 + g1); g v[0] = 0.5 (2 + g1).
    # t0: the injected spike resets: g reset = 0.5 (2 + g1), g w0 = 0 + f(u0 of the MODEL's
    #     membrane) = g0: the cotangent of the observed spike flows to the model's surrogate.
    gw1 = 2 + g1
    expected = {
        "x": [0.5 * gw1, 0.0],
        "reset": [0.5 * gw1],
        "threshold": [-(g0 + g1)],
        "state.v": [0.5 * g0],
        "state.i": [0.5 * 0.5 * gw1 + 0.5 * g0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- hxtorch.cuba_refractory_lif

REFRACTORY_LIF_PARAMS = dict(HALF, tau_syn=1.0, leak=0.0, reset=-1.0, threshold=1.0,
                             refractory_time=2.5)


def test_cuba_refractory_lif_forward_by_hand():
    # hxtorch.cuba_refractory_lif, a = 0.5, b = 1 (i = x[t]), leak 0, reset -1, threshold 1,
    # refractory_time / dt = 2.5.  Two neurons: A driven hard (x = 4), B as listed.
    # Per step w = v + 0.5 (0 - v + i_old) = 0.5 v + 0.5 i_old.
    x = np.array([[4, 3], [4, 1], [4, 1], [4, 1], [4, 3], [4, 0]], dtype=float).reshape(6, 1, 2)
    trace = spec.simulate("hxtorch.cuba_refractory_lif", x, REFRACTORY_LIF_PARAMS,
                          {"v": 0.0, "i": np.array([4.0, 3.0])})
    # A: t0: w = 0 + 2 = 2 spike, v = -1, r = 2.5
    #    t1: w = -0.5 + 2 = 1.5 > 1 but r = 2.5 > 0: clamped, spike suppressed, r = 2.5 - 1
    #    t2: clamped, r = 1.5 - 1 = 0.5;  t3: clamped, r = relu(0.5 - 1) = 0
    #    t4: r = 0: w = 1.5 spike, r = 2.5;  t5: clamped, r = 1.5
    # B: t0: w = 0 + 1.5 spike, v = -1, r = 2.5
    #    t1: w = -0.5 + 1.5 = 1.0 (no spike), clamped to -1, r = 1.5
    #    t2: w = -0.5 + 0.5 = 0, clamped to -1, r = 0.5;  t3: clamped to -1, r = 0
    #    t4: free: w = -0.5 + 0.5 = 0, v = 0;  t5: w = 0 + 0.5*3 = 1.5 spike, v = -1, r = 2.5
    spikes = trace.outputs["out"][:, 0, :]
    assert spikes[:, 0].tolist() == [1, 0, 0, 0, 1, 0]
    assert spikes[:, 1].tolist() == [1, 0, 0, 0, 0, 1]
    assert trace.outputs["v"][:, 0, 0].tolist() == [-1] * 6
    assert trace.outputs["v"][:, 0, 1].tolist() == [-1, -1, -1, -1, 0, -1]
    r = trace.outputs["r"][:, 0, :]
    assert r[:, 0].tolist() == [2.5, 2.5 - 1, 2.5 - 2, 0, 2.5, 2.5 - 1]
    assert r[:, 1].tolist() == [2.5, 2.5 - 1, 2.5 - 2, 0, 0, 2.5]
    # The current keeps integrating through the refractory period.
    assert trace.outputs["i"][:, 0, :].tolist() == x[:, 0, :].tolist()
    # The mask [r > 0] of each step (before its update) is kept for replay.
    assert trace.detached["refractory_mask"][:, 0, 1].tolist() == [0, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("refractory_time", [0.5, 1.0, 2.0, 2.5, 3.2])
def test_cuba_refractory_lif_clamps_ceil_steps(refractory_time):
    # hxtorch.cuba_refractory_lif driven so hard that it would fire on every step:
    # a = b = 1, so w = leak + i_old = x[t-1] = 5 > 1.  After each spike it stays silent
    # (clamped) for exactly ceil(refractory_time / dt) steps.
    params = {"tau_mem": 1.0, "tau_syn": 1.0, "dt": 1.0, "leak": 0.0, "reset": 0.0,
              "threshold": 1.0, "refractory_time": refractory_time}
    trace = spec.simulate("hxtorch.cuba_refractory_lif", column([5.0] * 12), params, {"i": 5.0})
    fired = np.flatnonzero(trace.outputs["out"].ravel())
    assert fired[0] == 0
    assert set(np.diff(fired)) == {math.ceil(refractory_time) + 1}


def test_cuba_refractory_lif_gradient_by_hand():
    # hxtorch.cuba_refractory_lif, leak = reset = 0, threshold 1, a = b = 0.5, alpha 1,
    # refractory_time / dt = 2, v0 = 0.6, i0 = 2, r0 = 1 (refractory at t0).
    params = dict(LIF_PARAMS, refractory_time=2.0)
    state = {"v": 0.6, "i": 2.0, "r": 1.0}
    # t0: dv = 0.5*(0 - 0.6 + 2) = 0.7, i = 0.5*2 + 0.8 = 1.8, w0 = 1.3, u0 = 0.3: the model
    #     fires and resets (v = 0), then m = [1 > 0] = 1 clamps v = 0 and suppresses z:
    #     r = (1 - 0) relu(1 - 1) + 0 = 0.
    # t1: m = 0. dv = 0.5*(0 - 0 + 1.8) = 0.9, i = 0.9 + 0.3 = 1.2, w1 = 0.9, u1 = -0.1,
    #     no spike, v = 0.9, r = 0.
    trace = spec.simulate("hxtorch.cuba_refractory_lif", X2, params, state)
    assert trace.outputs["out"].ravel().tolist() == [0, 0]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.0, 0.9], rtol=0, atol=1e-12)
    assert trace.outputs["r"].ravel().tolist() == [0, 0]
    # Cotangents: 1 on each spike, 1 on each recorded r, 2 on the final v.
    cot = {"out": column([1.0, 1.0]), "r": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_refractory_lif", X2, params, state, cot))
    g1 = 3 * superspike(-0.1)
    # t1: r = (1 - z) c + z k: g z = 1 + g r (k - c) = 1 + 1*(2 - 0) = 3; m = 0 so nothing
    #     is masked: g w1 = 2 + 3 f(-0.1) = 2 + g1; threshold gets -g1.
    #     g i[0] = 0.5 (2 + g1); g v[0] = 0.5 (2 + g1); g x[1] = 0.
    # t0: m = 1: reset gets m g v[0] = 0.5 (2 + g1), g w0 = (1 - m) ... = 0 and the spike's
    #     cotangent 1 + 1*(2 - 0) is masked by (1 - m) = 0 too.
    #     g x[0] = g i[0] = 0.5 (2 + g1); b: -g i[0] i0 = -0.5 (2 + g1) * 2.
    #     g i0 = (1 - b) g i[0] = 0.25 (2 + g1); g v0 = 0; the initial r gets nothing.
    G = 2 + g1
    expected = {
        "x": [0.5 * G, 0.0],
        "threshold": [-g1],
        "reset": [0.5 * G],
        "leak": [0.5 * G],
        "tau_mem": [-(G * (0 - 0 + 1.8)) * 0.5 / 2.0],
        "tau_syn": [0.5 * G * 2.0 * 0.5 / 2.0],
        "state.v": [0.0],
        "state.i": [0.25 * G],
        "state.r": [0.0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- hxtorch.cuba_li


def test_cuba_li_forward_by_hand():
    # hxtorch.cuba_li, leak 0.5, a = b = 0.5; v0 = leak = 0.5, i0 = 0.  No spikes: out = v.
    params = dict(HALF, leak=0.5)
    trace = spec.simulate("hxtorch.cuba_li", column([1.0, 1.0, 0.0, 0.0]), params)
    # t0: v = 0.5 + 0.5*(0.5 - 0.5 + 0) = 0.5          i = 1
    # t1: v = 0.5 + 0.5*(0.5 - 0.5 + 1) = 1.0          i = 0.5 + 1 = 1.5
    # t2: v = 1.0 + 0.5*(0.5 - 1.0 + 1.5) = 1.5        i = 0.75
    # t3: v = 1.5 + 0.5*(0.5 - 1.5 + 0.75) = 1.375     i = 0.375
    expected_v = [0.5, 1.0, 1.5, 1.5 + 0.5 * (0.5 - 1.5 + 0.75)]
    assert trace.outputs["out"].ravel().tolist() == expected_v
    assert trace.outputs["v"].ravel().tolist() == expected_v
    assert trace.outputs["i"].ravel().tolist() == [1.0, 1.5, 0.75, 0.375]


def test_cuba_li_membrane_injection_truncates_and_replaces():
    # hxtorch.cuba_li with a 3-step hardware membrane [2, 1, 0.25] on a 4-step input: time is
    # truncated to 3 steps; each step integrates from the observed value.
    params = dict(HALF, leak=0.5)
    trace = spec.simulate("hxtorch.cuba_li", column([1.0, 1.0, 0.0, 0.0]), params,
                          inject={"v": column([2.0, 1.0, 0.25])})
    assert trace.outputs["out"].ravel().tolist() == [2.0, 1.0, 0.25]
    # Model values: t0 0.5 (as above); t1 2 + 0.5*(0.5 - 2 + 1) = 1.75; t2 1 + 0.5*(0.5 - 1 + 1.5)
    np.testing.assert_allclose(trace.detached["inject_v"].ravel(),
                               [2.0 - 0.5, 1.0 - 1.75, 0.25 - 1.5], rtol=0, atol=1e-12)


def test_cuba_li_gradient_by_hand():
    # hxtorch.cuba_li, leak 0, a = b = 0.5, v0 = 0.6, i0 = 1.
    # t0: v = 0.6 + 0.5*(0 - 0.6 + 1.0) = 0.8,  i = 1.3
    # t1: v = 0.8 + 0.5*(0 - 0.8 + 1.3) = 1.05, i = 0.95
    params = dict(HALF, leak=0.0)
    trace = spec.simulate("hxtorch.cuba_li", X2, params, STATE2)
    np.testing.assert_allclose(trace.outputs["out"].ravel(), [0.8, 1.05], rtol=0, atol=1e-12)
    # Cotangents: 1 on each output v, 1 on the final current (the only way x[T-1] matters).
    cot = {"out": column([1.0, 1.0]), "final.i": 1.0}
    grads = flat(spec.vjp("hxtorch.cuba_li", X2, params, STATE2, cot))
    # t1: g v1 = 1, g i1 = 1: g x[1] = 1; leak += 0.5; a += 1*(0 - 0.8 + 1.3); b -= 1*1.3
    #     g i[0] = 0.5*1 + 0.5*1 = 1; g v[0] = 0.5*1
    # t0: g v0' = 0.5 + 1 = 1.5: g x[0] = 1; leak += 0.5*1.5; a += 1.5*(0 - 0.6 + 1.0);
    #     b -= 1*1.0; g i0 = 0.5*1 + 0.5*1.5; g v0 = 0.5*1.5
    g_a = 1 * 0.5 + 1.5 * 0.4
    g_b = -1 * 1.3 - 1 * 1.0
    expected = {
        "x": [1.0, 1.0],
        "leak": [0.5 + 0.5 * 1.5],
        "tau_mem": [-g_a * 0.5 / 2.0],
        "tau_syn": [-g_b * 0.5 / 2.0],
        "state.v": [0.5 * 1.5],
        "state.i": [0.5 * 1 + 0.5 * 1.5],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- hxtorch.cuba_iaf


def test_cuba_iaf_forward_by_hand():
    # hxtorch.cuba_iaf, reset -0.5, threshold 1, a = b = 0.5; v0 = reset = -0.5, i0 = 0.
    params = dict(HALF, reset=-0.5, threshold=1.0)
    trace = spec.simulate("hxtorch.cuba_iaf", column([1.0, 1.0, 1.0, 0.0]), params)
    # No leak: v <- v + 0.5 i_old.
    # t0: v = -0.5 + 0.5*0 = -0.5       i = 1
    # t1: v = -0.5 + 0.5*1 = 0          i = 1.5
    # t2: v = 0 + 0.5*1.5 = 0.75        i = 1.75
    # t3: v = 0.75 + 0.5*1.75 = 1.625 > 1: spike, v = -0.5;  i = 0.875
    assert trace.outputs["v"].ravel().tolist() == [-0.5, 0.0, 0.75, -0.5]
    assert trace.outputs["i"].ravel().tolist() == [1.0, 1.5, 1.75, 0.875]
    assert trace.outputs["out"].ravel().tolist() == [0, 0, 0, 1]


def test_cuba_iaf_gradient_by_hand():
    # hxtorch.cuba_iaf, reset 0, threshold 1, a = b = 0.5, alpha 1, v0 = 0.6, i0 = 1.
    # t0: w0 = 0.6 + 0.5*1.0 = 1.1, u0 = 0.1: spike, v = 0; i = 0.5*1 + 0.8 = 1.3
    # t1: w1 = 0 + 0.5*1.3 = 0.65, u1 = -0.35: no spike, v = 0.65; i = 0.95
    trace = spec.simulate("hxtorch.cuba_iaf", X2, IAF_PARAMS, STATE2)
    assert trace.outputs["out"].ravel().tolist() == [1, 0]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.0, 0.65], rtol=0, atol=1e-12)
    cot = {"out": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_iaf", X2, IAF_PARAMS, STATE2, cot))
    g1, g0 = superspike(-0.35), superspike(0.1)
    # t1: g w1 = 2 + g1; a += g w1 * i_old (1.3); g x[1] = 0; g i[0] = 0.5 g w1;
    #     g v[0] = g w1 (no leak: the membrane carries over with factor 1).
    # t0: detached reset (z = 1): reset += g v[0] = 2 + g1, g w0 = 0 + g0 (no -w f term);
    #     a += g0 * 1.0; g x[0] = g i[0]; b -= g i[0] * 1.0;
    #     g i0 = 0.5 g i[0] + 0.5 g w0; g v0 = g w0 = g0.
    gw1 = 2 + g1
    g_a = gw1 * 1.3 + g0 * 1.0
    expected = {
        "x": [0.5 * gw1, 0.0],
        "reset": [gw1],
        "threshold": [-(g0 + g1)],
        "tau_mem": [-g_a * 0.5 / 2.0],
        "tau_syn": [0.5 * gw1 * 1.0 * 0.5 / 2.0],
        "state.v": [g0],
        "state.i": [0.5 * 0.5 * gw1 + 0.5 * g0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- hxtorch.cuba_refractory_iaf

REFRACTORY_IAF_PARAMS = dict(HALF, tau_syn=1.0, reset=-1.0, threshold=1.0, refractory_time=2.5)


def test_cuba_refractory_iaf_forward_by_hand():
    # hxtorch.cuba_refractory_iaf, a = 0.5, b = 1 (i = x[t]), reset -1 (= v0), threshold 1,
    # refractory_time / dt = 2.5, i0 = 4 and x = 4: w = v + 0.5*4 = v + 2.
    trace = spec.simulate("hxtorch.cuba_refractory_iaf", column([4.0] * 7),
                          REFRACTORY_IAF_PARAMS, {"i": 4.0})
    # t0: w = -1 + 2 = 1, not > 1: no spike, v = 1
    # t1: w = 1 + 2 = 3: spike, v = -1, r = 2.5
    # t2, t3, t4: r = 2.5, 1.5, 0.5 > 0: w = -1 + 2 = 1 clamped to -1; r -> 1.5, 0.5, 0
    #     (ceil(2.5) = 3 clamped steps)
    # t5: free: w = -1 + 2 = 1, no spike, v = 1;  t6: w = 3: spike, v = -1, r = 2.5
    assert trace.outputs["out"].ravel().tolist() == [0, 1, 0, 0, 0, 0, 1]
    assert trace.outputs["v"].ravel().tolist() == [1, -1, -1, -1, -1, 1, -1]
    assert trace.outputs["r"].ravel().tolist() == [0, 2.5, 1.5, 0.5, 0, 0, 2.5]
    assert trace.final_state["r"].ravel().tolist() == [2.5]


def test_cuba_refractory_iaf_injection_during_clamp():
    # hxtorch.cuba_refractory_iaf, the first three steps of the trace above with hardware data:
    # spikes [1, 0, 0] (the observed spike at t0 starts the refractory period) and the membrane
    # [0.5, 0.75, -0.25], which is returned exactly even while the model clamps.
    inject = {"spikes": column([1.0, 0.0, 0.0]), "v": column([0.5, 0.75, -0.25])}
    trace = spec.simulate("hxtorch.cuba_refractory_iaf", column([4.0] * 3),
                          REFRACTORY_IAF_PARAMS, {"i": 4.0}, inject=inject)
    assert trace.outputs["out"].ravel().tolist() == [1.0, 0.0, 0.0]
    assert trace.outputs["v"].ravel().tolist() == [0.5, 0.75, -0.25]
    # t0: observed spike -> r = 2.5; t1, t2: m = 1 -> r = 1.5, 0.5.
    assert trace.outputs["r"].ravel().tolist() == [2.5, 1.5, 0.5]
    # t1: model w = 0.5 + 0.5*4 = 2.5 (from the observed 0.5), then clamped: the offsets
    # are 0.75 - 2.5 at the membrane and 0.75 - (-1) after the clamp.
    np.testing.assert_allclose(trace.detached["inject_v"].ravel()[1], 0.75 - 2.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.detached["inject_v_refractory"].ravel()[1], 0.75 + 1,
                               rtol=0, atol=1e-12)


def test_cuba_refractory_iaf_gradient_by_hand():
    # hxtorch.cuba_refractory_iaf, reset 0, threshold 1, a = b = 0.5, alpha 1,
    # refractory_time / dt = 2, v0 = 0.6, i0 = 1, r0 = 0.
    params = dict(IAF_PARAMS, refractory_time=2.0)
    state = dict(STATE2, r=0.0)
    # t0: m = 0. w0 = 0.6 + 0.5*1.0 = 1.1, u0 = 0.1: spike, v = 0, r = 0 + 1*2 = 2; i = 1.3
    # t1: m = 1. w1 = 0 + 0.5*1.3 = 0.65 (u1 = -0.35) clamped to 0, no spike,
    #     r = (1 - 0) relu(2 - 1) = 1; i = 0.95
    trace = spec.simulate("hxtorch.cuba_refractory_iaf", X2, params, state)
    assert trace.outputs["out"].ravel().tolist() == [1, 0]
    assert trace.outputs["r"].ravel().tolist() == [2, 1]
    np.testing.assert_allclose(trace.outputs["v"].ravel(), [0.0, 0.0], rtol=0, atol=1e-12)
    cot = {"out": column([1.0, 1.0]), "r": column([1.0, 1.0]), "final.v": 2.0}
    grads = flat(spec.vjp("hxtorch.cuba_refractory_iaf", X2, params, state, cot))
    g0 = 3 * superspike(0.1)
    # t1: g z = 1 + g r (k - c) = 1 + 1*(2 - 1) = 2, but m = 1 masks it and v: reset += 1*2,
    #     g w1 = 0, g x[1] = 0, g i[0] = 0, g v[0] = 0.  (r[1] does not depend on r[0]
    #     differentiably: c = relu(r - m) is a stop-gradient.)
    # t0: m = 0. g z = 1 + 1*(2 - 0) = 3: g u0 = 3 f(0.1) = g0; detached reset: nothing on v.
    #     a += g0 * i0 (1.0); g x[0] = g i[0] = 0; g i0 = 0.5*0 + 0.5 g0; g v0 = g0.
    expected = {
        "x": [0.0, 0.0],
        "reset": [2.0],
        "threshold": [-g0],
        "tau_mem": [-g0 * 1.0 * 0.5 / 2.0],
        "tau_syn": [0.0],
        "state.v": [g0],
        "state.i": [0.5 * g0],
        "state.r": [0.0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12, err_msg=key)
