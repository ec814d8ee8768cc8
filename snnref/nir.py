"""NIR interchange: registry models to NIR 1.0 graphs and back, and a reference runner.

A NIR neuron node (SPEC.md section 9) is a continuous-time ODE driven by Dirac
pulses ``S(t) = sum_k q_k delta(t - t_k)``; snnref's discrete models read
``x[k]`` as the pulse ``q_k`` at ``t_k = k dt`` and record the state at ``t_k``.

(1) LI, LIF:        tau dv/dt = (v_leak - v) + R I;  a pulse q raises v by R q / tau
(2) I, IF:          dv/dt = R I;                     a pulse q raises v by R q
(3) CubaLI, CubaLIF: tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = (v_leak - v) + R I;
                    a pulse q raises I by w_in q / tau_syn
(4) LIF, IF, CubaLIF: a spike z, then v <- v_reset;  Threshold: z = [v > threshold].
    The discrete methods ('exp', 'euler') fire at a step where z = [v > v_threshold]
    (NIR's test); 'exact' (snnref.continuous, SPEC.md section 9) fires at the instant
    v *reaches* v_threshold.  They differ only where v lands exactly on v_threshold
    (a pulse that jumps v onto it): 'exact' fires there and resets, 'exp' and
    'euler' do not.  It is the difference between tether's >= and NIR's > of SPEC.md
    section 9's table; a membrane that only approaches v_threshold (v_leak =
    v_threshold) fires under no method.

Between two pulses (1) relaxes to v_leak, so on the grid, with w = v - v_leak,

(5) w[k] = lam w+[k-1] + g q_k,   lam = exp(-dt / tau),  g = R / tau   (I, IF: lam = 1, g = R)

which is the discrete LIF family exactly at every dt (a crossing can only happen
at a pulse).  The CUBA nodes are run by hxtorch's forward Euler, whose current
``i = R I`` (the model's; a trace's ``outputs["i"]`` is NIR's I, i / R) jumps by

(6) g q_k,   g = R w_in / tau_syn,   a = dt / tau_mem,  b = dt / tau_syn.

Export inverts these with R chosen so that the gain is exactly 1 (``r / tau`` and
``tau_syn / tau_syn`` are exactly 1.0 in floating point):

(7)  tether.LIF, PLIF:   tau = -dt / log(decay), R = tau, v_leak = v_reset = 0
(8)  rnnbuilder.*:       tau = tau_steps dt, R = tau, v_leak = 0 (LIF v_reset = 0, Threshold 1)
(9)  qualia.*:           IF with R = 1, v_reset = 0
(10) hxtorch.cuba_*:     R = 1, w_in = tau_syn, v_leak = leak, v_reset = reset

(11) The spike tests.  On float64 values ``[w >= theta] = [w > prev(theta)]`` with
     ``prev(theta)`` the largest float64 below theta, so a ``>=`` model exports
     ``v_threshold = prev(theta)`` and a NIR ``>`` node runs on a ``>=`` model
     with ``theta = next(v_threshold)``: the same decisions, bit for bit.  A
     consumer that rounds ``v_threshold`` to float32 gets theta back and fires
     with ``>`` instead: that is why ``>=`` is still refused unless ``lossy``.

NIR has no CubaIF node, but an edge carries a node's output into the next
node's input current, so an LI (v_leak = 0) driving a neuron node X is X's
synaptic current:

(12) LI(tau_s, R_s, 0) -> LIF / LI / IF  =  CubaLIF / CubaLI / CubaIF with tau_syn = tau_s,
     w_in = R_s, and for IF: tau_mem = 1 / R_IF, R = 1 (dv/dt = R_IF I)
     hxtorch.cuba_iaf exports as LI(tau_syn, R = tau_syn, 0) -> IF(R = 1/tau_mem, threshold, reset).

Exact float64 round trips.  (7) and (8) are not exactly invertible in floating
point (``exp(-dt / (-dt / log(d)))`` differs from ``d`` by an ulp for about 0.5 %
of d in [0.5, 0.98], and for 40 % of d below 0.5, where one ulp of tau moves d by
several).  Every exported neuron node therefore carries its discrete preimage
in ``metadata["snnref"]`` (model key, dt, parameters, extensions).  ``load``
uses it only when exporting it again reproduces every field of the node
bit for bit (so an edited graph falls back to (5)-(6)); it picks, among the
float64 values that map to the node, the one the exporter started from.  The
other way, NIR -> load -> export returns every field exactly except tau through
a decay: a float64 decay resolves tau only to about eps tau / dt relative
(1e-12 needs tau / dt below about 4500; the model itself cannot tell finer
taus apart).  That is for a node the registry model runs as it is: input gain
1 (r = tau, r w_in = tau_syn; IF's r = 1), a rest of 0 (LI's and LIF's v_leak,
IF's v_reset), a CUBA node's r = 1.  Any other such node runs with its gain, rest and current scale
applied outside the model, and ``Network.params`` refuses it.

Methods of ``load``: "exp" runs LI, LIF, IF by (5) (exact on the grid for pulse
input), "euler" runs the CUBA nodes by (6) (and IF, where both agree), "exact"
runs ``snnref.continuous`` on the same pulses; every result states its
discretization.  All three fire as (4) says (strictly above v_threshold on the
grid, at v_threshold in continuous time).  Their outputs mean the same under every
method: ``v`` is a node's membrane at t_k after the step's pulse and any reset
(NIR's state; a registry model that records the membrane before its reset, tether,
has it replaced by v_reset at its spike steps, exactly), ``i`` a CUBA node's
synaptic current I, ``out`` its output (spikes, or an LI's membrane).

A Flatten node passes its values on as they are: snnref runs flat layers, and
the Flatten's width is the product of its input shape, checked as an Input's.

Checked at ``load``, before anything runs, each by node and field: every field
holds finite numbers (a neuron node's fields are vectors of one shape (N,), N >= 1, w_in
may be a scalar; a Linear or Affine weight is a matrix, its bias one value per
row, and 0: NIR's bias is a constant current, which a pulse per step cannot
stand for at every dt); time constants are positive; an IF driven by an LI synapse has r > 0
(tau_mem = 1/r, (12)); the snnref extensions are well formed, and a refractory
time comes only with the hard reset (SPEC.md section 9 holds v at v_reset).
Method "exact" also needs what snnref.continuous needs: time constants of at least
the smallest normal float64 (an IF's 1/r where an LI synapse drives it), a node that starts below
v_threshold (its rest value v_leak, or v_reset for IF, or the recorded initial
state: a spike is the threshold reached from below, so a tonic LIF at rest above
threshold is refused, by the node and field), v_reset < v_threshold for the
hard reset (else it fires again at once, without end) and v_threshold > 0 for
the subtractive one.  While a graph runs, a pulse whose jump (r/tau x, r x,
w_in/tau_syn x) or a state that overflows float64 is refused by node (and field),
and so are, as they depend on x's batch, a recorded initial state that does not
broadcast to it and (method "exact") one that reaches v_threshold within dt of
the first step without input.

What NIR cannot say (no node field) is refused unless ``lossy=True``: subtractive
reset, refractory time, the ``>=`` test, an output scaled by the threshold
(qualia.ATIF), an initial state other than rest (v = v_leak, or v_reset for
IF, I = 0).  ``lossy=True`` writes the closest NIR graph, records each dropped
property in ``graph.metadata["snnref_dropped"]`` ({property: reason}) and returns them
as a list of "property: reason" strings; the
node's snnref metadata keeps the values, which ``load(..., extensions=True)``
honours.  A recorded initial state is the discrete model's state before step 0,
at t = -dt: method "exact" lets it flow for dt without input to t = 0, as the
discrete step 0 decays it once before adding x[0].  Loading reads HDF5 numbers and strings only: it never unpickles or
imports anything named in the file.

``native_method(model)`` is the method under which a model's exported graph
runs as the model itself, (5) or (6).  What checks a run against these
semantics (the round trip of ``snnref verify``, ``compare`` and the ``snnref
nir`` command) is verification and lives in ``snnref.testing.nir``; the old
names ``snnref.nir.round_trip``, ``compare``, ``add_parser`` and ``main_nir``
still resolve to it, with a DeprecationWarning.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from . import arguments, registry
from ._files import check_output_file, check_regular_file, replacing
from .spec import api as _spec
from .trace import ArraysByName

try:
    import nir
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError("snnref.nir needs the NIR package: pip install 'snnref[nir]'") from _missing


class NirError(ValueError):
    """A graph, model or argument snnref cannot convert; the message names the node and field."""


def _warn(message):
    """A UserWarning attributed to the caller's first line outside this module (``load``, ``read`` and
    ``Network`` reach the same checks at different depths; a fixed stacklevel named a line in here)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


METHODS = ("exact", "euler", "exp")
# The section-9 nodes that fire (a Threshold after an LI fires too: ``_Unit.threshold``).
SPIKING_KINDS = ("LIF", "IF", "CubaLIF", "CubaIF")
_NEURONS = ("LI", "LIF", "I", "IF", "CubaLI", "CubaLIF")
_FIELDS = {  # required fields; v_reset and w_in have NIR defaults
    "Input": ("shape",), "Output": ("shape",), "Affine": ("weight", "bias"), "Linear": ("weight",),
    "Threshold": ("threshold",), "I": ("r",), "IF": ("r", "v_threshold"), "LI": ("tau", "r", "v_leak"),
    "LIF": ("tau", "r", "v_leak", "v_threshold"), "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"), "Flatten": ("input_type",),
}
_OPTIONAL = {"IF": ("v_reset",), "LIF": ("v_reset",), "CubaLI": ("w_in",), "CubaLIF": ("v_reset", "w_in"),
             "Flatten": ("start_dim", "end_dim")}
