"""THE table of snnref's neuron models and surrogate gradients.

Tests, golden generation, benchmarks and the CLI iterate over ``MODELS`` and
``SURROGATES``; adding a model is one row here plus its files (``spec/<family>.py``
and a hand-worked test), never a test edit.  This module is plain data: it
imports neither NumPy nor torch, so every layer can read it.

Every row is built with keywords only.  Its typed parts:

- ``Param``: one parameter.  ``trainable`` says what the seed library trains by
  default; ``differentiable`` says whether a gradient with respect to it exists
  at all (``fixed_because`` says why not).  Every production path refuses
  ``requires_grad`` on a parameter that is not differentiable, and the spec's
  ``vjp`` reports the gradient of every one that is, trainable or not.
- ``Output``: what ``outputs["out"]`` holds.
- ``Reset``: what a spike does to the membrane (``kind``) and whether the spike
  that drives the reset is a stop-gradient (``detached``).
- ``LifOptions``, ``CubaOptions``, ``AttentionOptions``: the options of one
  family, typed; a family without options takes ``Options()``.
- ``detached_keys(row, observed)``: the stop-gradient values one run records,
  written once here for the reference, the torch path and every kernel.

Semantics of every row: ``../shared/SPEC.md`` (sections 1-5 and 8).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Collection, Mapping, Optional, Tuple, Union

# Parameter shapes.  A per-neuron parameter is a scalar or an array of shape
# (1,) or (N,) with N the last axis of the input; it broadcasts over batch.
SCALAR = "scalar"  # per-neuron allowed, default a scalar
PER_NEURON = "per_neuron"  # per-neuron allowed, default of shape (N,)
SHAPE_ONE = "one"  # per-neuron allowed, default of shape (1,)
MATRIX = "matrix"  # exactly (D, D), D the last input axis; no default
VECTOR = "vector"  # exactly (D,); no default

SHAPES = (SCALAR, PER_NEURON, SHAPE_ONE, MATRIX, VECTOR)

# Parameter domains checked before any computation.
REAL = "real"
POSITIVE = "positive"
NONNEGATIVE = "nonnegative"
DOMAINS = (REAL, POSITIVE, NONNEGATIVE)


def _check_sample(owner, sample):
    """A sampling range (low, high) of two finite numbers, low <= high."""
    if (not isinstance(sample, tuple) or len(sample) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in sample)
            or sample[0] > sample[1]):
        raise ValueError(f"{owner}: sample must be (low, high), two finite numbers with low <= high, got {sample!r}")


def _check_choice(owner, field_name, value, valid):
    """``value`` of a row's field is one of ``valid``: a typo (domain "postive") silently
    dropped the check it names, and every suite reads the same row."""
    if value not in valid:
        raise ValueError(f"{owner}: {field_name} must be one of {', '.join(map(repr, valid))}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Param:
    name: str
    default: Optional[float]
    # Whether the seed library trains it by default.
    trainable: bool
    shape: str = SCALAR
    domain: str = REAL
    # Range that random test cases draw from (inclusive bounds).
    sample: Tuple[float, float] = (0.0, 1.0)
    # Whether the outputs have a gradient with respect to it; False needs the
    # reason, which every production path gives when refusing requires_grad.
    differentiable: bool = True
    fixed_because: Optional[str] = None

    def __post_init__(self):
        _check_choice(f"Param {self.name!r}", "shape", self.shape, SHAPES)
        _check_choice(f"Param {self.name!r}", "domain", self.domain, DOMAINS)
        _check_sample(f"Param {self.name!r}", self.sample)
        if self.differentiable == (self.fixed_because is not None):
            raise ValueError(f"Param {self.name!r}: fixed_because must say why exactly when differentiable=False")
        if self.trainable and not self.differentiable:
            raise ValueError(f"Param {self.name!r}: a trainable parameter must be differentiable")


@dataclass(frozen=True, kw_only=True)
class StateVar:
    name: str
    # The initial value: a number, or the name of the parameter it starts at.
    initial: object
    recorded: str
    sample: Tuple[float, float] = (-0.5, 0.5)

    def __post_init__(self):
        if isinstance(self.initial, bool) or not isinstance(self.initial, (int, float, str)):
            raise TypeError(f"StateVar {self.name!r}: initial must be a number or a parameter's name, "
                            f"got {self.initial!r}")
        _check_sample(f"StateVar {self.name!r}", self.sample)


class Output(str, Enum):
    """What ``outputs["out"]`` holds.  The values are the names golden files
    and NIR hints store."""

    SPIKES = "spikes"
    SCALED_SPIKES = "spikes*threshold"  # the spike times the threshold (qualia.ATIF)
    MEMBRANE = "membrane"
    PROJECTION = "projection"

    @property
    def spiking(self) -> bool:
        return self in (Output.SPIKES, Output.SCALED_SPIKES)


class ResetKind(str, Enum):
    NONE = "none"  # the membrane keeps its value
    TO_VALUE = "to_value"  # v+ = (1 - s) v + s * Reset.to
    SUBTRACT = "subtract"  # v+ = v - s * threshold


@dataclass(frozen=True, kw_only=True)
class Reset:
    """What a spike s does to the membrane.  ``detached``: the s that drives
    the reset is a stop-gradient sg(s) (its value is recorded per step as the
    ``reset_spike`` of ``Trace.detached``); the threshold of a subtractive reset
    keeps its own gradient (v+ = v - theta sg(s)).  ``to``: the value of a
    TO_VALUE reset, a number or the name of the parameter that holds it."""

    kind: ResetKind
    detached: bool
    to: Union[float, str] = 0.0

    def __post_init__(self):
        if self.kind is ResetKind.NONE and self.detached:
            raise ValueError("Reset: a model without a reset has no reset spike to detach")


NO_RESET = Reset(kind=ResetKind.NONE, detached=False)
HARD_RESET = Reset(kind=ResetKind.TO_VALUE, detached=True)  # to 0, the spike detached
SOFT_RESET = Reset(kind=ResetKind.SUBTRACT, detached=False)


@dataclass(frozen=True)
class Options:
    """A family without options."""


class Leak(str, Enum):
    DECAY = "decay"  # lam = decay
    TAU = "tau"  # lam = exp(-1 / tau)
    NONE = "none"  # lam = 1: integrate-and-fire


class Record(str, Enum):
    PRE = "pre"  # the recorded membrane is v[t], before the reset
    POST = "post"  # v+[t], after it


@dataclass(frozen=True, kw_only=True)
class LifOptions(Options):
    leak: Leak
    record: Record


@dataclass(frozen=True, kw_only=True)
class CubaOptions(Options):
    leak: bool  # the membrane leaks towards `leak` (LIF, LI) or only integrates (IAF)
    spiking: bool


@dataclass(frozen=True, kw_only=True)
class AttentionOptions(Options):
    # The spiking stages; stage b has parameters b_decay, b_threshold, b_alpha.
    branches: Tuple[str, ...]

    @property
    def scale_params(self) -> Tuple[str, ...]:
        return tuple(f"{b}_alpha" for b in self.branches)


@dataclass(frozen=True, kw_only=True)
class Model:
    key: str
    family: str  # file stem shared by every layer: spec/<family>.py, ...
    doc: str
    params: Tuple[Param, ...]
    state: Tuple[StateVar, ...]
    out: Output
    surrogates: Tuple[str, ...]  # accepted surrogate keys; first is the default
    options: Options = field(default_factory=Options)
    spike_test: Optional[str] = ">="  # ">=" or ">"; None for no spikes
    reset: Reset = NO_RESET
    inject: Tuple[str, ...] = ()  # hardware observations accepted by `inject`
    refractory: bool = False
    input_rank: Optional[int] = None  # exact rank of x when the model needs one
    # Mean and spread of random test inputs: enough drive that neurons fire.
    input_sample: Tuple[float, float] = (0.4, 0.6)

    def __post_init__(self):
        if not isinstance(self.out, Output):
            raise TypeError(f"Model {self.key!r}: out must be a registry.Output, got {self.out!r}")
        if not isinstance(self.reset, Reset):
            raise TypeError(f"Model {self.key!r}: reset must be a registry.Reset, got {self.reset!r}")
        if not isinstance(self.options, Options):
            raise TypeError(f"Model {self.key!r}: options must be a registry.Options, got {self.options!r}")
        names = [p.name for p in self.params]
        if isinstance(self.reset.to, str) and self.reset.to not in names:
            raise ValueError(f"Model {self.key!r}: reset.to names {self.reset.to!r}, which is not a parameter")
        if len(set(names)) != len(names):
            raise ValueError(f"Model {self.key!r}: a parameter name appears twice in {names}")
        for var in self.state:
            if isinstance(var.initial, str) and var.initial not in names:
                raise ValueError(f"Model {self.key!r}: state {var.name!r} starts at {var.initial!r}, "
                                 "which is not a parameter")
        _check_choice(f"Model {self.key!r}", "spike_test", self.spike_test, (">=", ">", None))
        # A bare string ("arctan") was read as its letters ("surrogate: unknown name 'a'").
        if not isinstance(self.surrogates, tuple) or not all(isinstance(k, str) for k in self.surrogates):
            raise TypeError(f"Model {self.key!r}: surrogates must be a tuple of surrogate keys, "
                            f"got {self.surrogates!r}")
        if (self.spike_test is None) != (not self.surrogates):
            raise ValueError(f"Model {self.key!r}: a model that spikes (spike_test {self.spike_test!r}) names its "
                             "surrogates, first the default, and one that does not names none")

    @property
    def default_surrogate(self) -> Optional[str]:
        return self.surrogates[0] if self.surrogates else None

    @property
    def trainable(self) -> Tuple[str, ...]:
        """The parameters the seed library trains by default."""
        return tuple(p.name for p in self.params if p.trainable)

    @property
    def differentiable(self) -> Tuple[str, ...]:
        """The parameters with a gradient: every one the spec's vjp reports."""
        return tuple(p.name for p in self.params if p.differentiable)

    @property
    def state_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.state)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.params)
        raise KeyError(f"{self.key} has no parameter {name!r}; its parameters: {names}")


