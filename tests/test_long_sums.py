"""The magnitudes ``A`` of SPEC.md section 7's long-sum term, reported by
``snnref.spec.vjp(..., magnitudes=...)``, checked independently of the reverse
loops that compute them.

A is the sum of |contribution| over every path by which a cotangent reaches a
gradient element.  When every factor on every path is >= 0, no contribution
cancels another and A is the gradient itself, which finite differences of the
forward spec give without the reverse loop.  tether.SpikingSelfAttention's
smooth twin is such a case when x, the weights, the initial state and the
cotangents are >= 0: its spikes F(u), surrogate slopes f(u), 1 - F(u), the
decays and the context are then all >= 0 (a threshold's contributions are all
<= 0: no cancellation either).  Negating x together with the input weights
leaves every internal value unchanged (lin(-x, -W) = lin(x, W)); negating the
output projection changes only the output, on which nothing else depends.
Neither may change A, nor may random signs on the cotangents: A sees only |.|.
"""

import numpy as np
import pytest

from snnref import checks, registry, spec

ATTENTION = "tether.SpikingSelfAttention"
STEPS, BATCH, TOKENS, FEATURES = 3, 1, 2, 2


def _positive_case(rng):
    shape = (STEPS, BATCH, TOKENS, FEATURES)
    x = rng.uniform(0.2, 1.2, shape)
    params = {f"{c}_weight": rng.uniform(0.1, 0.9, (FEATURES, FEATURES)) for c in "qkv"}
    params["proj_weight"] = rng.uniform(0.1, 0.9, (FEATURES, FEATURES))
    params["proj_bias"] = rng.uniform(-0.5, 0.5, FEATURES)
    for c in "qkv":
        params.update({f"{c}_decay": 0.8, f"{c}_threshold": 1.0, f"{c}_alpha": 2.0})
    state = {name: rng.uniform(0.0, 1.0, shape[1:]) for name in ("q_v", "k_v", "v_v", "context")}
    trace = spec.simulate(ATTENTION, x, params, state, smooth=True)
    cotangents = {k: rng.uniform(0.1, 1.0, v.shape) for k, v in trace.outputs.items()}
    cotangents.update({f"final.{k}": rng.uniform(0.1, 1.0, v.shape) for k, v in trace.final_state.items()})
    return x, params, state, cotangents, trace.detached


def _finite_difference(x, params, state, cotangents, detached, wrt):
    """d<cotangents, outputs>/d wrt (``"x"``, ``"state.<var>"`` or a parameter),
    elementwise, of the smooth twin with its stop-gradient values held fixed."""
    arguments = {"x": x, **{f"state.{k}": v for k, v in state.items()}, **params}
    base = np.asarray(arguments[wrt], dtype=np.float64)
    gradient = np.zeros_like(base)
    step = 1e-6
    for index in np.ndindex(base.shape):
        values = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[index] += sign * step
            run = dict(arguments, **{wrt: moved})
            trace = spec.simulate(ATTENTION, run["x"], {k: run[k] for k in params},
                                  {k: run[f"state.{k}"] for k in state}, smooth=True, detached=detached)
            values.append(checks.loss(trace, cotangents))
        gradient[index] = (values[0] - values[1]) / (2 * step)
    return gradient


def _magnitudes(x, params, state, cotangents):
    sizes = {}
    spec.vjp(ATTENTION, x, params, state, cotangents, smooth=True, magnitudes=sizes)
    return sizes


WRT = ("x", "state.q_v", "state.k_v", "state.v_v", "state.context")
# Branch parameters whose contributions keep one sign in the positive case (a
# threshold's are all <= 0; an alpha's, u / (1 + (pi a u)^2), change sign with u).
PARAMETERS = ("q_decay", "k_threshold", "v_weight")


@pytest.mark.parametrize("wrt", WRT + PARAMETERS)
def test_attention_magnitude_is_the_cancellation_free_gradient(wrt):
    x, params, state, cotangents, detached = _positive_case(np.random.default_rng(11))
    sizes = _magnitudes(x, params, state, cotangents)
    assert wrt in sizes, f"vjp(magnitudes=...) reports no long sum for {wrt!r}: {sorted(sizes)}"
    magnitude, terms = sizes[wrt]
    expected = float(np.max(np.abs(_finite_difference(x, params, state, cotangents, detached, wrt))))
    assert magnitude == pytest.approx(expected, rel=1e-6), (wrt, magnitude, expected)
    # n counts at least the 4 roundings per step of the adjoint chains and the
    # output projection's features (attention.py, equations (21)-(22)).
    assert terms >= 4 * STEPS + FEATURES


