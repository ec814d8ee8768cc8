"""The correctness gate for other people's SNN code.

- ``assert_close(name, impl, ref64, ref32, dtype, model=..., ...)``: the SPEC.md
  section 7 budget, reporting the worst element (model, quantity, time step,
  neuron) on failure.
- ``snnref.testing.strategies``: hypothesis strategies for each model's
  inputs, parameters and states, drawn as a ``Case`` (the model, surrogate, x,
  params, state, cotangents and inject of one run).
- ``Implementation(fn, model, pin=..., per_neuron=..., surrogates=...,
  takes_state=..., takes_inject=..., dtypes=..., fixed=..., gradients=...)``: what an
  implementation covers (``snnref.testing.contract``), read identically by
  ``assert_conforms``, ``snnref verify --impl`` and the pytest plugin
  (``pytest --snnref-impl pkg.mod:fn --snnref-model KEY``).
- ``assert_conforms(fn, model, ...)``: runs a user's implementation through
  the gate (``snnref.testing.gate``): seeded random cases, a case exactly on
  threshold, a wide, a long and a strided case (non-contiguous inputs), one
  called as a training step calls a neuron (no initial state, a loss of
  out.sum() alone), one far from threshold (a surrogate's tails), and the
  installed golden traces; outputs, final states and gradients, in float32
  and float64.

The adapter contract.  ``fn`` has ``snnref.simulate``'s signature::

    fn(model: str, x: Tensor, params: dict[str, Tensor], state: dict[str, Tensor] | None,
       *, surrogate: str | None, inject: dict[str, Tensor] | None) -> result

with ``x`` time-major (T, ..., N), parameters, states and outputs named as in
``snnref.registry`` (SPEC.md section 8), and ``result.outputs`` (``"out"`` and
each recorded state sequence) and ``result.final_state`` dicts of tensors,
differentiable with respect to ``x``, the trainable parameters and the
initial states; spiking outputs hold exactly 0 or 1.  ``"out"`` is required,
the others may be left out (listed as not checked); a name the model does not
define fails the run.  ``surrogate`` is a
registry key, or for a declared custom surrogate the ``Surrogate`` object
itself (its ``key`` names it).  ``state`` None gives no initial state: the
model's own defaults (SPEC.md section 8), as ``snnref.simulate`` without one.
A result must keep its values when ``fn`` is called again (no view of a buffer
it reuses).  An ``Implementation``
(or the same-named attributes on ``fn``: ``takes_state``, ``per_neuron``,
``surrogates``, ``pin``, ``takes_inject``, ``dtypes``, ``gradients``, and
``fixed_parameters`` for the field ``fixed``; ``contract.DECLARED``)
narrows what is checked to what it can express; the report lists the rest.
``snnref.testing.adapters`` wraps the seed-style functional signatures
(tether's ``(x_seq, v_init, decay, threshold, alpha, surrogate_type)``,
hxtorch's ``cuba_*_integration``) into this contract.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from . import tolerance
from .. import arguments, registry
from .. import _imports
from ..spec.surrogates import Custom as Surrogate
from ._checks import Case
from .contract import ContractError, Implementation

__all__ = ["Case", "ConformanceError", "ContractError", "Implementation", "Surrogate", "assert_close",
           "assert_conforms"]


# The submodules on first use: ``snnref.testing.strategies`` imports hypothesis (the test extra).
__getattr__ = _imports.submodules_on_use(__name__)
__dir__ = _imports.listing(__name__)


class ConformanceError(AssertionError):
    """An implementation that does not conform: the message names the model,
    the quantity and the first failing time step."""


def _where(shape, index, sequence):
    if sequence and len(index) >= 2:
        return f"time step {index[0]}, neuron {index[1:]}"
    return f"index {index}" if index else "its only element"


def _import_path(target):
    """(``MODULE:NAME`` that imports ``target`` again, the folder the import needs on
    ``PYTHONPATH`` or None), for a replay command: the module-level name bound to it
    (a function made by a factory has no other); (None, None) where there is none
    (``__main__``, a local function or contract).  A function is looked for in its
    own module.  An ``Implementation`` is looked for in its function's module, then
    in every module loaded: replayed by its function's name, the declared contract
    (a fixed parameter, a pin) was dropped, and a correct implementation failed.
    The folder is given where the module does not import from the working directory
    or an installed package (a test module that pytest imported from its own folder)."""
    import sys

    home = sys.modules.get(getattr(getattr(target, "fn", target), "__module__", None) or "")
    modules = [home] + ([m for m in list(sys.modules.values()) if m is not home]
                        if isinstance(target, Implementation) else [])
    for module in modules:
        if not hasattr(module, "__dict__") or getattr(module, "__name__", "__main__") == "__main__":
            continue
        name = next((key for key, value in list(vars(module).items()) if value is target), None)
        if name:
            return f"{module.__name__}:{name}", _pythonpath_for(module)
    return None, None


def _pythonpath_for(module):
    """The folder ``module`` imports from (the one above its top-level package), where
    neither the working directory nor an installed package is that folder; else None."""
    import sysconfig
    from pathlib import Path

    source = getattr(module, "__file__", None)
    root = Path(source).resolve().parents[module.__name__.count(".")] if source else None
    installed = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    needed = root is not None and root != Path.cwd().resolve() and root not in installed
    return str(root) if needed else None


def _is_sequence(name, values):
    """Whether ``values`` has a leading time axis: an output sequence or x's gradient, not a
    final state, an initial state's or a parameter's gradient (named as snnref names them:
    "out", "v", "grad.x", "final.v", "grad.state.v", "grad.decay")."""
    key = name.replace(":", ".")
    per_step = not key.startswith(("final.", "state.", "param")) and (not key.startswith("grad.") or key == "grad.x")
    return values.ndim >= 2 and per_step


def assert_close(name, impl, ref64, ref32, dtype, *, model="", sequence=None, long_sum=None):
    """``impl`` within the budget of ``dtype`` around the float64 reference.

    ``ref32`` is the same reference run in float32 (the error any honest float32
    implementation makes).  ``sequence`` (default: ``impl`` has a leading time
    axis if it is an output sequence) decides whether the worst element is
    reported as (time step, neuron) or as an index.  ``long_sum``: ``(A, n)`` of
    a parameter's gradient, a sum over time and lanes, which SPEC.md section 7's
    third term widens (``snnref.spec.vjp(..., magnitudes=sizes)`` fills
    ``sizes[param]``); without it a long run's parameter gradients are held to
    the budget of a single value and fail for correct implementations.

    For a spiking model ``ref32`` must take ``ref64``'s spikes: run it with
    ``snnref.spec.simulate(..., dtype=numpy.float32, force_spikes=<ref64's
    "out">)``.  A near-threshold spike that float32 flips puts an unforced run on
    another trajectory, whose difference from ref64 is no rounding error: as a
    budget it passed an implementation that reset one step late.  Given
    ``model``, a spike output ("out") whose ref32 differs from ref64 is refused.
    An implementation's own near-threshold flips fail here; the gate
    (``assert_conforms``) judges those by teacher forcing (SPEC.md section 7).
    """
    impl64, ref = tolerance.as_float64(impl, "impl"), tolerance.as_float64(ref64, "ref64")
    label = f"{model} {name}".strip()
    if impl64.shape != ref.shape:
        raise ConformanceError(f"{label}: shape {impl64.shape}, expected {ref.shape}")
    # The budget checks ref32 first (None, NaN, its shape), by name.
    allowed = tolerance.budget(ref, ref32, dtype, long_sum)
    if model and name == "out" and registry.model(model).out.spiking:
        flipped = np.argwhere(tolerance.as_float64(ref32, "ref32") != ref)
        if flipped.size:
            where = _where(ref.shape, tuple(int(i) for i in flipped[0]), _is_sequence(name, ref))
            raise ValueError(f"ref32: its spikes differ from ref64's ({len(flipped)}, the first at {where}): a "
                             "float32 run on another trajectory is no rounding budget; run it with ref64's spikes, "
                             "snnref.spec.simulate(..., dtype=numpy.float32, force_spikes=ref64.outputs['out'])")
    error = np.nan_to_num(np.abs(impl64 - ref), nan=np.inf)
    if error.size and float(np.max(error)) > allowed:
        first = tuple(int(i) for i in np.argwhere(error > allowed)[0])
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape))
        sequence = _is_sequence(name, impl64) if sequence is None else sequence
        raise ConformanceError(
            f"{label}: max error {float(np.max(error)):.3e} over the budget {allowed:.3e}; "
            f"first failure at {_where(error.shape, first, sequence)} (impl {float(impl64[first])!r}, "
            f"spec {float(ref[first])!r}); worst at {_where(error.shape, worst, sequence)}"
        )


def assert_conforms(fn, model=None, *, dtype=None, examples=8, seed=0, golden=True, golden_dir=None,
                    kinds=None, save_failures=None, report=None):
    """Check ``fn`` against the spec for ``model`` through the gate (``snnref.testing.gate``).

    ``fn``: an ``Implementation`` (the declared contract) or a plain function
    with the adapter contract (its attributes read by ``Implementation.of``).
    Runs ``examples`` seeded random cases, the exact-threshold, wide, long,
    strided, out_sum and far cases and, with ``golden``, every golden trace the contract can express
    (from ``golden_dir``, default the installed store), in every declared dtype
    (``dtype``: only that one).  Raises ``ConformanceError`` with the report
    (per quantity: worst fraction of the budget, failing runs, first and last
    failing step; what was not checked).  ``save_failures``: a directory for
    the first failing case (``.npz``, with the command that replays it).
    ``report``: a directory for an HTML page of the results, with figures of
    every failing quantity (``snnref.testing.report``; needs ``snnref[report]``).
    Returns the worst error as a fraction of the budget (``snnref.testing.gate.run``
    returns the whole report).
    """
    from . import gate

    impl = Implementation.of(fn, model)
    if dtype is not None:
        impl = replace(impl, dtypes=(tolerance.dtype_name(dtype),))
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"examples: expected an integer >= 1, got {examples!r}")
    # golden="no" would be truthy.
    arguments.check_flags(golden=golden)
    # One kind may be given by its name alone.
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    kinds = tuple(kinds or (gate.KINDS if golden else tuple(k for k in gate.KINDS if k != "golden")))
    if report is not None:
        from .report import check_target, write

        check_target("report", report)
    if golden_dir is not None and not isinstance(golden_dir, (str, os.PathLike)):
        # A number failed inside pathlib ("expected str, bytes or os.PathLike object, not int").
        raise TypeError(f"golden_dir: expected a directory path (str or os.PathLike), got {type(golden_dir).__name__}")
    if golden_dir is not None and "golden" in kinds:
        from . import _golden

        # Named as every other argument is (the plugin says --snnref-golden-dir).
        try:
            _golden.read_manifest(golden_dir)
        except _golden.GoldenError as error:
            raise ValueError(f"golden_dir: {error}") from None
    outcome = gate.run(impl, examples=examples, seed=seed, kinds=kinds, golden_dir=golden_dir)
    if report is not None:
        write(report, [outcome], title=f"snnref gate: {impl.model}", option="report")
    if not outcome.passed:
        if save_failures is not None:
            gate.save_failure(outcome, save_failures, *_import_path(fn if isinstance(fn, Implementation) else impl.fn))
        raise ConformanceError(outcome.text())
    return outcome.worst