def detached_keys(row: Model, observed: Collection[str] = ()) -> Tuple[str, ...]:
    """The stop-gradient values (``Trace.detached`` keys) a run of ``row`` records,
    with the hardware observations ``observed`` (names from ``row.inject``):

    1. a detached reset's spike, per spiking stage (``reset_spike``, or
       ``<branch>_reset_spike``), unless the membrane is observed: an observed
       membrane already holds the hardware's reset, which is then skipped;
    2. a refractory model's mask and carry (``refractory_mask``, ``refractory_carry``);
    3. the offset of each observation, and of its second injection after the
       refractory clamp (``inject_<name>``, ``inject_<name>_refractory``).
    """
    keys = []
    if row.reset.detached and "v" not in observed:
        branches = getattr(row.options, "branches", None)
        keys += [f"{b}_reset_spike" for b in branches] if branches else ["reset_spike"]
    if row.refractory:
        keys += ["refractory_mask", "refractory_carry"]
    for name in row.inject:
        if name in observed:
            keys.append(f"inject_{name}")
            if row.refractory:
                keys.append(f"inject_{name}_refractory")
    return tuple(keys)


@dataclass(frozen=True, kw_only=True)
class Surrogate:
    key: str
    scale: str  # the name of its scale parameter in a model's params
    trainable_scale: bool  # whether dF/dscale exists
    # The compile-time id of its branch in kernels/surrogates.py and
    # kernels/cpu/surrogates.py: fixed here, never a position.
    kernel_id: int
    tether_id: Optional[int]  # tether's kernel id, where tether has it
    doc: str


