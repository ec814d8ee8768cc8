"""A production backend against the spec, under the tolerance policy (SPEC.md section 7).

``compare(case, backend, dtype)`` runs one ``snnref.testing._checks.Case`` through
``snnref.simulate`` and through the float64 and float32 spec, and compares every
output, final state and gradient (x, every differentiable parameter, trainable
or not, and initial states):

- float64: within ``k max|ref32 - ref64| + c eps64 max(1, |ref64|)`` of the float64 spec, with
  float64's k = 4 eps64/eps32 (the float32 run's error scaled to float64's precision: near
  machine precision, wider where the quantity is sensitive to rounding);
- float32: ``max|impl - ref64| <= k max|ref32 - ref64| + c eps32 max(1, |ref64|)``.

Gradients that are long sums (a parameter's, over time and lanes) also get
the third term ``c_sum eps32 sqrt(n) A`` of ``snnref.testing.tolerance``, with ``A`` and
``n`` reported by the float64 spec's reverse loop.  A spiking output must hold
exactly 0 or 1 (0 or theta for qualia.ATIF), whatever teacher forcing says.

Spike trains must be identical wherever the float64 decision keeps a margin
from threshold.  Where the implementation's spikes differ, the spec is re-run
with those spikes forced (teacher forcing): every spike the forced float64
run decides otherwise, given the implementation's own spike history, must sit
within its margin (the float32 error envelope of the distance to threshold),
whether or not it differs from the unforced run (a flip the forced run decides
the same way is the consequence of an earlier flip: the trajectories part
there); the comparison then proceeds against the forced references.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Dict, List

import numpy as np
import torch

from .. import arguments, registry, spec
from . import tolerance
from ..backend import simulate
from ..spec.api import reduce_to


@dataclass
class Report:
    model: str
    backend: str
    dtype: str
    fractions: Dict[str, float] = field(default_factory=dict)  # quantity -> worst error / budget
    flips: int = 0
    failures: List[str] = field(default_factory=list)
    unchecked: List[str] = field(default_factory=list)  # quantities the implementation does not return
    # quantity -> {"fraction", "failed", "first_step", "last_step", "worst_index"} (steps None
    # for a quantity without a time axis); "spikes" holds the binary check and flips outside the margin.
    details: Dict[str, dict] = field(default_factory=dict)
    # failing quantity -> {"impl", "reference", "budget"} as float64 arrays, for the HTML
    # report's figures; with any failure of a spiking model also "spikes": both spike
    # trains (the unforced spec's), and the forced run's distance and margin after a flip.
    traces: Dict[str, dict] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.fractions.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return not self.failures


def _tensor(value, dtype, device, requires_grad=False):
    return torch.tensor(np.asarray(value), dtype=dtype, device=device, requires_grad=requires_grad)


def _strided(value, dtype, device, requires_grad=False):
    """The same values as a non-contiguous view: every other element of a wider
    buffer whose leading axes lie in memory in reverse order (x (T, B, N) over a
    batch-first buffer, as batch-first data transposed to time-major is), so that
    neither is the last stride 1 nor does one stride address every lane."""
    value = np.asarray(value)
    lead = max(value.ndim - 1, 0)
    # Buffer axis lead - 1 - a holds axis a of the value, for each leading axis a.
    memory = tuple(value.shape[lead - 1 - a] for a in range(lead)) + value.shape[lead:] + (2,)
    wide = torch.zeros(memory, dtype=dtype, device=device)
    view = wide.permute(*(lead - 1 - a for a in range(lead)), *range(lead, wide.dim()))[..., 0]
    view.copy_(_tensor(value, dtype, device))
    view.requires_grad_(requires_grad)
    return view


class InputModified(Exception):
    """The implementation (or backend) wrote into one of its inputs, or its backward into a cotangent."""


class BrokenResult(Exception):
    """A returned quantity that cannot be compared (the wrong shape): the message names it."""


class NoBudget(ValueError):
    """A case whose budget cannot be formed: the spec's float32 run, which the first
    term of SPEC.md section 7's budget reads in every dtype, refuses it (a case finite
    in float64 that float32 cannot hold).  No fault of the implementation, which ran."""


class BeyondDtype(ValueError):
    """A case whose inputs the run's dtype cannot hold (finite in float64, inf in float32):
    the implementation is not run on it, since it would be given inf where the case holds
    a number, and its refusal read as a crash."""


def _check_holds(case, dtype):
    """Every input of ``case`` finite in ``dtype`` where it is finite in float64 (``BeyondDtype``)."""
    parts = {"x": case.x, **{f"params[{k!r}]": v for k, v in case.params.items()},
             **{f"state[{k!r}]": v for k, v in case.state.items()},
             **{f"cotangents[{k!r}]": v for k, v in case.cotangents.items()},
             **{f"inject[{k!r}]": v for k, v in (case.inject or {}).items()}}
    for label, value in parts.items():
        wide = np.asarray(value, dtype=np.float64)
        # torch's cast, as the run's own (bfloat16 has no NumPy dtype).
        held = torch.as_tensor(wide).to(dtype).double().numpy()
        lost = np.isfinite(wide) & ~np.isfinite(held)
        if lost.any():
            raise BeyondDtype(f"not run: {label} holds {float(wide[lost].flat[0])!r}, which "
                              f"{str(dtype).replace('torch.', '')} cannot hold (the case is beyond the dtype)")


def _float32_reference(case, force_spikes):
    """``run_spec`` in float32, for the budget's first term."""
    try:
        return run_spec(case, np.float32, force_spikes)
    except (ValueError, OverflowError) as error:
        # Without the spec's advice for its own caller ("pass a value that float32 holds, or run
        # in float64"): the case is given, and the run being judged may be float64's.
        reason = str(error).split("; pass ")[0]
        raise NoBudget(f"no budget: the float32 spec run that the budget's first term reads refuses this "
                       f"case ({reason})") from None


