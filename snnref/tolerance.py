"""The tolerance policy (SPEC.md section 7): the one place where budgets live.

A float32 implementation passes when, for every output and every gradient,

    max|impl - ref64| <= k * max|ref32 - ref64| + c * eps * max(1, max|ref64|)

with ``ref64`` the float64 spec and ``ref32`` the same spec run in float32: the
error any honest float32 implementation makes.  The first term scales the
budget with how hard the quantity is to compute in that precision (long
recurrences, cancellations); the second is a floor for quantities that float32
happens to get exactly right (spike trains, zeros), where the first term is 0.

Each entry of ``POLICY`` is one storage dtype with the reason for its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    k: float
    c: float
    eps: float
    reason: str


def _half_budget(name, eps):
    return Budget(
        k=4.0,
        c=2.0,
        eps=eps,
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
        reason=(
            "k=4: an honest float32 implementation differs from the float32 spec only "
            "in the order of its roundings (fused multiply-add, another reduction order, "
            "the backward recomputing instead of storing); each such source costs about "
            "as much as the spec's own float32 error, and 4 allows two of them each way. "
            "c=8: where ref32 equals ref64 exactly the first term vanishes, and a correct "
            "implementation may still round a few times differently: 8 ulp of the "
            "quantity's scale."
        ),
    ),
    "float64": Budget(
        k=0.0,
        c=64.0,
        eps=float(np.finfo(np.float64).eps),
        reason=(
            "k=0: a float64 implementation is compared with the float64 spec directly. "
            "c=64: the same arithmetic in another order (fused multiply-add, reductions "
            "over batch and time in another order) may differ by a few ulp per step; "
            "64 ulp of the quantity's scale covers that for the short traces the checks "
            "use, while a decay off by 1e-3 is 1e10 times larger."
        ),
    ),
    "float16": _half_budget("float16", 2.0**-10),
    "bfloat16": _half_budget("bfloat16", 2.0**-7),
}


def _name(dtype) -> str:
    """The policy row of a NumPy or torch dtype (bfloat16 exists only in torch)."""
    text = str(dtype)
    return text[len("torch."):] if text.startswith("torch.") else np.dtype(dtype).name


def budget(ref64, ref32, dtype) -> float:
    """The allowed max |impl - ref64| for one quantity."""
    rule = POLICY[_name(dtype)]
    ref64 = np.asarray(ref64, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(ref64), initial=0.0)))
    reference_error = float(np.max(np.abs(np.asarray(ref32, np.float64) - ref64), initial=0.0))
    return rule.k * reference_error + rule.c * rule.eps * scale


def worst_fraction(impl, ref64, ref32, dtype) -> float:
    """max |impl - ref64| as a fraction of the budget: a pass is <= 1."""
    error = float(np.max(np.abs(np.asarray(impl, np.float64) - np.asarray(ref64, np.float64)), initial=0.0))
    return error / budget(ref64, ref32, dtype)


def assert_within_budget(name, impl, ref64, ref32, dtype) -> None:
    """Raise AssertionError naming the quantity and its worst element when over budget."""
    impl64 = np.asarray(impl, np.float64)
    ref64 = np.asarray(ref64, np.float64)
    if impl64.shape != ref64.shape:
        raise AssertionError(f"{name}: shape {impl64.shape} differs from the reference's {ref64.shape}")
    allowed = budget(ref64, ref32, dtype)
    error = np.abs(impl64 - ref64)
    if error.size and not float(np.max(error)) <= allowed:
        where = np.unravel_index(int(np.nanargmax(np.where(np.isnan(error), np.inf, error))), error.shape)
        raise AssertionError(
            f"{name}: max |impl - ref64| = {float(np.max(error)):.3e} exceeds the budget "
            f"{allowed:.3e} ({_name(dtype)}) at index {tuple(int(i) for i in where)}: "
            f"impl {impl64[where]!r}, ref64 {ref64[where]!r}"
        )