SURROGATES: Mapping[str, Surrogate] = {
    s.key: s
    for s in (
        Surrogate(key="arctan", scale="alpha", trainable_scale=True, kernel_id=0, tether_id=0,
                  doc="alpha / (1 + (pi alpha u)^2)"),
        Surrogate(key="sigmoid", scale="alpha", trainable_scale=True, kernel_id=1, tether_id=1,
                  doc="alpha sigma(alpha u) (1 - sigma(alpha u))"),
        Surrogate(key="fast_sigmoid", scale="alpha", trainable_scale=True, kernel_id=2, tether_id=2,
                  doc="1 / (1 + alpha |u|)^2"),
        Surrogate(key="superspike", scale="alpha", trainable_scale=False, kernel_id=3, tether_id=None,
                  doc="1 / (alpha |u| + 1)^2 (hxtorch)"),
        Surrogate(key="spike_linear", scale="gradient_factor", trainable_scale=False, kernel_id=4, tether_id=None,
                  doc="gamma max(0, 1 - |u|)"),
    )
}

TETHER_SURROGATES = ("arctan", "sigmoid", "fast_sigmoid")

# Why a surrogate scale without dF/dscale has no gradient.
_SCALE_ONLY_SHAPES_THE_BACKWARD = (
    "it is the scale of a surrogate without dF/dscale: the forward step H does not depend on it, "
    "it only shapes the surrogate derivative of the backward pass, so the outputs have no gradient "
    "with respect to it"
)


