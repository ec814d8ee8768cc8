"""The tolerance policy (SPEC.md section 7): the one place where budgets live.

A float32 implementation passes when, for every output and every gradient,

(1) max|impl - ref64| <= k * max|ref32 - ref64| + c * eps * max(1, max|ref64|)
                         + c_sum * eps * sqrt(n) * A

with ``ref64`` the float64 spec and ``ref32`` the same spec run in float32: the
error any honest float32 implementation makes.  The first term scales the
budget with how hard the quantity is to compute in that precision (long
recurrences, cancellations); the second is a floor for quantities that float32
happens to get exactly right (spike trains, zeros), where the first term is 0.

The third term exists only for a gradient that is a long sum, ``n``
contributions to one element, ``A`` the largest, over the elements, sum of
|contribution| (the spec's reverse loops report both:
``snnref.spec.vjp(..., magnitudes=...)``), and only for these:

- every trainable parameter's gradient (a scalar, per-neuron or matrix
  parameter's, summed over time, batch and the lanes it covers; ``n`` the
  number of contributions, ``snnref.spec.api._sum_size``);
- for tether.SpikingSelfAttention also the gradients of ``x`` and of the
  initial state: a sum over the D input features of three matrix products
  and, through the context S[t] = S[t-1] + k v and the membranes, over every
  later time step (``A`` from the adjoint recurrences with every factor in
  absolute value, ``n`` the roundings a contribution meets on its way:
  ``snnref/spec/attention.py``, equations (16)-(21)).

The x and state gradients of the other models are per-element recurrences
without a reduction across lanes; they are not long sums and get no third term.
Reason: ``ref32`` is one sample of the rounding error of such a sum; with
cancellation that sample can be lucky (near 0), while an implementation that
adds the same terms in another order (a parallel reduction, a per-block
partial sum, a matrix product blocked differently) errs by about
``sqrt(n) eps A`` (a random walk of n roundings, each at most eps times the
running sum, itself at most A).

Both references run on the implementation's spike train: where it differs from
the float64 spec's, teacher forcing (SPEC.md section 7) replays it in both;
where it equals the float64 spec's and float32 alone flips a spike, ``ref32``
is run with those spikes too (``snnref.testing._equivalence.compare``).  On its
own trajectory ``ref32 - ref64`` would measure that flip, not a rounding error,
and widen every budget of the case: a recorded membrane 10% off passed in
float32, one 1e-10 off in float64.

Each entry of ``POLICY`` is one storage dtype with the reason for its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    k: float
    c: float
    eps: float
    reason: str
    c_sum: float = 0.0  # the long-sum term of (1); its reason is LONG_SUM_REASON
    sum_eps: float = 0.0  # the precision long sums accumulate in (0: ``eps``)


# c_sum of equation (1), chosen by measurement (tools/calibrate_long_sums.py).
C_SUM = 2.0
LONG_SUM_REASON = (
    "c_sum=2: it is the coefficient of sqrt(n) eps A, the random walk of n roundings over "
    "contributions of total size A; an implementation summing in another order differs from the "
    "spec by about that, twice (each errs on its own).  Which gradients get the term: every "
    "trainable parameter's, and tether.SpikingSelfAttention's x and initial-state gradients, "
    "whose adjoints sum over features and over every later step (spec/attention.py (16)-(22)). "
    "Measured with tools/calibrate_long_sums.py (c_sum = 0, the coefficient each long sum needed "
    "beyond the first two terms): 5,000 random cases of the torch path (float32 and float64, T up "
    "to 200, batch up to 8, N up to 33, every model; 77 fail without the term) needed at most "
    "0.13 (tether.SpikingSelfAttention's x gradient in float64), every other model 0.01 or less; "
    "1,000 cases of the Triton kernels under the interpreter (float32, T up to 96; 7 fail without "
    "it) at most 0.006; 3,000 cases of the cpu kernels (float32 and float64, T up to 200; 67 fail "
    "without it) at most 0.47 (tether.SpikingSelfAttention's v_decay in float32 at T = 3; 0.46 before "
    "the kernels' per-lane sums moved from float64 to the compute dtype), and 1,500 float32 cases "
    "with T up to 1000 at most 0.05; with the term in place, 5,000 cpu cases had no failure.  2 "
    "leaves a factor 15 over the torch and triton paths' needs and 4 over the cpu kernels', "
    "widens a budget by at most 2 sqrt(n) ulps "
    "of A, and every SPEC.md section 6 mutant still fails.  Not a long sum: one float64 attention "
    "case in 312 more (seed 2705835389) failed while float64's k was 0, q_decay at 1.3 times its "
    "budget, its error the forward's rounding of u carried through f(u) (the backward in float64 "
    "errs by 0.002 sqrt(n) eps A); with float64's k as it is it uses 0.15 of that budget (0.17 "
    "without this term; --replay tether.SpikingSelfAttention:2705835389 --dtypes float64, "
    "2026-12-06).  Half-precision storage accumulates in float32, so its long sums use eps32."
)


def _half_budget(name, eps):
    return Budget(
        k=4.0,
        c=2.0,
        eps=eps,
        c_sum=C_SUM,
        sum_eps=float(np.finfo(np.float32).eps),
        reason=(
            f"{name} storage with float32 arithmetic, compared with the spec run on the same "
            f"{name}-rounded inputs, parameters, states and cotangents: k=4 as for float32 "
            "(the arithmetic is float32); c=2: each output and gradient is rounded to storage "
            "once when stored (half an ulp), and c=2 leaves room for the float32 value "
            "itself sitting next to a rounding boundary; 4 half-ulps in all."
        ),
    )


POLICY = {
    "float32": Budget(
        k=4.0,
        c=8.0,
        eps=float(np.finfo(np.float32).eps),
        c_sum=C_SUM,
        reason=(
            "k=4: an honest float32 implementation differs from the float32 spec only "
            "in the order of its roundings (fused multiply-add, another reduction order, "
            "the backward recomputing instead of storing); each such source costs about "
            "as much as the spec's own float32 error, and 4 allows two of them each way. "
            "c=8: where ref32 equals ref64 exactly the first term vanishes, and a correct "
            "implementation may still round a few times differently: 8 ulp of the "
            "quantity's scale.  Not covered: a case where the spec's own float32 error is "
            "far below the usual one.  tether.SpikingSelfAttention, "
            "strategies.case(seed=11312, steps=5, batch=1, neurons=7, surrogate='arctan', "
            "per_neuron=False, random_state=False): NumPy's order of the input map's sum "
            "rounds one value-branch membrane (u = -0.073, on arctan's steep flank) 17 times "
            "less than a matrix product does, and the torch, cpu and Triton paths, and the "
            "spec itself with that map summed as a matrix product, all exceed the value "
            "branch's gradient budgets by 1.4 to 1.7 times (v_weight, v_threshold, the "
            "initial v_v); float64 agrees to 1e-14.  Found by the thorough hypothesis "
            "profile; 0 of 18,000 further random attention cases on the torch path failed "
            "(worst 0.89).  Left as it is: SPEC.md section 7 allows no other term."
        ),
    ),
    "float64": Budget(
        k=4.0 * float(np.finfo(np.float64).eps / np.finfo(np.float32).eps),
        c=64.0,
        eps=float(np.finfo(np.float64).eps),
        c_sum=C_SUM,
        reason=(
            "k=4 eps64/eps32 (4 times 2^-29): ref32 - ref64 is the quantity's sensitivity to "
            "rounding, sampled at float32's precision; an honest float64 implementation meets "
            "the same sensitivity at float64's, 2^-29 times smaller to first order, and 4 "
            "allows two other orders of rounding each way, as for float32.  Before, k was 0: "
            "a CUBA LIF computing dt (1/tau) for dt / tau, on hxtorch's hardware parameters "
            "(v near 125, superspike alpha 50, whose f moves by thousands of ulp per ulp of "
            "v), failed its threshold and x gradients at 3 times the c term alone (an outside "
            "user's correct implementation).  ref32 runs on the implementation's spike train "
            "(the module's docstring).  c=64: the same arithmetic in another order (fused "
            "multiply-add, reductions over batch and time in another order) may differ by a "
            "few ulp per step; 64 ulp of the quantity's scale covers that for "
            "the short traces the checks use, while a decay off by 1e-3 is 1e10 times larger."
        ),
    ),
    "float16": _half_budget("float16", 2.0**-10),
    "bfloat16": _half_budget("bfloat16", 2.0**-7),
}


# A surrogate form evaluated in float32 at one point (SPEC.md section 1: f, F
# and dF/da of a float32 u and scale a), against the float64 spec at the same
# point: |got - ref| <= SURROGATE_RTOL32 * |ref| for f and dF/da, and
# <= SURROGATE_RTOL32 * max(1, |ref|) for F.
SURROGATE_RTOL32 = 2.0**-16
SURROGATE_RTOL32_REASON = (
    "2^-16 (1.5e-5): each form is a handful of float32 operations (a few ulp, 2^-22), except "
    "sigmoid's e = exp(-|au|): the rounding of the product au (2^-24 relative) is multiplied by "
    "|au| in e, and |au| <= 88 while e is a normal float32 number, so up to 88 * 2^-24 = 2^-17.5 "
    "(measured: 3.9e-6 at au = -66; the other forms 2.8e-7 at most).  Relative, not against the "
    "function's peak: an optimizer that normalizes gradients (Adam) acts on a far neuron's small "
    "gradient as on a large one, so a bump that cancels to 0 is a wrong answer.  Below float32's "
    "smallest normal number, times the factor a or u that multiplies the bump, a value is "
    "compared absolutely (it has no more precision there)."
)


def dtype_name(dtype) -> str:
    """The policy row of a NumPy or torch dtype, or of its name ("float32"); bfloat16
    exists only in torch.  Anything else is a ValueError naming ``dtype``."""
    text = dtype if isinstance(dtype, str) else str(dtype)
    name = text[len("torch."):] if text.startswith("torch.") else text
    if name not in POLICY:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if dtype is None or name not in POLICY:
        raise ValueError(f"dtype: expected one of {', '.join(POLICY)} (a NumPy or torch dtype or its name), "
                         f"got {dtype!r}")
    return name


def budget(ref64, ref32, dtype, long_sum=None) -> float:
    """The allowed max |impl - ref64| for one quantity, equation (1).

    ``long_sum``: ``(A, n)`` when the quantity is a gradient summed over ``n``
    contributions (``snnref.spec.vjp(..., magnitudes=...)``); None otherwise.
    """
    rule = POLICY[dtype_name(dtype)]
    ref64 = _finite("ref64", ref64)
    ref32 = _finite("ref32", ref32)
    # No broadcasting: a reference of another shape is another quantity's.
    if ref32.shape != ref64.shape:
        raise ValueError(f"ref32: shape {ref32.shape}, expected ref64's {ref64.shape}")
    scale = max(1.0, float(np.max(np.abs(ref64), initial=0.0)))
    reference_error = float(np.max(np.abs(ref32 - ref64), initial=0.0))
    allowed = rule.k * reference_error + rule.c * rule.eps * scale
    if long_sum is not None:
        # A string or one number failed inside unpacking or math ("must be real number, not str").
        try:
            magnitude, terms = (float(part) for part in long_sum)
        except (TypeError, ValueError):
            magnitude = terms = math.nan
        if not (math.isfinite(magnitude) and magnitude >= 0 and math.isfinite(terms) and terms >= 1):
            raise ValueError(f"long_sum: expected (A, n) with A >= 0 and n >= 1, both finite, got {long_sum!r}")
        allowed += rule.c_sum * (rule.sum_eps or rule.eps) * float(np.sqrt(terms)) * magnitude
    return allowed


def _finite(name, reference):
    """A reference as float64; one with NaN or inf has no budget (any error would pass an
    infinite one, and none a NaN one), so it is refused by name."""
    if reference is None:
        raise ValueError(f"{name}: expected an array of the reference's values, got None")
    values = as_float64(reference, name)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: expected finite values, found NaN or inf (a reference that is not "
                         "finite gives no budget)")
    return values


def as_float64(values, label="values") -> np.ndarray:
    """``values`` as a float64 NumPy array: an array, a number or a sequence of them, or a torch
    tensor on any device and in any float dtype (its graph left out; bfloat16 has no NumPy
    dtype, so a tensor is widened by torch before NumPy sees it)."""
    detach = getattr(values, "detach", None)
    if detach is not None:
        if values.is_meta:
            raise ValueError(f"{label}: a tensor on the 'meta' device holds no values to compare; expected a CPU or "
                             "CUDA tensor")
        return np.asarray(detach().cpu().double(), np.float64)
    try:
        # None read as NaN, and a string failed inside NumPy: neither is a value to compare.
        if values is None or isinstance(values, (str, bytes)):
            raise TypeError
        return np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{label}: expected numbers (an array, a tensor or a number), got "
                        f"{type(values).__name__}") from None


def worst_fraction(impl, ref64, ref32, dtype, long_sum=None) -> float:
    """max |impl - ref64| as a fraction of the budget (``long_sum`` as ``budget``'s): a pass is <= 1.
    A NaN or inf where the reference is finite is infinitely far (inf: NaN compared > 1 as False,
    and a loop that failed on "> 1" passed it), and the shapes must be equal (a single number
    was broadcast against a per-neuron reference and passed)."""
    impl64, ref = as_float64(impl, "impl"), as_float64(ref64, "ref64")
    if impl64.shape != ref.shape:
        raise ValueError(f"impl: shape {impl64.shape} differs from the reference's {ref.shape}")
    error = np.abs(impl64 - ref)
    worst = float(np.max(np.where(np.isnan(error), np.inf, error), initial=0.0))
    return worst / budget(ref, as_float64(ref32, "ref32"), dtype, long_sum)


def assert_within_budget(name, impl, ref64, ref32, dtype, long_sum=None) -> None:
    """Raise AssertionError naming the quantity and its worst element when over budget
    (``long_sum``: ``(A, n)`` of a gradient summed over n contributions, as ``budget``'s)."""
    impl64, ref64 = as_float64(impl, "impl"), as_float64(ref64, "ref64")
    if impl64.shape != ref64.shape:
        raise AssertionError(f"{name}: shape {impl64.shape} differs from the reference's {ref64.shape}")
    allowed = budget(ref64, ref32, dtype, long_sum)
    error = np.abs(impl64 - ref64)
    if error.size and not float(np.max(error)) <= allowed:
        where = np.unravel_index(int(np.nanargmax(np.where(np.isnan(error), np.inf, error))), error.shape)
        raise AssertionError(
            f"{name}: max |impl - ref64| = {float(np.max(error)):.3e} exceeds the budget "
            f"{allowed:.3e} ({dtype_name(dtype)}) at index {tuple(int(i) for i in where)}: "
            f"impl {float(impl64[where])!r}, ref64 {float(ref64[where])!r}"
        )