# The nodes without numeric fields, each described by a shape: the values that pass through a Flatten
# are the same flat vector (snnref runs flat layers), its width the product of its input shape.
_SHAPED = ("Input", "Output", "Flatten")
_POSITIVE = ("tau", "tau_syn", "tau_mem")
# The registry models ``export`` writes a graph for, (7)-(10), each with the ``load`` methods under
# which that graph runs as the model itself, bit for bit: "exp" by (5), "euler" by (6).  A model
# not listed (a row added to the registry without a mapping here) is refused by name.
_NATIVE_METHODS = {
    "tether.LIF": ("exp",), "tether.PLIF": ("exp",),
    "rnnbuilder.NoReset": ("exp",), "rnnbuilder.LIF": ("exp",),
    "qualia.IFSRL": ("exp", "euler"), "qualia.ATIF": ("exp", "euler"),
    **dict.fromkeys(("hxtorch.cuba_lif", "hxtorch.cuba_refractory_lif", "hxtorch.cuba_li", "hxtorch.cuba_iaf",
                     "hxtorch.cuba_refractory_iaf"), ("euler",)),
}
# Why the others have none.
_NO_COUNTERPART = {
    "tether.ALIF": "adaptation (a threshold that moves with past spikes)",
    "tether.SpikingSelfAttention": "attention (products of spike trains)",
    "rnnbuilder.Cooldown": "spikes decided from the previous state and an exp(x) drive",
    "rnnbuilder.Adaptive": "adaptation (a threshold that moves with past spikes)",
    "rnnbuilder.Discontinuous": "a stateless threshold of the raw input (SPEC.md section 9: none)",
}


def _prev(value):
    return np.nextafter(value, -np.inf)


def _next(value):
    return np.nextafter(value, np.inf)


def _check_dt(dt):
    if dt is None:
        raise NirError("dt: required: the seconds per time step of the discrete model")
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)) \
            or not math.isfinite(dt) or dt <= 0:
        raise NirError(f"dt: expected a positive finite number of seconds, got {dt!r}")
    return float(dt)


# ---------------------------------------------------------------- export ----

def _neuron_count(row, params, state, neurons):
    sizes = {np.shape(v)[-1] for v in list((params or {}).values()) + list((state or {}).values())
             if np.ndim(v) >= 1 and np.shape(v)[-1] != 1}
    if neurons is not None:
        if isinstance(neurons, bool) or not isinstance(neurons, (int, np.integer)) or neurons < 1:
            raise NirError(f"neurons: expected a positive integer, got {neurons!r}")
        sizes.add(int(neurons))
    if len(sizes) > 1:
        raise NirError(f"neurons: parameters and state disagree on the layer width: {sorted(sizes)}")
    if not sizes:
        raise NirError(f"neurons: {row.key} with scalar parameters: pass neurons=N, the layer width")
    return sizes.pop()


def _full(value, n):
    return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))


def _nodes_for(key, p, dt, n):
    """The NIR node(s) of one registry model (7)-(10), the dropped properties and the extensions."""
    zeros = np.zeros(n)
    dropped, ext = {}, {}
    row = registry.MODELS[key]
    if key in ("tether.LIF", "tether.PLIF"):
        decay, theta = _full(p["decay"], n), _prev(_full(p["threshold"], n))
        if np.all(decay == 1):  # no leak: (5) with lam = 1 is IF with R = 1
            nodes = [("if", nir.IF(r=np.ones(n), v_threshold=theta, v_reset=zeros))]
        elif np.all((decay > 0) & (decay < 1)):
            tau = -dt / np.log(decay)  # (7)
            nodes = [("lif", nir.LIF(tau=tau, r=tau.copy(), v_leak=zeros, v_threshold=theta, v_reset=zeros.copy()))]
        else:
            raise NirError(f"params['decay']: NIR's LIF needs 0 < decay < 1 (tau = -dt/log(decay) > 0), or decay 1 "
                           f"for every neuron (IF); got {decay!r}")
    elif key in ("rnnbuilder.NoReset", "rnnbuilder.LIF"):
        tau = _full(p["tau"], n) * dt  # (8)
        if key == "rnnbuilder.NoReset":
            nodes = [("li", nir.LI(tau=tau, r=tau.copy(), v_leak=zeros)), ("threshold", nir.Threshold(np.ones(n)))]
        else:
            nodes = [("lif", nir.LIF(tau=tau, r=tau.copy(), v_leak=zeros, v_threshold=np.ones(n),
                                     v_reset=zeros.copy()))]
    elif key in ("qualia.IFSRL", "qualia.ATIF"):
        nodes = [("if", nir.IF(r=np.ones(n), v_threshold=_prev(_full(p["threshold"], n)), v_reset=zeros))]  # (9)
        if key == "qualia.ATIF":
            dropped["output"] = "qualia.ATIF outputs spikes * threshold; NIR's IF outputs spikes"
            ext["output"] = "spikes*threshold"
    else:  # (10)
        tau_syn, tau_mem = _full(p["tau_syn"], n), _full(p["tau_mem"], n)
        common = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=np.ones(n), v_leak=_full(p.get("leak", 0.0), n),
                      w_in=tau_syn.copy())
        if key == "hxtorch.cuba_li":
            nodes = [("cuba_li", nir.CubaLI(**common))]
        elif key in ("hxtorch.cuba_iaf", "hxtorch.cuba_refractory_iaf"):  # (12): no NIR CubaIF node
            nodes = [("synapse", nir.LI(tau=tau_syn, r=tau_syn.copy(), v_leak=zeros)),
                     ("if", nir.IF(r=1 / tau_mem, v_threshold=_full(p["threshold"], n), v_reset=_full(p["reset"], n)))]
        else:
            nodes = [("cuba_lif", nir.CubaLIF(v_threshold=_full(p["threshold"], n), v_reset=_full(p["reset"], n),
                                              **common))]
        if row.refractory:
            dropped["refractory_time"] = "NIR's neuron nodes have no refractory period"
            ext["tau_ref"] = np.asarray(p["refractory_time"], dtype=np.float64)
    if row.spike_test == ">=":
        dropped["spike_test"] = ("fires at v >= threshold; NIR fires at v > v_threshold, written as the float64 "
                                 "below threshold (the same test on float64 membranes, not on float32 ones)")
    if row.reset.kind is registry.ResetKind.SUBTRACT:
        dropped["reset"] = "subtracts the threshold at a spike; NIR resets to v_reset"
        ext["reset"] = "subtract"
    return nodes, dropped, ext


def _storable(value):
    """Metadata that ``nir.write`` can store: HDF5 keeps no compressed 0-d arrays, so scalars become floats."""
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, str):
        return value
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array


# export takes no allow_nonfinite: a non-finite parameter's message must not suggest it.
_EXPORT_NAMES = arguments.Names(allow_nonfinite=False)


def _default_state(row, p, shape):
    return {var.name: np.broadcast_to(np.asarray(p[var.initial] if isinstance(var.initial, str) else var.initial,
                                                 dtype=np.float64), shape) for var in row.state}


def export(model, params=None, *, dt=None, state=None, lossy=False, neurons=None):
    """The NIR graph ``Input -> neuron node(s) -> Output`` of registry ``model``.

    Parameters convert by (7)-(10) at ``dt`` seconds per step; ``neurons`` is the
    layer width, needed only when every parameter is a scalar.  A property NIR
    cannot say raises ``NirError`` naming it; with ``lossy=True`` the return value
    is ``(graph, dropped)``, ``dropped`` a list of ``"property: reason"`` strings
    (empty when nothing was dropped); ``graph.metadata["snnref_dropped"]`` holds
    the same as a {property: reason} table (absent when nothing was dropped).
    """
    dt = _check_dt(dt)
    # A string such as "no" is truthy: it would have returned (graph, dropped) and dropped properties.
    arguments.check_flags(lossy=lossy)
    row = registry.model(model)
    key = row.key
    if not exportable(key):
        raise NirError(f"{key}: no NIR counterpart ({_no_counterpart(key)}); exportable models: "
                       f"{', '.join(_NATIVE_METHODS)}")
    given = dict(arguments.mapping("params", params, "parameter name -> value"))
    if any(p.name == "dt" for p in row.params):
        if "dt" in given and not np.all(np.asarray(given["dt"]) == dt):
            raise NirError(f"params['dt']: the model's step is {given['dt']!r} s but dt={dt!r}")
        given["dt"] = dt
    n = _neuron_count(row, given, state, neurons)
    try:
        p = arguments.check_params(row, given, n, arguments.NumpyArrays(np.float64), allow_nonfinite=False,
                                   names=_EXPORT_NAMES)
        nodes, dropped, ext = _nodes_for(key, p, dt, n)
    except MemoryError:
        # neurons=10**12 failed inside NumPy ("Unable to allocate 7.28 TiB").
        raise NirError(f"neurons: {n} neurons' parameters do not fit in this machine's memory") from None
    if state is not None:
        state = arguments.mapping("state", state, "state variable -> array")
        arguments.check_state_names(row, state)
        values = {k: arguments.real_array(f"state[{k!r}]", v).astype(np.float64) for k, v in state.items()}
        for k, value in values.items():
            if not np.all(np.isfinite(value)):
                raise NirError(f"state[{k!r}]: expected finite values, found NaN or inf (the graph would carry "
                               f"them as the recorded initial state)")
        try:
            shape = np.broadcast_shapes((n,), *(v.shape for v in values.values()))
        except ValueError:
            raise NirError(f"state: expected shapes that broadcast to (..., {n}) (the layer width last), got "
                           + ", ".join(f"{k} {v.shape}" for k, v in values.items())) from None
        given_state = {k: np.array(np.broadcast_to(v, shape)) for k, v in values.items()}
        rest = _default_state(row, p, shape)
        if any(not np.array_equal(given_state[k], rest[k]) for k in given_state):
            dropped["initial_state"] = "NIR has no initial state; nodes start at rest (v_leak, or v_reset for IF)"
            ext["initial_state"] = {k: given_state.get(k, np.array(rest[k])) for k in rest}
    if dropped and not lossy:
        raise NirError(f"{key} cannot be exported to NIR without loss: "
                       + "; ".join(f"{k}: {v}" for k, v in dropped.items())
                       + " (pass lossy=True to drop these and record them in the graph's metadata)")
    nodes[0][1].metadata = {"snnref": _storable({"model": key, "dt": dt, "params": dict(p), "extensions": ext})}
    chain = [("input", nir.Input(np.array([n])))] + nodes + [("output", nir.Output(np.array([n])))]
    edges = [(a, b) for (a, _), (b, _) in zip(chain, chain[1:])]
    metadata = {"snnref_dropped": dict(dropped)} if dropped else {}
    graph = nir.NIRGraph(nodes=dict(chain), edges=edges, metadata=metadata, type_check=True)
    return (graph, [f"{k}: {v}" for k, v in dropped.items()]) if lossy else graph


