"""What an implementation under test covers: one declared contract for every gate.

``Implementation(fn, model, ...)`` is read identically by
``snnref.testing.assert_conforms``, ``snnref verify --impl`` and the pytest
plugin.  ``fn`` has ``snnref.simulate``'s signature (see ``snnref.testing``).
Each field narrows the cases to what ``fn`` can express; whatever it leaves
out is listed by the gate as not checked, never skipped silently:

- ``pin``: parameter -> value; every case and golden is drawn inside that slice
  (``{"leak": 0.0}`` for a library without a leak), and a pinned parameter's
  gradient is not compared.
- ``per_neuron``: True (every parameter may be per-neuron), False (scalars
  only) or the names of the parameters that may be.
- ``surrogates``: the accepted registry keys, or ``snnref.spec.surrogates.Custom``
  objects (a library's own surrogate: ``f``, ``F``, ``dF/dscale``), proven
  consistent by finite differences at construction and then used by the spec.
- ``takes_state``, ``takes_inject``: whether ``fn`` takes an initial state and
  hardware injection.
- ``dtypes``: the storage dtypes checked.  Default (None): float32, and
  float64 whenever the implementation accepts float64 inputs (float64 exposes
  float32 casts hidden inside an implementation: returning float32 from
  float64 inputs fails; raising on them lists float64 as not checked).
- ``fixed``: differentiable parameters (``registry.Model.differentiable``,
  trainable or not) whose gradients ``fn`` does not compute.
- ``gradients``: False for an implementation of the forward alone (a hardware
  team's simulator, NumPy inside, its results wrapped as tensors): outputs,
  final states and spikes are compared, teacher forcing included, and every
  gradient is listed as not checked.

A plain function works too: ``Implementation.of(fn, model)`` reads the older
attributes ``takes_state``, ``per_neuron``, ``surrogates``,
``fixed_parameters`` (and ``pin``, ``takes_inject``, ``dtypes``, ``gradients``) from it.
"""

from __future__ import annotations

import inspect

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Tuple, Union

import numpy as np

from .. import registry
from ..arguments import narrowing
from ..spec.surrogates import Custom, prove

DTYPES = ("float32", "float64", "float16", "bfloat16")


class ContractError(ValueError):
    """A contract that cannot be right: the message names the field and what was expected."""


def _names(value, field_name):
    if isinstance(value, str) or not hasattr(value, "__iter__") or not all(isinstance(v, str) for v in value):
        raise ContractError(f"{field_name}: expected a sequence of names, got {value!r}")
    return tuple(value)


# The attributes a plain function may carry (``Implementation.of``) -> the field each sets.
DECLARED = {"pin": "pin", "per_neuron": "per_neuron", "surrogates": "surrogates", "takes_state": "takes_state",
            "takes_inject": "takes_inject", "dtypes": "dtypes", "fixed_parameters": "fixed", "gradients": "gradients"}