def _tether_lif_params(per_neuron: bool, prefix: str = "") -> Tuple[Param, ...]:
    shape = PER_NEURON if per_neuron else SCALAR
    return (
        Param(name=prefix + "decay", default=0.9, trainable=True, shape=shape, sample=(0.5, 0.98)),
        Param(name=prefix + "threshold", default=1.0, trainable=True, shape=shape, sample=(0.6, 1.4)),
        Param(name=prefix + "alpha", default=2.0, trainable=True, domain=POSITIVE, sample=(0.5, 4.0)),
    )


def _tau(name: str) -> Param:
    # beta = exp(-1/tau) is smooth in tau: rnnbuilder fixes it, its gradient exists.
    return Param(name=name, default=5.0, trainable=False, domain=POSITIVE, sample=(2.0, 10.0))


_GRADIENT_FACTOR = Param(name="gradient_factor", default=0.3, trainable=False, domain=POSITIVE, sample=(0.1, 1.0),
                         differentiable=False, fixed_because=_SCALE_ONLY_SHAPES_THE_BACKWARD)


def _rnnbuilder_params(*extra: Param) -> Tuple[Param, ...]:
    return (_tau("tau"),) + extra + (_GRADIENT_FACTOR,)


_QUALIA_PARAMS = (
    Param(name="threshold", default=1.0, trainable=True, shape=SHAPE_ONE, sample=(0.6, 1.4)),
    # qualia fixes the sigmoid's alpha; dF/dalpha exists (SPEC section 1).
    Param(name="alpha", default=1.0, trainable=False, domain=POSITIVE, sample=(0.5, 4.0)),
)


def _cuba_params(leak: bool, reset: bool, spiking: bool, refractory: bool) -> Tuple[Param, ...]:
    rows = []
    if leak:
        rows.append(Param(name="leak", default=0.0, trainable=True, sample=(-0.2, 0.2)))
    if reset:
        rows.append(Param(name="reset", default=0.0, trainable=True, sample=(-0.2, 0.2)))
    if spiking:
        rows.append(Param(name="threshold", default=1.0, trainable=True, sample=(0.6, 1.4)))
    rows += [
        Param(name="tau_syn", default=1e-5, trainable=True, domain=POSITIVE, sample=(5e-6, 2e-5)),
        Param(name="tau_mem", default=1e-5, trainable=True, domain=POSITIVE, sample=(5e-6, 2e-5)),
    ]
    if spiking:
        rows.append(Param(name="alpha", default=50.0, trainable=False, domain=POSITIVE, sample=(5.0, 50.0),
                          differentiable=False, fixed_because=_SCALE_ONLY_SHAPES_THE_BACKWARD))
    if refractory:
        # k = refractory_time / dt: the clamp's length ceil(k) is a stop-gradient
        # mask, but the recorded counter r = z k depends on k smoothly.
        rows.append(Param(name="refractory_time", default=1e-6, trainable=False, domain=NONNEGATIVE,
                          sample=(1e-6, 3.5e-6)))
    # dt enters through a = dt/tau_mem, b = dt/tau_syn and k: smooth in dt.
    rows.append(Param(name="dt", default=1e-6, trainable=False, domain=POSITIVE, sample=(1e-6, 1e-6)))
    return tuple(rows)