# ---------------------------------------------------------- reading files ----

def _h5_tree(group, where):
    import h5py

    tree = {}
    for name in group:
        # A NIR file holds its values: a link to another file (or inside this one) was followed
        # silently, read another file's numbers, and hung on a FIFO.
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise NirError(f"{where}/{name}: an HDF5 {type(link).__name__} to another object or file; a NIR file "
                           "holds its values itself")
        item = group[name]
        if isinstance(item, h5py.Group):
            tree[name] = _h5_tree(item, f"{where}/{name}")
        elif item.dtype.kind in "biuf":
            tree[name] = item[()]
        elif item.dtype.kind == "S" or h5py.check_string_dtype(item.dtype) is not None:
            value = item[()]
            tree[name] = value.decode("utf8") if isinstance(value, bytes) else value
        else:  # references, compound or opaque data have no place in a NIR graph
            raise NirError(f"{where}/{name}: unexpected HDF5 data of dtype {item.dtype}")
    return tree


def _node_from_tree(name, tree):
    kind = tree.get("type")
    kind = kind.decode("utf8") if isinstance(kind, bytes) else kind
    if kind not in _FIELDS:
        raise NirError(f"node {name!r}: node type {kind!r} is not supported; snnref runs chains of "
                       f"{', '.join(_FIELDS)}")
    for field_name in _FIELDS[kind]:
        if field_name not in tree:
            raise NirError(f"node {name!r} ({kind}): missing field {field_name!r}")
    # A dataset NIR does not define for this node type (a newer NIR's field, another tool's extension,
    # a field of another node type) changes nothing here: say so, rather than run without it unnoticed.
    unknown = sorted(set(tree) - set(_FIELDS[kind] + _OPTIONAL.get(kind, ())) - {"type", "metadata"})
    if unknown:
        _warn(f"node {name!r} ({kind}): {', '.join(map(repr, unknown))} "
              f"{'is not a field' if len(unknown) == 1 else 'are not fields'} of NIR's {kind}; ignored")
    metadata = tree.get("metadata", {})
    if kind == "Flatten":
        return _flatten_from_tree(name, tree, metadata)
    values = {k: np.asarray(tree[k]) for k in _FIELDS[kind] + _OPTIONAL.get(kind, ()) if k in tree}
    if kind in ("Input", "Output"):
        shape = values["shape"]
        return (nir.Input if kind == "Input" else nir.Output)(np.asarray(shape), metadata=metadata)
    _check_fields(name, kind, values)
    cls = {"Affine": nir.Affine, "Linear": nir.Linear, "Threshold": nir.Threshold, "I": nir.I, "IF": nir.IF,
           "LI": nir.LI, "LIF": nir.LIF, "CubaLI": nir.CubaLI, "CubaLIF": nir.CubaLIF}[kind]
    try:
        return cls(**values, metadata=metadata)
    except (AssertionError, ValueError, TypeError) as error:
        raise NirError(f"node {name!r} ({kind}): {error}") from None


def _flatten_from_tree(name, tree, metadata):
    """A Flatten node from a file: its input type is the shape itself, or a group holding it as 'input'."""
    shape = tree["input_type"]
    shape = shape.get("input") if isinstance(shape, dict) else shape
    _type_width(f"node {name!r} (Flatten): field 'input_type'", shape)
    dims = {}
    for key in ("start_dim", "end_dim"):
        if key in tree:
            value = np.asarray(tree[key])
            if value.ndim or value.dtype.kind not in "iu":
                raise NirError(f"node {name!r} (Flatten): field {key!r} must be a whole number, got {value!r}")
            dims[key] = int(value)
    try:
        return nir.Flatten({"input": np.asarray(shape)}, **dims, metadata=metadata)
    except (IndexError, ValueError, TypeError) as error:
        raise NirError(f"node {name!r} (Flatten): {error}") from None


def read(path):
    """A NIR graph from an HDF5 ``.nir`` file, reading numbers and strings only."""
    import h5py

    _check_path(path)
    try:
        # A FIFO hung h5py's open.
        check_regular_file("path", path)
    except ValueError as error:
        raise NirError(str(error)) from None
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise NirError(f"{path}: not a NIR file (cannot open it as HDF5: {error})") from None
    with handle:
        if "node" not in handle or not isinstance(handle["node"], h5py.Group):
            raise NirError(f"{path}: not a NIR file (no 'node' group)")
        tree = _h5_tree(handle["node"], "node")
    if tree.get("type") != "NIRGraph":
        raise NirError(f"{path}: not a NIR graph (the root node is {tree.get('type')!r}, expected 'NIRGraph')")
    missing = [part for part, present in (("nodes", isinstance(tree.get("nodes"), dict)),
                                          ("edges", "edges" in tree)) if not present]
    if missing:
        raise NirError(f"{path}: not a NIR graph (its NIRGraph has no {' and no '.join(missing)})")
    nodes = {name: _node_from_tree(name, sub) for name, sub in tree["nodes"].items()}
    pairs = np.asarray(tree["edges"])
    if pairs.size % 2 or pairs.ndim > 2 or (pairs.ndim == 2 and pairs.shape[1] != 2):
        raise NirError(f"{path}: field 'edges' must hold pairs of node names (shape (E, 2)), got shape {pairs.shape}")
    edges = [tuple(e.decode("utf8") if isinstance(e, bytes) else str(e) for e in pair) for pair in pairs.reshape(-1, 2)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=tree.get("metadata", {}), type_check=False)


def _check_path(path):
    """A file name; None or a number failed inside os or h5py without naming the argument."""
    if not isinstance(path, (str, os.PathLike)):
        raise NirError(f"path: expected the path of a .nir file (str or os.PathLike), got {type(path).__name__}")


def save(graph, path):
    """``nir.write`` to a temporary file beside ``path``, renamed into place."""
    # A graph of another type failed inside nir.write ("'NoneType' object has no attribute 'to_dict'").
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"graph: expected a nir.NIRGraph, got {type(graph).__name__}")
    _check_path(path)
    # A directory or a missing one is named as ``path`` before anything is written (else the
    # error named the temporary file).
    check_output_file("path", path)
    with replacing(path) as temporary:
        nir.write(temporary, graph)


# ------------------------------------------------------- graph structure ----

def _check_fields(name, kind, values):
    """The fields of one node (not Input or Output), before anything runs: numbers, finite, shapes, and
    positive time constants.  A neuron node's fields are vectors of one shape (N,) (w_in may be a
    scalar; a scalar field is one neuron), a Threshold's a vector or a scalar, a Linear or Affine
    weight a matrix with one bias value per row."""
    arrays = {}
    for key, value in values.items():
        try:
            array = np.asarray(value)
        except ValueError:  # a ragged sequence
            array = np.asarray(None)
        if array.dtype.kind not in "iuf":
            raise NirError(f"node {name!r} ({kind}): field {key!r} must hold numbers, got {type(value).__name__} "
                           f"of dtype {array.dtype}")
        arrays[key] = array.astype(np.float64)
    if kind in ("Affine", "Linear"):
        weight = arrays["weight"]
        if weight.ndim != 2:
            raise NirError(f"node {name!r} ({kind}): field 'weight' must be a matrix, got shape {weight.shape}")
        if kind == "Affine" and arrays["bias"].shape != weight.shape[:1]:
            raise NirError(f"node {name!r} (Affine): field 'bias' has shape {arrays['bias'].shape}, expected "
                           f"{weight.shape[:1]} (the weight's rows)")
    else:
        shapes = {k: a.shape for k, a in arrays.items() if not (k == "w_in" and a.ndim == 0)}
        first = next(iter(shapes))
        if 0 in shapes[first]:  # a layer of no neurons: nothing to run, and 'exact' failed inside a reshape
            raise NirError(f"node {name!r} ({kind}): field {first!r} has shape {shapes[first]}; expected at "
                           f"least one neuron")
        for key, shape in shapes.items():
            if shape != shapes[first]:
                raise NirError(f"node {name!r} ({kind}): field {key!r} has shape {shape}, but {first!r} has "
                               f"{shapes[first]}")
        if len(shapes[first]) > 1:
            raise NirError(f"node {name!r} ({kind}): field {first!r} has shape {shapes[first]}; snnref runs flat "
                           f"layers, one vector of shape (N,) per field (flatten the layer to "
                           f"({int(np.prod(shapes[first]))},))")
    for key, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise NirError(f"node {name!r} ({kind}): field {key!r} must be finite, found NaN or inf")
        if key in _POSITIVE and not np.all(array > 0):
            raise NirError(f"node {name!r} ({kind}): field {key!r} must be positive, got {array.min()!r}")


def _raw_fields(name, node):
    """A node's numeric fields as the graph holds them (not Input or Output); a required one must be set."""
    kind = type(node).__name__
    values = {}
    for key in _FIELDS[kind] + _OPTIONAL.get(kind, ()):
        value = getattr(node, key, None)
        if value is None and key in _FIELDS[kind]:
            raise NirError(f"node {name!r} ({kind}): missing field {key!r}")
        if value is not None:
            values[key] = value
    return values


def _node_fields(node):
    """The numeric fields of a checked node (``_check_fields``) as float64 arrays."""
    kind = type(node).__name__
    names = _FIELDS.get(kind, ()) + _OPTIONAL.get(kind, ())
    return {k: np.asarray(getattr(node, k), dtype=np.float64)
            for k in names if k != "shape" and getattr(node, k, None) is not None}


def _type_width(label, shape):
    """The width of a NIR type's ``shape``, which ``label`` names where it is not positive whole numbers."""
    shape = np.asarray(shape)
    # A shape of 2.5 read as int(prod) would be a width of 2; one of -2 "gave -2 values", and one of
    # 0 ran no neuron (method 'exact' failed inside a reshape).
    if shape.dtype.kind not in "iu" and not (shape.dtype.kind == "f" and np.all(shape == np.round(shape))):
        raise NirError(f"{label}: expected a shape of whole numbers, got {shape.tolist()}")
    if np.any(shape < 1):
        raise NirError(f"{label}: expected a shape of positive whole numbers (each axis at least 1), "
                       f"got {shape.tolist()}")
    return int(np.prod(shape))


