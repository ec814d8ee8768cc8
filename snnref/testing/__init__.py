"""The correctness gate for other people's SNN code.

- ``assert_close(name, impl, ref64, ref32, dtype, model=..., ...)``: the SPEC.md
  section 7 budget, reporting the worst element (model, quantity, time step,
  neuron) on failure.
- ``snnref.testing.strategies``: hypothesis strategies for each model's
  inputs, parameters and states.
- ``assert_conforms(fn, model, ...)``: runs a user's implementation against the
  spec on hypothesis-generated cases and on the golden traces, outputs and
  gradients.

The adapter contract.  ``fn`` has ``snnref.simulate``'s signature::

    fn(model: str, x: Tensor, params: dict[str, Tensor], state: dict[str, Tensor],
       *, surrogate: str | None, inject: dict[str, Tensor] | None) -> result

with ``x`` time-major (T, ..., N), parameters, states and outputs named as in
``snnref.registry`` (SPEC.md section 8), and ``result.outputs`` (``"out"`` and
each recorded state sequence) and ``result.final_state`` dicts of tensors,
differentiable with respect to ``x``, the trainable parameters and the
initial states.  Optional attributes of ``fn`` narrow what is checked to what
it can express: ``takes_state``, ``per_neuron``, ``surrogates`` (the accepted
surrogate keys) and ``fixed_parameters`` (not differentiated).  ``snnref.testing.adapters`` wraps the seed-style functional
signatures (tether's ``(x_seq, v_init, decay, threshold, alpha,
surrogate_type)``, hxtorch's ``cuba_*_integration``) into this contract.
"""

from __future__ import annotations

import numpy as np

from .. import registry, tolerance


class ConformanceError(AssertionError):
    """An implementation that does not conform: the message names the model,
    the quantity and the first failing time step."""


def _where(shape, index, sequence):
    if sequence and len(index) >= 2:
        return f"time step {index[0]}, neuron {index[1:]}"
    return f"index {index}" if index else "its only element"


def assert_close(name, impl, ref64, ref32, dtype, *, model="", sequence=None):
    """``impl`` within the budget of ``dtype`` around the float64 reference.

    ``ref32`` is the same reference run in float32 (the error any honest float32
    implementation makes).  ``sequence`` (default: ``impl`` has a leading time
    axis if it is an output sequence) decides whether the worst element is
    reported as (time step, neuron) or as an index.
    """
    impl64 = np.asarray(impl, dtype=np.float64)
    ref = np.asarray(ref64, dtype=np.float64)
    label = f"{model} {name}".strip()
    if impl64.shape != ref.shape:
        raise ConformanceError(f"{label}: shape {impl64.shape}, expected {ref.shape}")
    allowed = tolerance.budget(ref, ref32, dtype)
    error = np.nan_to_num(np.abs(impl64 - ref), nan=np.inf)
    if error.size and float(np.max(error)) > allowed:
        first = tuple(int(i) for i in np.argwhere(error > allowed)[0])
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape))
        sequence = impl64.ndim >= 2 if sequence is None else sequence
        raise ConformanceError(
            f"{label}: max error {float(np.max(error)):.3e} over the budget {allowed:.3e}; "
            f"first failure at {_where(error.shape, first, sequence)} (impl {impl64[first]!r}, "
            f"spec {ref[first]!r}); worst at {_where(error.shape, worst, sequence)}"
        )


def assert_conforms(fn, model, *, dtype=None, examples=20, seed=0, golden=True, golden_dir=None):
    """Check ``fn`` (see the adapter contract above) against the spec for ``model``.

    Runs ``examples`` hypothesis-generated cases (derandomized from ``seed``) and,
    with ``golden``, every golden trace of ``model``; compares every output,
    final state and gradient under the tolerance policy.  Raises
    ``ConformanceError`` naming the model, quantity and first failing time step.
    Returns the worst error as a fraction of the budget.
    """
    import torch
    from hypothesis import HealthCheck, given, settings

    from .. import equivalence
    from . import strategies

    row = registry.model(model)
    dtype = torch.float32 if dtype is None else dtype
    takes_state = getattr(fn, "takes_state", True)
    per_neuron = getattr(fn, "per_neuron", True)
    surrogates = getattr(fn, "surrogates", row.surrogates)
    worst = [0.0]

    def judge(case, label):
        report = equivalence.compare(case, "impl", dtype, implementation=fn, **label)
        worst[0] = max(worst[0], report.worst)
        if not report.passed:
            raise ConformanceError(f"{row.key} ({case.label or 'generated'}): " + "; ".join(report.failures))

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategies.cases(row.key, initial_state=takes_state, per_neuron=per_neuron, surrogates=surrogates))
    def generated(case):
        judge(case, {})

    generated()
    if golden:
        from .. import golden as store

        directory = store.DEFAULT_DIR if golden_dir is None else golden_dir
        manifest = store.read_manifest(directory)
        for name, entry in manifest["files"].items():
            if entry["model"] != row.key:
                continue
            arrays = store.load(directory, name, entry)
            case = store.case_from(arrays, entry)
            # A golden run from an explicit state, or with per-neuron parameters,
            # says nothing about a function that cannot take them.
            expressible = (takes_state or not case.state) and case.surrogate in (surrogates or (None,)) and (
                per_neuron or all(np.size(v) == 1 for k, v in case.params.items()
                                  if row.param(k).shape == registry.SCALAR))
            if expressible:
                judge(case, {"reference": store.expected_from(arrays)})
    return worst[0]
