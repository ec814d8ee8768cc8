"""The family contract: what a model family provides in each layer, found by attribute.

A *family* is a file stem shared by every layer (``registry.Model.family``).
Each registry row names one; every row of a family runs through the same
modules, which read the row for what differs between its models.  A family
provides one module per layer:

    layer    module                            required                  optional
    spec     snnref/spec/<family>.py           forward, backward,        check_input, linear_response,
                                               RESETS                    linear_given_spikes
    torch    snnref/ops/<family>.py            run                       check_input
    triton   snnref/kernels/<family>.py        run, COMPILE_VARIANTS     check_input
    cpu      snnref/kernels/cpu/<family>.py    run                       check_input

The attributes, by name (``row`` is the registry row, arrays are time-major
``(T, ..., N)``):

- ``forward(row, x, params, state, spike, inject, detached)``: the float64
  reference's forward loop; returns ``(outputs, final_state, detached_used, tape)``.
- ``backward(row, x, params, state, spike, inject, tape, cot)``: its
  hand-written reverse loop; returns ``"x"``, every trainable parameter and
  ``"state.<var>"`` (optionally ``"magnitudes"`` and ``"sum_terms"`` for the
  long-sum tolerance term).
- ``RESETS``: the ``registry.Reset`` values the family implements for its
  spiking rows (a tuple; ``(registry.NO_RESET,)`` for a family without one).
  A spiking row's reset must be one of them, compared whole (kind, detached,
  to); a row without spikes (``spike_test`` None, such as a leaky-integrator
  readout) has nothing to reset on and must state ``registry.NO_RESET``.
  ``check_reset(row)`` refuses any other, naming the row, the family and the
  reset.
  ``validate(family)`` applies it to every registry row of the family, and
  ``snnref.spec.simulate``, ``vjp`` and ``snnref.simulate`` to the row they
  run, before any computation, so a family never silently ignores a reset.
- ``run(row, x, params, state, surrogate, inject, smooth, detached)``: a
  production path on torch tensors, differentiable by autograd; returns
  ``(outputs, final_state, detached_used)``.
- ``check_input(row, x, params)``: model-specific input limits, raising
  ValueError that names the argument.
- ``linear_response(row, params, x, state, spikes, first_order)``: the
  family's linear form, test data the family owns.  ``first_order(pole,
  drive, initial)`` is the filter ``y[t] = pole y[t-1] + drive[t]`` from
  ``y[-1] = initial``; the function returns ``{var: expected recorded
  sequence}`` built from it, for a run whose every initial state is explicit
  (``spikes`` is the run's spike train, None for a model without spikes).
  The lfilter property of ``snnref.testing._properties`` uses it.
- ``linear_given_spikes(row)``: True when the response above holds on any run
  given its spikes (a subtractive reset is part of the drive); otherwise the
  property drives the model below threshold.  Absent: False.
- ``COMPILE_VARIANTS``: the Triton kernels' compile variants (a
  ``snnref.kernels._launch.CompileVariants``), which the offline GPU compile
  test launches.

``module(family, layer)`` imports a layer, ``checked(family, layer)`` also
checks its required attributes, and ``validate(family)`` checks every layer
and the reset of every row: a missing module or attribute raises
``FamilyError`` naming the family, the layer and the attribute; an
unsupported reset raises ``UnsupportedReset``.  Registry-driven tests take
their families and layers from here, never from a per-family table.
"""

from __future__ import annotations

import importlib
import sys
from typing import Dict, Tuple

from . import registry

# Layer -> the package (below snnref) holding its family modules.
PACKAGES: Dict[str, str] = {"spec": "spec", "torch": "ops", "triton": "kernels", "cpu": "kernels.cpu"}
LAYERS: Tuple[str, ...] = tuple(PACKAGES)
# The production layers, each a ``backend=`` of ``snnref.simulate``.
BACKENDS: Tuple[str, ...] = ("torch", "triton", "cpu")
REQUIRED: Dict[str, Tuple[str, ...]] = {
    "spec": ("forward", "backward", "RESETS"),
    "torch": ("run",),
    "triton": ("run", "COMPILE_VARIANTS"),
    "cpu": ("run",),
}
OPTIONAL: Dict[str, Tuple[str, ...]] = {
    "spec": ("check_input", "linear_response", "linear_given_spikes"),
    "torch": ("check_input",),
    "triton": ("check_input",),
    "cpu": ("check_input",),
}


