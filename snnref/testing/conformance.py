"""The field's conformance matrix: other libraries' neurons through the gate.

Each ``Configuration`` is one library setting (an adapter from
``snnref.testing.adapters``, which only converts parameters and layout and
calls the library), the registry model it is closest to, the verdict it is
expected to get and one line of semantic reason.  A verdict is a fact about
the library under the unchanged SPEC.md section 7 budget:

- ``conforms``: every run of the gate passes; the worst error as a fraction
  of the budget is reported, and the quantities no run compared, with the
  gate's reason (a membrane the library does not return, the gradient of a
  parameter it keeps fixed): a verdict vouches only for what was compared;
- ``fails``: the first failing quantity and its first failing step, read
  from the first failing run (``quantity_at`` below), and that run's label
  (model, surrogate, case kind, seed, shape, dtype): the case to rerun;
- ``not installed``: the library, or a module its adapter needs, cannot be
  imported here (CI installs all five).

The first failing quantity of a run is chosen among its failing quantities by

(1) forward sequences before final states before gradients; then the earliest
    first failing step; then the recorded state sequences in the registry's
    order before ``out:out`` and ``spikes``

(a forward error causes the gradient errors of every earlier step, so a
gradient is named only when the whole forward pass agrees; a membrane that
differs causes the spikes that differ at the same step); ``dtype`` when the
run broke the adapter contract by returning another dtype than its input's (a
cast inside the library), ``crash`` when the library raised.

``snnref conformance [--library NAME ...] [--json FILE]`` prints the matrix (the
JSON gives every row the gate's whole list of what it did not check: also the
undeclared surrogates, per-neuron values and dtypes); its
exit code is 1 when an installed configuration's verdict differs from the
expected one (the library or snnref changed), and 2 when no library it covers
is installed (nothing was checked, which must not read as a pass in a CI job).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

from .. import registry
from . import adapters, gate
from .contract import Implementation

# The libraries, by the name their module is imported as, with the version the verdicts were recorded on.
LIBRARIES = {
    "snntorch": "snnTorch 1.0",
    "spikingjelly": "SpikingJelly 2.0",
    "norse": "Norse 1.1",
    "sinabs": "Sinabs 3.1",
    "rockpool": "Rockpool 3.1",
}
# How each goes in beside torch==2.13.0 without pulling another torch (with CUDA) through its declared
# dependencies (torchvision, torchaudio, samna): without them, plus the small packages its neurons import.
INSTALL = {
    "snntorch": "pip install snntorch",
    "spikingjelly": "pip install --no-deps spikingjelly && pip install loguru tqdm",
    "norse": "pip install --no-deps norse==1.1.0 nirtorch==2.6",
    "sinabs": "pip install --no-deps sinabs==3.1.3 pbr==7.1.3",
    "rockpool": "pip install --no-deps rockpool==3.1.0",
}
CONFORMS, FAILS, NOT_INSTALLED = "conforms", "fails", "not installed"
# The gate's kinds of case but "strided", "out_sum" and the goldens (T = 500 runs; a row that needs them
# names them), as the README says.
CASES = ("random", "threshold", "wide", "long", "far")
OFF_THRESHOLD = ("random", "wide", "long", "far")


@dataclass(frozen=True)
class Configuration:
    library: str  # a key of LIBRARIES
    name: str  # the library's class and settings
    model: str  # the registry model it is mapped onto
    adapter: Callable[[], Implementation]  # builds the declared contract (imports the library)
    expected: str  # CONFORMS or FAILS
    reason: str  # one line of semantics
    quantity: str = ""  # the first failing quantity, when expected to fail
    kinds: Tuple[str, ...] = CASES
    examples: int = 4
    dtypes: Optional[Tuple[str, ...]] = None  # replaces the adapter's declared dtypes

    @property
    def key(self) -> str:
        return f"{self.library}: {self.name} -> {self.model}"

    def implementation(self) -> Implementation:
        impl = self.adapter()
        return replace(impl, dtypes=self.dtypes) if self.dtypes else impl


def _with(adapter, **options):
    return functools.partial(adapter, **options)


def _sinabs_multispike():
    from sinabs import activation

    return adapters.sinabs_iaf(spike_fn=activation.MultiSpike)


CONFIGURATIONS: Tuple[Configuration, ...] = (
    Configuration("snntorch", 'Leaky(reset_mechanism="zero"), off threshold', "tether.LIF", adapters.snntorch_leaky,
                  CONFORMS, "one-step-delayed, detached zero reset and pre-reset membrane: tether's update; "
                  "ATan(2a) is arctan(a); an initial membrane above threshold is reset at the first step, tether's "
                  "is not (no case starts there); beta is clamped to [0, 1], tether's decay is used raw (the cases "
                  "draw it from (0.5, 0.98))", kinds=OFF_THRESHOLD + ("golden",)),
    Configuration("snntorch", 'Leaky(reset_mechanism="zero"), exact threshold', "tether.LIF", adapters.snntorch_leaky,
                  FAILS, "fires on mem - threshold > 0, tether on >= 0", "spikes", kinds=("threshold",)),
    Configuration("snntorch", 'Leaky(reset_mechanism="zero"), float64', "tether.LIF", adapters.snntorch_leaky,
                  FAILS, "the spike comes back as float32 from float64 input", "dtype", kinds=("random",),
                  examples=1, dtypes=("float64",)),
    Configuration("snntorch", "Leaky() (subtract reset)", "tether.LIF", _with(adapters.snntorch_leaky,
                  reset_mechanism="subtract"), FAILS, "subtracts the threshold at the next step without decaying "
                  "it (beta mem + x - theta s[t-1]); no registry model does", "out:v", kinds=OFF_THRESHOLD),
    Configuration("snntorch", 'Synaptic(reset_mechanism="zero")', "hxtorch.cuba_lif", adapters.snntorch_synaptic,
                  FAILS, "the membrane adds this step's current unscaled; hxtorch adds dt/tau_mem times the "
                  "previous one (one-step synaptic delay)", "out:v"),
    Configuration("spikingjelly", "LIFNode(decay_input=False, v_reset=0, detach_reset=True)", "tether.LIF",
                  adapters.spikingjelly_lif, CONFORMS, "v - v/tau + x with a detached hard reset to 0 is tether's "
                  "update at decay 1 - 1/tau; Sigmoid(a) is sigmoid(a)"),
    Configuration("spikingjelly", "LIFNode(decay_input=True, v_reset=0, detach_reset=False) (defaults)",
                  "tether.LIF", _with(adapters.spikingjelly_lif, decay_input=True, detach_reset=False), FAILS,
                  "the default scales the input by 1/tau too (v + (x - v)/tau) and differentiates the reset",
                  "spikes", kinds=OFF_THRESHOLD),
    Configuration("spikingjelly", "IFNode(v_reset=None, detach_reset=False)", "qualia.IFSRL",
                  adapters.spikingjelly_if, CONFORMS, "v + x, fire on >=, soft reset by the threshold, "
                  "differentiated: IFSRL (threshold fixed: a Python number in SpikingJelly)"),
    Configuration("norse", 'LIFBox(method="triangle", reset_method=reset_subtract)', "rnnbuilder.LIF",
                  adapters.norse_lif_box, CONFORMS, "Euler step with dt/tau = 1 - exp(-1/tau), input as a current, "
                  "> test, undetached subtractive reset, triangle = spike_linear"),
    Configuration("norse", 'LIF(method="super")', "hxtorch.cuba_lif", adapters.norse_lif, FAILS,
                  "the membrane reads the current after this step's input (no one-step synaptic delay), the reset "
                  "is not detached, and SuperSpike ignores alpha (pinned to 1)", "out:v"),
    Configuration("sinabs", "IAF(spike_fn=SingleSpike, surrogate_grad_fn=Gaussian)", "qualia.IFSRL",
                  adapters.sinabs_iaf, CONFORMS, "v + x, fire on >=, undetached subtract-threshold reset: IFSRL "
                  "with Sinabs' Gaussian as a declared custom surrogate (threshold not trainable)"),
    Configuration("sinabs", "IAF(spike_fn=SingleSpike), float64", "qualia.IFSRL", adapters.sinabs_iaf, FAILS,
                  "SingleSpike returns float32 spikes from float64 input", "dtype", kinds=("random",), examples=1,
                  dtypes=("float64",)),
    Configuration("sinabs", "IAF() (spike_fn=MultiSpike)", "qualia.IFSRL", _sinabs_multispike, FAILS,
                  "the default emits floor(v / threshold) spikes per step, not one", "spikes", kinds=("long",)),
    Configuration("sinabs", "LIF(norm_input=False, spike_fn=SingleSpike), off threshold", "rnnbuilder.LIF",
                  adapters.sinabs_lif, CONFORMS, "exp(-1/tau) m + x, undetached subtractive reset by 1: rnnbuilder's "
                  "LIF (Gaussian surrogate declared)", kinds=OFF_THRESHOLD),
    Configuration("sinabs", "LIF(norm_input=False, spike_fn=SingleSpike), exact threshold", "rnnbuilder.LIF",
                  adapters.sinabs_lif, FAILS, "fires on v >= threshold, rnnbuilder on m > 1", "spikes",
                  kinds=("threshold",)),
    Configuration("rockpool", "LIFTorch(max_spikes_per_dt=1)", "hxtorch.cuba_lif", adapters.rockpool_lif, FAILS,
                  "the membrane reads beta (i + x), this step's input decayed once, unscaled (hxtorch: dt/tau_mem "
                  "times the previous current), and resets by subtraction", "out:v"),
    Configuration("rockpool", "LIFTorch(max_spikes_per_dt=1), float64", "hxtorch.cuba_lif", adapters.rockpool_lif,
                  FAILS, "converted with .to(float64), it crashes at step 1: StepPWL returns float32 spikes, "
                  "which meet the float64 recurrent weights (zeros, present without recurrence)", "crash",
                  kinds=("random",), examples=1, dtypes=("float64",)),
)


@dataclass(frozen=True)
class Verdict:
    configuration: Configuration
    status: str  # CONFORMS, FAILS or NOT_INSTALLED
    worst: Optional[float] = None  # fraction of the budget, when it conforms
    quantity: str = ""  # the first failing quantity
    step: Optional[int] = None  # its first failing step (None: no time axis)
    detail: str = ""  # the first failure message
    run: str = ""  # the first failing run's label (model, surrogate, case kind, seed, shape, dtype)
    not_checked: Tuple[str, ...] = ()  # the gate's list of what no run compared, each with its reason

    @property
    def uncompared(self) -> str:
        """The quantities (out:, final:, grad:) no run compared, grouped by reason: what a
        "conforms" does not vouch for (a membrane the library does not return, a fixed parameter's
        gradient), e.g. ``out:v (not returned); grad:decay, grad:alpha (fixed)``."""
        groups = {}
        for entry in self.not_checked:
            found = re.fullmatch(r"((?:out|final|grad):\S+) \((.+)\)", entry)
            if found:
                groups.setdefault(found.group(2), []).append(found.group(1))
        return "; ".join(f"{', '.join(names)} ({reason})" for reason, names in groups.items())

    @property
    def as_expected(self) -> bool:
        expected = self.configuration
        if self.status == CONFORMS:
            return expected.expected == CONFORMS and self.worst <= 1
        return self.status == FAILS and expected.expected == FAILS and self.quantity == expected.quantity

    def text(self) -> str:
        if self.status == CONFORMS:
            return f"conforms (worst {self.worst:.2f} of the budget)"
        if self.status == FAILS and self.quantity == "dtype":
            found = re.search(r"(\S+): dtype torch\.(\w+), expected torch\.(\w+)", self.detail)
            return "fails: dtype" + (" ({} is {} for {} input)".format(*found.groups()) if found else "")
        if self.status == FAILS and self.quantity == "crash":
            return f"fails: crash ({self.detail.split('crashed: ', 1)[-1][:100]})"
        if self.status == FAILS:
            return f"fails: {self.quantity}" + (f" at step {self.step}" if self.step is not None else "")
        return f"{NOT_INSTALLED} ({self.detail})"

    def as_dict(self) -> dict:
        c = self.configuration
        return {"library": c.library, "version": LIBRARIES[c.library], "configuration": c.name, "model": c.model,
                "verdict": self.status, "worst": self.worst, "quantity": self.quantity or None, "step": self.step,
                "detail": self.detail, "reason": c.reason, "expected": c.expected,
                "expected_quantity": c.quantity or None, "as_expected": self.as_expected, "run": self.run or None,
                "not_checked": list(self.not_checked)}


def installed(library: str) -> bool:
    return importlib.util.find_spec(library) is not None


def _rank(model, key, detail):
    """Equation (1)."""
    stage = 2 if key.startswith("grad:") else 1 if key.startswith("final:") else 0
    order = [f"out:{name}" for name in registry.model(model).state_names] + ["out:out", "spikes"]
    position = order.index(key) if key in order else len(order)
    step = detail["first_step"]
    return (stage, step is None, step or 0, position, key)


def quantity_at(run, model) -> Tuple[str, Optional[int], str]:
    """The first failing quantity of a failing gate run of ``model`` (equation (1)),
    its first failing step and message."""
    from . import _equivalence as equivalence

    failing = {k: d for k, d in run.details.items() if d["failed"]}
    if not failing:
        # The run raised: a contract break (a cast) or the library's own exception.
        message = run.failures[0] if run.failures else "failed"
        if equivalence.MODIFIED in message:
            return "inputs", None, message
        cast = "ImplementationError" in message and ": dtype torch." in message
        return ("dtype" if cast else "crash"), None, message
    key = min(failing, key=lambda k: _rank(model, k, failing[k]))
    message = next((f for f in run.failures if f.startswith(key)), run.failures[0] if run.failures else "")
    return key, failing[key]["first_step"], message


@functools.lru_cache(maxsize=None)
def evaluate(configuration: Configuration) -> Verdict:
    """Run ``configuration`` through the gate (cached: each row runs once per process)."""
    if not installed(configuration.library):
        return Verdict(configuration, NOT_INSTALLED, detail=f"No module named {configuration.library!r}")
    try:
        impl = configuration.implementation()
    except ImportError as error:  # installed without a module its neurons import
        return Verdict(configuration, NOT_INSTALLED, detail=str(error))
    report = gate.run(impl, examples=configuration.examples, kinds=configuration.kinds)
    not_checked = tuple(report.not_checked())
    if report.passed:
        return Verdict(configuration, CONFORMS, worst=report.worst, not_checked=not_checked)
    first = next((r for r in report.runs if not r.passed), None)
    if first is None:  # broken golden files, or no runs at all
        return Verdict(configuration, FAILS, quantity="golden", detail="; ".join(report.broken) or "no runs",
                       not_checked=not_checked)
    quantity, step, message = quantity_at(first, configuration.model)
    return Verdict(configuration, FAILS, quantity=quantity, step=step, detail=f"{first.label}: {message}",
                   run=first.label, not_checked=not_checked)


def select(libraries=None) -> Tuple[Configuration, ...]:
    """The configurations of ``libraries`` (a name, or several), all of them for None."""
    if libraries is None:
        return CONFIGURATIONS
    chosen = (libraries,) if isinstance(libraries, str) else tuple(libraries)
    for library in chosen:
        if library not in LIBRARIES:
            raise ValueError(f"--library: unknown library {library!r}; expected one of: {', '.join(LIBRARIES)}")
    return tuple(c for c in CONFIGURATIONS if c.library in chosen)


def table(verdicts) -> str:
    """The matrix as text: configuration, model, verdict, reason."""
    lines = []
    for library in LIBRARIES:
        rows = [v for v in verdicts if v.configuration.library == library]
        if not rows:
            continue
        lines.append(LIBRARIES[library])
        for verdict in rows:
            c = verdict.configuration
            mark = "" if verdict.as_expected or verdict.status == NOT_INSTALLED else \
                f"  UNEXPECTED (recorded: {c.expected}{': ' + c.quantity if c.quantity else ''})"
            lines.append(f"  {c.name}\n    -> {c.model}: {verdict.text()}{mark}")
            if verdict.run:
                # The case that shows it, so that a reader can rerun it (snnref gate with this model, kind and seed).
                lines.append(f"    in: {verdict.run}")
            if verdict.status == CONFORMS and verdict.uncompared:
                # A conforms vouches only for what was compared: say what was not, where it is a quantity.
                lines.append(f"    not compared: {verdict.uncompared}")
            lines.append(f"    {c.reason}")
    return "\n".join(lines)


def add_parser(commands):
    """Register ``conformance`` on an argparse subparsers object."""
    parser = commands.add_parser("conformance", help="run snnTorch, SpikingJelly, Norse, Sinabs and Rockpool "
                                                     "neurons through the gate: the field's conformance matrix")
    # Repeatable: a second --library used to replace the first, which then looked as if it had passed.
    parser.add_argument("--library", choices=tuple(LIBRARIES), action="append",
                        help="only this library's configurations (repeat for several)")
    parser.add_argument("--json", metavar="FILE", help="also write the matrix as JSON (atomically)")
    parser.set_defaults(run=main)
    return parser


def main(args) -> int:
    """Print the matrix; 1 when an installed configuration's verdict is not the recorded one."""
    from .._files import check_output_file, write_json

    if args.json is not None:
        check_output_file("--json", args.json)
    verdicts = [evaluate(c) for c in select(args.library)]
    print(table(verdicts))
    unexpected = [v for v in verdicts if v.status != NOT_INSTALLED and not v.as_expected]
    missing = sorted({v.configuration.library for v in verdicts if v.status == NOT_INSTALLED})
    print(f"{len(verdicts)} configurations: {sum(v.status == CONFORMS for v in verdicts)} conform, "
          f"{sum(v.status == FAILS for v in verdicts)} fail, {len(unexpected)} unexpected"
          + (f"; not installed: {', '.join(missing)}" if missing else ""))
    if args.json:
        payload = {"libraries": LIBRARIES, "configurations": [v.as_dict() for v in verdicts]}
        write_json(args.json, payload, indent=2)
    if len(missing) == len({v.configuration.library for v in verdicts}):
        print(f"snnref conformance: error: {', '.join(missing)} not installed here, so nothing was checked; "
              "without another torch: " + "; ".join(INSTALL[library] for library in missing), file=sys.stderr)
        return 2
    return 1 if unexpected else 0