# In every InputModified message, after the input's name.
MODIFIED = "modified in place by the implementation during"


def _receive(received, label, grad):
    """A tensor hook: keep the gradient that flows into the implementation's backward, and its values."""
    received[label] = (grad, grad.detach().clone())


def _snapshot(inputs):
    return {label: tensor.detach().clone() for label, tensor in inputs.items()}


def changed(now, then):
    """Where two tensors of one shape differ, NaN equal to NaN."""
    return (now != then) & ~(now.isnan() & then.isnan())


def _check_unmodified(inputs, before, during):
    """Every input as it was before the call (NaN where it was NaN): a kernel
    that scribbles on x after reading it gives right outputs and gradients,
    and the comparison alone would pass it."""
    for label, tensor in inputs.items():
        now, then = tensor.detach(), before[label]
        if now.shape != then.shape:
            raise InputModified(f"{label}: {MODIFIED} {during} (resized from {tuple(then.shape)} to "
                                f"{tuple(now.shape)})")
        differ = changed(now, then)
        if bool(differ.any()):
            first = tuple(int(i) for i in torch.nonzero(differ)[0])
            raise InputModified(f"{label}: {MODIFIED} {during} ({int(differ.sum())} of {differ.numel()} "
                                f"elements changed, first at index {first})")


def kernel_device() -> str:
    """Where the triton backend is checked: CUDA where there is a GPU and the
    kernels were defined compiled, else the CPU under Triton's interpreter
    (``TRITON_INTERPRET=1`` at import, which the tests set on every machine)."""
    from ..kernels import common

    return "cuda" if torch.cuda.is_available() and not common.INTERPRETED else "cpu"


def run_backend(case, backend, dtype, device="cpu", contiguous=True, implementation=None):
    """Outputs, final state and gradients of one case on a torch backend (or on
    ``implementation``, a callable with ``snnref.simulate``'s contract), as NumPy float64."""
    return _run(case, backend, dtype, device, contiguous, implementation)[0]


