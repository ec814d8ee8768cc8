"""The gate: an implementation under its declared contract, against the spec.

``run(impl)`` (``impl`` a ``snnref.testing.Implementation``) builds the cases,
runs each through ``snnref.testing._equivalence.compare`` in every declared dtype and
returns a ``GateReport``.  Every run includes, with or without goldens:

- ``random``: ``examples`` small seeded cases (T <= 12, batch <= 3, N <= 7;
  the second has T = 1, with neurons that spike and neurons that do not where
  a shift of the first state variable (or of its starting value, or of the
  input) finds them, listed as not checked where none spikes; the third has
  one lane; every third gives the first state variable alone, where there
  are more; the injected ones from the fifth on give both hardware traces,
  the spikes alone or the membrane alone, in turn),
  cycling through the declared surrogates, scalar and per-neuron parameters,
  initial states and injection as the contract allows;
- ``threshold``: a dyadic case (inputs multiples of 1/8, parameters with 4-bit
  mantissas, some inputs equal to the threshold) in which decisions land
  exactly on ``u = 0`` in float64 and float32, so that ``>=`` and ``>`` give
  different spikes;
- ``wide``: more than 1,100 lanes, a multiple of neither 32, 128 nor 1024
  (kernels fail at block boundaries);
- ``long``: T = 333 (bugs that start late: past step 256, with a tail
  after any power-of-two tile of steps);
- ``strided``: non-contiguous views of x, the initial states, the
  per-neuron parameters and the cotangents, batch-first in memory;
- ``out_sum``: called as a training step calls a neuron: no initial state
  (``state=None``, so the implementation's own defaults, SPEC.md section 8,
  are compared through its outputs) and a loss of ``out.sum()`` alone;
- ``far``: one case per declared surrogate with x scaled up (by the largest
  of ``FAR_SCALES`` at which the spec's float64 and float32 runs stay
  finite), so that membranes lie hundreds to thousands of surrogate widths
  from threshold: where a surrogate's tail or an exponential computed
  naively overflows (sigmoid's exp(-alpha u): float32 past alpha |u| = 88,
  float64 past 709) and a correct one gives tiny, finite gradients;
- ``golden``: every golden trace of the model the contract can express; the
  others are listed with the reason.

Where the contract allows per-neuron values of a parameter that is a scalar
by default, the threshold and wide cases run twice, with scalar and with
per-neuron parameters (kernels often have a path for each).  The first case
runs once more after all the others, in its first dtype, on other values (x
reversed in time and negated): every result of the run must still hold its
values then (a result that is a view of memory the implementation reuses, per
shape and dtype say, fails), and the repeat is compared like any run.

Every quantity the model defines is compared, or listed as not checked with
the reason (not returned, pinned, fixed, or outside the contract).

The exact-threshold case rests on dyadic numbers:

(1) d(v) = round(m 2^4) 2^(e-4)   for v = m 2^e, 1/2 <= m < 1

has a 4-bit mantissa, so sums and products of a few such numbers are exact in
float32 and float64 alike; from a zero state ``v[0] = x[0]``, and an input
``x[0] = theta`` gives ``u[0] = 0`` exactly in both.  (hxtorch's membrane
starts at ``leak`` (or ``reset``) and its first step adds ``a (leak - v + 0)
= 0``: ``threshold := leak`` gives ``u[0] = 0`` in any arithmetic.)

A failing gradient without a time axis (a parameter's, an initial state's) is
located in time by its cotangents:

(2) g(t) = the gradient with every output cotangent after step t set to 0
    and the final-state cotangents off

is a sum over steps <= t only; the first failing step is the smallest t whose
g(t) fails, found by bisection (the report's ``steps`` column), or "final"
when only the final state's cotangent makes it fail.  The report
summarises each quantity over all runs: worst fraction of the budget, failing
runs, first and last failing time step, the worst element and the run it was
in; each run is labelled with model, surrogate, case kind, seed and dtype.
A failing run keeps, for its failing quantities only, the implementation's and
the reference's arrays and the budget (``Run.traces``), which
``snnref.testing.report`` draws.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import math
import numbers
import re
import shlex
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .. import registry, spec
from .._files import numpy_format, read_regular_file
from . import _checks as checks
from .contract import Implementation

KINDS = ("random", "threshold", "wide", "long", "strided", "out_sum", "far", "golden")
# What the report's steps column says.
STEPS_LEGEND = {
    "first-last": "first-last failing time step",
    "-": "- a sum over every step, not located in time (the first failing run's sums are located, by (2))",
    "final": "final within budget once the final state's cotangent is off (that cotangent makes the error, or makes "
             "it large enough to fail)",
}
# The far case's scales of x, largest first: the first at which the spec's float64 and float32
# runs are finite (rnnbuilder.Cooldown integrates exp(x), which overflows at the largest).
FAR_SCALES = (1000.0, 300.0, 100.0, 30.0, 10.0)
# Past 256 steps (an 8-bit counter) and a multiple of no power of two above 1 (a tile's tail).
LONG_STEPS = 333
# (batch, N) of the wide case: 3 x 379 = 1137 lanes (attention: 35 x 2 tokens x 17 = 1190,
# wide in batch, so that its dot products over N stay short: SPEC.md section 7's
# long-sum term covers sums over time and batch, not over a 191-long matrix row).
WIDE = {"default": (3, 379), "attention": (35, 17)}
THRESHOLD_CANDIDATES = 48
# hxtorch's step sizes in the start-on-threshold case (_start_on_threshold): powers of two near its
# defaults (dt 1e-6 s, time constants 1e-5 s), so that a = dt / tau_mem = 1/8 in any arithmetic.
EXACT_STEP = {"dt": 2.0**-20, "tau_mem": 2.0**-17, "tau_syn": 2.0**-18}


class ImplementationError(TypeError):
    """What the implementation returned breaks the adapter contract (named by quantity)."""


def _surrogate_key(surrogate):
    return getattr(surrogate, "key", surrogate)


@dataclass
class Planned:
    case: checks.Case
    kind: str
    seed: int
    reference: Optional[dict] = None  # stored golden results
    name: str = ""  # the golden file
    repeated: bool = False  # run once more after every other case
    # False: the implementation gets exactly the case's initial states (None when it has none);
    # True: every other state at its default too, as a tensor whose gradient is compared.
    fill_state: bool = True

    def label(self, dtype=None):
        row = registry.model(self.case.model)
        lanes = int(np.prod(self.case.x.shape[1:]))
        where = f"{self.name} " if self.name else ""
        again = " again" if self.repeated else ""
        text = (f"{row.key} {_surrogate_key(self.case.surrogate) or '-'} {self.kind}{again} {where}"
                f"seed={self.seed} (T={self.case.x.shape[0]}, lanes={lanes})")
        return text + (f" {dtype}" if dtype else "")


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _dyadic(values, bits=4):
    """Equation (1): the nearest number with a ``bits``-bit mantissa."""
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64))
    return np.ldexp(np.round(mantissa * 2**bits) / 2**bits, exponent)


def _within_contract(impl, case):
    """The case moved into the contract's slice: pinned values, per-neuron only where allowed."""
    row = registry.model(case.model)
    params = {}
    for name, value in case.params.items():
        value = np.asarray(value, dtype=np.float64)
        if row.param(name).shape == registry.SCALAR and value.ndim and not impl.may_be_per_neuron(name):
            value = np.asarray(value.reshape(-1)[0])
        if name in impl.pin:
            value = np.full(value.shape, impl.pin[name])
        params[name] = value
    return replace(case, params=params)