# The synaptic current integrates the input over about tau_syn/dt = 10 steps
# before the membrane sees it: a stronger drive lets short random cases fire.
CUBA_DRIVE = (1.0, 0.6)


def _cuba_state(start: str, refractory: bool) -> Tuple[StateVar, ...]:
    rows = (
        StateVar(name="v", initial=start, recorded="after reset"),
        StateVar(name="i", initial=0.0, recorded="after the step"),
    )
    if refractory:
        # Steps of refractoriness left: some random cases start inside a clamp.
        rows += (StateVar(name="r", initial=0.0, recorded="after the step (steps left)", sample=(0.0, 3.0)),)
    return rows


def _cuba(key: str, doc: str, *, leak: bool, spiking: bool, refractory: bool = False) -> Model:
    spiking_row = dict(out=Output.SPIKES, surrogates=("superspike",), spike_test=">",
                       reset=Reset(kind=ResetKind.TO_VALUE, detached=True, to="reset"), inject=("spikes", "v"))
    readout_row = dict(out=Output.MEMBRANE, surrogates=(), spike_test=None, reset=NO_RESET, inject=("v",))
    return Model(
        key=key, family="cuba", doc=doc,
        params=_cuba_params(leak, spiking, spiking, refractory),
        state=_cuba_state("leak" if leak else "reset", refractory),
        options=CubaOptions(leak=leak, spiking=spiking), refractory=refractory,
        **(spiking_row if spiking else readout_row),
        **(dict(input_sample=CUBA_DRIVE) if spiking else {}),
    )


_ATTENTION_BRANCHES = ("q", "k", "v")
_ATTENTION_PARAMS = (
    Param(name="q_weight", default=None, trainable=True, shape=MATRIX, sample=(-0.8, 0.8)),
    Param(name="k_weight", default=None, trainable=True, shape=MATRIX, sample=(-0.8, 0.8)),
    Param(name="v_weight", default=None, trainable=True, shape=MATRIX, sample=(-0.8, 0.8)),
    Param(name="proj_weight", default=None, trainable=True, shape=MATRIX, sample=(-0.8, 0.8)),
    Param(name="proj_bias", default=None, trainable=True, shape=VECTOR, sample=(-0.5, 0.5)),
) + tuple(p for b in _ATTENTION_BRANCHES for p in _tether_lif_params(False, f"{b}_"))

_TETHER_LIF = LifOptions(leak=Leak.DECAY, record=Record.PRE)
_RNNBUILDER_LIF = LifOptions(leak=Leak.TAU, record=Record.POST)
_QUALIA_IF = LifOptions(leak=Leak.NONE, record=Record.POST)