def _run(case, backend, dtype, device, contiguous, implementation, fill_state=True):
    """run_backend's values and the cotangent keys left out because the
    implementation does not return those quantities.  ``fill_state=False``:
    the call gives exactly the case's initial states (``state=None`` when it
    has none, as a training step's call), so the implementation's own defaults
    (SPEC.md section 8) run for the others, which have no gradient to read.
    An implementation whose ``gradients`` is False (the forward alone) gets
    inputs that ask for no gradient, and no backward runs."""
    row = registry.model(case.model)
    backward = getattr(implementation, "gradients", True)
    # Not contiguous: x, every initial state, every per-neuron parameter and every
    # cotangent as views that skip every other element, batch-first in memory (a
    # kernel that reads them by pointer as if contiguous, or addresses lanes with
    # one stride, reads the wrong values).
    array = _tensor if contiguous else _strided
    x = array(case.x, dtype, device, backward)
    # Parameters the implementation keeps fixed (a library whose surrogate scale
    # is not trainable, say) are not differentiated, and so not compared.
    differentiated = [k for k in row.differentiable if backward
                      and k not in getattr(implementation, "fixed_parameters", ())]
    params = {k: array(v, dtype, device, k in differentiated) for k, v in case.params.items()}
    for param in row.params:
        if param.name not in params:
            # A default, as a tensor of its own so that its gradient can be read.
            shape = arguments.default_shape(param, case.x.shape[-1])
            params[param.name] = torch.full(shape, param.default, dtype=dtype, device=device,
                                            requires_grad=param.name in differentiated)
    state = {k: array(v, dtype, device, backward) for k, v in case.state.items()}
    takes_state = getattr(implementation, "takes_state", True)
    # With fill_state, every state the case leaves out is given at its default,
    # as a tensor of its own, so that its gradient can be read.
    for var in row.state if takes_state and fill_state else ():
        if var.name not in state and not isinstance(var.initial, str):
            state[var.name] = torch.full(x.shape[1:], float(var.initial), dtype=dtype, device=device,
                                         requires_grad=backward)
    inject = {k: _tensor(v, dtype, device) for k, v in case.inject.items()} if case.inject else None
    inputs = {"x": x, **{f"params[{k!r}]": v for k, v in params.items()},
              **{f"state[{k!r}]": v for k, v in state.items()},
              **{f"inject[{k!r}]": v for k, v in (inject or {}).items()}}
    before = _snapshot(inputs)
    # An implementation that takes no state is always called with None ("no initial state"), not {}.
    given = state if takes_state and (fill_state or state) else None
    if implementation is None:
        trace = simulate(case.model, x, params, given, backend=backend, surrogate=case.surrogate, inject=inject)
    else:
        trace = implementation(case.model, x, params, given, surrogate=case.surrogate, inject=inject)
    _check_unmodified(inputs, before, "its call")

    def numpy(label, tensor):
        if tensor.is_meta:
            # Reported as the implementation's result, not as a crash inside the gate's own torch calls.
            raise BrokenResult(f"{label}: a tensor on the 'meta' device, which holds no values")
        return tensor.detach().to("cpu", torch.float64).numpy()

    values = {f"out:{k}": numpy(f"out:{k}", v) for k, v in trace.outputs.items()}
    values.update({f"final:{k}": numpy(f"final:{k}", v) for k, v in trace.final_state.items()})
    if not backward:
        return values, []
    total, dropped = 0, []
    # Each cotangent as the backward receives it, and its values then: a backward that writes
    # into one (to save memory) gives right gradients itself, and corrupts any other consumer
    # of the same cotangent (a residual connection's), which this loss does not have.
    received = {}
    for key, cot in case.cotangents.items():
        source, name = (trace.final_state, key[len("final."):]) if key.startswith("final.") else (trace.outputs, key)
        if name not in source:
            dropped.append(key)
            continue
        label = f"final:{name}" if key.startswith("final.") else f"out:{name}"
        # Checked before the loss uses it: a product with the cotangent would
        # fail inside torch, naming neither the quantity nor the implementation.
        if tuple(source[name].shape) != np.shape(cot):
            raise BrokenResult(f"{label}: shape {tuple(source[name].shape)}, expected {np.shape(cot)}")
        if source[name].requires_grad:
            source[name].register_hook(functools.partial(_receive, received, f"the cotangent of {label}"))
        # A cotangent of ones is a loss's plain sum: autograd then hands the
        # backward an expanded (stride 0) cotangent, as a training step does.
        ones = np.all(np.asarray(cot) == 1)
        total = total + (source[name].sum() if ones else (array(cot, dtype, device) * source[name]).sum())
    wrt = {"x": x, **{k: params[k] for k in differentiated}, **{f"state.{k}": v for k, v in state.items()}}
    grads = torch.autograd.grad(total, list(wrt.values()), allow_unused=True)
    _check_unmodified(inputs, before, "its backward")
    _check_unmodified({label: grad for label, (grad, _) in received.items()},
                      {label: kept for label, (_, kept) in received.items()}, "its backward")
    if not takes_state:
        # Nothing to differentiate: the implementation starts from its own state.
        wrt = {k: v for k, v in wrt.items() if not k.startswith("state.")}
        grads = grads[: len(wrt)]
    for name, grad in zip(wrt, grads):
        values[f"grad:{name}"] = np.zeros(np.shape(wrt[name])) if grad is None else numpy(f"grad:{name}", grad)
    return values, dropped


