"""The gate as a pytest plugin (entry point ``pytest11``: ``snnref``), for a library's CI.

    pytest --snnref-impl mypackage.neurons:my_lif --snnref-model tether.LIF

adds one test item per model and check, ``snnref[tether.LIF-random]``,
``-threshold``, ``-wide``, ``-long``, ``-strided``, ``-out_sum``, ``-far`` and ``-golden`` (see
``snnref.testing.gate``), each failing with the gate's report.  The target is
a function with ``snnref.simulate``'s signature or an
``snnref.testing.Implementation`` (then ``--snnref-model`` may be left out).
Options: ``--snnref-golden-dir``, ``--snnref-examples``, ``--snnref-seed``,
``--snnref-save-failures DIR``: each failing item's first failing case as an
``.npz``, and in its report the ``snnref verify --case`` command that replays
it (a CI artifact to debug from), and
``--snnref-report DIR``: at the end of the session, an HTML page of every gate
item's results with figures of each failing quantity (``snnref.testing.report``;
needs the extra ``snnref[report]``).  Under pytest-xdist (``-n``) each worker
hands its items' gate reports to the controller when it finishes, and the
controller writes the one page.

The fixture ``snnref_gate`` runs the gate inside a test of your own::

    def test_my_lif_conforms(snnref_gate):
        snnref_gate(Implementation(my_lif, "tether.LIF", surrogates=("arctan",)))

Nothing heavy is imported until a gate runs: installing snnref costs other
projects' test sessions nothing.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from ..cli import check_output_dir, nonempty, nonnegative_integer, positive_integer

# The gate reports of this session's items, for --snnref-report.
GATE_REPORTS = pytest.StashKey[list]()
REPORT_PAGE = pytest.StashKey[object]()
# The checks of this session's items that no case of the contract fits, skipped: (model, kind, why).
GATE_SKIPPED = pytest.StashKey[list]()
# Where an xdist worker puts its gate reports and skipped checks for the controller.
WORKER_REPORTS = "snnref_gate_reports"
WORKER_SKIPPED = "snnref_gate_skipped"


def pytest_addoption(parser):
    group = parser.getgroup("snnref", "snnref: check an SNN implementation against the spec")
    group.addoption("--snnref-impl", metavar="MODULE:CALLABLE",
                    help="the implementation to check (snnref.simulate's signature, or an Implementation)")
    group.addoption("--snnref-model", action="append", default=[], metavar="KEY",
                    help="registry model it implements (repeatable)")
    group.addoption("--snnref-golden-dir", metavar="DIR", help="golden store (default: the installed one)")
    group.addoption("--snnref-examples", type=positive_integer, default=8, metavar="N", help="random cases (default 8)")
    group.addoption("--snnref-seed", type=nonnegative_integer, default=0, metavar="SEED",
                    help="seed of the cases (default 0)")
    group.addoption("--snnref-save-failures", type=nonempty, metavar="DIR",
                    help="write each failing item's first failing case to DIR, with the command that replays it")
    group.addoption("--snnref-report", metavar="DIR",
                    help="write an HTML page with figures of every failure to DIR (needs snnref[report])")


class GateItem(pytest.Item):
    """One model x check of the gate."""

    def __init__(self, *, impl, kind, **kwargs):
        super().__init__(**kwargs)
        self.impl, self.kind = impl, kind

    def runtest(self):
        from . import ConformanceError, gate

        options = self.config.option
        report = gate.run(self.impl, examples=options.snnref_examples, seed=options.snnref_seed,
                          kinds=(self.kind,), golden_dir=options.snnref_golden_dir)
        if not report.runs and not report.broken:
            # The contract rules out every case of this check (a pin, a custom surrogate): nothing ran,
            # which is neither a pass nor a failure; what was left out is said (--snnref-report's page,
            # which would read a gate with no run as a failure, lists it under "Not checked").
            why = f"{self.kind}: no case of this check fits the declared contract; not checked: " \
                + "; ".join(report.unchecked)
            self.config.stash.setdefault(GATE_SKIPPED, []).append((self.impl.model, self.kind, why))
            pytest.skip(why)
        self.config.stash.setdefault(GATE_REPORTS, []).append(report)
        if not report.passed:
            if options.snnref_save_failures:
                import sys

                from . import _pythonpath_for

                # The folder the target's own module imports from (an Implementation in a test
                # folder may wrap a function from elsewhere).
                target_module = sys.modules[options.snnref_impl.split(":")[0]]
                gate.save_failure(report, options.snnref_save_failures, options.snnref_impl,
                                  _pythonpath_for(target_module))
            raise ConformanceError(report.text())
        # A pass says what it checked and what it did not, as the CLI does (pytest -rP shows it).
        self.add_report_section("call", "snnref gate", report.text())

    def repr_failure(self, excinfo):
        from . import ConformanceError

        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"snnref gate: {self.impl.model} {self.kind}"


def _contracts(config):
    """The declared contract of ``--snnref-impl`` for each model (none without
    one), after every option is checked; a bad option is a ``pytest.UsageError``
    naming it."""
    target = config.getoption("snnref_impl")
    if not target:
        if config.getoption("snnref_model"):
            raise pytest.UsageError("--snnref-model: name the implementation with --snnref-impl MODULE:CALLABLE")
        if config.getoption("snnref_report") is not None:
            raise pytest.UsageError("--snnref-report: it reports the gate items of --snnref-impl MODULE:CALLABLE; "
                                    "name the implementation")
        if config.getoption("snnref_save_failures") is not None:
            raise pytest.UsageError("--snnref-save-failures: it saves the failing cases of --snnref-impl "
                                    "MODULE:CALLABLE; name the implementation")
        return []
    from ._verify import load_implementation
    from . import Implementation

    try:
        fn = load_implementation(target)
        # A model named twice is one set of items (one node id each).
        models = list(dict.fromkeys(config.getoption("snnref_model"))) or [getattr(fn, "model", None)]
        if models == [None]:
            raise ValueError("--snnref-model: name the model it implements (e.g. --snnref-model tether.LIF)")
        contracts = [Implementation.of(fn, model).named_by(target) for model in models]
        if config.getoption("snnref_report") is not None:
            from .report import check_apart, check_target

            check_target("--snnref-report", config.getoption("snnref_report"))
            check_apart("--snnref-report", config.getoption("snnref_report"),
                        {"--snnref-save-failures": config.getoption("snnref_save_failures")})
        if config.getoption("snnref_save_failures") is not None:
            check_output_dir("--snnref-save-failures", config.getoption("snnref_save_failures"))
        if config.getoption("snnref_golden_dir") is not None:
            from . import _golden as golden

            # Before the session, as the CLI refuses it, not as a traceback in the golden items.
            try:
                golden.read_manifest(config.getoption("snnref_golden_dir"))
            except golden.GoldenError as error:
                raise ValueError(f"--snnref-golden-dir: {error}") from None
    except ValueError as error:
        message = str(error).replace("--impl", "--snnref-impl")
        # A model name comes from --snnref-model (or the Implementation the target declares).
        if message.startswith("model: "):
            message = "--snnref-model: " + message[len("model: "):]
        raise pytest.UsageError(message) from None
    return contracts


# First, so that -k and -m select among the gate items too.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    from . import gate

    contracts = _contracts(config)
    if not contracts:
        return
    added = []
    for impl in contracts:
        for kind in gate.KINDS:
            name = f"snnref[{impl.model}-{kind}]"
            # The node id given as the string pytest writes to its cache and parses back: built
            # from the name, its bracket would not read as parameters, and --lf would find no
            # earlier failure among these items.
            added.append(GateItem.from_parent(session, name=name, nodeid=f"::{name}", impl=impl, kind=kind))
    items.extend(added)
    # Counted as collected, as the items of test files are: else "collected 0 items / 6 deselected /
    # -6 selected" under -k.
    config.hook.pytest_collectreport(report=pytest.CollectReport("", "passed", None, added))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Under pytest-xdist the items are collected on the workers, where a usage
    error was lost (no tests ran, exit 5, or an INTERNALERROR naming another
    test): the controller checks the options first, as a run without -n does."""
    config = session.config
    if not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no":
        _contracts(config)


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist, on the controller: a worker finished; keep its gate reports.
    Pickled by snnref's own worker for this session's controller, never read
    from a file."""
    output = getattr(node, "workeroutput", {})
    if output.get(WORKER_REPORTS):
        node.config.stash.setdefault(GATE_REPORTS, []).extend(pickle.loads(output[WORKER_REPORTS]))
    node.config.stash.setdefault(GATE_SKIPPED, []).extend(output.get(WORKER_SKIPPED, []))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    directory = config.getoption("snnref_report", None)
    reports = config.stash.get(GATE_REPORTS, [])
    if not directory:
        return
    if _is_xdist_worker(config):
        # Without the planned cases, which the page does not read: a custom surrogate made of lambdas
        # would not pickle, and the error, raised here in a worker, was lost with the whole page.
        handed = [replace(report, runs=[replace(run, planned=None) for run in report.runs]) for report in reports]
        config.workeroutput[WORKER_REPORTS] = pickle.dumps(handed)
        config.workeroutput[WORKER_SKIPPED] = config.stash.get(GATE_SKIPPED, [])
        return
    if not reports:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        # The items that ran would read as the whole gate's verdict; the previous page stays.
        config.stash[REPORT_PAGE] = None
        return
    from . import gate as gate_checks
    from .report import write

    # The order the items ran in (which worker ran what, under xdist) is not the page's order.
    reports = sorted(reports, key=lambda gate: (gate.model, [run.kind for run in gate.runs], gate.name))
    ran = {}
    for report in reports:
        ran.setdefault(report.model, set()).update(run.kind for run in report.runs)
    skipped = config.stash.get(GATE_SKIPPED, [])
    for model, kind, _ in skipped:
        ran.setdefault(model, set()).add(kind)
    # A check no case of the contract fits is said as such; one that did not run at all, as that.
    not_run = [f"{model}: {why}" for model, _, why in skipped]
    not_run += [f"{model}: the gate's {', '.join(missing)} checks did not run in this session (deselected, or "
                f"the session stopped first)" for model, kinds in ran.items()
                if (missing := [kind for kind in gate_checks.KINDS if kind not in kinds])]
    page = write(directory, reports, title="snnref gate (pytest)", option="--snnref-report", not_run=not_run)
    config.stash[REPORT_PAGE] = page


def pytest_terminal_summary(terminalreporter, config):
    if REPORT_PAGE not in config.stash:
        return
    page = config.stash[REPORT_PAGE]
    if page is None:
        terminalreporter.write_line("snnref report: not written, the session was interrupted")
    else:
        terminalreporter.write_line(f"snnref report: {page.index} ({len(page.drawn)} failing quantities drawn)")


@pytest.fixture
def snnref_gate(request):
    """``snnref_gate(fn_or_implementation, model=None, **options)``: ``assert_conforms``
    with the session's ``--snnref-golden-dir``; returns the worst fraction of the budget."""
    from . import assert_conforms

    def run_gate(fn, model=None, **options):
        options.setdefault("golden_dir", request.config.getoption("snnref_golden_dir"))
        return assert_conforms(fn, model, **options)

    return run_gate
