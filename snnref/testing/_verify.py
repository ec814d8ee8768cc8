"""``snnref verify``: prove the spec right, and each backend equal to it, on a fixed seed.

Backend "spec", for every model: the finite-difference gradient check for each
accepted surrogate (scalar and per-neuron parameters, with and without
hardware injection), the forward properties of ``snnref.testing._properties`` that
apply to it, and the float32 run.  Backend "torch": ``snnref.testing._equivalence`` in
float64 and float32, contiguous and strided input, every accepted surrogate,
and gradcheck on the smooth twin.  One result per model and backend.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from .. import registry, spec
from . import _checks as checks, _properties as properties, tolerance

FD_BOUND = 1e-6  # relative error of vjp(smooth=True) against finite differences
SEEDS_PER_PROPERTY = 3


@dataclass
class ModelResult:
    model: str
    backend: str = "spec"
    checked: List[str] = field(default_factory=list)
    fd_cases: int = 0
    worst_fd: float = 0.0  # spec: worst FD relative error; torch: worst fraction of the budget
    worst_float32: float = 0.0  # spec: worst float32 error in ulps; torch: spike flips explained
    failures: List[str] = field(default_factory=list)
    gate: Optional[object] = None  # impl: the snnref.testing.gate.GateReport
    # torch, cuda, triton, cpu: (label, snnref.testing._equivalence.Report) of every failing
    # comparison, against the spec or a golden trace, whose traces the HTML report draws.
    failed_comparisons: List[tuple] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures and (self.gate is None or self.gate.passed)


def _rng(key, *salt):
    return np.random.default_rng(zlib.crc32(repr((key,) + salt).encode()))


def _gradient_cases(row, seed, quick=False):
    """Every accepted surrogate x scalar/per-neuron parameters x with/without
    injection; ``quick``: the default surrogate with per-neuron parameters only."""
    for surrogate in (row.default_surrogate,) if quick else row.surrogates or (None,):
        for per_neuron in (True,) if quick else (False, True):
            for inject in (False, True) if row.inject and not quick else (False,):
                rng = _rng(row.key, seed, surrogate, per_neuron, inject)
                yield checks.random_case(row.key, rng, surrogate=surrogate, per_neuron=per_neuron, inject=inject)


def _property_checks(row) -> List[tuple]:
    """(name, check(case, rng)) for every property that applies to ``row``."""
    found = [
        ("split", lambda case, rng: properties.split_run(case, int(rng.integers(1, case.x.shape[0])))),
        ("batch", lambda case, rng: properties.batch_rows(case)),
    ]
    if row.out.spiking:
        found.append(("binary", lambda case, rng: properties.binary_spikes(case)))
    if row.reset.kind is registry.ResetKind.TO_VALUE and row.out.spiking:
        found.append(("reset", lambda case, rng: properties.hard_reset(_without_inject(case))))
    if properties.has_linear_response(row):
        found.append(("lfilter", lambda case, rng: properties.linear_response(_linear_case(row, case))))
    if row.inject:
        found.append(("inject", lambda case, rng: properties.injection(case, _truncating_traces(row, case, rng))))
    return found


def _without_inject(case):
    return checks.Case(case.model, case.surrogate, case.x, case.params, case.state, case.cotangents)


def _linear_case(row, case):
    case = _without_inject(case)
    return properties.spike_free(case) if properties.needs_spike_free(row) else case


def _truncating_traces(row, case, rng):
    shape = case.x.shape[1:]
    traces = checks.random_inject(row, rng, case.x.shape[0] + 2, shape)
    # The shortest trace sets T: cut the first one short.
    first = sorted(traces)[0]
    traces[first] = traces[first][: max(1, case.x.shape[0] - 2)]
    return traces


def _float32_ulps(row, seed):
    """Worst |ref32 - ref64| over outputs and gradients, in float32 ulps of each
    quantity's scale: the baseline error the tolerance policy builds on."""
    case = checks.random_case(row.key, _rng(row.key, seed, "float32"))
    runs = [spec.simulate(row.key, case.x, case.params, case.state, surrogate=case.surrogate, dtype=dtype)
            for dtype in (np.float64, np.float32)]
    grads = [spec.vjp(row.key, case.x, case.params, case.state, case.cotangents,
                      surrogate=case.surrogate, dtype=dtype) for dtype in (np.float64, np.float32)]
    worst = 0.0
    for ref64, ref32 in ((runs[0].outputs, runs[1].outputs), (grads[0], grads[1])):
        for name in ref64:
            if ref32[name].dtype != np.float32:
                raise AssertionError(f"float32 run returned {name} as {ref32[name].dtype}")
            if not np.all(np.isfinite(ref32[name])):
                raise AssertionError(f"float32 run returned non-finite {name}")
            unit = tolerance.POLICY["float32"].eps * max(1.0, float(np.max(np.abs(ref64[name]))))
            worst = max(worst, float(np.max(np.abs(ref32[name] - ref64[name]))) / unit)
    return worst