def run_spec(case, dtype, force_spikes=None, long_sums=None):
    """The same quantities from the spec in ``dtype``; also the distance of every decision.
    ``long_sums``: a dict to fill with ``"grad:<param>" -> (A, n)`` (``snnref.testing.tolerance``)."""
    kwargs = dict(surrogate=case.surrogate, inject=case.inject, dtype=dtype, force_spikes=force_spikes)
    trace = spec.simulate(case.model, case.x, case.params, case.state, **kwargs)
    sizes = {}
    grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents, magnitudes=sizes, **kwargs)
    values = {f"out:{k}": v for k, v in trace.outputs.items()}
    values.update({f"final:{k}": v for k, v in trace.final_state.items()})
    values.update({f"grad:{k}": v for k, v in grads.items()})
    if long_sums is not None:
        long_sums.update({f"grad:{k}": v for k, v in sizes.items()})
    return _fold_parameter_starts(registry.model(case.model), case, values, long_sums), trace.distance


def storable(row, dtype) -> bool:
    """Whether ``dtype`` storage holds every scale parameter (the positive ones)
    the row's cases use in its normal range (float16 cannot hold hxtorch's time
    constants of 1e-5 s); the backend refuses the others."""
    if dtype not in (torch.float16, torch.bfloat16):
        return True
    info = torch.finfo(dtype)
    values = [abs(v) for p in row.params if p.domain != registry.REAL
              for v in (*p.sample, p.default or 0.0) if v]
    return all(info.tiny <= v <= info.max for v in values)


def _fold_parameter_starts(row, case, values, long_sums=None):
    """With no initial state given, hxtorch's membrane starts at a parameter and
    autograd sums the initial-state path into it; the spec reports the two paths
    apart ("leak" and "state.v"), so add them up as the seed does (and count the
    path's lanes as contributions to the parameter's long sum)."""
    for var in row.state:
        if var.name not in case.state and isinstance(var.initial, str):
            path = values.pop(f"grad:state.{var.name}")
            key = f"grad:{var.initial}"
            values[key] = values[key] + reduce_to(path, values[key].shape)
            if long_sums is not None and key in long_sums:
                magnitude, terms = long_sums[key]
                extra = reduce_to(np.abs(path), values[key].shape)
                long_sums[key] = (magnitude + float(np.max(extra, initial=0.0)),
                                  terms + max(1, path.size // max(1, values[key].size)))
    return values


def _spikes(row, out):
    # ATIF emits theta * s: in float32 theta is rounded, so read the spike as out != 0.
    return (out != 0).astype(out.dtype) if row.out is registry.Output.SCALED_SPIKES else out


def _where(key, error, allowed):
    """Where a quantity first exceeds its budget: time step and index for sequences."""
    bad = np.argwhere(np.nan_to_num(error, nan=np.inf) > allowed)
    if not len(bad):
        return "?"
    first = tuple(int(i) for i in bad[0])
    if key.startswith(("out:", "grad:x")) and first:
        return f"first at step {first[0]}, index {first[1:]}"
    return f"first at index {first}"


def _nonfinite(key, value, reference, allowed):
    """A failure line naming a NaN or inf of the implementation's (whose error would read
    "inf", as if a value had overflowed), or None where all its values are finite."""
    bad = ~np.isfinite(value)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{key}: {value[first]} in the implementation's values ({int(bad.sum())} of {bad.size}); "
            f"{_where(key, np.where(bad, np.inf, 0.0), allowed)} "
            f"(the reference there: {float(reference[first]):.6g})")


def _locate(key, error, allowed):
    """First and last failing time step and the worst element of one quantity."""
    error = np.nan_to_num(error, nan=np.inf)
    sequence = key.startswith(("out:", "grad:x")) and error.ndim >= 2
    bad = np.argwhere(error > allowed)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape)) if error.size else ()
    return {
        "failed": bool(len(bad)),
        "first_step": int(bad[0][0]) if sequence and len(bad) else None,
        "last_step": int(bad[-1][0]) if sequence and len(bad) else None,
        "failing_elements": int(len(bad)),
        "worst_index": worst,
    }