def _in_out(name, node):
    """The input and output widths of a checked node (a NIR type is a shape; snnref runs flat layers)."""
    kind = type(node).__name__
    if kind in _SHAPED:
        typed = node.output_type["output"] if kind == "Output" else node.input_type["input"]
        width = _type_width(f"node {name!r} (Flatten): field 'input_type'" if kind == "Flatten" else f"{kind} node",
                            typed)
        return width, width
    if kind in ("Affine", "Linear"):
        rows, columns = np.shape(node.weight)
        return columns, rows
    width = int(np.prod(np.shape(next(iter(_node_fields(node).values())))))
    return width, width


def _refuse_cycles(graph):
    """A recurrent graph is refused by a node on its cycle (snnref.continuous runs feed-forward chains)."""
    successors = {name: [b for a, b in graph.edges if a == name] for name in graph.nodes}
    state = dict.fromkeys(graph.nodes, "new")
    for start in graph.nodes:
        stack = [(start, iter(successors[start]))] if state[start] == "new" else []
        state[start] = "open" if stack else state[start]
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[name] = "done"
                stack.pop()
            elif state[child] == "open":
                raise NirError(f"node {child!r}: the graph has a cycle through it (recurrent graphs are not "
                               f"supported: snnref runs feed-forward chains)")
            elif state[child] == "new":
                state[child] = "open"
                stack.append((child, iter(successors[child])))


def _chain(graph):
    """The nodes from the Input to the Output, checked: one path, no cycle, widths agree along every edge."""
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"graph: expected a nir.NIRGraph or the path of a .nir file, got {type(graph).__name__}")
    for name, node in graph.nodes.items():
        if type(node).__name__ not in _FIELDS:
            raise NirError(f"node {name!r}: node type {type(node).__name__!r} is not supported; snnref runs "
                           f"chains of {', '.join(_FIELDS)}")
        if type(node).__name__ not in _SHAPED:
            _check_fields(name, type(node).__name__, _raw_fields(name, node))
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise NirError(f"edge ({a!r}, {b!r}): no node named {end!r}")
    _refuse_cycles(graph)
    following = {}
    for a, b in graph.edges:
        if a in following:
            raise NirError(f"node {a!r}: more than one outgoing edge ({following[a]!r}, {b!r}); snnref runs chains")
        following[a] = b
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise NirError(f"graph: expected exactly one Input node, found {inputs}")
    order, seen = [inputs[0]], {inputs[0]}
    while order[-1] in following:
        nxt = following[order[-1]]
        order.append(nxt)
        seen.add(nxt)
    if not isinstance(graph.nodes[order[-1]], nir.Output):
        raise NirError(f"node {order[-1]!r}: the chain from the Input ends here, not at an Output node")
    stray = [k for k in graph.nodes if k not in seen]
    if stray:
        raise NirError(f"node {stray[0]!r}: not on the chain from the Input to the Output (snnref runs chains)")
    for a, b in zip(order, order[1:]):
        out_a, in_b = _in_out(a, graph.nodes[a])[1], _in_out(b, graph.nodes[b])[0]
        if out_a != in_b:
            raise NirError(f"edge ({a!r}, {b!r}): {a!r} gives {out_a} values but {b!r} takes {in_b}"
                           + _scalar_hint(b, graph.nodes[b], out_a) + _scalar_hint(a, graph.nodes[a], in_b))
    return [(k, graph.nodes[k]) for k in order]


def _scalar_hint(name, node, width):
    """Why a neuron node of scalar fields takes one value: some exporters (Norse, snnTorch with a scalar
    beta) write one value for a whole layer, which NIR types as a node of shape () and snnref reads as
    one neuron; the bare width mismatch did not say so."""
    fields = _node_fields(node) if type(node).__name__ not in _SHAPED + ("Affine", "Linear") else {}
    if not fields or any(np.ndim(value) for value in fields.values()):
        return ""
    return (f" ({name!r} holds scalar fields, which are one neuron, as NIR types the node; for a layer of "
            f"{width}, give each field shape ({width},))")


# ------------------------------------------------------------------- load ----

@dataclass
class _Unit:
    """What one discrete registry model or one continuous node runs: a neuron node, an LI with the
    Threshold that follows it, or an LI synapse merged with the neuron node it drives (12).

    ``nodes``: its (name, node) pairs in graph order; ``kind``: the section-9 node that runs it
    (a merged synapse makes CubaLI, CubaLIF or CubaIF)."""

    nodes: list
    kind: str
    fields: Dict[str, np.ndarray]
    before: List[tuple] = field(default_factory=list)  # (name, weight, bias or None)

    @property
    def node(self):
        """The first node, which carries snnref's export metadata."""
        return self.nodes[0][1]

    @property
    def name(self):
        """The node whose state is the membrane: the LI before a Threshold, else the last node."""
        return self.nodes[0][0] if self.threshold is not None else self.nodes[-1][0]

    @property
    def node_kind(self):
        """The NIR type of the node ``name``."""
        return type(dict(self.nodes)[self.name]).__name__

    def owner(self, key):
        """The node an output belongs to: 'out' (and the spikes) to the last node, 'i' to the first (an LI
        synapse is the current of the node it drives), the membrane's other records to ``name``."""
        if key == "out":
            return self.nodes[-1][0]
        return self.nodes[0][0] if key == "i" else self.name

    @property
    def threshold(self):
        last = self.nodes[-1][1]
        return np.asarray(last.threshold, dtype=np.float64) if isinstance(last, nir.Threshold) else None

    @property
    def width(self):
        return int(np.prod(np.shape(self.fields["r"])))


def _synapse(name, li, target_name, target):
    """(12): an LI whose output is the input current of the next node is the synaptic current of a CUBA node."""
    syn, f = _node_fields(li), _node_fields(target)
    if not np.all(syn["v_leak"] == 0):
        raise NirError(f"node {name!r} (LI): field 'v_leak': an LI that drives another neuron node is a synaptic "
                       f"current, which relaxes to 0; got {syn['v_leak']!r}")
    kind = {"LI": "CubaLI", "LIF": "CubaLIF", "IF": "CubaIF"}[type(target).__name__]
    merged = {"tau_syn": syn["tau"], "w_in": syn["r"], "r": np.ones_like(syn["r"])}
    if kind == "CubaIF":
        with np.errstate(divide="ignore"):
            merged["tau_mem"] = 1 / f["r"]  # dv/dt = R_IF I  <=>  tau_mem dv/dt = I
        if not np.all((f["r"] > 0) & np.isfinite(merged["tau_mem"])):
            raise NirError(f"node {target_name!r} (IF): field 'r': an IF driven by an LI synapse runs as CubaIF "
                           f"with tau_mem = 1/r (12), which needs r > 0 with 1/r finite; got {f['r']!r}")
    else:
        merged.update(tau_mem=f["tau"], r=f["r"], v_leak=f["v_leak"])
    merged.update({k: f[k] for k in ("v_threshold", "v_reset") if k in f})
    return kind, merged


def _units(chain):
    units, pending, index = [], [], 1
    while index < len(chain) - 1:
        name, node = chain[index]
        kind = type(node).__name__
        following_name, following = chain[index + 1]
        pair = [(name, node), (following_name, following)]
        if kind in ("Affine", "Linear"):
            bias = np.asarray(node.bias, dtype=np.float64) if kind == "Affine" else None
            pending.append((name, np.asarray(node.weight, dtype=np.float64), bias))
        elif kind == "Threshold":
            raise NirError(f"node {name!r} (Threshold): snnref runs a Threshold only right after an LI node")
        elif kind == "LI" and isinstance(following, nir.Threshold):
            units.append(_Unit(pair, "LI", _node_fields(node), pending))
            pending, index = [], index + 1
        elif kind == "LI" and type(following).__name__ in ("LI", "LIF", "IF"):
            merged_kind, fields = _synapse(name, node, following_name, following)
            units.append(_Unit(pair, merged_kind, fields, pending))
            pending, index = [], index + 1
        else:
            units.append(_Unit([(name, node)], kind, _node_fields(node), pending))
            pending = []
        index += 1
    if not units:
        raise NirError("graph: no neuron node (one of " + ", ".join(_NEURONS) + ") between Input and Output")
    return units, pending


@dataclass
class _Plan:
    """A unit run as a registry model: x_model = gain x, v = v_model + shift, i = i_model / current_scale."""

    model: str
    params: Dict[str, np.ndarray]
    state: Optional[Dict[str, np.ndarray]] = None
    gain: Optional[np.ndarray] = None
    shift: Optional[np.ndarray] = None
    current_scale: Optional[np.ndarray] = None
    membrane_out: bool = False
    note: str = ""
    pre_reset: Optional[np.ndarray] = None  # the node's v_reset where the model records v before its reset


_NEEDS_EXTENSIONS = ("reset", "refractory_time", "output", "initial_state")
_EXTENSION_NAMES = ("reset", "tau_ref", "output", "initial_state")  # the keys of metadata["snnref"]["extensions"]


def _same_node(a, b):
    fa, fb = _node_fields(a), _node_fields(b)
    return type(a) is type(b) and fa.keys() == fb.keys() and all(
        np.shape(fa[k]) == np.shape(fb[k]) and np.array_equal(fa[k], fb[k]) for k in fa)


def _extensions(node):
    """The snnref extensions that ``export`` recorded on a node (empty for foreign graphs)."""
    hint = node.metadata.get("snnref") if isinstance(node.metadata, dict) else None
    ext = hint.get("extensions") if isinstance(hint, dict) else None
    return ext if isinstance(ext, dict) else {}


