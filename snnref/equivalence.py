"""A production backend against the spec, under the tolerance policy (SPEC.md section 7).

``compare(case, backend, dtype)`` runs one ``snnref.checks.Case`` through
``snnref.simulate`` and through the float64 and float32 spec, and compares every
output, final state and gradient (x, trainable parameters, initial states):

- float64: within ``c * eps64`` of the float64 spec (near machine precision);
- float32: ``max|impl - ref64| <= k max|ref32 - ref64| + c eps32 max(1, |ref64|)``.

Spike trains must be identical wherever the float64 decision keeps a margin
from threshold.  Where the implementation's spikes differ, the spec is re-run
with those spikes forced (teacher forcing): every flip must sit within the
margin of the forced float64 run (the float32 error envelope of the distance
to threshold), and the comparison then proceeds against the forced references.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List

import numpy as np
import torch

from . import registry, spec, tolerance
from .backend import simulate
from .spec.api import reduce_to

SPIKING = ("spikes", "spikes*threshold")


@dataclass
class Report:
    model: str
    backend: str
    dtype: str
    fractions: Dict[str, float] = field(default_factory=dict)  # quantity -> worst error / budget
    flips: int = 0
    failures: List[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.fractions.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return not self.failures


def _tensor(value, dtype, device, requires_grad=False):
    return torch.tensor(np.asarray(value), dtype=dtype, device=device, requires_grad=requires_grad)


def _strided(x, dtype, device):
    """The same values as a non-contiguous view (every other element of a wider buffer)."""
    wide = torch.zeros(x.shape + (2,), dtype=dtype, device=device)
    wide[..., 0] = _tensor(x, dtype, device)
    view = wide[..., 0]
    view.requires_grad_(True)
    return view


def run_backend(case, backend, dtype, device="cpu", contiguous=True):
    """Outputs, final state and gradients of one case on a torch backend, as NumPy float64."""
    row = registry.model(case.model)
    x = _tensor(case.x, dtype, device, True) if contiguous else _strided(case.x, dtype, device)
    params = {k: _tensor(v, dtype, device, k in row.trainable) for k, v in case.params.items()}
    state = {k: _tensor(v, dtype, device, True) for k, v in case.state.items()}
    for var in row.state:
        if var.name not in state and not isinstance(var.initial, str):
            state[var.name] = torch.full(x.shape[1:], float(var.initial), dtype=dtype, device=device,
                                         requires_grad=True)
    inject = {k: _tensor(v, dtype, device) for k, v in case.inject.items()} if case.inject else None
    trace = simulate(case.model, x, params, state, backend=backend, surrogate=case.surrogate, inject=inject)
    total = 0
    for key, cot in case.cotangents.items():
        value = trace.final_state[key[len("final."):]] if key.startswith("final.") else trace.outputs[key]
        total = total + (_tensor(cot, dtype, device) * value).sum()
    wrt = {"x": x, **{k: params[k] for k in row.trainable}, **{f"state.{k}": v for k, v in state.items()}}
    grads = torch.autograd.grad(total, list(wrt.values()), allow_unused=True)
    def numpy(tensor):
        return tensor.detach().to("cpu", torch.float64).numpy()

    values = {f"out:{k}": numpy(v) for k, v in trace.outputs.items()}
    values.update({f"final:{k}": numpy(v) for k, v in trace.final_state.items()})
    for name, grad in zip(wrt, grads):
        values[f"grad:{name}"] = np.zeros(np.shape(wrt[name])) if grad is None else numpy(grad)
    return values


def run_spec(case, dtype, force_spikes=None):
    """The same quantities from the spec in ``dtype``; also the distance of every decision."""
    kwargs = dict(surrogate=case.surrogate, inject=case.inject, dtype=dtype, force_spikes=force_spikes)
    trace = spec.simulate(case.model, case.x, case.params, case.state, **kwargs)
    grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents, **kwargs)
    values = {f"out:{k}": v for k, v in trace.outputs.items()}
    values.update({f"final:{k}": v for k, v in trace.final_state.items()})
    values.update({f"grad:{k}": v for k, v in grads.items()})
    return _fold_parameter_starts(registry.model(case.model), case, values), trace.distance


def _fold_parameter_starts(row, case, values):
    """With no initial state given, hxtorch's membrane starts at a parameter and
    autograd sums the initial-state path into it; the spec reports the two paths
    apart ("leak" and "state.v"), so add them up as the seed does."""
    for var in row.state:
        if var.name not in case.state and isinstance(var.initial, str):
            path = values.pop(f"grad:state.{var.name}")
            key = f"grad:{var.initial}"
            values[key] = values[key] + reduce_to(path, values[key].shape)
    return values


def _spikes(row, out):
    # ATIF emits theta * s: in float32 theta is rounded, so read the spike as out != 0.
    return (out != 0).astype(out.dtype) if row.out == "spikes*threshold" else out


def _where(key, error, allowed):
    """Where a quantity first exceeds its budget: time step and index for sequences."""
    bad = np.argwhere(np.nan_to_num(error, nan=np.inf) > allowed)
    if not len(bad):
        return "?"
    first = tuple(int(i) for i in bad[0])
    if key.startswith(("out:", "grad:x")) and first:
        return f"first at step {first[0]}, index {first[1:]}"
    return f"first at index {first}"


def rounded_to(case, dtype):
    """The case with every input rounded to ``dtype`` storage (float64 values again)."""
    def rounded(value):
        return torch.as_tensor(np.asarray(value, dtype=np.float64)).to(dtype).double().numpy()

    def each(values):
        return None if values is None else {k: rounded(v) for k, v in values.items()}

    return replace(case, x=rounded(case.x), params=each(case.params), state=each(case.state),
                   cotangents=each(case.cotangents), inject=each(case.inject))


def compare(case, backend="torch", dtype=torch.float32, device="cpu", contiguous=True) -> Report:
    row = registry.model(case.model)
    name = str(dtype).replace("torch.", "")
    report = Report(case.model, backend, name)
    if dtype in (torch.float16, torch.bfloat16):
        # Half-precision storage: the reference sees the same rounded inputs.
        case = rounded_to(case, dtype)
    impl = run_backend(case, backend, dtype, device, contiguous)
    ref64, distance64 = run_spec(case, np.float64)
    forced = None
    if row.out in SPIKING and distance64 is not None:
        impl_spikes = _spikes(row, impl["out:out"])
        ref_spikes = _spikes(row, ref64["out:out"])
        if not np.array_equal(impl_spikes, ref_spikes):
            forced = impl_spikes
            ref64, distance64 = run_spec(case, np.float64, forced)
    ref32, distance32 = run_spec(case, np.float32, forced)
    if forced is not None:
        flips = np.argwhere(forced != _spikes(row, run_spec(case, np.float64)[0]["out:out"]))
        report.flips = len(flips)
        margin = tolerance.budget(distance64, distance32, np.float32)
        for index in flips:
            where = tuple(int(i) for i in index)
            if abs(distance64[where]) > margin:
                report.failures.append(
                    f"spike flip at step {where[0]}, index {where[1:]}: |u| = {abs(distance64[where]):.3e} "
                    f"in float64 is outside the margin {margin:.3e}"
                )
    rule_dtype = np.float64 if dtype == torch.float64 else dtype
    for key, reference in ref64.items():
        value = impl[key]
        if value.shape != reference.shape:
            report.failures.append(f"{key}: shape {value.shape}, expected {reference.shape}")
            continue
        allowed = tolerance.budget(reference, ref32[key], rule_dtype)
        error = np.abs(value - reference)
        worst = float(np.max(error, initial=0.0)) if not np.any(np.isnan(error)) else np.inf
        report.fractions[key] = worst / allowed
        if not worst <= allowed:
            report.failures.append(f"{key}: max error {worst:.3e} over the budget {allowed:.3e}; "
                                   f"{_where(key, error, allowed)}")
    return report
