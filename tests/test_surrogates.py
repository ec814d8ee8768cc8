"""Each surrogate's f is the derivative of its primitive F, and dF/dscale is the
scale-derivative of F, by scipy.differentiate.derivative over [-1e3, 1e3]; every
function stays finite and raises no floating-point warning for any finite input.
F is continuous (it rises between close neighbours by the integral of f, across
every branch switch) and tends to its centre -+ half the mass of f, in the spec
and in the torch path.  Every production layer's forms in float32 are accurate
relative to the float64 spec, in the tails too (tolerance.SURROGATE_RTOL32)."""

import warnings

import numpy as np
import pytest
import torch
from scipy.differentiate import derivative
from scipy.integrate import quad

from fixtures import surrogate_layers
from snnref import registry
from snnref.ops import surrogates as ops_surrogates
from snnref.spec import surrogates
from snnref.testing.tolerance import SURROGATE_RTOL32

KEYS = sorted(registry.SURROGATES)
SCALES = [0.5, 2.0, 50.0]
# F'' jumps at these points for fast_sigmoid / superspike (0) and spike_linear
# (0, +-1): a finite difference across a jump is not a test of f, so the grid
# keeps away from them; the values there are checked exactly below.
KINKS = np.array([-1.0, 0.0, 1.0])


def grid():
    dense = np.linspace(-5, 5, 1001) + 1e-3 * np.pi
    tails = np.logspace(-6, 3, 120)
    u = np.concatenate([dense, tails, -tails, [-1e3, 1e3]])
    return u[np.min(np.abs(u[:, None] - KINKS[None, :]), axis=1) > 2e-2]


# F(u) + F(-u) is constant (1 for the tether and hxtorch surrogates, 0 for
# spike_linear); checked below.
SYMMETRY = {"spike_linear": 0.0}


def accurate_F(math):
    """F with its right tail computed as -F(-u) (+ const): there F(u) = 1 - tiny,
    whose difference quotients drown in rounding, while F(-u) = tiny is exact.
    The constant does not change derivatives, and the grid stays away from 0."""
    return lambda z, a: np.where(z > 0, -math.F(-z, a), math.F(z, a))


def strict_fp():
    # Underflow to zero is the correct limit in the tails and is not reported.
    return np.errstate(over="raise", invalid="raise", divide="raise", under="ignore")


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scale", SCALES)
def test_f_is_the_derivative_of_F(key, scale):
    math = surrogates.get(key)
    u = grid()
    step = 1e-3 * np.maximum(1.0, np.abs(u))
    result = derivative(lambda z: accurate_F(math)(z, scale), u, initial_step=step)
    expected = math.f(u, scale)
    assert np.all(np.isfinite(result.df))
    # The tails of F are 1 - tiny: their difference quotients are limited by
    # rounding of F itself, hence the absolute floor relative to max f.
    np.testing.assert_allclose(result.df, expected, rtol=1e-7, atol=1e-9 * np.max(expected))


@pytest.mark.parametrize("key", [k for k in KEYS if registry.SURROGATES[k].trainable_scale])
@pytest.mark.parametrize("scale", SCALES)
def test_dF_dscale_is_the_scale_derivative_of_F(key, scale):
    math = surrogates.get(key)
    u = grid()
    result = derivative(lambda a, z: accurate_F(math)(z, a), np.full_like(u, scale), args=(u,),
                        initial_step=1e-3 * scale)
    expected = math.dF(u, scale)
    assert np.all(np.isfinite(result.df))
    np.testing.assert_allclose(result.df, expected, rtol=1e-7, atol=1e-9 * np.max(np.abs(expected)))


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scale", SCALES)
def test_primitive_is_point_symmetric(key, scale):
    math = surrogates.get(key)
    u = grid()
    total = math.F(u, scale) + math.F(-u, scale)
    np.testing.assert_allclose(total, SYMMETRY.get(key, 1.0), rtol=0, atol=4e-16)


