"""The ``continuous`` rows of ``snnref verify``: one per registry model SPEC.md section 9 maps.

Each row checks, on the fixed seed, the section-9 claims for that model:
(1) the relation: exact relations deviate by at most ``convergence.exact_bound``
    at every level with the exact spike counts; Euler models converge with a
    fitted order in ORDER_RANGE for spike times, first-spike times (spiking
    models) and membranes;
(2) the closed form agrees with solve_ivp to IVP_BOUND (relative);
(3) the exact gradients agree with finite differences to ``fdcheck.FD_BOUND``
    (full run only; the quick run checks (1), with fewer levels for the exact
    relations, and (2)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from . import convergence, correspondence, fdcheck

ORDER_RANGE = (0.9, 1.1)  # SPEC.md section 9: explicit Euler is first order
IVP_BOUND = 1e-9  # SPEC.md section 9 / issue 12: closed form against solve_ivp
LEVELS = 6
QUICK_LEVELS = 4
FD_NEURONS = 4


@dataclass
class Row:
    model: str
    passed: bool = True
    summary: str = ""
    failures: List[str] = field(default_factory=list)


def check_relation(result: convergence.Convergence) -> List[str]:
    """(1) for one study: the failures, empty when the section-9 claim holds."""
    failures = []
    if result.relation == "exact":
        if not result.max_deviation <= result.bound:
            failures.append(f"exact relation: max deviation {result.max_deviation:.3e} exceeds the float64 "
                            f"rounding bound {result.bound:.3e} (spike counts agree per level: "
                            f"{result.spike_counts_agree.tolist()})")
        return failures
    low, high = ORDER_RANGE
    for name, order in result.order.items():
        if order is None:
            continue
        if not low <= order <= high:
            failures.append(f"{name}: fitted order {order:.3f} outside [{low}, {high}] "
                            f"(median errors {[float(f'{e:.3e}') for e in result.median_errors[name]]})")
    return failures


def _fd(model, seed):
    case = convergence.draw_case(model, seed, neurons=FD_NEURONS)
    cp = convergence.counterpart_of(case)
    # Samples between pulses, so that no sample sits on an event.
    samples = case.pulse_times + case.spacing / 3
    return fdcheck.check(cp.node, cp.params, case.pulse_times, convergence.pulse_weights(case, cp),
                         t_end=case.t_end, samples=samples, state=cp.state)


def row(model, quick=False, seed=0) -> Row:
    result = Row(model)
    try:
        # The Euler orders need every level in the quick run too; the exact relations hold at each.
        exact_relation = correspondence.counterpart(model).relation == "exact"
        study = convergence.converge(model, levels=QUICK_LEVELS if quick and exact_relation else LEVELS, seed=seed)
        result.failures += check_relation(study)
        if study.relation == "exact":
            claim = f"exact: max dev {study.max_deviation:.1e}"
        else:
            orders = "/".join(f"{v:.2f}" for v in study.order.values() if v is not None)
            claim = f"order {orders}"
        if not study.ivp_agreement <= IVP_BOUND:
            result.failures.append(f"solve_ivp: relative difference {study.ivp_agreement:.3e} over {IVP_BOUND:g}")
        parts = [claim, f"ivp {study.ivp_agreement:.0e}"]
        if not quick:
            report = _fd(model, seed)
            if not report.passed:
                result.failures.append(f"exact gradients: finite-difference error {report.worst:.3e} over "
                                       f"{fdcheck.FD_BOUND:g} ({report.checked} checked)")
            parts.append(f"fd {report.worst:.0e} ({report.skipped} skipped)")
        result.summary = ", ".join(parts)
    except Exception as error:  # a crash is this row's failure, reported by name
        result.failures.append(f"{type(error).__name__}: {error}")
    result.passed = not result.failures
    return result


def rows(quick: bool, seed: int = 0) -> list:
    """One ``Row`` (model, passed, summary, failures) per mapped registry model."""
    return [row(model, quick, seed) for model in correspondence.MAPPED]