def _hinted_plan(unit, dt, method, extensions):
    """The discrete preimage stored by ``export``, if exporting it again gives this node bit for bit."""
    hint = unit.node.metadata.get("snnref") if isinstance(unit.node.metadata, dict) else None
    key, recorded_dt = (hint.get("model"), hint.get("dt")) if isinstance(hint, dict) else (None, None)
    # Read from a file either can be any array: a list of names is unhashable (``in MODELS`` raised
    # TypeError) and an array of steps has no truth value.  Only a name and one number are a hint.
    if not isinstance(key, str) or key not in registry.MODELS or isinstance(recorded_dt, (bool, np.bool_)) \
            or not isinstance(recorded_dt, (int, float, np.integer, np.floating)) or recorded_dt != dt:
        return None
    if method not in _NATIVE_METHODS.get(key, ()):
        return None
    state = _extensions(unit.node).get("initial_state")
    try:
        graph, dropped = export(key, hint.get("params"), dt=dt, state=state, lossy=True, neurons=unit.width)
    except (ValueError, TypeError):
        return None
    again = [node for node in graph.nodes.values() if type(node).__name__ not in ("Input", "Output")]
    mine = [node for _, node in unit.nodes]
    same = len(again) == len(mine) and all(_same_node(a, b) for a, b in zip(again, mine))
    needed = [d.split(":")[0] for d in dropped if d.split(":")[0] in _NEEDS_EXTENSIONS]
    if not same or (needed and not extensions):
        return None
    return _Plan(key, dict(hint["params"]), state, note=f"{key} with the parameters recorded by snnref's export "
                                          f"(they reproduce every field of node {unit.name!r} exactly)")


def _require(name, kind, condition, field_name, what):
    if not np.all(condition):
        raise NirError(f"node {name!r} ({kind}): field {field_name!r}: {what}")


def _a(kind):
    """A node type with its article, by sound: an LIF, an IF, a CubaLIF."""
    return f"{'an' if kind[0] in 'AEILO' else 'a'} {kind}"


def _check_extensions(unit, ext):
    """The snnref extensions of a unit: well formed, on a node they apply to, and no refractory time with
    the subtractive reset (SPEC.md section 9 holds v at v_reset, which that reset does not reach)."""
    where = f"node {unit.nodes[0][0]!r}: snnref extension"
    spiking = unit.kind in SPIKING_KINDS
    for key, expected in (("reset", "subtract"), ("output", "spikes*threshold")):
        if key in ext and not (spiking and ext[key] == expected):
            raise NirError(f"{where} {key!r}: expected {expected!r} on a spiking node, got {ext[key]!r} on a "
                           f"{unit.kind}")
    if "tau_ref" in ext:
        tau_ref = np.asarray(ext["tau_ref"])
        if not spiking or tau_ref.dtype.kind not in "iuf" or tau_ref.shape not in ((), (1,), (unit.width,)) \
                or not np.all(np.isfinite(tau_ref) & (tau_ref >= 0)):
            raise NirError(f"{where} 'tau_ref': expected a refractory time >= 0 (finite; a scalar or one per "
                           f"neuron, ({unit.width},)) on a spiking node, got {ext['tau_ref']!r} on {_a(unit.kind)}")
        if ext.get("reset") == "subtract" and np.any(tau_ref > 0):
            raise NirError(f"{where} 'tau_ref': a refractory time needs the hard reset (SPEC.md section 9 holds v "
                           f"at v_reset for tau_ref after each spike); this node has the subtractive reset")
    state = ext.get("initial_state", {})
    if not isinstance(state, dict):
        raise NirError(f"{where} 'initial_state': expected a dict of state variable -> array, got "
                       f"{type(state).__name__}")
    names = ("v", "m", "i", "r") if unit.kind.startswith("Cuba") else ("v", "m")  # registry names
    for key, value in state.items():
        array = np.asarray(value)
        if key not in names or array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) \
                or array.shape[-1:] not in ((), (1,), (unit.width,)):
            raise NirError(f"{where} 'initial_state': expected finite numbers of shape (..., {unit.width}) for the "
                           f"state variables of {_a(unit.kind)} ({', '.join(names)}), got {key!r}: {value!r}")


def _check_exact_time_constants(unit):
    """snnref.continuous's normal time constants, by the node and field that hold them (it named its own
    ``params['tau']``, which a merged synapse, (12), does not even have)."""
    from .continuous.nodes import SMALLEST_TIME_CONSTANT as tiny, TIME_CONSTANTS

    for key in TIME_CONSTANTS:
        if key not in unit.fields or np.all(unit.fields[key] >= tiny):
            continue
        where, what = _time_constant_field(unit, key)
        value = float(unit.fields[key][unit.fields[key] < tiny].flat[0])
        raise NirError(f"{where}: method 'exact' needs {what} of at least {tiny!r} s (the smallest normal "
                       f"float64), got {value!r}")


def _time_constant_field(unit, key):
    """("node 'name' (Type): field 'f'", what it is) for the unit's time constant ``key``: a merged
    synapse's tau_syn is its LI's tau, and its tau_mem the next node's tau, or 1/r of an IF (12)."""
    (name, node), field_name, what = unit.nodes[0], key, "a time constant"
    if len(unit.nodes) == 2 and unit.threshold is None:
        name, node = unit.nodes[0] if key == "tau_syn" else unit.nodes[1]
        field_name = "tau" if isinstance(node, (nir.LI, nir.LIF)) else "r"
        what = "a time constant" if field_name == "tau" else "1/r (its time constant, (12))"
    return f"node {name!r} ({type(node).__name__}): field {field_name!r}", what


def _check_exact(unit, ext):
    """What snnref.continuous needs of a spiking unit (see the module docstring), by node and field."""
    _check_exact_time_constants(unit)
    if unit.kind not in SPIKING_KINDS:
        return
    f, name, kind = unit.fields, unit.name, unit.node_kind
    why = "method 'exact' (snnref.continuous) fires where v reaches v_threshold from below"
    if ext.get("reset") == "subtract":
        _require(name, kind, f["v_threshold"] > 0, "v_threshold", "the subtractive reset (snnref extension) needs "
                 "v_threshold > 0 under method 'exact' (otherwise one crossing fires without end)")
    else:
        _require(name, kind, f["v_reset"] < f["v_threshold"], "v_reset", f"expected v_reset < v_threshold: {why}, "
                 f"and a reset at or above it would fire again at once, without end")
    state = ext.get("initial_state", {})
    if np.any(np.asarray(state.get("r", 0.0)) != 0):
        raise NirError(f"node {unit.nodes[0][0]!r}: snnref extension 'initial_state': a refractory count in "
                       f"progress (r != 0) has no continuous initial state; method 'exact' needs r = 0")
    start = state.get("v", state.get("m"))
    if start is not None:
        if np.any(np.asarray(start) >= f["v_threshold"]):
            raise NirError(f"node {unit.nodes[0][0]!r}: snnref extension 'initial_state': a membrane at or above "
                           f"v_threshold; {why} and cannot start there")
    else:
        rest = "v_leak" if kind in ("LIF", "CubaLIF") else "v_reset"
        _require(name, kind, f[rest] < f["v_threshold"], rest, f"the node starts at rest, v = {rest}, which is "
                 f"not below v_threshold; {why} and cannot start there")


def _general_plan(unit, dt, method, extensions):
    """The registry model that runs a NIR node by (5) or (6), parameters converted."""
    f, kind, name, node_kind = unit.fields, unit.kind, unit.name, unit.node_kind
    ext = _extensions(unit.node) if extensions else {}
    subtract = ext.get("reset") == "subtract"
    # What the registry models below can honour; any other extension would be dropped without a word.
    honoured = {"CubaLIF": {"tau_ref"}, "CubaIF": {"tau_ref"}, "LIF": {"reset"},
                "IF": {"reset", "output"} if subtract else {"reset"}}.get(kind, set())
    unsupported = sorted(set(ext) & set(_EXTENSION_NAMES) - honoured)
    if unsupported:
        raise NirError(f"node {unit.nodes[0][0]!r}: snnref extension {unsupported[0]!r}: method {method!r} runs "
                       f"this node by its NIR fields (the recorded discrete model does not reproduce them) and has "
                       f"no registry model with that extension; use method='exact'")
    if kind in ("LI", "LIF") and method == "euler":
        raise NirError(f"node {name!r} ({kind}): method 'euler' has no registry model for it; use 'exp' "
                       f"(exact on the grid for pulse input, (5)) or 'exact'")
    if kind in ("CubaLI", "CubaLIF", "CubaIF") and method != "euler":
        raise NirError(f"node {name!r} ({kind}): method {method!r} has no registry model for it; use 'euler' "
                       f"(hxtorch's forward Euler, (6)) or 'exact'")
    if kind == "I":
        raise NirError(f"node {name!r} (I): no discrete registry model integrates without a threshold; "
                       f"use method='exact'")
    if kind in ("CubaLI", "CubaLIF", "CubaIF"):
        with np.errstate(over="ignore"):  # an infinite gain is refused by simulate, naming the field
            gain = f["r"] * f["w_in"] / f["tau_syn"]  # (6)
        params = {"tau_syn": f["tau_syn"], "tau_mem": f["tau_mem"], "dt": dt}
        key = {"CubaLI": "hxtorch.cuba_li", "CubaLIF": "hxtorch.cuba_lif", "CubaIF": "hxtorch.cuba_iaf"}[kind]
        if kind != "CubaIF":
            params["leak"] = f["v_leak"]
        if kind != "CubaLI":
            params.update(reset=f["v_reset"], threshold=f["v_threshold"])
            if "tau_ref" in ext:
                key = key.replace("cuba_", "cuba_refractory_")
                params["refractory_time"] = np.asarray(ext["tau_ref"])
        scale = None if np.all(f["r"] == 1) else f["r"]
        return _Plan(key, params, gain=gain, current_scale=scale,
                     note=f"{key}: forward Euler (6), a = dt/tau_mem, b = dt/tau_syn, x = (R w_in/tau_syn) q")
    leaky = kind in ("LI", "LIF")
    rest = f["v_leak"] if leaky else f.get("v_reset", np.zeros_like(f["r"]))
    with np.errstate(over="ignore"):  # an infinite gain is refused by simulate, naming the field
        gain = f["r"] / f["tau"] if leaky else f["r"]  # (5)
    shift = None if np.all(rest == 0) else rest
    if kind == "LI":
        plan = _Plan("rnnbuilder.NoReset", {"tau": f["tau"] / dt}, gain=gain, shift=shift,
                     membrane_out=unit.threshold is None,
                     note="rnnbuilder.NoReset: exact exponential decay exp(-dt/tau) between pulses (5)")
        if unit.threshold is not None:
            _require(unit.nodes[-1][0], "Threshold", unit.threshold - rest == 1, "threshold",
                     "the discrete model (rnnbuilder.NoReset) fires at v - v_leak > 1; this Threshold differs "
                     "(use method='exact')")
        return plan
    theta = f["v_threshold"] - rest
    if subtract and kind == "LIF":
        _require(name, node_kind, theta == 1, "v_threshold", "with a subtractive reset the discrete model "
                 "(rnnbuilder.LIF) needs v_threshold - v_leak = 1 (use method='exact')")
        return _Plan("rnnbuilder.LIF", {"tau": f["tau"] / dt}, gain=gain, shift=shift,
                     note="rnnbuilder.LIF: exact decay (5), subtractive reset (snnref extension)")
    if subtract:
        _require(name, node_kind, rest == 0, "v_reset", "the discrete model with a subtractive reset (qualia) "
                 "starts at 0")
        _require(name, node_kind, theta == theta.flat[0], "v_threshold", "qualia's IF has one threshold per layer")
        key = "qualia.ATIF" if ext.get("output") == "spikes*threshold" else "qualia.IFSRL"
        return _Plan(key, {"threshold": _next(theta[:1])}, gain=gain,
                     note=f"{key}: integrate and fire, subtractive reset (snnref extension), >= next(v_threshold) (11)")
    if kind == "LIF":
        other = "use method='exact'" if np.all(f["v_leak"] < f["v_threshold"]) else \
            "method 'exact' cannot run it either: it would start at rest, v_leak, at or above v_threshold"
        _require(name, node_kind, f["v_reset"] == f["v_leak"], "v_reset", "the discrete LIF (tether) resets to "
                 f"its rest value; v_reset must equal v_leak ({other})")
        with np.errstate(over="ignore"):  # dt / tau past float64: the decay is exactly 0, as it should be
            decay = np.exp(-dt / f["tau"])
    else:
        decay = np.ones_like(theta)
    # An IF runs as a PLIF with decay 1: its note says so, not a decay it does not have.
    dynamics = "exact decay exp(-dt/tau) between pulses (5)" if kind == "LIF" else "decay 1 (an IF integrates)"
    return _Plan("tether.PLIF", {"decay": decay, "threshold": _next(theta)}, gain=gain, shift=shift,
                 note=f"tether.PLIF: {dynamics}, fires at v >= next(v_threshold), the same test as NIR's "
                      "v > v_threshold (11)")