def _draw(impl, rng, *, steps, batch, neurons, surrogate, per_neuron, random_state, inject):
    row = registry.model(impl.model)
    case = checks.random_case(row.key, rng, steps=steps, batch=batch, neurons=neurons,
                              surrogate=surrogate if isinstance(surrogate, str) else None,
                              per_neuron=per_neuron, random_state=random_state and impl.takes_state,
                              inject=inject and impl.takes_inject and bool(row.inject))
    return _within_contract(impl, replace(case, surrogate=surrogate))


# The random cases built by construction, by their index (from 0) in the sequence: one source for
# ``_random_cases``, which builds them, and ``_structure_not_drawn``, which names those not reached.
SINGLE_STEP_CASE = 1
SINGLE_LANE_CASE = 2


def _per_neuron_case(index):
    return index % 2 == 1


def _partial_state_case(index):
    """Every third case gives the first state variable only."""
    return index % 3 == 2


def _injected_alone(index):
    """The observation an injected case gives alone (None: both): in turn both, the spikes alone and
    the membrane alone over the injected (even) cases from the fifth (the third is one lane)."""
    return (None, "spikes", "v")[(index // 2 - 1) % 3] if index >= 4 and index % 2 == 0 else None


def _structure_not_drawn(impl, row, examples):
    """The random cases ``_random_cases`` builds by construction that ``examples`` cases do not
    reach: each named, else fewer examples would drop them without a word."""
    def first(built):
        return next(index for index in itertools.count() if built(index))

    built = [(SINGLE_STEP_CASE, "a single time step (T = 1)"), (SINGLE_LANE_CASE, "a single lane")]
    if impl.per_neuron:
        built.append((first(_per_neuron_case), "per-neuron parameters"))
    if impl.takes_state and len(row.state) > 1:
        built.append((first(_partial_state_case), "the first state variable given alone"))
    if impl.takes_inject and len(row.inject) > 1:
        built += [(first(lambda index: _injected_alone(index) == "spikes"), "observed spikes injected alone"),
                  (first(lambda index: _injected_alone(index) == "v"), "an observed membrane injected alone")]
    return [f"random: {what}, built by random case {index + 1} (examples={examples})"
            for index, what in built if examples <= index]


def _random_cases(impl, examples, seed, unchecked):
    row = registry.model(impl.model)
    unchecked += _structure_not_drawn(impl, row, examples)
    for index in range(examples):
        case_seed = _seed(row.key, seed, "random", index)
        rng = np.random.default_rng(case_seed)
        steps, batch, neurons = int(rng.integers(1, 13)), int(rng.integers(1, 4)), int(rng.integers(1, 8))
        # By construction, not by the luck of a draw: a single step (a T = 1 fast path), on every
        # lane the small cases have so that some decide to spike, and a single lane.
        if index == SINGLE_STEP_CASE:
            steps, batch, neurons = 1, 3, 7
        if index == SINGLE_LANE_CASE:
            batch, neurons = 1, 1
        # The first state variable only (a dict without the others, which then start at the
        # implementation's defaults), where the model has more than one.
        partial = _partial_state_case(index) and impl.takes_state and len(row.state) > 1
        case = _draw(impl, rng, steps=steps, batch=batch, neurons=neurons,
                     surrogate=impl.surrogates[index % len(impl.surrogates)],
                     per_neuron=_per_neuron_case(index), random_state=not _partial_state_case(index) or partial,
                     inject=index % 2 == 0)
        if index == SINGLE_STEP_CASE:
            case = _some_spike_at_one_step(impl, row, case, unchecked)
        if partial:
            first = row.state[0].name
            case = replace(case, state={first: case.state[first]})
        if case.inject and len(case.inject) > 1 and _injected_alone(index):
            # Either observation may be absent (SPEC.md section 8).
            alone = _injected_alone(index)
            case = replace(case, inject={k: v for k, v in case.inject.items() if k == alone})
        yield Planned(case, "random", case_seed, fill_state=not partial)


# How far every other neuron's first state variable (or starting value, or input) moves, tried in
# turn, until the single-step case has neurons that spike and neurons that do not.
ONE_STEP_SHIFTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _shifted_one_step(impl, row, case, sign, shift, state):
    """The single-step case with every other neuron moved by ``sign * shift``: its first state
    variable where the case gives states; else the parameter it starts at (hxtorch's leak or
    reset, whose current reaches the membrane a step late), per neuron where the contract allows
    (all neurons where it does not); else the input."""
    start = row.state[0].initial if row.state else None
    if case.state:
        first = row.state[0].name
        moved = np.array(case.state[first], dtype=np.float64)
        moved[..., ::2] += sign * shift
        return replace(case, state={**state, first: moved})
    if isinstance(start, str) and start not in impl.pin:
        neurons = case.x.shape[-1]
        value = np.asarray(case.params[start], dtype=np.float64)
        if impl.may_be_per_neuron(start):
            value = np.broadcast_to(value, (neurons,)).copy()
            value[::2] += sign * shift
        else:
            value = value + sign * shift
        return replace(case, params={**case.params, start: value})
    moved = np.array(case.x, dtype=np.float64)
    moved[..., ::2] += sign * shift
    return replace(case, x=moved)


def _some_spike_at_one_step(impl, row, case, unchecked):
    """The single-step case with neurons that spike and neurons that do not, where a shift finds them.

    A T = 1 fast path's reset shows only through a spike, and a drawn case may have none (hxtorch's
    current reaches the membrane a step late; rnnbuilder.Adaptive starts below 1 + r).  If every
    neuron decides alike, every other one moves towards the other decision by the smallest shift
    that splits them (or, where the contract moves all neurons together, makes them spike); a case
    that no shift makes spike is kept and listed as not checked."""
    if not row.out.spiking:
        return case

    def spiking_lanes(candidate):
        out = spec.simulate(row.key, candidate.x, candidate.params, candidate.state,
                            surrogate=candidate.surrogate, inject=candidate.inject).outputs["out"]
        return np.count_nonzero(out), out.size

    fired, lanes = spiking_lanes(case)
    if 0 < fired < lanes:
        return case
    sign = 1.0 if fired == 0 else -1.0
    state = dict(case.state)
    if row.refractory and fired == 0 and case.state:
        # A lane inside its clamp cannot spike: the moved lanes start outside it (the refractory
        # counter is a refractory model's last state variable, registry._cuba_state).
        counter = np.array(state[row.state[-1].name], dtype=np.float64)
        counter[..., ::2] = 0.0
        state[row.state[-1].name] = counter
    firing = None
    for shift in ONE_STEP_SHIFTS:
        candidate = _shifted_one_step(impl, row, case, sign, shift, state)
        try:
            fired_now, _ = spiking_lanes(candidate)
        except ValueError:
            continue  # a shift that leaves a parameter's domain: try the next
        if 0 < fired_now < lanes:
            return candidate
        if fired == 0 and fired_now and firing is None:
            firing = candidate
    if firing is not None:
        return firing
    if fired == 0:
        unchecked.append(f"single step: no neuron of the T = 1 case spikes under this contract "
                         f"({'no initial state' if not impl.takes_state else 'from its initial states'}); "
                         "a bug that shows only through a reset at T = 1 is not seen")
    return case


def _start_on_threshold(impl, row, seed, per_neuron):
    """For a model whose membrane starts at a parameter (hxtorch: v = leak, or reset),
    whose first step adds nothing to it (the current starts at 0): threshold := that
    parameter puts every lane's first decision exactly on u = 0.  With powers of two
    for dt and the time constants (a = dt / tau_mem = 1/8, whether computed as a
    quotient or as dt times 1 / tau) and a 4-bit mantissa for the start, it is exact
    in any arrangement of the step: v + a (leak - v + i) and (1 - a) v + a (leak + i)
    alike."""
    start = next((v.initial for v in row.state if isinstance(v.initial, str)), None)
    if start is None or "threshold" in impl.pin or not any(p.name == "threshold" for p in row.params):
        return None
    case_seed = _seed(row.key, seed, "threshold", "start", *_PER_NEURON[per_neuron])
    rng = np.random.default_rng(case_seed)
    case = _draw(impl, rng, steps=16, batch=2, neurons=8, surrogate=impl.surrogates[0], per_neuron=per_neuron,
                 random_state=False, inject=False)
    if np.ndim(case.params[start]) and not impl.may_be_per_neuron("threshold"):
        # The threshold cannot follow a per-neuron starting value under this contract.
        return None
    params = dict(case.params)
    for name, value in {**EXACT_STEP, start: _dyadic(params[start])}.items():
        if name in params and name not in impl.pin:
            params[name] = np.broadcast_to(value, np.shape(params[name])).copy()
    params["threshold"] = np.asarray(params[start], dtype=np.float64).copy()
    return Planned(replace(case, params=params), "threshold", case_seed)


def _exact_threshold_case(impl, seed, per_neuron):
    """A dyadic case with decisions exactly on threshold in float64 and float32, or None."""
    row = registry.model(impl.model)
    if not row.surrogates:
        return None
    for index in range(THRESHOLD_CANDIDATES):
        case_seed = _seed(row.key, seed, "threshold", index, *_PER_NEURON[per_neuron])
        rng = np.random.default_rng(case_seed)
        case = _draw(impl, rng, steps=16, batch=2, neurons=8, surrogate=impl.surrogates[index % len(impl.surrogates)],
                     per_neuron=per_neuron, random_state=False, inject=False)
        params = {k: _dyadic(v) if k not in impl.pin else v for k, v in case.params.items()}
        identity = [p.name for p in row.params if p.shape == registry.MATRIX and p.name not in impl.pin]
        for name in identity:
            # Input weights (attention) as the identity: each branch's membrane sees x itself.
            params[name] = np.eye(case.x.shape[-1])
        x = np.round(case.x * 8) / 8
        first = next((k for k in params if k.endswith("threshold")), None)
        theta = np.broadcast_to(params[first] if first else 1.0, x.shape[1:])
        state = {}
        if index % 2 and impl.takes_state and row.state:
            # A model that decides from the state before this step's update
            # (rnnbuilder.Cooldown): half the lanes start exactly on threshold.
            state = {row.state[0].name: np.where(np.arange(x.shape[-1]) % 2 == 0, theta, 0.0)}
        else:
            # From a zero state the first membrane is the input itself: half the
            # lanes get exactly the threshold as input.
            x[0][..., ::2] = theta[..., ::2]
        case = replace(case, x=x, params=params, state=state)
        try:
            runs = [spec.simulate(row.key, case.x, case.params, case.state, surrogate=case.surrogate, dtype=d)
                    for d in (np.float64, np.float32)]
        except ValueError:
            continue  # a dyadic parameter left the domain: try the next draw
        if runs[0].distance is None:
            # Several decisions per neuron-step (attention's branches): no distances to read,
            # but with identity weights v_q[0] = x[0] = q_threshold exactly, by construction.
            if identity and first:
                return Planned(case, "threshold", case_seed)
            break
        exact = (runs[0].distance == 0) & (runs[1].distance == 0)
        if exact.any():
            return Planned(case, "threshold", case_seed)
    return _start_on_threshold(impl, row, seed, per_neuron)


def _sized_case(impl, kind, seed, per_neuron=False):
    """A "wide", "long", "strided" or "out_sum" case.  "strided" runs on
    non-contiguous views of x, the initial states, the per-neuron parameters
    and the cotangents (``_equivalence._strided``).  "out_sum" is called without initial states and
    differentiates out.sum() alone, as a training step does: the backward
    gets a cotangent of stride 0 for out (an expanded 1) and None for every
    other output and final state (under ``ctx.set_materialize_grads(False)``),
    where the other cases give a dense random cotangent for each."""
    row = registry.model(impl.model)
    case_seed = _seed(row.key, seed, kind, *_PER_NEURON[per_neuron])
    rng = np.random.default_rng(case_seed)
    if kind == "wide":
        batch, neurons = WIDE["attention" if row.input_rank else "default"]
        steps = 4
    elif kind == "long":
        batch, neurons, steps = 2, 3, LONG_STEPS
    else:
        batch, neurons, steps = 2, 5, 12
    case = _draw(impl, rng, steps=steps, batch=batch, neurons=neurons, surrogate=impl.surrogates[0],
                 per_neuron=per_neuron or kind == "strided", random_state=kind != "out_sum", inject=False)
    if kind == "out_sum":
        case = replace(case, cotangents={"out": np.ones_like(case.cotangents["out"])})
    return Planned(case, kind, case_seed, fill_state=kind != "out_sum")


def _far_cases(impl, seed, unchecked):
    """The "far" cases (module docstring): one per declared surrogate, every initial state at its
    default, x times the largest of FAR_SCALES the spec runs finitely."""
    from . import _equivalence as equivalence

    row = registry.model(impl.model)
    for surrogate in impl.surrogates or (None,):
        case_seed = _seed(row.key, seed, "far", _surrogate_key(surrogate))
        drawn = _draw(impl, np.random.default_rng(case_seed), steps=12, batch=2, neurons=5, surrogate=surrogate,
                      per_neuron=False, random_state=False, inject=False)
        for scale in FAR_SCALES:
            case = replace(drawn, x=drawn.x * scale)
            try:
                runs = [equivalence.run_spec(case, dtype)[0] for dtype in (np.float64, np.float32)]
            except ValueError:  # the spec refuses an input whose exp overflows (rnnbuilder.Cooldown)
                continue
            if all(np.all(np.isfinite(values)) for run in runs for values in run.values()):
                yield Planned(case, "far", case_seed)
                break
        else:
            unchecked.append(f"far ({_surrogate_key(surrogate)}): the spec overflows at every scale of x in "
                             f"{FAR_SCALES}")


def _golden_cases(impl, golden_dir, unchecked, broken):
    """Every golden trace of the model the contract can express; the others go to
    ``unchecked`` with the reason, unreadable ones to ``broken`` (each file alone)."""
    from . import _golden as store

    row = registry.model(impl.model)
    directory = store.store_dir(golden_dir)
    manifest = store.read_manifest(directory)
    # What ``golden check`` refuses of a store, the gate refuses too (it passed a store with strays).
    broken += [f"golden {name}: not listed in {store.MANIFEST} (a stray or an unrecorded golden)"
               for name in store.unlisted_files(directory, manifest)]
    declared = {_surrogate_key(s): s for s in impl.surrogates}
    if not any(entry["model"] == row.key for entry in manifest["files"].values()):
        unchecked.append(f"golden: the store {directory} holds no golden file of {row.key}")
    for name, entry in manifest["files"].items():
        if entry["model"] != row.key:
            continue
        try:
            arrays = store.load(directory, name, entry)
            case = store.case_from(arrays, entry)
            store.check_case(case, name)
        except store.GoldenError as error:  # its message starts with the file's name
            broken.append(f"golden {error}")
            continue
        except (ValueError, TypeError, KeyError) as error:
            broken.append(f"golden {name}: {type(error).__name__}: {error}")
            continue
        damaged = store.damage(case, store.expected_from(arrays))
        if damaged:
            broken += [f"golden {name}: {found}" for found in damaged]
            continue
        reason = _inexpressible(impl, row, case, declared)
        if reason:
            unchecked.append(f"golden {name}: {reason}")
            continue
        case = replace(case, surrogate=declared.get(case.surrogate, case.surrogate))
        yield Planned(case, "golden", int(entry.get("seed", 0)), store.expected_from(arrays), name)


def _inexpressible(impl, row, case, declared):
    if (case.surrogate or None) not in declared and case.surrogate is not None:
        return f"surrogate {case.surrogate} is not declared"
    if case.state and not impl.takes_state:
        return "starts from an initial state (takes_state=False)"
    if case.inject and not impl.takes_inject:
        return "uses hardware injection (takes_inject=False)"
    for name, value in case.params.items():
        if row.param(name).shape == registry.SCALAR and np.size(value) > 1 and not impl.may_be_per_neuron(name):
            return f"per-neuron {name} (per_neuron does not allow it)"
    for name, pinned in impl.pin.items():
        value = np.asarray(case.params.get(name, row.param(name).default), dtype=np.float64)
        if not np.all(value == pinned):
            # Every digit: a pin read from a float32 model (0.8999999761581421) differs from a golden's 0.9
            # where 6 significant digits would show the same number twice.
            short = str(np.float32(pinned))
            hint = f" (float32's rounding of {short}: pin {short} itself)" \
                if float(np.float32(pinned)) == pinned and float(short) != pinned else ""
            return f"{name} = {float(value.reshape(-1)[0])!r} outside the pin {name} = {pinned!r}{hint}"
    return ""


def plan(impl: Implementation, *, examples=8, seed=0, kinds=KINDS, golden_dir=None):
    """(the planned cases, what is not checked, broken golden files)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"kinds: unknown {unknown}; expected some of {', '.join(KINDS)}")
    planned, unchecked, broken = [], [], []
    row = registry.model(impl.model)
    if "random" in kinds:
        planned += list(_random_cases(impl, examples, seed, unchecked))
    both = (False, True) if _per_neuron_allowed(impl, row) else (False,)
    if "threshold" in kinds:
        for per_neuron in both:
            found = _exact_threshold_case(impl, seed, per_neuron)
            if found:
                planned.append(found)
            elif row.surrogates:
                unchecked.append(f"exact threshold{', per-neuron' if per_neuron else ''}: no dyadic "
                                 f"case of {THRESHOLD_CANDIDATES} lands on u = 0 in float64 and float32 for "
                                 f"{row.key} within the contract")
    for kind in ("wide", "long", "strided", "out_sum"):
        if kind in kinds:
            planned += [_sized_case(impl, kind, seed, per_neuron) for per_neuron in (both if kind == "wide"
                                                                                     else (False,))]
    if "far" in kinds:
        planned += list(_far_cases(impl, seed, unchecked))
    if "golden" in kinds:
        planned += list(_golden_cases(impl, golden_dir, unchecked, broken))
    unchecked += _contract_limits(impl, row)
    return planned, unchecked, broken


# The seed parts of a per-neuron twin of a case (none for the scalar one, whose seeds are older).
_PER_NEURON = {False: (), True: ("per-neuron",)}


def _per_neuron_allowed(impl, row):
    """Whether the contract lets a parameter that is a scalar by default take per-neuron values."""
    return any(p.shape == registry.SCALAR and impl.may_be_per_neuron(p.name) and p.name not in impl.pin
               for p in row.params)


def _contract_limits(impl, row):
    """The slices of the model the contract leaves out, one line each."""
    limits = []
    missing = [s for s in row.surrogates if s not in {_surrogate_key(x) for x in impl.surrogates}]
    if missing:
        limits.append(f"surrogates {', '.join(missing)} (not declared)")
    if not impl.gradients:
        limits.append("every gradient (gradients=False: the forward alone)")
    if not impl.takes_state:
        limits.append("initial states and their gradients (takes_state=False)")
    if row.inject and not impl.takes_inject:
        limits.append("hardware injection (takes_inject=False)")
    scalars = [p.name for p in row.params if p.shape == registry.SCALAR and not impl.may_be_per_neuron(p.name)]
    if scalars:
        limits.append(f"per-neuron {', '.join(scalars)} (per_neuron)")
    for name in impl.not_differentiated():
        if name in row.differentiable:
            limits.append(f"grad:{name} ({'pinned' if name in impl.pin else 'fixed'})")
    for name, value in impl.pin.items():
        limits.append(f"{name} other than {value:g} (pinned)")
    absent = [d for d in ("float32", "float64") if impl.dtypes is not None and d not in impl.dtypes]
    if absent:
        limits.append(f"{', '.join(absent)} (dtypes)")
    return limits


class _Adapted:
    """``fn`` with the attributes ``snnref.testing._equivalence`` reads, and its result checked
    against the contract before any comparison."""

    def __init__(self, impl):
        self.impl = impl
        self.fixed_parameters = impl.not_differentiated()
        self.takes_state = impl.takes_state
        self.gradients = impl.gradients
        # (label, tensor, its values when returned) of every earlier call's results
        self.earlier = []

    def __call__(self, model, x, params, state, *, surrogate=None, inject=None):
        import torch

        from . import _equivalence as equivalence

        result = self.impl.fn(model, x, params, state, surrogate=surrogate, inject=inject)
        # A result the caller still holds must keep its values when the implementation runs
        # again: one that returns a view of a buffer it reuses is wrong for any caller that
        # keeps two results, though every comparison (made before the next call) is right.
        # Every earlier result, not only the last: a buffer kept per shape and dtype is
        # handed out again only to a later call of the same shape and dtype.
        for label, tensor, values in self.earlier:
            if tensor.shape != values.shape or bool(equivalence.changed(tensor, values).any()):
                self.earlier = []
                raise ImplementationError(f"{label} changed when the implementation was called again: it "
                                          "returns memory it reuses (a view of an internal buffer), which a "
                                          "caller holding both results would read wrong")
        for part in ("outputs", "final_state"):
            values = getattr(result, part, None)
            if not isinstance(values, dict):
                got = type(values).__name__ if hasattr(result, part) else f"a {type(result).__name__} without .{part}"
                raise ImplementationError(f"result.{part}: expected a dict of tensors, got {got}"
                                          " (the contract returns an object with .outputs and .final_state)")
            # A misspelt name would leave its quantity unchecked, and the run would pass.
            known = registry.model(model).state_names if part == "final_state" else \
                ("out", *registry.model(model).state_names)
            unknown = [key for key in values if key not in known]
            if unknown:
                raise ImplementationError(f"result.{part} has {', '.join(map(repr, unknown))}, which {model} does not "
                                          f"define; its names: {', '.join(known)} (SPEC.md section 8)")
            for key, value in values.items():
                label = f"result.{part}[{key!r}]"
                if not isinstance(value, torch.Tensor):
                    raise ImplementationError(f"{label}: expected a torch tensor on the autograd graph of the "
                                              f"inputs, got {type(value).__name__}")
                if value.dtype != x.dtype:
                    raise ImplementationError(f"{label}: dtype {value.dtype}, expected {x.dtype} like x "
                                              "(a cast inside the implementation?)")
                if value.is_meta:
                    # Said of the result: the gate's own checks failed on it inside torch.
                    raise ImplementationError(f"{label}: a tensor on the 'meta' device, which holds no values")
                if part == "outputs" and value.dim() == x.dim() and value.shape[1:] != x.shape[1:] \
                        and value.shape[0] == x.shape[1] and value.shape[1] == x.shape[0]:
                    raise ImplementationError(f"{label}: shape {tuple(value.shape)} looks batch-first; expected "
                                              f"time-major {tuple(x.shape)}")
        if "out" not in result.outputs:
            raise ImplementationError(f"result.outputs has no 'out', {model}'s main output (SPEC.md section 8)")
        returned = list(result.outputs.values()) + list(result.final_state.values())
        if self.impl.gradients and x.requires_grad and returned and not any(v.requires_grad for v in returned):
            raise ImplementationError("result: every tensor is detached from the inputs (none requires grad), "
                                      "so no gradient can be checked (an implementation of the forward alone "
                                      "declares gradients=False)")
        # Detached: the results' values are kept, not their autograd graphs.
        self.earlier += [(f"result.{part}[{key!r}] of an earlier call ({tuple(value.shape)}, {value.dtype})",
                          value.detach(), value.detach().clone())
                         for part in ("outputs", "final_state") for key, value in getattr(result, part).items()]
        return result


@dataclass
class Run:
    label: str
    kind: str
    seed: int
    dtype: str
    passed: bool
    details: Dict[str, dict] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    unchecked: List[str] = field(default_factory=list)
    worst: float = 0.0
    planned: Optional[Planned] = None
    # Failing quantities only: the implementation's and the reference's arrays and the
    # budget (``snnref.testing._equivalence.Report.traces``), drawn by ``snnref.testing.report``.
    traces: Dict[str, dict] = field(default_factory=dict)
    # A crash: where in the implementation it raised (traceback lines, most recent call last).
    traceback: List[str] = field(default_factory=list)


@dataclass
class GateReport:
    model: str
    name: str
    contract: str
    runs: List[Run] = field(default_factory=list)
    unchecked: List[str] = field(default_factory=list)
    broken: List[str] = field(default_factory=list)
    saved: Optional[str] = None  # the .npz of the first failing case
    replay: Optional[str] = None

    @property
    def passed(self) -> bool:
        return not self.broken and all(r.passed for r in self.runs) and bool(self.runs)

    @property
    def worst(self) -> float:
        return max((r.worst for r in self.runs), default=0.0)

    def quantities(self) -> Dict[str, dict]:
        """Per quantity over every run: worst fraction, failing runs, first and last failing
        step, and the worst element with its run."""
        table: Dict[str, dict] = {}
        for run in self.runs:
            for key, detail in run.details.items():
                row = table.setdefault(key, {"worst": 0.0, "failing": 0, "runs": 0, "first_step": None,
                                             "last_step": None, "worst_index": None, "worst_run": None})
                row["runs"] += 1
                fraction = float(detail["fraction"])
                if fraction >= row["worst"] or row["worst_run"] is None:
                    row["worst"], row["worst_index"], row["worst_run"] = fraction, detail["worst_index"], run.label
                if detail["failed"]:
                    row["failing"] += 1
                    row["passes_without_final_cotangent"] = (row.get("passes_without_final_cotangent")
                                                             or detail.get("passes_without_final_cotangent"))
                    for end, pick in (("first_step", min), ("last_step", max)):
                        if detail[end] is not None:
                            row[end] = detail[end] if row[end] is None else pick(row[end], detail[end])
        if "spikes" in table:
            # Spikes are judged in every run that compared the spiking output.
            table["spikes"]["runs"] = sum("out:out" in run.details for run in self.runs)
        return dict(sorted(table.items()))

    def not_checked(self) -> List[str]:
        # A bare quantity is one the implementation did not return; the others carry their reason.
        skipped = {q for r in self.runs for q in r.unchecked}
        return [q if " (" in q else f"{q} (not returned)" for q in sorted(skipped)] + self.unchecked

    def text(self) -> str:
        """About 30 lines for one planted bug: a summary per quantity, the first failure, what was not checked."""
        verdict = "PASS" if self.passed else "FAIL"
        failed = [r for r in self.runs if not r.passed]
        kinds = {}
        for run in self.runs:
            again = " again" if run.planned is not None and run.planned.repeated else ""
            kinds.setdefault(run.kind + again, set()).add(run.label.rsplit(" ", 1)[0])
        dtypes = sorted({r.dtype for r in self.runs})
        # No run at all (a contract that rules out every golden case, say) fails with its reason:
        # before, the line read "cases: ; in : 0 runs, 0 failed" under a FAIL.
        cases = ("  cases: none that the contract admits: nothing was compared (why: not checked, below)"
                 if not self.runs else "  cases: " + ", ".join(f"{len(v)} {k}" for k, v in kinds.items())
                 + f"; in {', '.join(dtypes)}: {len(self.runs)} runs, {len(failed)} failed")
        lines = [f"snnref gate: {self.model}, implementation {self.name}: {verdict}",
                 f"  contract: {self.contract}", cases]
        table = self.quantities()
        bad = {k: v for k, v in table.items() if v["failing"]}
        if bad:
            lines.append(f"  {'quantity':<22} {'worst/budget':>12} {'failing runs':>13}  {'steps':<11} worst at")
            legend = set()
            for key, row in bad.items():
                steps = ("final" if row.get("passes_without_final_cotangent") else "-") if row["first_step"] is None \
                    else f"{row['first_step']}-{row['last_step']}"
                legend.add(steps if steps in STEPS_LEGEND else "first-last")
                lines.append(f"  {key:<22} {row['worst']:>12.3g} {row['failing']:>6}/{row['runs']:<6}  "
                             f"{steps:<11} {tuple(row['worst_index'])} in {row['worst_run']}")
            lines.append("  steps: " + "; ".join(STEPS_LEGEND[k] for k in STEPS_LEGEND if k in legend))
        good = [f"{k} {v['worst']:.2f}" for k, v in table.items() if not v["failing"]]
        if good:
            lines.append("  within budget (worst fraction): " + ", ".join(good))
        if failed:
            first = failed[0]
            lines.append(f"  first failing run: {first.label}")
            lines += [f"    {failure}" for failure in first.failures[:4]]
            if len(first.failures) > 4:
                lines.append(f"    ... {len(first.failures) - 4} more in this run "
                             "(all of them: this report's as_dict(), or snnref verify --impl ... --json FILE)")
            if first.traceback:
                lines.append("    where it raised (most recent call last):")
                lines += [f"    {line}" for line in first.traceback]
        lines += [f"  broken: {b}" for b in self.broken]
        if self.replay:
            lines.append(f"  replay: {self.replay}")
        unchecked = self.not_checked()
        if unchecked:
            lines.append("  not checked: " + "; ".join(unchecked))
        return "\n".join(lines)

    def failure_lines(self) -> List[str]:
        """One line per failing quantity: model, quantity, steps, worst fraction and where."""
        lines = []
        for key, row in self.quantities().items():
            if row["failing"]:
                steps = ("first at step {} (last {})".format(row["first_step"], row["last_step"])
                         if row["first_step"] is not None else "not located: within budget once the final state's "
                         "cotangent is off"
                         if row.get("passes_without_final_cotangent") else "summed over every step (no time axis)")
                lines.append(f"{self.model} {key}: worst {row['worst']:.3g} x budget in {row['failing']} of "
                             f"{row['runs']} runs; {steps}; worst at {tuple(row['worst_index'])} in "
                             f"{row['worst_run']}")
        lines += [f"{self.model} {b}" for b in self.broken]
        lines += [f"{r.label}: {f}" for r in self.runs for f in r.failures if not r.details
                  or f.startswith("crashed")]
        return lines

    def as_dict(self) -> dict:
        return {
            "model": self.model, "implementation": self.name, "contract": self.contract, "passed": self.passed,
            "worst": self.worst, "quantities": self.quantities(), "not_checked": self.not_checked(),
            "broken": self.broken, "saved": self.saved, "replay": self.replay,
            "runs": [{"label": r.label, "kind": r.kind, "seed": r.seed, "dtype": r.dtype, "passed": r.passed,
                      "worst": r.worst, "failures": r.failures, "unchecked": r.unchecked,
                      "details": r.details, "traceback": r.traceback} for r in self.runs],
        }


def _torch_dtype(name):
    import torch

    return getattr(torch, name)


def run_planned(impl: Implementation, planned, unchecked=(), broken=(), again=True) -> GateReport:
    """Every planned case in every declared dtype the model's parameters fit, then
    (``again``) the first once more on other values (the module docstring)."""
    from . import _equivalence as equivalence

    row = registry.model(impl.model)
    report = GateReport(row.key, impl.name, impl.summary(), unchecked=list(unchecked), broken=list(broken))
    adapted = _Adapted(impl)
    declared = impl.dtypes or ("float32", "float64")
    dtypes = [d for d in declared if equivalence.storable(row, _torch_dtype(d))]
    report.unchecked += [f"{d} (cannot store {row.key}'s parameters)" for d in declared if d not in dtypes]
    # Without declared dtypes the first case's float64 run finds out whether float64 is accepted;
    # it is also that run, compared like every other (an implementation's first call is checked too).
    probed = {}
    if impl.dtypes is None and planned and "float64" in dtypes:
        try:
            probed[0] = _run_one(impl, adapted, planned[0], "float64")
        except _Refused as refused:
            dtypes.remove("float64")
            report.unchecked.append(f"float64 (not accepted: {refused}; declare dtypes to silence this)")
    for index, item in enumerate(planned):
        for dtype in dtypes:
            if dtype == "float64" and index in probed:
                report.runs.append(probed.pop(index))
                continue
            report.runs.append(_run_or_crash(impl, adapted, item, dtype))
    if again and planned and dtypes:
        # After every other case: each earlier result must still hold its values (_Adapted).  Other
        # values of the first case's shapes, so that memory reused for them is written with something new.
        first = planned[0]
        again = replace(first, case=replace(first.case, x=-first.case.x[::-1]), reference=None, name="",
                        repeated=True)
        report.runs.append(_run_or_crash(impl, adapted, again, dtypes[0]))
    first = next((r for r in report.runs if not r.passed and r.details), None)
    if first is not None:
        _locate_sums(adapted, first)
    return report


class _Refused(Exception):
    """The implementation raised its own exception on a case: "Type: message", and
    ``frames``, the traceback's lines from the implementation's call on."""

    def __init__(self, error):
        super().__init__(f"{type(error).__name__}: {error}")
        # The leading frames are the gate's own and autograd's (the call, or the backward it asked
        # for), not the author's; the rest are, the adapters in snnref/testing/adapters too.
        frames = traceback.extract_tb(error.__traceback__)
        while frames and _callers_frame(frames[0].filename):
            frames.pop(0)
        self.frames = [line for text in traceback.format_list(frames) for line in text.rstrip("\n").split("\n")]


def _callers_frame(filename) -> bool:
    """Whether a traceback frame is the gate calling the implementation: its modules, or autograd's."""
    import torch.autograd

    here = Path(__file__).parent
    return Path(filename) in (here / "gate.py", here / "_equivalence.py") or \
        Path(filename).is_relative_to(Path(torch.autograd.__file__).parent)


def _run_or_crash(impl, adapted, item, dtype):
    try:
        return _run_one(impl, adapted, item, dtype)
    except _Refused as error:
        given = sorted(item.case.state) or "None"
        called = "" if item.fill_state else f" (called with the initial states {given} only)"
        # An implementation refusing a surrogate it does not have: the contract can leave it out (a
        # whole word: "sigmoid" is not named by "fast_sigmoid").
        key = _surrogate_key(item.case.surrogate)
        hint = f" (it names the surrogate {key!r}: if the implementation does not have it, declare " \
            "surrogates= with those it has)" if key and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", str(error)) else ""
        return Run(item.label(dtype), item.kind, item.seed, dtype, False,
                   failures=[f"crashed{called}: {error}{hint}"], worst=math.inf, planned=item, traceback=error.frames)


def _run_one(impl, adapted, item, dtype):
    """One planned case in one dtype, as a Run; the implementation's own exception
    raises ``_Refused`` (the caller decides: float64 not accepted, or a crash)."""
    from . import _equivalence as equivalence

    label = item.label(dtype)
    reference = item.reference if dtype in ("float32", "float64") else None
    try:
        outcome = equivalence.compare(item.case, "impl", _torch_dtype(dtype), reference=reference,
                                      implementation=adapted, contiguous=item.kind != "strided",
                                      fill_state=item.fill_state)
    except (equivalence.InputModified, equivalence.BrokenResult, ImplementationError, equivalence.NoBudget,
            equivalence.BeyondDtype) as error:
        # Broken contracts fail by name, whatever the dtype; a case without a budget or beyond the
        # dtype (a golden finite in float64 only) by its own name, never as the implementation's exception.
        failure = f"crashed: {type(error).__name__}: {error}" if isinstance(error, ImplementationError) else \
            str(error)
        return Run(label, item.kind, item.seed, dtype, False, failures=[failure], worst=math.inf, planned=item)
    except Exception as error:  # the implementation's own exception
        raise _Refused(error) from error
    # Quantities left out on purpose are listed once, by the contract, not as "not returned".
    declared = {f"grad:{name}" for name in impl.not_differentiated()}
    missing = [q for q in outcome.unchecked
               if q not in declared and not (q.startswith("grad:") and not impl.gradients)
               and not (q.startswith("grad:state.") and not impl.takes_state)]
    return Run(label, item.kind, item.seed, dtype, outcome.passed, outcome.details,
               _zero_gradient_hints(registry.model(impl.model), outcome) + outcome.failures, missing, _worst(outcome),
               item, outcome.traces)


def _zero_gradient_hints(row, outcome):
    """A failing parameter gradient that is all zeros: most likely the implementation does not
    differentiate the parameter; for one the seed does not train (qualia's alpha) the contract says so."""
    hints = []
    for p in row.params:
        key = f"grad:{p.name}"
        if not p.differentiable or key not in outcome.traces or np.any(outcome.traces[key]["impl"]):
            continue
        if p.trainable:
            hints.append(f"{key}: all zeros where the reference's is not: is {p.name} detached in the "
                         "implementation (.detach(), .item(), or copied into a constant)?")
        else:
            hints.append(f"{key}: all zeros, and {row.key} does not train {p.name}: if the implementation does "
                         f"not differentiate it, declare fixed=({p.name!r},)")
    # A carried state that is not differentiated is as common a bug (an outside user's: no hint named it).
    for var in row.state:
        key = f"grad:state.{var.name}"
        if key in outcome.traces and not np.any(outcome.traces[key]["impl"]):
            hints.append(f"{key}: all zeros where the reference's is not: is the initial state {var.name} detached "
                         "in the implementation (.detach(), or a new tensor made from its values)?")
    return hints


def _worst(outcome):
    """A run's worst fraction of the budget, where a pass is <= 1: a failure that is
    no error over a budget (a spike flip, a spike not 0 or 1) is infinitely far
    from passing, so that a FAIL never shows a worst below 1."""
    if outcome.passed:
        return outcome.worst
    return max(outcome.worst, max((float(d["fraction"]) for d in outcome.details.values() if d.get("failed")),
                                  default=math.inf))


def _locate_sums(adapted, run):
    """Equation (2): for each failing gradient without a time axis (a parameter's,
    an initial state's) in ``run``, the first step whose cotangents make it fail,
    by bisection over cotangents kept on steps 0..t only (final-state cotangents
    off).  ``None`` with ``passes_without_final_cotangent`` where it passes with
    the final-state cotangents off: either the error is in that cotangent's path,
    or an error on every path that its share makes large enough to fail (a
    budget is relative to the gradient's size, and both change)."""
    from . import _equivalence as equivalence

    case = run.planned.case
    keys = [k for k, d in run.details.items() if d["failed"] and d["first_step"] is None and k.startswith("grad:")]
    if not keys:
        return
    steps = case.x.shape[0]

    def failing(t):
        kept = {}
        for name, cot in case.cotangents.items():
            if name.startswith("final."):
                kept[name] = np.zeros_like(cot)
            else:
                mask = (np.arange(cot.shape[0]) <= t).reshape((-1,) + (1,) * (cot.ndim - 1))
                kept[name] = np.where(mask, cot, 0.0)
        outcome = equivalence.compare(replace(case, cotangents=kept), "impl", _torch_dtype(run.dtype),
                                      implementation=adapted, contiguous=run.kind != "strided",
                                      fill_state=run.planned.fill_state)
        return {k for k in keys if outcome.details.get(k, {}).get("failed")}

    failing = functools.lru_cache(maxsize=None)(failing)
    try:
        at_end = failing(steps - 1)
        for key in keys:
            detail = run.details[key]
            if key not in at_end:
                detail["passes_without_final_cotangent"] = True
                continue
            low, high = 0, steps - 1
            while low < high:
                middle = (low + high) // 2
                if key in failing(middle):
                    high = middle
                else:
                    low = middle + 1
            detail["first_step"] = detail["last_step"] = low
            detail["located_by"] = "cotangents on steps 0..t only"
    except Exception as error:
        # Locating only explains a run that has already failed: an implementation that
        # breaks on one of these further calls is said here, and the report stands.
        run.failures.append(f"the failing step was not located: a further call raised "
                            f"{type(error).__name__}: {error}")


def run(impl: Implementation, *, examples=8, seed=0, kinds=KINDS, golden_dir=None) -> GateReport:
    planned, unchecked, broken = plan(impl, examples=examples, seed=seed, kinds=kinds, golden_dir=golden_dir)
    return run_planned(impl, planned, unchecked, broken)


def save_failure(report: GateReport, directory, impl_spec=None, pythonpath=None) -> Optional[Path]:
    """Write the first failing run's case as an .npz (atomically) with the one-line
    command that replays it; returns the path (None when nothing failed)."""
    from .._files import write_atomically

    first = next((r for r in report.runs if not r.passed and r.planned is not None), None)
    if first is None:
        return None
    case = first.planned.case
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{case.model.replace('.', '_')}-{first.kind}-{first.seed}-{first.dtype}"
    path = directory / f"{stem}.npz"
    target = impl_spec or "MODULE:CALLABLE"
    # Where the implementation's module imports only from its own folder (a pytest test module).
    prefix = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""
    command = (f"{prefix}snnref verify --impl {shlex.quote(target)} --model {case.model} "
               f"--case {shlex.quote(str(path))}")
    meta = {"model": case.model, "surrogate": _surrogate_key(case.surrogate), "kind": first.kind,
            "seed": first.seed, "dtype": first.dtype, "label": first.label, "replay": command,
            "fill_state": first.planned.fill_state}
    arrays = {"in.x": case.x, "meta": np.array(json.dumps(meta))}
    for prefix, values in (("param.", case.params), ("state.", case.state), ("cot.", case.cotangents),
                           ("inject.", case.inject or {})):
        arrays.update({prefix + k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, buffer.getvalue())
    report.saved, report.replay = str(path), command
    return path


def load_case(path, impl: Implementation):
    """A case written by ``save_failure``, as (Planned, dtype)."""
    def refuse(why):
        return ValueError(f"--case: {path} is not a case written by --save-failures ({why})")

    try:
        data = read_regular_file(path)
    except OSError as error:
        raise refuse(f"{type(error).__name__}: {error}") from None
    if numpy_format(data) != ".npz":
        raise refuse("not a .npz archive: its first bytes are no zip archive's")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise refuse(f"{type(error).__name__}: {error}") from None
    if not isinstance(meta, dict):
        raise refuse("its meta is not a table")
    missing = [key for key in ("model", "surrogate", "kind", "seed", "dtype") if key not in meta] + (
        [] if "in.x" in arrays else ["in.x"])
    if missing:
        raise refuse(f"it lacks {', '.join(missing)}")
    if meta["model"] != impl.model:
        raise ValueError(f"--case: {path} is a case of {meta['model']}, not of {impl.model}")

    def part(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    # Read as a run's seed, kind and flag: "x" or "zzz" failed inside int() and tuple.index().
    if isinstance(meta["seed"], bool) or not isinstance(meta["seed"], int) or meta["seed"] < 0:
        raise refuse(f"its seed {meta['seed']!r} is no integer >= 0")
    if meta["kind"] not in KINDS:
        raise refuse(f"its kind {meta['kind']!r} is none of {', '.join(KINDS)}")
    if not isinstance(meta.get("fill_state", True), bool):
        raise refuse(f"its fill_state {meta['fill_state']!r} is not true or false")
    declared = {_surrogate_key(s): s for s in impl.surrogates}
    case = checks.Case(meta["model"], declared.get(meta["surrogate"], meta["surrogate"]), arrays["in.x"],
                       part("param."), part("state."), part("cot."), part("inject.") or None, label=meta["kind"])
    from . import _golden as store

    # Inputs the spec refuses (an unknown surrogate or parameter, an inf x) are the file's fault: before,
    # the implementation was reported as having crashed on them.
    refused = store.argument_error(case)
    if refused is not None:
        raise refuse(f"the spec refuses its inputs: {refused}")
    # A case saved before fill_state existed gave every state (the out_sum case's too).
    return Planned(case, meta["kind"], int(meta["seed"]), fill_state=bool(meta.get("fill_state", True))), meta["dtype"]