def _defaults_used(row, case, fill_state, implementation):
    """The state variables the implementation starts from its own defaults on this call
    (not given: a state at a parameter such as hxtorch's v = leak is never filled in)."""
    if not getattr(implementation, "takes_state", True):
        return list(row.state)
    return [var for var in row.state if var.name not in case.state and (not fill_state or isinstance(var.initial, str))]


def _flip_message(where, forced, decided, observed, on_threshold, distance64, margin, report, row, defaults):
    """Why the spike at ``where`` is wrong: against an observed spike, on threshold, or outside the margin."""
    place = f"step {where[0]}, index {where[1:]}"
    if observed is not None:
        return (f"spike at {place}: {forced[where]:g} where the observed spike is {float(decided[where]):g} "
                "(an observed spike is the output, SPEC.md section 5)")
    if not on_threshold[where]:
        return (f"spike flip at {place}: |u| = {abs(distance64[where]):.3e} in float64 is outside the margin "
                f"{margin:.3e}")
    # The reference's membrane sits exactly on threshold: a different threshold test flips the
    # spike, and so does any difference in the implementation's own membrane up to that step
    # (a default initial state of its own, which a recorded after-reset membrane can hide).
    differing = [key for key in (f"out:{var}" for var in row.state_names)
                 if report.details.get(key, {}).get("failed") and report.details[key]["first_step"] is not None
                 and report.details[key]["first_step"] <= where[0]]
    started = "; ".join(f"{var.name} starts at {var.initial}" for var in defaults)
    own = f"; this call gives no initial {', '.join(var.name for var in defaults)}, so the implementation's " \
        f"own defaults are used (SPEC.md section 8: {started})" if defaults else ""
    if differing:
        return (f"spike flip at {place}, where the reference's u is 0 exactly: the implementation's "
                f"{', '.join(differing)} differs from the reference's by then, so its membrane differs{own}")
    if defaults:
        return (f"spike flip at {place}: the reference's u is 0 exactly in float64 and float32, so either the "
                f"threshold test differs (>= against >) or the membrane does{own}")
    return (f"spike flip at {place}: u = 0 exactly in float64 and float32, so the threshold test itself "
            "differs (>= against >)")


def _binary(row, out, case, dtype):
    """Where a spiking output holds anything but 0 and 1 (0 and theta, rounded to
    ``dtype``, for qualia.ATIF): SPEC.md section 7, whatever teacher forcing says."""
    if row.out is registry.Output.SCALED_SPIKES:
        theta = torch.as_tensor(np.asarray(case.params.get("threshold", 1.0))).to(dtype).double().numpy()
        allowed = (out == 0) | (out == np.broadcast_to(theta, out.shape))
    else:
        allowed = (out == 0) | (out == 1)
    return np.argwhere(~allowed)


def _with_defaults(case):
    """The case with every parameter it leaves out given at its default, as ``_run`` gives it."""
    row = registry.model(case.model)
    defaults = {p.name: np.full(arguments.default_shape(p, case.x.shape[-1]), p.default)
                for p in row.params if p.name not in case.params}
    return replace(case, params={**case.params, **defaults})


def rounded_to(case, dtype):
    """The case with every input rounded to ``dtype`` storage (float64 values again)."""
    def rounded(value):
        return torch.as_tensor(np.asarray(value, dtype=np.float64)).to(dtype).double().numpy()

    def each(values):
        return None if values is None else {k: rounded(v) for k, v in values.items()}

    return replace(case, x=rounded(case.x), params=each(case.params), state=each(case.state),
                   cotangents=each(case.cotangents), inject=each(case.inject))


