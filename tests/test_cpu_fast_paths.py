"""The vectorized pieces of the Cooldown and attention CPU scans against their
references: Cooldown's float32 exp row (eqs. (5)-(6) of kernels/cpu/cooldown.py)
against exp computed in float64 and rounded once, and the attention scans'
branch-free tile loops against their general loops, bitwise (replaying the
tile's own spikes sends a call through the general loop with the same values)."""

import numpy as np
import pytest

from snnref.kernels.cpu import _stream, attention, cooldown


def test_cooldown_float32_exp_is_the_correctly_rounded_exp():
    rng = np.random.default_rng(7)
    specials = [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 88.72, 88.7228, 88.7229, -87.33, -103.27, -103.98,
                -110.0, -1e4, 1e4, np.inf, -np.inf, np.nan]
    x = np.concatenate([rng.uniform(-120.0, 95.0, 50_000), rng.normal(0.0, 2.0, 50_000), specials]).astype(np.float32)
    e = np.empty_like(x)
    cooldown.exp_row(x, e, np.empty(x.size), np.empty(x.size))
    with np.errstate(over="ignore"):
        expected = np.exp(x.astype(np.float64)).astype(np.float32)
    same = (e == expected) | (np.isnan(e) & np.isnan(expected))
    assert same.all(), (x[~same][:5], e[~same][:5], expected[~same][:5])


def _attention_case(dtype, exact):
    rng = np.random.default_rng(3)
    branches, steps, count = 3, 7, 37
    z = rng.uniform(0.0, 1.4, (branches, steps, count)).astype(dtype)
    theta = rng.uniform(0.6, 1.2, (branches, count)).astype(dtype)
    if exact:
        # From v0 = 0, v = z at t = 0: these lanes sit exactly on the threshold.
        z[:, 0, ::3] = theta[:, ::3]
    lanes = dict(v0=np.zeros((branches, count), dtype), s0=np.zeros(count, dtype),
                 lam=rng.uniform(0.5, 1.0, (branches, count)).astype(dtype), theta=theta,
                 scale=np.full((branches, count), 2.0, dtype))
    return z, lanes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strict", [False, True])
def test_attention_tile_loops_equal_the_general_loops_bitwise(dtype, strict):
    z, lanes = _attention_case(dtype, exact=True)
    branches, steps, count = z.shape
    c = np.array([1.0, np.pi], dtype)
    tile, tiles = 8, -(-count // 8)
    arctan = 0

    def forward(replayed, replay):
        outputs = [np.full((steps, count), np.nan, dtype) for _ in range(2)] + [np.full(count, np.nan, dtype)] + \
                  [np.full((branches, steps, count), np.nan, dtype), np.full((branches, count), np.nan, dtype),
                   np.full((branches, steps, count), np.nan, dtype)]
        attention.forward_scan(z, lanes["v0"], lanes["s0"], lanes["lam"], lanes["theta"], lanes["scale"], replayed,
                               *outputs, strict, False, replay, arctan, c, _stream.PLAIN, tile, 0, tiles)
        return outputs

    fast = forward(np.zeros((1, 1, 1), dtype), False)
    spikes = fast[5]
    general = forward(spikes, True)
    for a, b in zip(fast, general):
        np.testing.assert_array_equal(a, b)

    rng = np.random.default_rng(11)
    g_out, g_context = (rng.normal(size=(steps, count)).astype(dtype) for _ in range(2))
    g_context_final = rng.normal(size=count).astype(dtype)
    g_v_rec = rng.normal(size=(branches, steps, count)).astype(dtype)
    g_v_final = rng.normal(size=(branches, count)).astype(dtype)
    context, v_rec = fast[1], fast[3]

    def backward(replayed, replay):
        grads = [np.full((branches, steps, count), np.nan, dtype), np.full((branches, count), np.nan, dtype),
                 np.full(count, np.nan, dtype)] + [np.full((branches, count), np.nan) for _ in range(3)]
        attention.backward_scan(lanes["v0"], lanes["lam"], lanes["theta"], lanes["scale"], replayed, context, v_rec,
                                g_out, g_context, g_context_final, g_v_rec, g_v_final, *grads,
                                True, True, True, (True,) * 3, (True,) * 3, strict, False, replay, arctan, c, _stream.PLAIN,
                                tile, 0, tiles)
        return grads

    for a, b in zip(backward(np.zeros((1, 1, 1), dtype), False), backward(spikes, True)):
        np.testing.assert_array_equal(a, b)