def _warn_unstable_euler(unit, dt):
    """Forward Euler (6) multiplies v - v_leak by 1 - a and i by 1 - b each step: with dt above a time
    constant that factor is negative (the state overshoots rest every step), and with dt above twice it
    the state grows without bound.  That is what the method means, and what hxtorch computes at such a
    dt, but a hardware team's graph rarely means it: say so once, at load, by node and field."""
    # CubaIF's membrane has no leak: only its current decays by (1 - b).
    keys = ("tau_syn",) if unit.kind == "CubaIF" else ("tau_mem", "tau_syn")
    for key in keys:
        tau = unit.fields[key]
        if np.any(dt > tau):
            worst = float(np.min(tau))
            where, what = _time_constant_field(unit, key)
            fate = "and diverges" if dt > 2 * worst else "without diverging (dt < 2 tau)"
            _warn(f"{where}: dt = {dt!r} s exceeds {what} ({worst!r} s at the smallest); forward Euler (6) "
                  f"overshoots rest every step there, {fate}; use method='exact' or a dt below {worst!r} s")
            return


def _warn_held_current_gain(unit, dt):
    """A gain of 1/dt per unit of input (r = tau / dt; for CubaLIF w_in = tau_syn / dt) is how an exporter
    that reads each step's value as a current held for dt writes a unit jump (snnTorch does, at its dt of
    1e-4).  NIR's equations, which snnref follows, read the value as a pulse of that area, so each input
    moves the state by x / dt: found by an outside user, every hidden layer of an exported snnTorch network
    fired at almost every spike it received.  Said, not changed: the graph states what it states."""
    # The pulse gain of each node kind: r / tau onto v (LIF, LI), w_in / tau_syn onto I (CUBA).
    name, over = {"LIF": ("r", "tau"), "LI": ("r", "tau"), "CubaLIF": ("w_in", "tau_syn"),
                  "CubaLI": ("w_in", "tau_syn")}.get(unit.kind, (None, None))
    if name is None or dt is None or name not in unit.fields or over not in unit.fields:
        return
    gain, tau = unit.fields[name], unit.fields[over]
    # Only where dt is below the time constants, as an exporter's step is (snnTorch's beta = 0.9: tau = 10 dt):
    # at dt = tau a gain of 1 is also tau / dt, and says nothing; nor does NIR's own unit jump (gain = tau),
    # which is tau / dt at dt = 1.
    unit_jump = np.allclose(gain, tau, rtol=1e-6, atol=0)
    if np.all(tau >= 2 * dt) and np.allclose(gain, tau / dt, rtol=1e-6, atol=0) and not unit_jump:
        _warn(f"node {unit.name!r} ({unit.node_kind}): {name} = {over} / dt (dt = {dt!r}), the gain of an "
              f"exporter that reads each step's input as a current held for dt (snnTorch writes it); NIR's "
              f"equations, which snnref runs, read it as a pulse of that area, so each input moves the state by "
              f"x / dt ({1 / dt:.4g} times a unit jump); spikes from a previous layer then act that much stronger "
              f"than in the exporting library")


def _warn_ignored_extensions(unit, extensions):
    """Without ``extensions`` the graph means what its NIR fields say: say once which of the
    node's snnref extensions that leaves out."""
    ignored = sorted(k for k in _extensions(unit.node) if k in _EXTENSION_NAMES)
    if ignored and not extensions:
        _warn(f"node {unit.nodes[0][0]!r} carries snnref extensions NIR cannot say "
              f"({', '.join(ignored)}); they are ignored (pass extensions=True to honour them)")


def _plan(unit, dt, method, extensions):
    if method == "euler" and unit.kind in ("CubaLI", "CubaLIF", "CubaIF"):
        _warn_unstable_euler(unit, dt)
    plan = _hinted_plan(unit, dt, method, extensions)
    if plan is None:
        _warn_ignored_extensions(unit, extensions)
        plan = _general_plan(unit, dt, method, extensions)
    if plan.gain is not None and np.all(plan.gain == 1):
        plan.gain = None  # multiplying by exactly 1 changes nothing; skipping it documents that
    if registry.MODELS[plan.model].state[0].recorded == "pre-reset":
        plan.pre_reset = unit.fields["v_reset"]
    return plan


@dataclass(frozen=True)
class NirTrace(_spec.Trace):
    """A ``Trace`` of a loaded graph, with the method and discretization that produced it.

    Every key means the same under every method, (T, ..., N) per step t_k:
    ``outputs["v"]`` the membrane after the step's pulse and any reset (NIR's
    state: under 'exp' a model that records v before its reset has v_reset
    written at its spike steps; an LI's membrane is "v" too), ``outputs["i"]``
    a CUBA node's synaptic current I, and for the discrete hxtorch refractory
    models ``outputs["r"]``, the steps left in a hold.  ``outputs["out"]`` is the
    last neuron node's output (spikes, or an LI's membrane) after any trailing
    Affine/Linear maps; ``final_state`` the last step's states, by the same keys.
    With more than one neuron node each output appears also as
    ``outputs["<node>.<key>"]``, keyed by the node it belongs to: "out" by the
    node that spikes (the Threshold after an LI), "v" by the node whose membrane
    it is, and "i" of an LI synapse merged into the node it drives (12) by the
    synapse.  ``spike_times`` (method "exact"): spiking node name -> one array
    of spike times per batch element and neuron (flattened), before binning to
    the grid.
    """

    method: str = ""
    discretization: str = ""
    spike_times: Optional[Dict[str, list]] = None

    def __post_init__(self):
        super().__post_init__()
        if self.spike_times is not None:
            # Frozen: the dataclass's own __init__ sets fields the same way.
            object.__setattr__(self, "spike_times", ArraysByName(self.spike_times, "spike_times of this trace"))


def _affine(x, weight, bias):
    y = x @ weight.T
    return y if bias is None else y + bias


def _pulse_gain(unit):
    """What one pulse of weight q adds, per unit of q (SPEC.md section 9's Input): I by w_in / tau_syn
    (CUBA nodes; a merged LI synapse's r / tau), v by r / tau (LI, LIF) or r (I, IF)."""
    f = unit.fields
    merged = len(unit.nodes) == 2 and unit.threshold is None
    with np.errstate(over="ignore", divide="ignore"):
        if unit.kind.startswith("Cuba"):
            return ("r / tau" if merged else "w_in / tau_syn"), "I", f["w_in"] / f["tau_syn"]
        return ("r / tau", "v", f["r"] / f["tau"]) if unit.kind in ("LI", "LIF") else ("r", "v", f["r"])


def _jumps_error(name, what, var, dtype):
    return NirError(f"node {name!r}: field {what.split()[0]!r}: a pulse of this input raises {var} by more than "
                    f"{np.dtype(dtype).name} holds ({what} times x overflows); expected a smaller x or {what}")


def _finite_states(unit, seq, dtype):
    """A node's recorded states: finite gains on finite pulses can still accumulate past float64 (an LI
    summing pulses of 1e308), which the models return as inf without a word."""
    for key, value in seq.items():
        if not np.all(np.isfinite(value)):
            raise NirError(f"node {unit.owner(key)!r}: its {key!r} overflows {np.dtype(dtype).name} on this input "
                           f"(NIR's state holds finite numbers); expected a smaller x or smaller gains")


def _finite(name, values):
    """A map's output: finite weights on finite input can still overflow float64 (or float32)."""
    if not np.all(np.isfinite(values)):
        raise NirError(f"node {name!r}: field 'weight': its output on this input overflows to inf or NaN")
    return values