MODELS: Mapping[str, Model] = {
    m.key: m
    for m in (
        Model(
            key="tether.LIF", family="lif", doc="tether.nn.LIF: hard reset to 0 (detached), v recorded pre-reset",
            params=_tether_lif_params(False), state=(StateVar(name="v", initial=0.0, recorded="pre-reset"),),
            out=Output.SPIKES, surrogates=TETHER_SURROGATES, options=_TETHER_LIF, spike_test=">=",
            reset=HARD_RESET,
        ),
        Model(
            key="tether.PLIF", family="lif", doc="tether.nn.PLIF: LIF with per-neuron decay and threshold",
            params=_tether_lif_params(True), state=(StateVar(name="v", initial=0.0, recorded="pre-reset"),),
            out=Output.SPIKES, surrogates=TETHER_SURROGATES, options=_TETHER_LIF, spike_test=">=",
            reset=HARD_RESET,
        ),
        Model(
            key="tether.ALIF", family="alif", doc="tether.nn.ALIF: adaptive threshold theta + beta a",
            params=(
                Param(name="decay_v", default=0.9, trainable=True, sample=(0.5, 0.98)),
                Param(name="decay_a", default=0.9, trainable=True, sample=(0.5, 0.98)),
                Param(name="threshold", default=1.0, trainable=True, sample=(0.6, 1.4)),
                Param(name="beta", default=0.5, trainable=True, sample=(0.1, 1.0)),
                Param(name="alpha", default=2.0, trainable=True, domain=POSITIVE, sample=(0.5, 4.0)),
            ),
            state=(StateVar(name="v", initial=0.0, recorded="pre-reset"),
                   StateVar(name="a", initial=0.0, recorded="before the step's update", sample=(0.0, 1.0))),
            out=Output.SPIKES, surrogates=("arctan",), spike_test=">=", reset=HARD_RESET,
        ),
        Model(
            key="tether.SpikingSelfAttention", family="attention",
            doc="tether.nn.SpikingSelfAttention: LIF q, k, v; context S += k*v; out = Wp (q*S) + b",
            params=_ATTENTION_PARAMS,
            state=(
                StateVar(name="q_v", initial=0.0, recorded="pre-reset"),
                StateVar(name="k_v", initial=0.0, recorded="pre-reset"),
                StateVar(name="v_v", initial=0.0, recorded="pre-reset"),
                StateVar(name="context", initial=0.0, recorded="after the step", sample=(0.0, 2.0)),
            ),
            out=Output.PROJECTION, surrogates=("arctan",), options=AttentionOptions(branches=_ATTENTION_BRANCHES),
            spike_test=">=", reset=HARD_RESET, input_rank=4, input_sample=(0.4, 1.2),
        ),
        Model(
            key="rnnbuilder.LIF", family="lif", doc="rnnbuilder.snn.LIF: subtractive reset m - s, beta = exp(-1/tau)",
            params=_rnnbuilder_params(), state=(StateVar(name="m", initial=0.0, recorded="after reset"),),
            out=Output.SPIKES, surrogates=("spike_linear",), options=_RNNBUILDER_LIF, spike_test=">",
            reset=SOFT_RESET,
        ),
        Model(
            key="rnnbuilder.NoReset", family="lif",
            doc="rnnbuilder.snn.NoReset: leaky integrator that spikes, no reset",
            params=_rnnbuilder_params(), state=(StateVar(name="m", initial=0.0, recorded="no reset"),),
            out=Output.SPIKES, surrogates=("spike_linear",), options=_RNNBUILDER_LIF, spike_test=">",
            reset=NO_RESET,
        ),
        Model(
            key="rnnbuilder.Cooldown", family="cooldown",
            doc="rnnbuilder.snn.Cooldown: spikes from the previous m; m integrates (1 - beta) exp(x)",
            params=_rnnbuilder_params(),
            state=(StateVar(name="m", initial=0.0, recorded="no reset", sample=(0.0, 2.0)),),
            out=Output.SPIKES, surrogates=("spike_linear",), spike_test=">", reset=NO_RESET,
        ),
        Model(
            key="rnnbuilder.Adaptive", family="adaptive",
            doc="rnnbuilder.snn.Adaptive: threshold 1 + r, normalised distance, subtractive reset",
            params=_rnnbuilder_params(
                _tau("tau_thr"),
                Param(name="gamma", default=0.25, trainable=False, sample=(0.05, 0.5)),
            ),
            state=(StateVar(name="m", initial=0.0, recorded="after reset"),
                   StateVar(name="r", initial=0.0, recorded="after the step", sample=(0.0, 0.5))),
            out=Output.SPIKES, surrogates=("spike_linear",), spike_test=">", reset=SOFT_RESET,
        ),
        Model(
            key="rnnbuilder.Discontinuous", family="discontinuous",
            doc="rnnbuilder.snn.Discontinuous: stateless s = H(x - threshold)",
            params=(
                # Fixed by rnnbuilder; its surrogate gradient is minus x's, summed.
                Param(name="threshold", default=1.0, trainable=False, sample=(0.6, 1.4)),
                _GRADIENT_FACTOR,
            ),
            state=(), out=Output.SPIKES, surrogates=("spike_linear",), spike_test=">", reset=NO_RESET,
            input_sample=(0.8, 0.6),
        ),
        Model(
            key="qualia.IFSRL", family="lif",
            doc="qualia CustomNode.IFSRL: IF with soft reset by a learnable threshold",
            params=_QUALIA_PARAMS, state=(StateVar(name="v", initial=0.0, recorded="after reset"),),
            out=Output.SPIKES, surrogates=("sigmoid",), options=_QUALIA_IF, spike_test=">=", reset=SOFT_RESET,
        ),
        Model(
            key="qualia.ATIF", family="lif", doc="qualia CustomNode.ATIF: IFSRL whose output is spikes * threshold",
            params=_QUALIA_PARAMS, state=(StateVar(name="v", initial=0.0, recorded="after reset"),),
            out=Output.SCALED_SPIKES, surrogates=("sigmoid",), options=_QUALIA_IF, spike_test=">=",
            reset=SOFT_RESET,
        ),
        _cuba("hxtorch.cuba_lif", "hxtorch cuba_lif_integration: CUBA LIF, forward Euler",
              leak=True, spiking=True),
        _cuba("hxtorch.cuba_refractory_lif",
              "hxtorch cuba_refractory_lif_integration: CUBA LIF with a refractory clamp",
              leak=True, spiking=True, refractory=True),
        _cuba("hxtorch.cuba_li", "hxtorch cuba_li_integration: leaky integrator readout",
              leak=True, spiking=False),
        _cuba("hxtorch.cuba_iaf", "hxtorch cuba_iaf_integration: CUBA integrate-and-fire, no leak",
              leak=False, spiking=True),
        _cuba("hxtorch.cuba_refractory_iaf",
              "hxtorch cuba_refractory_iaf_integration: CUBA IAF with a refractory clamp",
              leak=False, spiking=True, refractory=True),
    )
}


