"""The spiking self-attention family: tether SpikingSelfAttention.

Input x of shape (T, B, N, D).  Three bias-free linear maps feed three LIF
populations (query, key, value), each with its own membrane, decay, threshold
and arctan scale; the key and value spikes accumulate into a running context
S, which the query spikes gate before an affine output projection.  There is
no softmax and no head split (``num_heads`` does not change the result).
Linear maps follow torch: lin(z, W) = z @ W.T, i.e. lin(z, W)[i] = sum_j W[i, j] z[j].

For each branch c in (q, k, v), per step t (v+_c[-1] and S[-1] are the initial state):

(1) y_c[t]  = lin(x[t], c_weight)
(2) v_c[t]  = c_decay * v+_c[t-1] + y_c[t]
(3) u_c[t]  = v_c[t] - c_threshold
(4) s_c[t]  = H(u_c[t])  (u >= 0)       (smooth twin: F(u_c[t]), arctan, c_alpha)
(5) v+_c[t] = v_c[t] * (1 - sg(s_c[t])) detached hard reset to 0 (0 where sg(s_c[t]) = 1: lif.reset_to_zero)

then, elementwise over (B, N, D):

(6) S[t]   = S[t-1] + s_k[t] * s_v[t]
(7) o[t]   = s_q[t] * S[t]
(8) out[t] = lin(o[t], proj_weight) + proj_bias

``sg`` is a stop-gradient: each branch's detached spike is recorded under
``<c>_reset_spike`` and replayed from ``detached`` when given.  Recorded
sequences: ``q_v``, ``k_v``, ``v_v`` = v_c[t] (pre-reset) and ``context`` =
S[t] (after the step); the final state is v+_c[T-1] and S[T-1].

Reverse loop (adjoints written ``g``; lin_T(g, W)[j] = sum_i g[i] W[i, j]),
from g v+_c[T-1] and g S[T-1] = the final-state cotangents:

(9)  g proj_bias += g out[t];  g proj_weight += g out[t] (x) o[t];  g o[t] = lin_T(g out[t], proj_weight)
(10) g S[t]  = g o[t] s_q[t] + cot_context[t] + g S[t+1]      (g S[T] is the final cotangent)
(11) g s_q[t] = g o[t] S[t];  g s_k[t] = g S[t] s_v[t];  g s_v[t] = g S[t] s_k[t]
(12) g v_c[t] = g v+_c[t] (1 - sg(s_c[t])) + cot_c_v[t] + g s_c[t] f(u_c[t])
(13) g y_c[t] = g v_c[t];  g v+_c[t-1] = c_decay g v_c[t];  g c_decay += g v_c[t] v+_c[t-1]
(14) g c_threshold -= g s_c[t] f(u_c[t]);  g c_alpha += g s_c[t] dF/dalpha(u_c[t])
(15) g c_weight += g y_c[t] (x) x[t];  g x[t] += lin_T(g y_c[t], c_weight)

(x) is the outer product summed over the batch and token axes.  The initial
state receives g v+_c[-1] and g S[-1] = g S[0].

Long sums (SPEC.md section 7, ``spec/sums.py``).  Besides the parameter
gradients, ``g x`` and the initial-state gradients are long sums: (15) sums D
features of three branches, and every ``g v_c[t]`` and ``g S[t]`` sums the
cotangents of all later steps through (10) and (12)-(13).  Their magnitudes
``M`` (the sum of the absolute values of every contribution that reaches the
element) follow the same recurrences with every factor replaced by its |.|:

(16) M o[t]  = lin_T(|g out[t]|, |proj_weight|)
(17) M S[t]  = M o[t] |s_q[t]| + |cot_context[t]| + M S[t+1]      (M S[T] = |g S[T]|)
(18) M s_q[t] = M o[t] |S[t]|;  M s_k[t] = M S[t] |s_v[t]|;  M s_v[t] = M S[t] |s_k[t]|
(19) M v_c[t] = M v+_c[t] |1 - sg(s_c[t])| + |cot_c_v[t]| + M s_c[t] |f(u_c[t])|
(20) M v+_c[t-1] = |c_decay| M v_c[t];  M x[t] = sum_c lin_T(M v_c[t], |c_weight|)

with M v+_c[T-1] = |g v+_c[T-1]|; the initial state's are M v+_c[-1] and
M S[-1] = M S[0].  The number of roundings a contribution meets on its way
into one element, the ``n`` of the term: at most four per step along the
adjoint chains (two additions and two multiplications in (12)-(13); (10) has
two), two per feature in the output projection's product (9), and for ``g x``
one addition per term of the 3 D products of (15):

(21) n_state = 4 (T + 1) + 2 D,    n_x = n_state + 3 D

A branch parameter's gradient (13)-(15) sums contributions that are products
of these adjoints, so each contribution's magnitude is the adjoint's M, not
its |g|, which may have cancelled (the output projection's (9) multiply the
cotangent itself):

(22) M c_decay += M v_c[t] |v+_c[t-1]|;  M c_threshold += M s_c[t] |f(u_c[t])|;
     M c_alpha += M s_c[t] |dF/dalpha(u_c[t])|;  M c_weight += M v_c[t] (x) |x[t]|

and each such contribution has met the n_state roundings of its adjoint: a
branch parameter's n is its number of contributions (``api._sum_size``) plus
n_state.
"""