class Network:
    """A NIR graph made runnable (``load``); ``simulate(x)`` takes time-major x of shape (T, ..., N_in), or
    (T, ..., *shape) in the Input node's shape, and then answers in the Output node's shape."""

    def __init__(self, graph, dt, method, extensions):
        chain = _chain(graph)
        self.graph, self.dt, self.method, self.extensions = graph, dt, method, extensions
        self.input_width = _in_out(*chain[0])[1]
        # The Input node's own shape (an image's (1, 28, 28), say): x may come in it, or flattened.
        self.input_shape = tuple(int(extent) for extent in np.asarray(chain[0][1].input_type["input"]).reshape(-1))
        # The Output node's (nirtorch writes (1, N)): outputs come in it where x came in the Input's shape.
        self.output_shape = tuple(int(extent) for extent in np.asarray(chain[-1][1].output_type["output"]).reshape(-1))
        # A Flatten passes the same values on (snnref's layers are flat): the units are made without it.
        self.units, self.after = _units([(name, node) for name, node in chain if not isinstance(node, nir.Flatten)])
        self.plans = None
        for unit in self.units[:-1]:
            if unit.kind in ("LI", "I", "CubaLI") and unit.threshold is None:
                raise NirError(f"node {unit.name!r} ({unit.node_kind}): spikes (pulses) pass between neuron nodes; "
                               f"a membrane output can only be the graph's last")
        for unit in self.units:
            _warn_held_current_gain(unit, dt)
            ext = _extensions(unit.node) if extensions else {}
            _check_extensions(unit, ext)
            if method == "exact":
                _check_exact(unit, ext)
        # NIR's y = W x + b is the next node's input current, b a constant one.  The nodes here
        # take their input as pulses, one per step: b added to each would be a current b / dt
        # (a result that depends on dt, without a limit), under every method.
        for name, _, bias in [m for u in self.units for m in u.before] + self.after:
            if bias is not None and np.any(bias != 0):
                raise NirError(f"node {name!r} (Affine): field 'bias': NIR's bias is a constant current, and the "
                               f"nodes here take pulses, one per step (b on each would be a current b / dt); "
                               f"only bias 0 is read (for an LIF or LI target, a constant current b is "
                               f"v_leak + r b)")
        if method == "exact":
            # Found by an outside user: the discrete methods said this, exact (the default) did not.
            for unit in self.units:
                _warn_ignored_extensions(unit, extensions)
            self.discretization = ("exact: snnref.continuous, event-driven closed form; pulses q_k = x[k] at "
                                   "t_k = k dt; states sampled at t_k after the pulse and any reset; a spike at t "
                                   "counts in the first step k with t_k >= t")
        else:
            self.plans = [_plan(unit, dt, method, extensions) for unit in self.units]
            self.discretization = "; ".join(f"{u.name}: {p.note}" for u, p in zip(self.units, self.plans))

    @property
    def model(self):
        """The registry model of a one-node graph (discrete methods), for ``export``."""
        return self._single().model

    @property
    def params(self):
        """The registry parameters of a one-node graph, for ``export``: only where the
        node runs as the model itself.  A node with another input gain (``r / tau``,
        ``r w_in / tau_syn`` not 1), rest (v_leak of LI and LIF, v_reset of IF) or
        current scale (r of a CUBA node) runs with those applied outside the model,
        which these parameters cannot say: exported, they would be another network."""
        plan = self._single()
        outside = [what for what, value in (("an input gain", plan.gain), ("a shifted membrane", plan.shift),
                                            ("a scaled current", plan.current_scale)) if value is not None]
        if outside:
            raise NirError(f"params: this node runs as {plan.model} with {' and '.join(outside)} applied outside "
                           f"the model (x_model = gain x, v = v_model + shift, i = i_model / r); its registry "
                           f"parameters alone describe another network")
        return dict(plan.params)

    def _single(self):
        if self.plans is None or len(self.plans) != 1:
            raise NirError("model: only a one-neuron-node graph loaded with method 'euler' or 'exp' is one "
                           "registry model")
        return self.plans[0]

    def _in_input_shape(self, x):
        """Whether x comes in the Input node's shape of several axes, (T, ..., *shape)."""
        rank = len(self.input_shape)
        return rank > 1 and x.ndim > rank and x.shape[-rank:] == self.input_shape

    def _in_output_shape(self, outputs, final, distance):
        """The graph's outputs, (T, ..., N_out) and (..., N_out), in the Output node's shape: ``out``,
        and the last neuron node's records where no map follows it (a node's own keyed records keep
        its width).  Found by an outside user: a Norse graph (Input (1, 3), Output (1, 2)) given x of
        (T, 1, 3) answered (T, 2), so Norse's own (T, 1, 2) failed ``check`` on shape."""
        def shaped(array):
            return np.reshape(array, np.shape(array)[:-1] + self.output_shape)

        kept = [key for key in outputs if key == "out" or ("." not in key and not self.after)]
        outputs = {key: shaped(value) if key in kept else value for key, value in outputs.items()}
        final = {key: shaped(value) if key in kept else value for key, value in final.items()}
        return outputs, final, None if distance is None else shaped(distance)

    def _flat_input(self, x):
        """x of shape (T, ..., N_in), or (T, ..., *shape) in the Input node's shape of several axes, which
        is read flattened to N_in (before, an image-shaped x for an image's Input was refused, and one of
        Input (1, 3) ran with its axis of 1 as a batch axis, out of the shape the graph declares)."""
        rank = len(self.input_shape)
        if self._in_input_shape(x):
            x = x.reshape(x.shape[:-rank] + (self.input_width,))
        if x.ndim < 2 or x.shape[-1] != self.input_width or x.shape[0] < 1:
            declared = f" or (T, ..., {', '.join(map(str, self.input_shape))})" if rank > 1 else ""
            raise NirError(f"x: expected time-major (T, ..., {self.input_width}){declared} with T >= 1 (the Input "
                           f"node's width last, or its shape), got shape {x.shape}")
        return x

    def simulate(self, x, dtype=np.float64, force_spikes=None):
        """Run the graph; ``dtype`` float32 runs the discrete models in float32 (the SPEC.md section 7
        reference error); method 'exact' computes in float64 only and refuses float32.  ``force_spikes`` (one
        spiking node, discrete methods) is teacher forcing."""
        x = arguments.real_array("x", x)
        # Before, method 'exact' took any dtype unchecked: "float16" ran, "garbage" failed inside NumPy, and
        # float32 rounded x and the maps in front of the first node but returned a float64 run.
        dtype = arguments.numpy_dtype(dtype)
        if self.plans is None and dtype is not np.float64:
            raise NirError("dtype: method 'exact' (snnref.continuous) computes in float64 only; float32 runs the "
                           "discrete models of methods 'exp' and 'euler'")
        if force_spikes is not None and not self.can_force:
            raise NirError("force_spikes: teacher forcing needs one spiking neuron node run by 'exp' or 'euler'")
        # x in the Input's shape of several axes, and an Output of several: the outputs in its shape.
        shaped = self._in_input_shape(x) and len(self.output_shape) > 1
        x = self._flat_input(x)
        if shaped and force_spikes is not None:
            force_spikes = np.reshape(force_spikes, x.shape[:-1] + (-1,))
        if not np.all(np.isfinite(x)):
            # Where: a T x N input from a file holds millions of values.
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise NirError(f"x: expected finite values, found {float(x[where])!r} at index {where}")
        signal = np.asarray(x, dtype=dtype)
        steps, lead = x.shape[0], x.shape[1:-1]
        if not math.isfinite((steps - 1) * self.dt):
            raise NirError(f"dt: {steps} steps of {self.dt!r} s overflow float64 time; expected a smaller dt")
        self._grid = np.arange(steps) * self.dt
        self._check_initial_states(lead)
        events, distance = None, None
        outputs, final, times = {}, {}, {}
        for index, unit in enumerate(self.units):
            for name, weight, bias in unit.before:
                if events is None:
                    signal = _finite(name, _affine(signal, weight.astype(dtype),
                                                   None if bias is None else bias.astype(dtype)))
                else:
                    events = [(t, _finite(name, q @ weight.T)) for t, q in events]
            if self.plans is None:
                if events is None:  # the graph's input: pulse q_k = x[k] at t_k = k dt, per batch element
                    flat = signal.reshape(steps, -1, signal.shape[-1])
                    events = [(self._grid, flat[:, b]) for b in range(flat.shape[1])]
                out, seq, last, spikes, events = self._run_exact(unit, events, lead)
                if unit.kind in SPIKING_KINDS or unit.threshold is not None:
                    times[unit.owner("out")] = spikes
            else:
                plan = self.plans[index]
                if plan.gain is not None:
                    with np.errstate(over="ignore", invalid="ignore"):
                        driven = signal * np.asarray(plan.gain, dtype=dtype)
                    if not np.all(np.isfinite(driven)):
                        # Before: the registry model refused its input as "x: expected finite values ...
                        # (pass allow_nonfinite=True ...)", an x the caller had not given and an option
                        # simulate has not.
                        raise _jumps_error(unit.nodes[0][0], *_pulse_gain(unit)[:2], dtype)
                out, seq, last, distance = self._run_discrete(plan, signal, dtype, force_spikes)
            _finite_states(unit, seq, dtype)
            signal = out
            outputs.update({f"{unit.owner(key)}.{key}": value for key, value in seq.items()})
            final.update({f"{unit.owner(key)}.{key}": value for key, value in last.items()})
        for name, weight, bias in self.after:
            signal = _finite(name, _affine(signal, weight.astype(dtype), None if bias is None else bias.astype(dtype)))
        if len(self.units) == 1:
            outputs, final = {}, {}
        outputs.update(seq)
        final.update(last)
        outputs["out"] = signal
        model = self.plans[0].model if self.plans and len(self.plans) == 1 else "nir"
        distance = distance if self.can_force else None
        if shaped:
            outputs, final, distance = self._in_output_shape(outputs, final, distance)
        return NirTrace(model, None, outputs, final, {}, distance, method=self.method,
                        discretization=self.discretization, spike_times=times or None)

    @property
    def can_force(self):
        """One neuron node whose registry model outputs plain spikes, and no map after it."""
        return (self.plans is not None and len(self.plans) == 1 and not self.after
                and registry.MODELS[self.plans[0].model].out is registry.Output.SPIKES)

    def _check_initial_states(self, lead):
        """A recorded initial state (extension) must fit the batch of this x: (..., N) against lead + (N,)."""
        for unit in self.units if self.extensions else ():
            for key, value in _extensions(unit.node).get("initial_state", {}).items():
                try:
                    np.broadcast_to(value, lead + (unit.width,))
                except ValueError:
                    raise NirError(f"node {unit.nodes[0][0]!r}: snnref extension 'initial_state': {key!r} has shape "
                                   f"{np.shape(value)}, which does not broadcast to the batch of x, "
                                   f"{lead + (unit.width,)}") from None

    @staticmethod
    def _run_discrete(plan, x, dtype, force_spikes=None):
        driven = x if plan.gain is None else x * np.asarray(plan.gain, dtype=dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # a state past float64 is refused by name after
            trace = _spec.simulate(plan.model, driven, plan.params, plan.state, dtype=dtype,
                                   force_spikes=force_spikes)
        seq, last = dict(trace.outputs), dict(trace.final_state)
        membrane = registry.MODELS[plan.model].state_names[0]  # "m" for rnnbuilder's models: NIR's v
        seq["v"], last["v"] = seq.pop(membrane), last.pop(membrane)
        if plan.shift is not None:
            seq["v"] = seq["v"] + plan.shift
            last["v"] = last["v"] + plan.shift
        if plan.pre_reset is not None:  # NIR's state is after the reset: v_reset at the spike steps, exactly
            seq["v"] = np.where(seq["out"] != 0, np.asarray(plan.pre_reset, dtype=seq["v"].dtype), seq["v"])
        if plan.current_scale is not None:
            seq["i"], last["i"] = seq["i"] / plan.current_scale, last["i"] / plan.current_scale
        out = seq["v"] if plan.membrane_out else seq["out"]
        seq["out"] = out
        return out, seq, last, trace.distance

    def _at_zero(self, unit, params, state):
        """A recorded initial state at t = 0: it is the discrete model's state before
        step 0, at t = -dt, so it flows for dt without input (the discrete step 0
        decays it once before adding x[0])."""
        from . import continuous

        free = continuous.simulate(unit.kind, params, np.zeros(0), np.zeros((0, unit.width)), t_end=self.dt,
                                   samples=[self.dt], state=state)
        if any(len(t) for t in free.spike_times):
            raise NirError(f"node {unit.nodes[0][0]!r}: snnref extension 'initial_state': the membrane reaches "
                           f"v_threshold within dt of the first step, without input; method 'exact' has no "
                           f"step before t = 0 to place that spike on")
        return {var: values[0] for var, values in free.states.items()}

    def _run_exact(self, unit, events, lead):
        """One node by ``snnref.continuous``, per batch element; also its spikes as the next node's pulses."""
        from . import continuous
        from .continuous.exact import MOST_SPIKES, StateOverflow, TooManySpikes

        steps = len(self._grid)
        ext = _extensions(unit.node) if self.extensions else {}
        params = dict(unit.fields)
        if unit.kind in SPIKING_KINDS:
            if ext.get("reset") == "subtract":
                params["reset"] = "subtract"
            if "tau_ref" in ext:
                params["tau_ref"] = ext["tau_ref"]
        # qualia.ATIF (extension): each spike carries the threshold (11).
        pulse = _next(unit.fields["v_threshold"]) if ext.get("output") == "spikes*threshold" else np.ones(unit.width)
        # The recorded initial state by registry names: rnnbuilder's membrane m is v (its v_leak is 0).
        initial = {("v" if k == "m" else k): v for k, v in ext.get("initial_state", {}).items() if k != "r"}
        n, batch = unit.width, len(events)
        seq = {"out": np.zeros((steps, batch, n))}
        spikes, passed = [], []
        for b, (times, weights) in enumerate(events):
            state = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), lead + (n,)).reshape(batch, n)[b]
                     for k, v in initial.items()} or None
            if state is not None:
                state = self._at_zero(unit, params, state)
            what, var, gain = _pulse_gain(unit)
            with np.errstate(over="ignore", invalid="ignore"):
                jumps = weights * gain
            if not np.all(np.isfinite(jumps)):
                # Before: an infinite jump failed inside the root finder ("The function value at x=0.0 is NaN").
                raise _jumps_error(unit.nodes[0][0], what, var, np.float64)
            try:
                # An overflow inside the solver is a state past float64: the root finder then failed on
                # a NaN ("The function value at x=0.0 is NaN"), or the run returned inf without a word.
                with np.errstate(over="raise", invalid="raise"):
                    result = continuous.simulate(unit.kind, params, times, weights, t_end=self._grid[-1],
                                                 samples=self._grid, state=state)
            except (FloatingPointError, StateOverflow):
                raise NirError(f"node {unit.name!r}: its state overflows float64 on this input (NIR's state "
                               f"holds finite numbers); expected a smaller x or smaller gains") from None
            except TooManySpikes:
                # Each exact spike is an event of its own: without a bound a huge x ran for many minutes.
                raise NirError(f"node {unit.name!r}: a neuron fires more than {MOST_SPIKES} times on this input, "
                               "each an exact event; expected a smaller x or smaller gains (or method 'euler')") \
                    from None
            for var, values in result.states.items():
                seq.setdefault(var, np.zeros((steps, batch, n)))[:, b] = values
            if unit.threshold is not None:
                fired = continuous.threshold(result.states["v"], unit.threshold)
                seq["out"][:, b] = fired
                hit = [self._grid[fired[:, j] > 0] for j in range(n)]
            elif unit.kind in ("LI", "I", "CubaLI"):
                seq["out"][:, b] = result.states["v"]
                hit = [np.zeros(0)] * n
            else:
                hit = list(result.spike_times)
                for j, t in enumerate(hit):
                    np.add.at(seq["out"][:, b, j], np.searchsorted(self._grid, t, side="left"), pulse[j])
            spikes += hit
            when = np.concatenate(hit)
            source = np.concatenate([np.full(len(t), j) for j, t in enumerate(hit)]).astype(int)
            order = np.argsort(when, kind="stable")
            passed.append((when[order], np.eye(n)[source[order]] * pulse[source[order], None]))
        seq = {k: v.reshape((steps,) + lead + (n,)) for k, v in seq.items()}
        last = {k: v[-1] for k, v in seq.items() if k != "out"}
        return seq["out"], seq, last, spikes, passed