def _attempt(result, name, check: Callable[[], Optional[float]]):
    try:
        return check()
    except AssertionError as error:
        result.failures.append(f"{name}: {str(error).strip().splitlines()[0]}")
    except Exception as error:  # a crash is a failure of that check, reported by name
        result.failures.append(f"{name}: {type(error).__name__}: {error}")
    return None


def verify_model(key: str, seed: int = 0, quick: bool = False, golden_dir=None) -> ModelResult:
    row = registry.model(key)
    result = ModelResult(row.key)
    for case in _gradient_cases(row, seed, quick):
        report = _attempt(result, f"fd {case.surrogate}", lambda: checks.gradient_check(case, seed=seed))
        if report is None:
            continue
        result.fd_cases += 1
        result.worst_fd = checks.worst_of(result.worst_fd, report.worst)
        bad = {k: f"{v:.1e}" for k, v in report.errors.items() if not v < FD_BOUND}
        if bad:
            result.failures.append(f"fd {case.surrogate}: relative error over {FD_BOUND:g}: {bad}")
    result.checked.append("fd")
    for name, check in _property_checks(row):
        for repeat in range(1 if quick else SEEDS_PER_PROPERTY):
            rng = _rng(row.key, seed, name, repeat)
            case = checks.random_case(row.key, rng, steps=int(rng.integers(2, 12)),
                                      per_neuron=bool(repeat % 2), inject=bool(row.inject) and repeat == 0)
            _attempt(result, name, lambda: check(case, rng))
        result.checked.append(name)
    if row.refractory:
        for ratio in (0.5, 1.0, 2.5, 3.0):
            _attempt(result, "refractory", lambda: properties.refractory_clamp(row.key, ratio))
        result.checked.append("refractory")
    ulps = _attempt(result, "float32", lambda: _float32_ulps(row, seed))
    if ulps is not None:
        result.worst_float32 = ulps
    result.checked.append("float32")
    if not quick:
        _golden(result, row, "spec", golden_dir)
    return result


def _golden(result, row, backend, golden_dir=None):
    """The model's golden traces on ``backend``, from ``golden_dir`` or the installed store."""
    from . import _golden as golden

    try:
        directory = golden.store_dir(golden_dir)
        manifest = golden.read_manifest(directory)
        names = [n for n, e in manifest["files"].items() if e["model"] == row.key]
        if not names:
            # The installed store holds every model's goldens (a row added without them is unfinished);
            # a store of one's own configurations may hold some models only: the others are not checked.
            if Path(directory).resolve() == Path(golden.store_dir()).resolve():
                result.failures.append(f"golden: the installed store holds no golden file of {row.key} (in a "
                                       f"checkout: snnref golden generate --model {row.key} --out golden)")
            return
    except golden.GoldenError as error:
        result.failures.append(f"golden: {error}")
        result.checked.append("golden")
        return
    from . import _equivalence as equivalence

    for name in names:
        # Each file on its own: one that cannot be loaded or run fails by name and the others
        # still run (a damaged file hid the model's other goldens, and any other damaged one).
        try:
            arrays = golden.load(directory, name, manifest["files"][name])
            outcomes = list(_golden_outcomes(golden, name, arrays, manifest["files"][name], backend))
        except (golden.GoldenError, equivalence.NoBudget, equivalence.BeyondDtype) as error:
            result.failures.append(f"golden {name}: {golden.reason(error, name)}")
            continue
        for outcome, comparison in outcomes:
            if not outcome.passed:
                result.failures.append(f"golden {name}: {outcome.detail}")
                if comparison is not None:
                    result.failed_comparisons.append((f"{row.key} golden {name}", comparison))
    result.checked.append("golden")