from __future__ import annotations

import numpy as np

from ..registry import HARD_RESET
from .lif import reset_to_zero
from .sums import Sums

# (5), per branch: the family contract's resets (snnref/families.py).
RESETS = (HARD_RESET,)

BRANCHES = ("q", "k", "v")


def _linear(z, weight):
    # Each row reduced on its own, so a batch row never depends on the batch size.
    return np.sum(z[..., None, :] * weight, axis=-1)


def _linear_transpose(g, weight):
    return np.sum(g[..., :, None] * weight, axis=-2)


def _outer(g, z):
    """sum over every leading axis of g[..., i] * z[..., j]: a weight's gradient."""
    return g.reshape(-1, g.shape[-1]).T @ z.reshape(-1, z.shape[-1])


def _branch_spike(spike, params, c):
    # One surrogate for the model, one trainable scale per branch.
    return spike.with_scale(params[f"{c}_alpha"])


def forward(row, x, params, state, spike, inject, detached):
    spikes = {c: _branch_spike(spike, params, c) for c in BRANCHES}
    tape = {"s": {}, "u": {}, "v_prev": {}, "reset_spike": {}}
    outputs = {}
    for c in BRANCHES:
        for record in (tape["s"], tape["u"], tape["v_prev"], tape["reset_spike"]):
            record[c] = np.empty_like(x)
        outputs[f"{c}_v"] = np.empty_like(x)
    context = np.empty_like(x)
    attended = np.empty_like(x)
    out = np.empty_like(x)
    S = state["context"]
    v_plus = {c: state[f"{c}_v"] for c in BRANCHES}
    for t in range(x.shape[0]):
        for c in BRANCHES:
            tape["v_prev"][c][t] = v_plus[c]
            v = params[f"{c}_decay"] * v_plus[c] + _linear(x[t], params[f"{c}_weight"])
            u = v - params[f"{c}_threshold"]
            s = spikes[c](u)
            reset = s if detached is None else detached[f"{c}_reset_spike"][t]
            v_plus[c] = reset_to_zero(v, reset)
            tape["u"][c][t], tape["s"][c][t], tape["reset_spike"][c][t] = u, s, reset
            outputs[f"{c}_v"][t] = v
        S = S + tape["s"]["k"][t] * tape["s"]["v"][t]
        context[t] = S
        attended[t] = tape["s"]["q"][t] * S
        out[t] = _linear(attended[t], params["proj_weight"]) + params["proj_bias"]
    outputs["out"] = out
    outputs["context"] = context
    final = {f"{c}_v": v_plus[c].copy() for c in BRANCHES}
    final["context"] = S.copy()
    used = {f"{c}_reset_spike": tape["reset_spike"][c] for c in BRANCHES}
    tape["context"], tape["attended"] = context, attended
    return outputs, final, used, tape