class FamilyError(ImportError):
    """A family module is missing or lacks an attribute the contract requires."""


class UnsupportedReset(FamilyError, ValueError):
    """A registry row asks for a reset its family does not implement (an argument
    error too: the row is what the caller passed)."""


def module_name(family: str, layer: str) -> str:
    """The import path of ``family``'s module in ``layer``."""
    if layer not in PACKAGES:
        raise ValueError(f"layer: unknown name {layer!r}; expected one of: {', '.join(LAYERS)}")
    return f"{__package__}.{PACKAGES[layer]}.{family}"


def module(family: str, layer: str):
    """The module of ``family`` in ``layer``; a missing one is a FamilyError."""
    name = module_name(family, layer)
    # Imported already, as for every call of simulate after the first:
    # importlib.import_module of an imported module took 9 us.
    found = sys.modules.get(name)
    # A module that another thread is still importing is in sys.modules half
    # made ("partially initialized module ... has no attribute 'run'" for the
    # other threads' first calls): import_module waits for it under the import lock.
    if found is not None and not getattr(getattr(found, "__spec__", None), "_initializing", False):
        return found
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name != name:
            raise
        raise FamilyError(f"family {family!r}, layer {layer!r}: no module {name}") from None


def checked(family: str, layer: str):
    """The module of ``family`` in ``layer``, checked for the layer's required attributes."""
    found = module(family, layer)
    for attribute in REQUIRED[layer]:
        # Lower-case names are functions, upper-case ones data.
        value = getattr(found, attribute, None)
        if value is None or (attribute.islower() and not callable(value)):
            kind = "function" if attribute.islower() else "attribute"
            raise FamilyError(f"family {family!r}, layer {layer!r}: {found.__name__} lacks "
                              f"the required {kind} {attribute!r}")
    return found


def _describe(reset) -> str:
    return f"Reset(kind={reset.kind.name}, detached={reset.detached}, to={reset.to!r})"


def check_reset(row) -> None:
    """Refuse ``row`` (a registry row or key) when it spikes and its family's
    ``RESETS`` lacks its reset, or when it has no spikes and states a reset."""
    row = registry.model(row)
    if row.spike_test is None:
        if row.reset != registry.NO_RESET:
            raise UnsupportedReset(
                f"reset: registry row {row.key!r} has no spikes (spike_test None) but asks for "
                f"{_describe(row.reset)}; a row without spikes states {_describe(registry.NO_RESET)}")
        return
    implemented = checked(row.family, "spec").RESETS
    if row.reset not in implemented:
        raise UnsupportedReset(
            f"reset: registry row {row.key!r} asks for {_describe(row.reset)}, which family {row.family!r} does "
            f"not implement; it implements: {', '.join(_describe(r) for r in implemented)}")


def validate(family: str):
    """Every layer of ``family`` imported and checked, and every registry row of it
    checked for its reset; returns ``{layer: module}``."""
    found = {layer: checked(family, layer) for layer in LAYERS}
    for key in models(family):
        check_reset(key)
    return found


def names() -> Tuple[str, ...]:
    """Every family some registry row names, sorted."""
    return tuple(sorted({row.family for row in registry.MODELS.values()}))


def models(family: str) -> Tuple[str, ...]:
    """The registry keys of ``family``'s rows, sorted."""
    return tuple(sorted(key for key, row in registry.MODELS.items() if row.family == family))


def _in_contract(layer: str, name: str) -> None:
    if name not in REQUIRED[layer] + OPTIONAL[layer]:
        raise ValueError(f"attribute: {name!r} is not in the {layer} layer's contract; expected one of: "
                         f"{', '.join(REQUIRED[layer] + OPTIONAL[layer])}")


def provides(row, layer: str, name: str) -> bool:
    """Whether the family of ``row`` (a registry row or key) has ``name`` in ``layer``."""
    _in_contract(layer, name)
    return hasattr(module(registry.model(row).family, layer), name)


def attribute(row, layer: str, name: str):
    """``name`` of the family of ``row`` in ``layer``; None where the family does not provide it."""
    _in_contract(layer, name)
    return getattr(module(registry.model(row).family, layer), name, None)