def _golden_outcomes(golden, name, arrays, entry, backend):
    """(outcome, the backend's comparison with its traces, None for the spec) per check."""
    case, expected = golden.case_from(arrays, entry), golden.expected_from(arrays)
    if backend == "spec":
        worst, _, where = golden.spec_rerun(case, expected, name)
        yield golden.CheckResult(entry["case"], backend, worst <= golden.SPEC_ULPS,
                                 f"{worst:.1f} ulp (worst: {where})"), None
        return
    import torch

    from . import _equivalence as equivalence

    report = equivalence.compare(case, backend, torch.float32, reference=expected)
    yield golden.CheckResult(entry["case"], backend, report.passed, "; ".join(report.failures)), report


def verify_backend(key: str, backend: str, seed: int = 0, quick: bool = False, golden_dir=None) -> ModelResult:
    """A production backend against the spec (``snnref.testing._equivalence``); gradcheck on
    the torch path (the kernels store no float64, which gradcheck needs).
    "cuda" is the torch path on CUDA tensors; "triton" runs on CUDA when there
    is a GPU and the interpreter is off, on CPU under the interpreter otherwise."""
    import torch

    from . import _equivalence as equivalence, _fd as gradcheck

    row = registry.model(key)
    result = ModelResult(row.key, backend)
    device = "cuda" if backend == "cuda" else equivalence.kernel_device() if backend == "triton" else "cpu"
    backend_name = "torch" if backend == "cuda" else backend
    dtypes = {"torch": (torch.float64, torch.float32), "cpu": (torch.float64, torch.float32),
              "triton": (torch.float32, torch.float16, torch.bfloat16)}[backend_name]
    dtypes = tuple(d for d in dtypes if equivalence.storable(row, d))
    for case in _gradient_cases(row, seed, quick):
        for dtype in dtypes:
            for contiguous in (True,) if quick else (True, False):
                name = f"{str(dtype)[6:]} {case.surrogate}{'' if contiguous else ' strided'}"
                _record(result, row, name, _attempt(result, name, lambda: equivalence.compare(
                    case, backend_name, dtype, device, contiguous=contiguous)))
    result.checked += [str(d)[6:] for d in dtypes] + ([] if quick else ["strided"])
    if not quick:
        _gate_cases(result, row, backend_name, device, seed, dtypes)
    if backend_name in ("torch", "cpu") and device == "cpu":
        case = checks.random_case(row.key, _rng(row.key, seed, "gradcheck"), steps=4, neurons=3,
                                  inject=bool(row.inject))
        if _attempt(result, "gradcheck", lambda: gradcheck.smooth_twin_gradcheck(case, backend)) is not None:
            result.checked.append("gradcheck")
    if not quick and device == "cpu":
        _golden(result, row, backend, golden_dir)
    return result