def load(graph, *, dt=None, method="exact", extensions=False):
    """A runnable ``Network`` from a NIR graph (a ``nir.NIRGraph`` or the path of a ``.nir`` file).

    ``method``: "exact" (``snnref.continuous``), "exp" (the registry model that
    is exact on the grid for pulse input, (5): LI, LIF, IF) or "euler"
    (hxtorch's forward Euler, (6): CubaLI, CubaLIF; IF is the same under both;
    it warns where dt exceeds a time constant, where each step overshoots rest).
    "exp" and "euler" fire where v > v_threshold at a step (NIR's test), "exact"
    where v reaches v_threshold (SPEC.md section 9): a pulse that lands v exactly
    on v_threshold fires under "exact" only (4).  Every method reports the same
    keys with the same meaning (``NirTrace``): "v" is the membrane after the
    step's pulse and reset.
    ``extensions=True`` honours what snnref's lossy export recorded (subtractive
    reset, refractory time, ATIF's output, the initial state); otherwise the
    graph means what its NIR fields say, and a warning names what was ignored.
    Every field is checked here, before anything runs (see the module docstring):
    a ``NirError`` names the node and field.
    """
    dt = _check_dt(dt)
    if method not in METHODS:
        raise NirError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    # A string such as "no" is truthy: it would have honoured the extensions it meant to ignore.
    arguments.check_flags(extensions=extensions)
    if isinstance(graph, (str, os.PathLike)):
        graph = read(graph)
    return Network(graph, dt, method, bool(extensions))


def exportable(model) -> bool:
    """Whether registry ``model`` has a NIR graph (SPEC.md section 9; possibly only with ``lossy=True``)."""
    return registry.model(model).key in _NATIVE_METHODS


def _no_counterpart(key):
    return _NO_COUNTERPART.get(key, "snnref/nir.py writes no mapping for it")


def native_method(model) -> str:
    """The ``load`` method under which the graph ``export`` writes for registry ``model`` runs
    as that model, bit for bit: "exp" by (5) or "euler" by (6)."""
    row = registry.model(model)
    if not exportable(row):
        raise NirError(f"model: {row.key} has no NIR graph: {_no_counterpart(row.key)}")
    return _NATIVE_METHODS[row.key][0]


def _spike_steps(train):
    """Per flattened neuron, the steps of its spikes (a step holding a count of 2 is listed twice)."""
    flat = np.asarray(train, dtype=np.float64).reshape(len(train), -1)
    integral = np.all(flat == np.rint(flat))
    counts = np.rint(np.abs(flat)).astype(int) if integral else (flat != 0).astype(int)
    return [np.repeat(np.arange(len(flat)), counts[:, j]) for j in range(flat.shape[1])]


def spike_step_differences(reference, other):
    """Compare two spike trains (T, ..., N): counts that differ, and |step differences| of matched spikes."""
    # A trace passed whole failed inside float() ("not 'NirTrace'"): its spikes are outputs["out"].
    reference = arguments.real_array("reference", reference)
    other = arguments.real_array("other", other)
    if np.shape(other) != np.shape(reference):
        raise ValueError(f"other: shape {np.shape(other)}, expected the reference's {np.shape(reference)}")
    mismatched, differences = 0, []
    for ref, got in zip(_spike_steps(reference), _spike_steps(other)):
        if len(ref) != len(got):
            mismatched += 1
        k = min(len(ref), len(got))
        differences.append(np.abs(ref[:k] - got[:k]))
    steps = np.concatenate(differences) if differences else np.zeros(0)
    return mismatched, steps


# ------------------------------------------------------------- old paths ----

# Verification code moved to snnref.testing.nir; production must not import it
# at load time, so the old names are served on first use (PEP 562).
_MOVED_TO_TESTING = ("round_trip", "compare", "add_parser", "main_nir")


def __getattr__(name):
    if name not in _MOVED_TO_TESTING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"snnref.nir.{name} moved to snnref.testing.nir.{name}; import it from there",
                  DeprecationWarning, stacklevel=2)
    # The one import from production into verification, allowed by name in tests/test_layers.py.
    from .testing import nir as moved

    return getattr(moved, name)
