"""THE table of snnref's neuron models and surrogate gradients.

Tests, golden generation, benchmarks and the CLI iterate over ``MODELS`` and
``SURROGATES``; adding a model is one row here plus its files (``spec/<family>.py``
and a hand-worked test), never a test edit.  This module is plain data: it
imports neither NumPy nor torch, so every layer can read it.

Semantics of every row: ``../shared/SPEC.md`` (sections 1-5 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

# Parameter shapes.  A per-neuron parameter is a scalar or an array of shape
# (1,) or (N,) with N the last axis of the input; it broadcasts over batch.
SCALAR = "scalar"  # per-neuron allowed, default a scalar
PER_NEURON = "per_neuron"  # per-neuron allowed, default of shape (N,)
SHAPE_ONE = "one"  # per-neuron allowed, default of shape (1,)
MATRIX = "matrix"  # exactly (D, D), D the last input axis; no default
VECTOR = "vector"  # exactly (D,); no default

# Parameter domains checked before any computation.
REAL = "real"
POSITIVE = "positive"
NONNEGATIVE = "nonnegative"


@dataclass(frozen=True)
class Param:
    name: str
    default: Optional[float]
    trainable: bool
    shape: str = SCALAR
    domain: str = REAL
    # Range that random test cases draw from (inclusive bounds).
    sample: Tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class StateVar:
    name: str
    # The initial value: a number, or the name of the parameter it starts at.
    initial: object
    recorded: str
    sample: Tuple[float, float] = (-0.5, 0.5)


@dataclass(frozen=True)
class Model:
    key: str
    family: str  # file stem shared by every layer: spec/<family>.py, ...
    doc: str
    params: Tuple[Param, ...]
    state: Tuple[StateVar, ...]
    out: str  # "spikes", "spikes*threshold", "membrane", "projection"
    surrogates: Tuple[str, ...]  # accepted surrogate keys; first is the default
    options: Mapping[str, object] = field(default_factory=dict)
    spike_test: Optional[str] = ">="  # ">=" or ">"; None for no spikes
    reset: Optional[str] = None  # "zero", "subtract", "to_reset", None
    inject: Tuple[str, ...] = ()  # hardware observations accepted by `inject`
    refractory: bool = False
    input_rank: Optional[int] = None  # exact rank of x when the model needs one
    # Mean and spread of random test inputs: enough drive that neurons fire.
    input_sample: Tuple[float, float] = (0.4, 0.6)

    @property
    def default_surrogate(self) -> Optional[str]:
        return self.surrogates[0] if self.surrogates else None

    @property
    def trainable(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.params if p.trainable)

    @property
    def state_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.state)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class Surrogate:
    key: str
    scale: str  # the name of its scale parameter in a model's params
    trainable_scale: bool  # whether dF/dscale exists
    tether_id: Optional[int]  # tether's kernel id, where tether has it
    doc: str


SURROGATES: Mapping[str, Surrogate] = {
    s.key: s
    for s in (
        Surrogate("arctan", "alpha", True, 0, "alpha / (1 + (pi alpha u)^2)"),
        Surrogate("sigmoid", "alpha", True, 1, "alpha sigma(alpha u) (1 - sigma(alpha u))"),
        Surrogate("fast_sigmoid", "alpha", True, 2, "1 / (1 + alpha |u|)^2"),
        Surrogate("superspike", "alpha", False, None, "1 / (alpha |u| + 1)^2 (hxtorch)"),
        Surrogate("spike_linear", "gradient_factor", False, None, "gamma max(0, 1 - |u|)"),
    )
}

TETHER_SURROGATES = ("arctan", "sigmoid", "fast_sigmoid")


def _tether_lif_params(per_neuron: bool, prefix: str = "") -> Tuple[Param, ...]:
    shape = PER_NEURON if per_neuron else SCALAR
    return (
        Param(prefix + "decay", 0.9, True, shape, REAL, (0.5, 0.98)),
        Param(prefix + "threshold", 1.0, True, shape, REAL, (0.6, 1.4)),
        Param(prefix + "alpha", 2.0, True, SCALAR, POSITIVE, (0.5, 4.0)),
    )


def _rnnbuilder_params(*extra: Param) -> Tuple[Param, ...]:
    return (Param("tau", 5.0, False, SCALAR, POSITIVE, (2.0, 10.0)),) + extra + (
        Param("gradient_factor", 0.3, False, SCALAR, POSITIVE, (0.1, 1.0)),
    )


_QUALIA_PARAMS = (
    Param("threshold", 1.0, True, SHAPE_ONE, REAL, (0.6, 1.4)),
    Param("alpha", 1.0, False, SCALAR, POSITIVE, (0.5, 4.0)),
)


def _cuba_params(leak: bool, reset: bool, spiking: bool, refractory: bool) -> Tuple[Param, ...]:
    rows = []
    if leak:
        rows.append(Param("leak", 0.0, True, SCALAR, REAL, (-0.2, 0.2)))
    if reset:
        rows.append(Param("reset", 0.0, True, SCALAR, REAL, (-0.2, 0.2)))
    if spiking:
        rows.append(Param("threshold", 1.0, True, SCALAR, REAL, (0.6, 1.4)))
    rows += [
        Param("tau_syn", 1e-5, True, SCALAR, POSITIVE, (5e-6, 2e-5)),
        Param("tau_mem", 1e-5, True, SCALAR, POSITIVE, (5e-6, 2e-5)),
    ]
    if spiking:
        rows.append(Param("alpha", 50.0, False, SCALAR, POSITIVE, (5.0, 50.0)))
    if refractory:
        rows.append(Param("refractory_time", 1e-6, False, SCALAR, NONNEGATIVE, (1e-6, 3.5e-6)))
    rows.append(Param("dt", 1e-6, False, SCALAR, POSITIVE, (1e-6, 1e-6)))
    return tuple(rows)


# The synaptic current integrates the input over about tau_syn/dt = 10 steps
# before the membrane sees it: a stronger drive lets short random cases fire.
CUBA_DRIVE = (1.0, 0.6)


def _cuba_state(start: str, refractory: bool) -> Tuple[StateVar, ...]:
    rows = (
        StateVar("v", start, "after reset"),
        StateVar("i", 0.0, "after the step"),
    )
    if refractory:
        # Steps of refractoriness left: some random cases start inside a clamp.
        rows += (StateVar("r", 0.0, "after the step (steps left)", (0.0, 3.0)),)
    return rows


_ATTENTION_PARAMS = (
    Param("q_weight", None, True, MATRIX, REAL, (-0.8, 0.8)),
    Param("k_weight", None, True, MATRIX, REAL, (-0.8, 0.8)),
    Param("v_weight", None, True, MATRIX, REAL, (-0.8, 0.8)),
    Param("proj_weight", None, True, MATRIX, REAL, (-0.8, 0.8)),
    Param("proj_bias", None, True, VECTOR, REAL, (-0.5, 0.5)),
) + _tether_lif_params(False, "q_") + _tether_lif_params(False, "k_") + _tether_lif_params(False, "v_")


MODELS: Mapping[str, Model] = {
    m.key: m
    for m in (
        Model(
            "tether.LIF", "lif", "tether.nn.LIF: hard reset to 0 (detached), v recorded pre-reset",
            _tether_lif_params(False), (StateVar("v", 0.0, "pre-reset"),), "spikes",
            TETHER_SURROGATES, {"leak": "decay", "record": "pre"}, ">=", "zero",
        ),
        Model(
            "tether.PLIF", "lif", "tether.nn.PLIF: LIF with per-neuron decay and threshold",
            _tether_lif_params(True), (StateVar("v", 0.0, "pre-reset"),), "spikes",
            TETHER_SURROGATES, {"leak": "decay", "record": "pre"}, ">=", "zero",
        ),
        Model(
            "tether.ALIF", "alif", "tether.nn.ALIF: adaptive threshold theta + beta a",
            (
                Param("decay_v", 0.9, True, SCALAR, REAL, (0.5, 0.98)),
                Param("decay_a", 0.9, True, SCALAR, REAL, (0.5, 0.98)),
                Param("threshold", 1.0, True, SCALAR, REAL, (0.6, 1.4)),
                Param("beta", 0.5, True, SCALAR, REAL, (0.1, 1.0)),
                Param("alpha", 2.0, True, SCALAR, POSITIVE, (0.5, 4.0)),
            ),
            (StateVar("v", 0.0, "pre-reset"), StateVar("a", 0.0, "before the step's update", (0.0, 1.0))),
            "spikes", ("arctan",), {}, ">=", "zero",
        ),
        Model(
            "tether.SpikingSelfAttention", "attention",
            "tether.nn.SpikingSelfAttention: LIF q, k, v; context S += k*v; out = Wp (q*S) + b",
            _ATTENTION_PARAMS,
            (
                StateVar("q_v", 0.0, "pre-reset"),
                StateVar("k_v", 0.0, "pre-reset"),
                StateVar("v_v", 0.0, "pre-reset"),
                StateVar("context", 0.0, "after the step", (0.0, 2.0)),
            ),
            "projection", ("arctan",), {"scale_params": ("q_alpha", "k_alpha", "v_alpha")},
            ">=", "zero", input_rank=4, input_sample=(0.4, 1.2),
        ),
        Model(
            "rnnbuilder.LIF", "lif", "rnnbuilder.snn.LIF: subtractive reset m - s, beta = exp(-1/tau)",
            _rnnbuilder_params(), (StateVar("m", 0.0, "after reset"),), "spikes",
            ("spike_linear",), {"leak": "tau", "record": "post"}, ">", "subtract",
        ),
        Model(
            "rnnbuilder.NoReset", "lif", "rnnbuilder.snn.NoReset: leaky integrator that spikes, no reset",
            _rnnbuilder_params(), (StateVar("m", 0.0, "no reset"),), "spikes",
            ("spike_linear",), {"leak": "tau", "record": "post"}, ">", None,
        ),
        Model(
            "rnnbuilder.Cooldown", "cooldown",
            "rnnbuilder.snn.Cooldown: spikes from the previous m; m integrates (1 - beta) exp(x)",
            _rnnbuilder_params(), (StateVar("m", 0.0, "no reset", (0.0, 2.0)),), "spikes",
            ("spike_linear",), {}, ">", None,
        ),
        Model(
            "rnnbuilder.Adaptive", "adaptive",
            "rnnbuilder.snn.Adaptive: threshold 1 + r, normalised distance, subtractive reset",
            _rnnbuilder_params(
                Param("tau_thr", 5.0, False, SCALAR, POSITIVE, (2.0, 10.0)),
                Param("gamma", 0.25, False, SCALAR, REAL, (0.05, 0.5)),
            ),
            (StateVar("m", 0.0, "after reset"), StateVar("r", 0.0, "after the step", (0.0, 0.5))),
            "spikes", ("spike_linear",), {}, ">", "subtract",
        ),
        Model(
            "rnnbuilder.Discontinuous", "discontinuous",
            "rnnbuilder.snn.Discontinuous: stateless s = H(x - threshold)",
            (
                Param("threshold", 1.0, False, SCALAR, REAL, (0.6, 1.4)),
                Param("gradient_factor", 0.3, False, SCALAR, POSITIVE, (0.1, 1.0)),
            ),
            (), "spikes", ("spike_linear",), {}, ">", None, input_sample=(0.8, 0.6),
        ),
        Model(
            "qualia.IFSRL", "lif", "qualia CustomNode.IFSRL: IF with soft reset by a learnable threshold",
            _QUALIA_PARAMS, (StateVar("v", 0.0, "after reset"),), "spikes",
            ("sigmoid",), {"leak": None, "record": "post"}, ">=", "subtract",
        ),
        Model(
            "qualia.ATIF", "lif", "qualia CustomNode.ATIF: IFSRL whose output is spikes * threshold",
            _QUALIA_PARAMS, (StateVar("v", 0.0, "after reset"),), "spikes*threshold",
            ("sigmoid",), {"leak": None, "record": "post"}, ">=", "subtract",
        ),
        Model(
            "hxtorch.cuba_lif", "cuba", "hxtorch cuba_lif_integration: CUBA LIF, forward Euler",
            _cuba_params(True, True, True, False), _cuba_state("leak", False), "spikes",
            ("superspike",), {"leak": True, "spiking": True}, ">", "to_reset", ("spikes", "v"),
            input_sample=CUBA_DRIVE,
        ),
        Model(
            "hxtorch.cuba_refractory_lif", "cuba",
            "hxtorch cuba_refractory_lif_integration: CUBA LIF with a refractory clamp",
            _cuba_params(True, True, True, True), _cuba_state("leak", True), "spikes",
            ("superspike",), {"leak": True, "spiking": True}, ">", "to_reset", ("spikes", "v"), True,
            input_sample=CUBA_DRIVE,
        ),
        Model(
            "hxtorch.cuba_li", "cuba", "hxtorch cuba_li_integration: leaky integrator readout",
            _cuba_params(True, False, False, False), _cuba_state("leak", False), "membrane",
            (), {"leak": True, "spiking": False}, None, None, ("v",),
        ),
        Model(
            "hxtorch.cuba_iaf", "cuba", "hxtorch cuba_iaf_integration: CUBA integrate-and-fire, no leak",
            _cuba_params(False, True, True, False), _cuba_state("reset", False), "spikes",
            ("superspike",), {"leak": False, "spiking": True}, ">", "to_reset", ("spikes", "v"),
            input_sample=CUBA_DRIVE,
        ),
        Model(
            "hxtorch.cuba_refractory_iaf", "cuba",
            "hxtorch cuba_refractory_iaf_integration: CUBA IAF with a refractory clamp",
            _cuba_params(False, True, True, True), _cuba_state("reset", True), "spikes",
            ("superspike",), {"leak": False, "spiking": True}, ">", "to_reset", ("spikes", "v"), True,
            input_sample=CUBA_DRIVE,
        ),
    )
}


def _unknown(kind: str, name, valid) -> ValueError:
    return ValueError(f"{kind}: unknown name {name!r}; expected one of: {', '.join(valid)}")


def model(key: str) -> Model:
    """The row of model ``key``; an unknown key lists the valid ones."""
    if isinstance(key, Model):
        return key
    try:
        return MODELS[key]
    except (KeyError, TypeError):
        raise _unknown("model", key, MODELS) from None


def surrogate(key: str) -> Surrogate:
    """The row of surrogate ``key``; an unknown key lists the valid ones."""
    try:
        return SURROGATES[key]
    except (KeyError, TypeError):
        raise _unknown("surrogate", key, SURROGATES) from None