def _gate_cases(result, row, backend, device, seed, dtypes):
    """The gate's exact-threshold cases (decisions on u = 0 exactly, where a kernel's ``>`` for
    ``>=`` shows, which the random cases almost never reach) and far cases (the surrogates'
    tails), in float32 and float64 (x scaled a thousandfold leaves half precision's range)."""
    import torch

    from .. import backend as production
    from . import Implementation, _equivalence as equivalence, gate

    def backend_run(model, x, params, state, *, surrogate=None, inject=None):
        return production.simulate(model, x, params, state, surrogate=surrogate, inject=inject, backend=backend)

    planned, _, _ = gate.plan(Implementation(backend_run, row.key), seed=seed, kinds=("threshold", "far"))
    for item in planned:
        for dtype in (d for d in dtypes if d in (torch.float32, torch.float64)):
            name = f"{str(dtype)[6:]} {item.kind} {item.case.surrogate}"
            _record(result, row, name, _attempt(result, name, lambda: equivalence.compare(
                item.case, backend, dtype, device, fill_state=item.fill_state)))
    result.checked += sorted({item.kind for item in planned}, key=gate.KINDS.index)


def _record(result, row, name, report):
    """One comparison of a backend with the spec in ``result`` (nothing where it raised: ``_attempt``)."""
    if report is None:
        return
    result.fd_cases += 1
    result.worst_fd = checks.worst_of(result.worst_fd, report.worst)
    result.worst_float32 += report.flips
    result.failures += [f"{name}: {failure}" for failure in report.failures]
    if not report.passed:
        result.failed_comparisons.append((f"{row.key} {name}", report))


def load_implementation(spec: str):
    """``package.module:callable`` -> the callable, checked against the adapter contract."""
    import inspect

    from .._imports import load_attribute

    fn = load_attribute(spec)
    from . import Implementation

    declared = fn if isinstance(fn, Implementation) else None
    if declared is not None:
        fn = declared.fn  # a declared contract: its function must have the signature too
    if not callable(fn):
        raise ValueError(f"--impl: {spec} is not callable")
    try:
        inspect.signature(fn).bind("model", "x", {}, {}, surrogate=None, inject=None)
    except TypeError as error:
        raise ValueError(f"--impl: {spec} does not have the contract's signature "
                         f"fn(model, x, params, state, *, surrogate, inject) ({error})") from None
    except ValueError:
        pass  # builtins without a signature: judged by calling them
    return declared or fn


def verify_implementation(fn, key: str, seed: int = 0, quick: bool = False, *, golden_dir=None,
                          examples=None, case_file=None, save_failures=None, impl_spec=None) -> ModelResult:
    """A user's implementation through the gate (``snnref.testing.gate``), under the
    contract it declares (an ``Implementation``, or a plain function's attributes):
    random, exact-threshold, wide, long, strided, out_sum and far cases and the golden traces
    (``quick``: fewer random cases and no goldens, said so).  ``case_file``:
    replay one case written by ``--save-failures`` instead."""
    from . import Implementation, gate

    impl = Implementation.of(fn, key)
    if impl_spec is not None:
        impl = impl.named_by(impl_spec)
    result = ModelResult(impl.model, "impl")
    if case_file is not None:
        planned, dtype = gate.load_case(case_file, impl)
        # One saved case, replayed as it ran: no repeat on other values.
        report = gate.run_planned(replace(impl, dtypes=(dtype,)), [planned], again=False)
    else:
        kinds = tuple(k for k in gate.KINDS if k != "golden") if quick else gate.KINDS
        count = examples if examples is not None else (3 if quick else 8)
        try:
            planned, unchecked, broken = gate.plan(impl, examples=count, seed=seed, kinds=kinds,
                                                   golden_dir=golden_dir)
        except Exception as error:  # an unreadable store: a failure by name, the rest still runs
            planned, unchecked, broken = gate.plan(impl, examples=count, seed=seed,
                                                   kinds=tuple(k for k in kinds if k != "golden"))
            broken.append(f"golden: {error}")
        if quick:
            unchecked.append("golden traces (--quick)")
        report = gate.run_planned(impl, planned, unchecked, broken)
    if save_failures is not None and not report.passed:
        gate.save_failure(report, save_failures, impl_spec)
    result.gate = report
    result.fd_cases = len(report.runs)
    result.worst_fd = report.worst
    kinds = sorted({r.kind for r in report.runs}, key=gate.KINDS.index)
    result.checked = kinds + sorted({r.dtype for r in report.runs})
    result.failures = report.failure_lines()
    return result