def test_scale_trainability_matches_the_implementation():
    for key, row in registry.SURROGATES.items():
        assert (surrogates.get(key).dF is not None) == row.trainable_scale, key


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_inputs_are_finite_and_warning_free(key, dtype):
    math = surrogates.get(key)
    info = np.finfo(dtype)
    magnitudes = [0.0, float(info.smallest_subnormal), float(info.tiny), 1e-3, 1.0, 1e3,
                  float(np.sqrt(info.max)), float(info.max) / 10, float(info.max)]
    u = np.array([s * m for m in magnitudes for s in (1, -1)], dtype=dtype)
    # Tiny scales for arctan, found by an outside user: its unused branch overflowed (a warning) below
    # about 2.4e-155 (float64) and 1.8e-20 (float32).  (fast_sigmoid's dF ~ -1/a^2 and F ~ 1/a far from
    # threshold leave the float range there: its values, not a branch not taken.)
    tiny = [dtype(info.tiny), dtype(1e-30)] if key == "arctan" else []
    for scale in tiny + [dtype(1e-3), dtype(1.0), dtype(50.0), dtype(1e3)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with strict_fp():
                values = [math.f(u, scale), math.F(u, scale)]
                if math.dF is not None:
                    values.append(math.dF(u, scale))
        for value in values:
            assert value.dtype == dtype
            assert np.all(np.isfinite(value)), (key, scale, value)
        f, F = values[0], values[1]
        assert np.all(f >= 0)
        # F is non-decreasing in u (f >= 0), checked on the sorted inputs.
        order = np.argsort(u, kind="stable")
        assert np.all(np.diff(F[order]) >= 0)


@pytest.mark.parametrize("key", KEYS)
def test_no_warnings_on_the_dense_grid(key):
    math = surrogates.get(key)
    u = np.linspace(-1e3, 1e3, 200001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with strict_fp():
            math.f(u, 2.0), math.F(u, 2.0)
            if math.dF is not None:
                math.dF(u, 2.0)


def test_values_at_the_threshold():
    # f(0) from each formula in SPEC.md section 1, with scale a = 2:
    assert surrogates.get("arctan").f(np.array(0.0), 2.0) == 2.0  # a / 1
    assert surrogates.get("sigmoid").f(np.array(0.0), 2.0) == 2.0 * 0.25  # a * 1/2 * 1/2
    assert surrogates.get("fast_sigmoid").f(np.array(0.0), 2.0) == 1.0  # 1 / 1^2
    assert surrogates.get("superspike").f(np.array(0.0), 2.0) == 1.0
    assert surrogates.get("spike_linear").f(np.array(0.0), 0.3) == 0.3  # g * (1 - 0)
    # F at the threshold: 1/2 for the three tether surrogates, 0 for spike_linear.
    for key in ("arctan", "sigmoid", "fast_sigmoid"):
        assert surrogates.get(key).F(np.array(0.0), 2.0) == 0.5
    assert surrogates.get("spike_linear").F(np.array(0.0), 0.3) == 0.0
    # spike_linear saturates at +-g/2 beyond |u| = 1 and its bump ends there.
    assert surrogates.get("spike_linear").F(np.array(7.0), 0.3) == 0.15
    assert surrogates.get("spike_linear").f(np.array(-1.0), 0.3) == 0.0


def test_unknown_surrogate_lists_the_valid_ones():
    with pytest.raises(ValueError, match="arctan.*spike_linear"):
        surrogates.get("super_spike")


def continuity_grid():
    """0, then |u| from 1e-6 to 1e3 in geometric steps of 0.1 %, both signs: every
    branch switch of an overflow-free form lies between two close neighbours,
    and the kinks 0 and +-1 are grid points (no interval straddles one)."""
    ratio = np.log(1.001)
    inner = np.geomspace(1e-6, 1.0, int(np.log(1e6) / ratio))
    outer = np.geomspace(1.0, 1e3, int(np.log(1e3) / ratio))[1:]
    magnitudes = np.concatenate([inner, outer])
    return np.concatenate([-magnitudes[::-1], [0.0], magnitudes])


def primitives(key):
    """F and f of each layer that evaluates them on arrays (float64): the spec's
    and the torch path's."""
    spec_math = surrogates.get(key)
    torch_math = ops_surrogates.SURROGATES[key]

    def on_torch(function):
        return lambda u, a: function(torch.from_numpy(u), torch.tensor(a, dtype=torch.float64)).numpy()

    return {"spec": (spec_math.F, spec_math.f), "torch": (on_torch(torch_math.F), on_torch(torch_math.f))}


@pytest.mark.parametrize("layer", ["spec", "torch"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scale", SCALES)
def test_primitive_is_continuous(layer, key, scale):
    # Between neighbours F must rise by the integral of f (Simpson's rule, exact
    # to about 1e-15 here): a jump anywhere (a branch whose constant is off)
    # breaks it, and f's own correctness is the derivative test above.
    F, f = primitives(key)[layer]
    u = continuity_grid()
    left, right = u[:-1], u[1:]
    rise = F(right, scale) - F(left, scale)
    simpson = (right - left) / 6 * (f(left, scale) + 4 * f((left + right) / 2, scale) + f(right, scale))
    np.testing.assert_allclose(rise, simpson, rtol=1e-6, atol=1e-14,
                               err_msg=f"{layer} {key}: F jumps between neighbouring points")


def mass_of(f, scale):
    """The integral of f over the real line, by adaptive quadrature split at its kinks."""
    pieces = [(-np.inf, -1.0), (-1.0, 0.0), (0.0, 1.0), (1.0, np.inf)]
    return sum(quad(lambda z: float(f(np.array(z), scale)), low, high, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
               for low, high in pieces)


@pytest.mark.parametrize("layer", ["spec", "torch"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scale", SCALES)
def test_primitive_limits_are_its_centre_plus_minus_half_the_mass_of_f(layer, key, scale):
    # F(-u) + F(u) = C (the symmetry above) and F(+inf) - F(-inf) = the
    # integral of f, computed here by quadrature: the limits are (C -+ mass)/2,
    # 0 and 1 for arctan and sigmoid (F a distribution function), 1/2 -+ 1/a for
    # fast_sigmoid and superspike, -+g/2 for spike_linear.
    F, f = primitives(key)[layer]
    mass = mass_of(f, scale)
    centre = SYMMETRY.get(key, 1.0)
    expected = np.array([(centre - mass) / 2, (centre + mass) / 2])
    if key in ("arctan", "sigmoid"):
        np.testing.assert_allclose(expected, [0.0, 1.0], atol=1e-9)
    far = np.array([-1e300, 1e300])
    np.testing.assert_allclose(F(far, scale), expected, rtol=0, atol=1e-9, err_msg=f"{layer} {key} limits")


def float32_grid(scale):
    """Distances in float32: |u| from 1e-30 to 3e38 in geometric steps, and au
    from -100 to 100 densely (sigmoid's exp underflows from |au| = 88 on, and
    the bump of 1 - sigma(au) cancels from au = 17 on where it is computed so)."""
    magnitudes = np.geomspace(1e-30, 3e38, 700)
    near = np.linspace(-100, 100, 4001) / scale
    return np.unique(np.concatenate([-magnitudes, magnitudes, [0.0], near]).astype(np.float32))


# The limits at u = -inf and +inf of (f, F, dF/da) for scale a (SPEC.md section 1):
# the bump vanishes, F reaches its ends (fast_sigmoid's 1/2 + u / (1 + a|u|) at
# 1/2 -+ 1/a), and dF/da goes to 0 except for fast_sigmoid's
# -u|u| / (1 + a|u|)^2 -> +-1/a^2.
LIMITS = {
    "arctan": lambda a: {"f": (0, 0), "F": (0, 1), "dF": (0, 0)},
    "sigmoid": lambda a: {"f": (0, 0), "F": (0, 1), "dF": (0, 0)},
    "fast_sigmoid": lambda a: {"f": (0, 0), "F": (0.5 - 1 / a, 0.5 + 1 / a), "dF": (1 / a**2, -1 / a**2)},
    "superspike": lambda a: {"f": (0, 0), "F": (0.5 - 1 / a, 0.5 + 1 / a), "dF": (0, 0)},
    "spike_linear": lambda a: {"f": (0, 0), "F": (-a / 2, a / 2), "dF": (0, 0)},
}


def test_every_surrogate_has_its_limits_at_infinity():
    assert set(LIMITS) == set(KEYS)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("layer", ["spec", *sorted(surrogate_layers.LAYERS)])
def test_an_infinite_distance_gives_each_form_s_limit(layer):
    # A float32 membrane overflows to +-inf from finite inputs; dF/da there was
    # inf / inf (arctan) or inf * 0 (sigmoid) = NaN in torch, cpu and Triton,
    # where the spec gave 0, and a trainable scale's gradient became NaN.
    u = np.array([-np.inf, np.inf], dtype=np.float32)
    for key in surrogate_layers.KEYS.get(layer, KEYS):
        for scale in SCALES:
            a = np.float32(scale)
            if layer == "spec":
                math = surrogates.get(key)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    with strict_fp():
                        got = {"f": math.f(u, a), "F": math.F(u, a),
                               "dF": math.dF(u, a) if math.dF else np.zeros_like(u)}
            else:
                got = surrogate_layers.LAYERS[layer](key, u, a)
            limits = LIMITS[key](float(a))
            for name, value in got.items():
                np.testing.assert_allclose(value, np.array(limits[name], dtype=np.float32), rtol=1e-6, atol=0,
                                           err_msg=f"{layer} {key} {name} at u = -inf, +inf, a = {scale}")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("layer,key", [(layer, key) for layer in sorted(surrogate_layers.LAYERS)
                                       for key in surrogate_layers.KEYS.get(layer, KEYS)])
def test_float32_forms_are_accurate_relative_to_the_float64_spec(layer, key):
    # Each layer's f, F and dF/da in float32 against the spec in float64 at the
    # same float32 points: relatively (tolerance.SURROGATE_RTOL32 and its reason).
    # (The interpreter evaluates Triton with NumPy, which reports an IEEE
    # overflow to inf that a GPU takes silently; values are checked below.)
    tiny = float(np.finfo(np.float32).tiny)
    spec_math = surrogates.get(key)
    for scale in [*SCALES, 1000.0]:
        u = float32_grid(scale)
        a = np.float32(scale)
        got = surrogate_layers.LAYERS[layer](key, u, a)
        u64, a64 = u.astype(np.float64), float(a)
        expected = {"f": spec_math.f(u64, a64), "F": spec_math.F(u64, a64),
                    "dF": spec_math.dF(u64, a64) if spec_math.dF else np.zeros_like(u64)}
        bump_floor = tiny * np.maximum(max(1.0, a64), np.abs(u64))
        allowed = {"f": SURROGATE_RTOL32 * np.abs(expected["f"]) + bump_floor,
                   "F": SURROGATE_RTOL32 * np.maximum(1.0, np.abs(expected["F"])),
                   "dF": SURROGATE_RTOL32 * np.abs(expected["dF"]) + bump_floor}
        for name, value in got.items():
            reference, bound = expected[name], allowed[name]
            error = np.abs(value.astype(np.float64) - reference)
            bad = ~(error <= bound)
            if bad.any():
                i = np.flatnonzero(bad)[np.argmax((error / bound)[bad])]
                pytest.fail(f"{layer} {key} {name}: at u={u[i]!r}, a={a!r} (float32) got {value[i]!r}, the "
                            f"float64 spec {reference[i]!r}; {bad.sum()} of {u.size} points beyond "
                            f"{SURROGATE_RTOL32:.3g} relative")