def test_attention_magnitude_sees_only_absolute_values():
    rng = np.random.default_rng(12)
    x, params, state, cotangents, _ = _positive_case(rng)
    reference = _magnitudes(x, params, state, cotangents)
    # The output projection's sign changes out, on which nothing else depends.
    flipped = dict(params, **{f"{c}_weight": -params[f"{c}_weight"] for c in ("q", "k", "v", "proj")})
    signs = {k: v * rng.choice([-1.0, 1.0], v.shape) for k, v in cotangents.items()}
    sizes = _magnitudes(-x, flipped, state, signs)
    for wrt in WRT + PARAMETERS:
        assert sizes[wrt][0] == pytest.approx(reference[wrt][0], rel=1e-12), wrt
        assert sizes[wrt][1] == reference[wrt][1], wrt


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_magnitude_bounds_its_gradient(key):
    """|sum of contributions| <= sum of |contributions|: a reported A below
    max |gradient| is wrong, whichever family reports it and for whichever key."""
    rng = np.random.default_rng(13)
    row = registry.model(key)
    case = checks.random_case(key, rng, steps=6, batch=2, neurons=3, per_neuron=True,
                              inject=bool(row.inject))
    sizes = {}
    grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents,
                     surrogate=case.surrogate, inject=case.inject, magnitudes=sizes)
    assert set(sizes) <= set(grads), f"magnitudes for unknown gradients: {set(sizes) - set(grads)}"
    assert set(sizes) >= set(row.trainable), f"no long sum for {set(row.trainable) - set(sizes)}"
    for name, (magnitude, terms) in sizes.items():
        assert terms >= 1, name
        assert magnitude >= float(np.max(np.abs(grads[name]), initial=0.0)) * (1 - 1e-12), name


def test_a_broadcast_initial_state_counts_the_lanes_merged_into_it():
    """An initial state given at a smaller shape than the run's is broadcast: its
    gradient adds the batch lanes, one more rounding each, and its A adds their
    magnitudes.  With every batch lane the same, A is the batch times one lane's."""
    rng = np.random.default_rng(7)
    x, params, state, cotangents, _ = _positive_case(rng)
    batch = 3
    x = np.repeat(x, batch, axis=1)
    cotangents = {k: np.repeat(v, batch, axis=1 if v.ndim == 4 else 0) for k, v in cotangents.items()}
    full, broadcast = {}, {}
    for given, sizes in (({k: np.repeat(v, batch, axis=0) for k, v in state.items()}, full),
                         ({k: v[0] for k, v in state.items()}, broadcast)):
        spec.vjp(ATTENTION, x, params, given, cotangents, smooth=True, magnitudes=sizes)
    for name in ("q_v", "k_v", "v_v", "context"):
        (a_full, n_full), (a_broadcast, n_broadcast) = full[f"state.{name}"], broadcast[f"state.{name}"]
        assert n_broadcast == n_full + batch - 1, name
        assert a_broadcast == pytest.approx(batch * a_full, rel=1e-12), name


def test_the_initial_state_path_folded_into_hxtorch_s_start_parameter_adds_its_size():
    """Without a state hxtorch's membrane starts at leak: the gate compares the sum of
    the two paths (``_fold_parameter_starts``), so the long sum gets the state path's
    largest per-neuron sum of |contributions| and one addition per batch lane."""
    from dataclasses import replace

    from snnref.testing import _equivalence as equivalence

    case = replace(checks.random_case("hxtorch.cuba_lif", np.random.default_rng(0), steps=4, batch=3, neurons=2),
                   state={})
    path = np.array([[1.0, -2.0], [0.5, 4.0], [-1.5, 1.0]])  # dL/dv0 per (batch, neuron)
    values = {"grad:leak": np.array([10.0, 20.0]), "grad:state.v": path, "grad:state.i": np.zeros((3, 2))}
    long_sums = {"grad:leak": (5.0, 8)}
    row = registry.model("hxtorch.cuba_lif")
    folded = equivalence._fold_parameter_starts(row, case, values, long_sums)
    assert folded["grad:leak"].tolist() == [10.0, 23.0] and "grad:state.v" not in folded
    # |path| summed over the batch: [3.0, 7.0]; three lanes added to each neuron's parameter.
    assert long_sums["grad:leak"] == (5.0 + 7.0, 8 + 3)