def compare(case, backend="torch", dtype=torch.float32, device="cpu", contiguous=True, reference=None,
            implementation=None, fill_state=True) -> Report:
    """``reference``: stored float64 results (golden traces) to use instead of
    running the float64 spec; the spec is still run where teacher forcing needs it.
    ``implementation``: a callable with ``snnref.simulate``'s contract to check
    instead of a backend (``backend`` is then only its name in the report).
    ``fill_state=False``: called with the case's initial states only (``_run``);
    the defaults of the others are compared through the outputs."""
    row = registry.model(case.model)
    name = str(dtype).replace("torch.", "")
    report = Report(case.model, backend, name)
    _check_holds(case, dtype)
    if dtype in (torch.float16, torch.bfloat16):
        # Half-precision storage: the reference sees the same rounded inputs, the parameters
        # left at their defaults too (the implementation gets them rounded, from _run).
        case = rounded_to(_with_defaults(case), dtype)
    impl, dropped = _run(case, backend, dtype, device, contiguous, implementation, fill_state)
    if row.out.spiking and "out:out" in impl:
        stray = _binary(row, impl["out:out"], case, dtype)
        if len(stray):
            first, last = tuple(int(i) for i in stray[0]), tuple(int(i) for i in stray[-1])
            report.failures.append(
                f"spikes: {len(stray)} values of out:out are not exactly 0 or 1; first at step {first[0]}, "
                f"index {first[1:]} (impl {float(impl['out:out'][first])!r})")
            report.details["spikes"] = {"fraction": np.inf, "failed": True, "first_step": first[0],
                                        "last_step": last[0], "failing_elements": len(stray),
                                        "worst_index": first, "check": "not exactly 0 or 1"}
    if dropped:
        # The implementation does not return these quantities: the reference's
        # gradients must not see their cotangents either.
        case = replace(case, cotangents={k: v for k, v in case.cotangents.items() if k not in dropped})
        reference = None
    long_sums = {}
    ref64, distance64 = run_spec(case, np.float64, long_sums=long_sums)
    if reference is not None and dtype not in (torch.float16, torch.bfloat16):
        # Golden values for the unforced run (half storage re-rounds the inputs,
        # so its reference must be recomputed).
        stored = _fold_parameter_starts(row, case, dict(reference))
        # Teacher forcing below judges spikes by the spec's own run, never by the stored
        # ones: stored spikes the spec does not give would pass unseen.
        if row.out.spiking and "out:out" in stored and stored["out:out"].shape == ref64["out:out"].shape:
            differ = np.argwhere(_spikes(row, stored["out:out"]) != _spikes(row, ref64["out:out"]))
            if len(differ):
                report.failures.append(f"out:out: {len(differ)} stored spikes differ from the float64 spec's, first "
                                       f"at step {differ[0][0]}, index {tuple(int(i) for i in differ[0][1:])}: "
                                       "the reference is not the spec's")
        ref64 = stored
    forced = None
    # Teacher forcing replays the implementation's spikes where they are finite and
    # of the reference's shape.  Spikes other than 0 and 1 have failed above, and
    # are still replayed: given a library's multi-spikes, its membrane can agree.
    replayable = ("out:out" in impl and impl["out:out"].shape == ref64["out:out"].shape
                  and bool(np.isfinite(impl["out:out"]).all()))
    if row.out.spiking and distance64 is not None and replayable:
        impl_spikes = _spikes(row, impl["out:out"])
        ref_spikes = _spikes(row, ref64["out:out"])
        if not np.array_equal(impl_spikes, ref_spikes):
            forced = impl_spikes
            long_sums = {}
            ref64, distance64 = run_spec(case, np.float64, forced, long_sums)
    ref32, distance32 = _float32_reference(case, forced)
    if forced is None and row.out.spiking and distance64 is not None:
        # The k term reads ref32 - ref64 as the error an honest implementation makes on the spike train
        # it produced, which here is ref64's; a spike float32 flips and float64 does not puts ref32 on
        # another trajectory, and that term then measures the flip: in float64 (k scaled to float64's
        # precision) a membrane off by 1e-10 passed, in float32 one off by 10%.  ref32 follows ref64's spikes.
        spikes64 = _spikes(row, ref64["out:out"])
        if not np.array_equal(_spikes(row, ref32["out:out"]), spikes64):
            ref32 = _float32_reference(case, spikes64)[0]
    if not fill_state:
        # A state the call did not give has no gradient to compare.
        ref64 = {k: v for k, v in ref64.items()
                 if not k.startswith("grad:state.") or k[len("grad:state."):] in case.state}
    if forced is not None:
        unforced = _spikes(row, run_spec(case, np.float64)[0]["out:out"])
        flips = np.argwhere(forced != unforced)
        report.flips = len(flips)
        margin = tolerance.budget(distance64, distance32, np.float32)
        spike_traces = {"impl": forced, "reference": unforced, "distance": distance64, "margin": margin}
        # Every spike is judged against the forced float64 run's own decision, given
        # the implementation's spike history: a flip against the unforced run that
        # the forced run decides the same way is the consequence of an earlier flip
        # (the trajectories part there), and a spike that agrees with the unforced
        # run can still contradict the implementation's own history.
        decided = (distance64 > 0) if row.spike_test == ">" else (distance64 >= 0)
        # Observed spikes are the output whatever u says (SPEC.md section 5): a spike that
        # differs from the observation is wrong at any margin, and none that equals it is.
        observed = (case.inject or {}).get("spikes")
        if observed is not None:
            decided = np.broadcast_to(np.asarray(observed)[:forced.shape[0]] != 0, forced.shape)
        contradicted = decided != (forced != 0)
        # For the figure: which differences the forced run contradicts (the others follow an earlier flip).
        spike_traces["contradicted"] = contradicted
        # Exactly on threshold in both precisions no rounding happened: a contradiction
        # there is a different threshold test (>= against >), at any margin.
        on_threshold = (distance64 == 0) & (distance32 == 0)
        wrong = contradicted & ((np.abs(distance64) > margin) | on_threshold | (observed is not None))
        outside = [tuple(int(i) for i in index) for index in np.argwhere(wrong)]
        if outside and "spikes" not in report.details:
            report.details["spikes"] = {
                # A flip exactly on threshold, or against an observed spike, is wrong at any distance:
                # its fraction is inf.
                "fraction": max(abs(distance64[w]) / margin if distance64[w] != 0 and observed is None else np.inf
                                for w in outside),
                "failed": True,
                "first_step": outside[0][0], "last_step": max(w[0] for w in outside),
                "failing_elements": len(outside), "worst_index": outside[0], "check": "spike flips"}
        # Written after the other quantities are compared (a flip on threshold is explained by
        # the membranes), in the failures' place before them.
        flips_at = len(report.failures)
    rule_dtype = np.float64 if dtype == torch.float64 else dtype
    for key, reference in ref64.items():
        if key not in impl:
            report.unchecked.append(key)
            continue
        value = impl[key]
        if value.shape != reference.shape:
            report.failures.append(f"{key}: shape {value.shape}, expected {reference.shape}")
            continue
        if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(ref32[key]))):
            # An overflowing spec run gives no budget: the case is outside what can be checked.
            report.unchecked.append(f"{key} (the spec's float64 or float32 run is not finite: no budget)")
            continue
        allowed = tolerance.budget(reference, ref32[key], rule_dtype, long_sums.get(key))
        error = np.abs(value - reference)
        worst = float(np.max(error, initial=0.0)) if not np.any(np.isnan(error)) else np.inf
        report.fractions[key] = worst / allowed
        report.details[key] = {"fraction": worst / allowed, "error": worst, "budget": allowed,
                               "long_sum": long_sums.get(key), **_locate(key, error, allowed)}
        if not worst <= allowed:
            report.traces[key] = {"impl": value, "reference": reference, "budget": allowed}
            report.failures.append(_nonfinite(key, value, reference, allowed) or
                                   f"{key}: max error {worst:.3e} over the budget {allowed:.3e}; "
                                   f"{_where(key, error, allowed)}")
    if forced is not None:
        report.failures[flips_at:flips_at] = [
            _flip_message(where, forced, decided, observed, on_threshold, distance64, margin, report, row,
                          _defaults_used(row, case, fill_state, implementation))
            for where in outside]
    if report.failures and row.out.spiking and "out:out" in impl and impl["out:out"].shape == ref64["out:out"].shape:
        report.traces["spikes"] = spike_traces if forced is not None else {
            "impl": _spikes(row, impl["out:out"]), "reference": _spikes(row, ref64["out:out"])}
    return report