def backward(row, x, params, state, spike, inject, tape, cot):
    spikes = {c: _branch_spike(spike, params, c) for c in BRANCHES}
    s = tape["s"]
    grads = {"x": np.zeros_like(x)}
    # The parameter gradients, with the size of what they sum (spec/sums.py).
    shapes = {"proj_weight": params["proj_weight"].shape, "proj_bias": x.shape[1:]}
    for c in BRANCHES:
        shapes[f"{c}_weight"] = params[f"{c}_weight"].shape
        shapes.update({f"{c}_{name}": x.shape[1:] for name in ("decay", "threshold", "alpha")})
    sums = Sums(shapes, x.dtype)
    # Adjoints of v+_c[t] and of S[t] from later steps, entering from the final state,
    # and their magnitudes (16)-(20).
    g_plus = {c: cot[f"final.{c}_v"].copy() for c in BRANCHES}
    g_S = cot["final.context"].copy()
    m_plus = {c: np.abs(g_plus[c]) for c in BRANCHES}
    m_S = np.abs(g_S)
    m_x = np.zeros_like(x)
    for t in reversed(range(x.shape[0])):
        # (9): the output projection.
        g_out = cot["out"][t]
        sums.add("proj_bias", g_out)
        sums.add("proj_weight", _outer(g_out, tape["attended"][t]), _outer(np.abs(g_out), np.abs(tape["attended"][t])))
        g_o = _linear_transpose(g_out, params["proj_weight"])
        m_o = _linear_transpose(np.abs(g_out), np.abs(params["proj_weight"]))  # (16)
        # (10)-(11): o = s_q S and S[t] = S[t-1] + s_k s_v; (17)-(18).
        g_S = g_S + g_o * s["q"][t] + cot["context"][t]
        m_S = m_S + m_o * np.abs(s["q"][t]) + np.abs(cot["context"][t])
        g_s = {"q": g_o * tape["context"][t], "k": g_S * s["v"][t], "v": g_S * s["k"][t]}
        m_s = {"q": m_o * np.abs(tape["context"][t]), "k": m_S * np.abs(s["v"][t]),
               "v": m_S * np.abs(s["k"][t])}
        for c in BRANCHES:
            u = tape["u"][c][t]
            slope, scale_slope = spikes[c].grad(u), spikes[c].scale_grad(u)
            g_u = g_s[c] * slope
            # A parameter's contribution is as large as the adjoint it multiplies:
            # its magnitude is M, not |g| (g may cancel), (22).
            sums.add(f"{c}_threshold", -g_u, m_s[c] * np.abs(slope))
            sums.add(f"{c}_alpha", g_s[c] * scale_slope, m_s[c] * np.abs(scale_slope))
            # (12): the detached reset passes only the (1 - s) factor.
            g_v = g_plus[c] * (1 - tape["reset_spike"][c][t]) + cot[f"{c}_v"][t] + g_u
            m_v = (m_plus[c] * np.abs(1 - tape["reset_spike"][c][t]) + np.abs(cot[f"{c}_v"][t])
                   + m_s[c] * np.abs(slope))  # (19)
            # (13)
            sums.add(f"{c}_decay", g_v * tape["v_prev"][c][t], m_v * np.abs(tape["v_prev"][c][t]))
            g_plus[c] = params[f"{c}_decay"] * g_v
            m_plus[c] = np.abs(params[f"{c}_decay"]) * m_v  # (20)
            # (15): y_c = lin(x, c_weight) with g y_c = g v_c.
            sums.add(f"{c}_weight", _outer(g_v, x[t]), _outer(m_v, np.abs(x[t])))
            grads["x"][t] += _linear_transpose(g_v, params[f"{c}_weight"])
            m_x[t] += _linear_transpose(m_v, np.abs(params[f"{c}_weight"]))  # (20)
    for c in BRANCHES:
        grads[f"state.{c}_v"] = g_plus[c]
    grads["state.context"] = g_S
    grads.update(sums.total)
    # x and the initial state: magnitudes (20) with their roundings n (21).
    state_terms = 4 * (x.shape[0] + 1) + 2 * x.shape[-1]
    magnitudes = dict(sums.magnitude, x=m_x, **{"state.context": m_S},
                      **{f"state.{c}_v": m_plus[c] for c in BRANCHES})
    grads["magnitudes"] = magnitudes
    # (22): a branch parameter's contributions carry the adjoint chain's roundings.
    grads["sum_terms"] = {"x": state_terms + 3 * x.shape[-1],
                          **{key: state_terms for key in magnitudes
                             if key.startswith("state.") or key.split("_")[0] in BRANCHES}}
    return grads