def _unknown(kind: str, name, valid) -> ValueError:
    """The valid names, and the nearest ones where a slip is likely: case, a letter
    or two, a key without its library ("LIF": tether's and rnnbuilder's), or a
    module or class given where its key belongs (``snnref.nn.Arctan()``'s
    ``key``, ``snnref.nn.LIF``'s ``model``)."""
    if isinstance(name, str):
        folded = [key for key in valid if key.lower() == name.lower()]
        bare = [key for key in valid if key.rsplit(".", 1)[-1].lower() == name.lower()]
        nearest = folded or bare or difflib.get_close_matches(name, list(valid), n=1)
    else:
        own = [getattr(name, attribute, None) for attribute in ("key", "model")]
        nearest = [key for key in own if isinstance(key, str) and key in valid]
    hint = f" (did you mean {' or '.join(repr(key) for key in nearest)}?)" if nearest else ""
    return ValueError(f"{kind}: unknown name {name!r}; expected one of: {', '.join(valid)}{hint}")


def model(key: str, argument: str = "model") -> Model:
    """The row of model ``key``; an unknown key lists the valid ones, in an error that names
    ``argument`` (a command line's ``--model``)."""
    if isinstance(key, Model):
        return key
    try:
        return MODELS[key]
    except (KeyError, TypeError):
        raise _unknown(argument, key, MODELS) from None


def surrogate(key: str) -> Surrogate:
    """The row of surrogate ``key``; an unknown key lists the valid ones."""
    try:
        return SURROGATES[key]
    except (KeyError, TypeError):
        raise _unknown("surrogate", key, SURROGATES) from None