@dataclass(frozen=True)
class Implementation:
    fn: Callable
    model: str
    pin: Mapping[str, float] = field(default_factory=dict)
    per_neuron: Union[bool, Tuple[str, ...]] = True
    surrogates: Optional[Tuple[Union[str, Custom], ...]] = None
    takes_state: bool = True
    takes_inject: bool = True
    dtypes: Optional[Tuple[str, ...]] = None
    fixed: Tuple[str, ...] = ()
    name: str = ""
    gradients: bool = True

    def __post_init__(self):
        if not callable(self.fn):
            raise ContractError(f"fn: expected a callable with snnref.simulate's signature, got {self.fn!r}")
        try:
            inspect.signature(self.fn).bind("model", "x", {}, {}, surrogate=None, inject=None)
        except TypeError as error:
            # Else every case would crash on the call, and the first crash read as float64 not accepted.
            raise ContractError(f"fn: {getattr(self.fn, '__qualname__', self.fn)!r} does not have the contract's "
                                f"signature fn(model, x, params, state, *, surrogate, inject) ({error})") from None
        except ValueError:
            pass  # a builtin without a signature: judged by calling it
        try:
            row = registry.model(self.model)
        except ValueError as error:
            # registry.model's message already names the field
            raise ContractError(str(error)) from None
        object.__setattr__(self, "model", row.key)
        if not isinstance(self.pin, Mapping):
            raise ContractError(f"pin: expected a dict parameter -> value, got {self.pin!r}")
        pin = {}
        for key, value in self.pin.items():
            param = self._param(row, key, "pin")
            try:
                # A string or bool is no number here, although float() takes "1" and True.
                if isinstance(value, (str, bytes, bool, np.bool_)):
                    raise TypeError
                number = float(value)
            except (TypeError, ValueError):
                raise ContractError(f"pin[{key!r}]: expected a number, got {value!r}") from None
            if not np.isfinite(number) or (param.domain == registry.POSITIVE and number <= 0) or (
                    param.domain == registry.NONNEGATIVE and number < 0):
                raise ContractError(f"pin[{key!r}]: {number!r} is outside the parameter's domain ({param.domain})")
            pin[key] = number
        object.__setattr__(self, "pin", pin)
        if not isinstance(self.per_neuron, bool):
            names = _names(self.per_neuron, "per_neuron")
            for key in names:
                self._param(row, key, "per_neuron")
            object.__setattr__(self, "per_neuron", names)
        fixed = _names(self.fixed, "fixed")
        for key in fixed:
            self._param(row, key, "fixed")
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "surrogates", self._surrogates(row))
        for flag in ("takes_state", "takes_inject", "gradients"):
            # NumPy's booleans too, as every other flag takes them.
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise ContractError(f"{flag}: expected True or False, got {getattr(self, flag)!r}")
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.dtypes is not None:
            dtypes = tuple(str(d).replace("torch.", "") for d in _names_or_dtypes(self.dtypes))
            unknown = [d for d in dtypes if d not in DTYPES]
            if unknown or not dtypes:
                raise ContractError(f"dtypes: expected some of {', '.join(DTYPES)}, got {self.dtypes!r}")
            import torch

            from ._equivalence import storable

            if not any(storable(row, getattr(torch, d)) for d in dtypes):
                # Else every gate would have nothing to run: a pytest item skipped, a CLI run failed.
                raise ContractError(f"dtypes: {', '.join(dtypes)} cannot store {row.key}'s parameters in their "
                                    "normal range; declare a wider dtype too")
            object.__setattr__(self, "dtypes", dtypes)
        self._check_pins_fit()
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__qualname__", repr(self.fn)))

    def _check_pins_fit(self):
        """A pinned value every checked dtype holds: 1e40 is inf in float32, and the gate then
        failed a correct implementation ("crashed: ... expected finite values")."""
        import torch

        for key, number in self.pin.items():
            for name in self.dtypes or ("float32",):
                held = torch.tensor(number, dtype=torch.float64).to(getattr(torch, name)).item()
                lost = narrowing(number, held, name)
                if lost is not None:
                    raise ContractError(f"pin[{key!r}]: {lost}, a dtype the gate checks; pin a value it holds, or "
                                        "declare dtypes=('float64',)")

    @staticmethod
    def _param(row, key, field_name):
        try:
            return row.param(key)
        except KeyError:
            names = ", ".join(p.name for p in row.params)
            raise ContractError(f"{field_name}: {row.key} has no parameter {key!r}; its parameters: {names}") from None

    def _surrogates(self, row):
        if self.surrogates is None:
            return tuple(row.surrogates) or (None,)
        if isinstance(self.surrogates, (str, Custom)) or not hasattr(self.surrogates, "__iter__"):
            raise ContractError(f"surrogates: expected a sequence, got {self.surrogates!r}")
        if not row.surrogates and tuple(self.surrogates) == (None,):
            # The form None above gives a model that does not spike: dataclasses.replace of a contract
            # (a replayed case, a contract renamed) checks it again.
            return (None,)
        chosen = []
        for surrogate in self.surrogates:
            if isinstance(surrogate, Custom):
                self._custom(row, surrogate)
            elif surrogate not in row.surrogates:
                accepted = ", ".join(row.surrogates) or "none"
                raise ContractError(f"surrogates: {row.key} does not accept {surrogate!r}; it accepts: {accepted}")
            key = getattr(surrogate, "key", surrogate)
            # One key, one meaning: goldens and reports find a surrogate by its key.
            if key in [getattr(s, "key", s) for s in chosen]:
                raise ContractError(f"surrogates: {key!r} is declared twice")
            chosen.append(surrogate)
        if not chosen:
            raise ContractError("surrogates: declare at least one")
        return tuple(chosen)

    def _custom(self, row, surrogate):
        """A library's own surrogate: its own key, a scale the model has, its math proven, and
        without dF a scale whose gradient is not compared."""
        if not isinstance(surrogate.key, str) or not surrogate.key:
            raise ContractError(f"surrogates: a custom surrogate's key must be a non-empty name, got {surrogate.key!r}")
        if surrogate.key in registry.SURROGATES:
            # The built-in's goldens would be judged against the custom math under its name.
            raise ContractError(f"surrogates[{surrogate.key!r}]: the name of a built-in surrogate; give the custom "
                                "one a key of its own")
        if not row.surrogates:
            raise ContractError(f"surrogates: {row.key} does not spike, so it takes no surrogate")
        self._param(row, surrogate.scale, f"surrogates[{surrogate.key!r}].scale")
        prove_surrogate(surrogate, row.param(surrogate.scale).sample)
        if surrogate.dF is None and surrogate.scale in row.differentiable \
                and surrogate.scale not in self.fixed + tuple(self.pin):
            # Without dF the spec has no gradient for the scale (Custom: the scale is fixed).
            raise ContractError(f"surrogates[{surrogate.key!r}]: no dF, so its scale {surrogate.scale!r} is fixed: "
                                f"declare fixed=({surrogate.scale!r},) or pin it, or give dF = dF/d{surrogate.scale}")

    @classmethod
    def of(cls, fn, model=None):
        """``fn`` itself when it is an Implementation (of ``model``, if given); otherwise
        a contract from the attributes a plain function may carry."""
        if isinstance(fn, Implementation):
            if model is not None and registry.model(model).key != fn.model:
                raise ContractError(f"model: the implementation declares {fn.model}, not {model}")
            return fn
        if model is None:
            raise ContractError("model: name the registry model the function implements")
        return cls(fn, model, **{field_name: getattr(fn, attribute) for attribute, field_name in DECLARED.items()
                                 if hasattr(fn, attribute)})

    def named_by(self, target: str) -> "Implementation":
        """This contract named ``target`` (the MODULE:CALLABLE it was loaded by) unless it declares
        a name of its own: a function's own name can be one that many (made by a factory) share."""
        if self.name == getattr(self.fn, "__qualname__", None):
            return replace(self, name=target)
        return self

    def may_be_per_neuron(self, name) -> bool:
        return self.per_neuron if isinstance(self.per_neuron, bool) else name in self.per_neuron

    def not_differentiated(self):
        """Differentiable parameters whose gradients are not compared: fixed or pinned."""
        return tuple(dict.fromkeys(self.fixed + tuple(self.pin)))

    def summary(self) -> str:
        per_neuron = {True: "all", False: "none"}.get(self.per_neuron) if isinstance(self.per_neuron, bool) \
            else ", ".join(self.per_neuron)
        surrogates = ", ".join(getattr(s, "key", None) or str(s) for s in self.surrogates)
        pin = ", ".join(f"{k}={v:g}" for k, v in self.pin.items()) or "none"
        # A model without hardware observations has nothing to inject, whatever takes_inject says.
        inject = "" if not registry.model(self.model).inject else f"inject {'yes' if self.takes_inject else 'no'}; "
        return (f"surrogates {surrogates}; per-neuron {per_neuron}; state {'yes' if self.takes_state else 'no'}; "
                f"{inject}dtypes "
                f"{', '.join(self.dtypes) if self.dtypes else 'float32, float64 if accepted'}; pin {pin}"
                + (f"; fixed {', '.join(self.fixed)}" if self.fixed else "")
                + ("" if self.gradients else "; gradients no (the forward alone)"))


def _names_or_dtypes(value):
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ContractError(f"dtypes: expected a sequence such as ('float32', 'float64'), got {value!r}")
    return tuple(value)


def prove_surrogate(surrogate: Custom, scale_range) -> None:
    """``snnref.spec.surrogates.prove`` under the contract's field name, as a ContractError."""
    try:
        prove(surrogate, scale_range, f"surrogates[{surrogate.key!r}]")
    except ValueError as error:
        raise ContractError(str(error)) from None
