"""The ``snnref`` command line."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time

from . import _machine, registry
from ._files import can_create_in, check_output_file


def _available_backends():
    try:
        import torch
    except ImportError:
        return ["spec"]
    if not torch.cuda.is_available():
        # The kernels run on CPU tensors under Triton's interpreter, which must
        # be on before they are imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    found = ["spec", "torch"] + (["cuda"] if torch.cuda.is_available() else [])
    found += ["cpu"] if importlib.util.find_spec("numba") is not None else []
    try:
        import triton  # noqa: F401
    except ImportError:
        return found
    return found + ["triton"]


def _unavailable(backend):
    """Why ``backend`` (not in ``_available_backends()``) cannot run here."""
    needs = {"cuda": "a CUDA device (torch.cuda.is_available() is False here)", "cpu": "numba, which is not installed",
             "triton": "triton, which is not installed"}.get(backend, "torch, which is not installed")
    return ValueError(f"backend: {backend!r} is not available here: it needs {needs}")


def _verify(args) -> int:
    from .testing._verify import FD_BOUND, load_implementation, verify_implementation

    # A model named twice is one row, not two.
    keys = list(dict.fromkeys(args.model)) if args.model else sorted(registry.MODELS)
    for key in keys:
        registry.model(key, "--model")
    # Every output target is checked before the run starts, not after it.
    if args.json is not None:
        check_output_file("--json", args.json)
    if args.save_failures:
        check_output_dir("--save-failures", args.save_failures)
    if args.report is not None:
        from .testing import report as html_report

        html_report.check_target("--report", args.report)
        html_report.check_apart("--report", args.report, {"--json": args.json, "--save-failures": args.save_failures})
    if (args.case or args.save_failures or args.examples is not None) and not args.impl:
        raise ValueError("--case, --save-failures and --examples: they apply to --impl only")
    # Named twice is one column; "all" among others is every one (--backend spec kept only its last).
    chosen = list(dict.fromkeys(args.backend or ["all"]))
    if args.impl and chosen != ["all"]:
        raise ValueError("--backend: applies without --impl only (--impl runs your implementation)")
    if args.golden_dir is not None:
        from .testing import _golden as golden

        # Before the run, not as a failed check after it (nor ignored under --quick).
        try:
            golden.read_manifest(args.golden_dir)
        except golden.GoldenError as error:
            raise ValueError(f"--golden-dir: {error}") from None
    if args.impl:
        fn = load_implementation(args.impl)
        declared = getattr(fn, "model", None)  # an Implementation names its model
        if not args.model and not declared:
            raise ValueError("--impl: name the model it implements with --model KEY")
        keys = list(dict.fromkeys(args.model)) if args.model else [declared]
        _available_backends()
        from .testing import Implementation, gate

        for key in keys:
            # The contract for each model, before the table starts: an Implementation of another
            # model was refused after the legend, the header and the row's name had been printed.
            impl = Implementation.of(fn, key)
            if args.case:
                # A damaged or foreign case file is refused before the table starts (replayed below).
                gate.load_case(args.case, impl)
    # "continuous": the SPEC.md section 9 claims, for the models that have a continuous counterpart.
    available = _available_backends() + ["continuous"]
    backends = ["impl"] if args.impl else available if "all" in chosen else chosen
    for backend in backends:
        if backend not in available and backend != "impl":
            raise _unavailable(backend)
    from .continuous import MAPPED

    # Refused before the table starts (a mixed list runs the models that have a counterpart).
    if backends == ["continuous"] and not set(keys) & set(MAPPED):
        raise ValueError(f"--backend continuous: no continuous counterpart for {', '.join(keys)}; "
                         f"these models have one: {', '.join(MAPPED)}")
    print(f"snnref verify: {len(keys)} models x {', '.join(backends)}, seed {args.seed}"
          + (f", implementation {args.impl}" if args.impl else "") + (" (quick)" if args.quick else ""))
    print(f"  spec:  worst = vjp(smooth=True) vs finite differences (pass < {FD_BOUND:g} relative); "
          f"extra = worst float32 spec error in ulps")
    print("  continuous: the SPEC.md section 9 relation to the exact continuous-time neuron "
          "(exact to float64 rounding, or the fitted order), solve_ivp agreement, exact gradients vs FD")
    print("  torch, cuda, triton, cpu, impl: worst = worst error as a fraction of the SPEC.md section 7 budget "
          "(snnref.testing.tolerance; pass <= 1); extra = spike flips explained by teacher forcing")
    header = f"{'model':<30} {'backend':<10} {'cases':>5} {'worst':>9} {'extra':>6}  {'checks':<58} result"
    print(header)
    print("-" * len(header))
    jobs = [(key, backend) for key in keys for backend in backends if backend != "continuous" or key in MAPPED]
    failed, results = 0, []
    start = time.perf_counter()
    if args.impl:
        rows = ((key, backend, lambda key=key: verify_implementation(
            fn, key, args.seed, args.quick, golden_dir=args.golden_dir, examples=args.examples,
            case_file=args.case, save_failures=args.save_failures, impl_spec=args.impl)) for key, backend in jobs)
    else:
        rows = _rows(jobs, args.seed, args.quick, args.golden_dir, args.jobs or _machine.cores())
    for index, (key, backend, outcome) in enumerate(rows, 1):
        print(f"[{index:>2}/{len(jobs)}] {key} ({backend}) ...", file=sys.stderr, flush=True)
        result = outcome()
        results.append(result)
        verdict = "PASS" if result.passed else "FAIL"
        failed += not result.passed
        if backend == "continuous":
            # Its measurements are in the checks column (the header's continuous line): no count or worst.
            cases, worst, extra = "-", "-", "-"
        else:
            cases, extra = str(result.fd_cases), f"{result.worst_float32:.1f}"
            worst = f"{result.worst_fd:.1e}" if backend == "spec" or result.worst_fd >= 1e4 \
                else f"{result.worst_fd:.3f}"
        print(f"{key:<30} {backend:<10} {cases:>5} {worst:>9} {extra:>6}  "
              f"{' '.join(result.checked):<58} {verdict}", flush=True)
        if result.gate is not None:
            # The gate's own report: a summary per quantity, the first failure, what was not checked.
            print("\n".join("    " + line for line in result.gate.text().splitlines()[1:]), flush=True)
            continue
        for failure in result.failures:
            print(f"    {failure}", flush=True)
    elapsed = time.perf_counter() - start
    print(f"{len(jobs) - failed} passed, {failed} failed ({elapsed:.1f} s)")
    if args.json:
        _write_json(args.json, results, elapsed)
    if args.report is not None:
        page = html_report.write(args.report, results, title="snnref verify", option="--report")
        print(f"report: {page.index} ({len(page.drawn)} failing quantities drawn)")
    return 1 if failed else 0


def _row(key, backend, seed, quick, golden_dir):
    """One row of the table: ``backend`` (spec, continuous or a production backend) on ``key``."""
    from .testing._verify import verify_backend, verify_model

    if backend == "spec":
        return verify_model(key, seed, quick, golden_dir=golden_dir)
    if backend == "continuous":
        return _continuous_result(key, seed, quick)
    return verify_backend(key, backend, seed, quick, golden_dir=golden_dir)


def _one_thread_each():
    # The worker processes share the machine's cores already.
    import torch

    torch.set_num_threads(1)


def _rows(jobs, seed, quick, golden_dir, processes):
    """(key, backend, a call that returns its result) per job, in the jobs' order.  With
    more than one process the rows run in a pool of fresh interpreters (spawned: they
    import snnref afresh, with the environment set here, TRITON_INTERPRET included);
    the calls then wait for their row's result."""
    if processes <= 1 or len(jobs) <= 1:
        for key, backend in jobs:
            yield key, backend, lambda key=key, backend=backend: _row(key, backend, seed, quick, golden_dir)
        return
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(min(processes, len(jobs)), multiprocessing.get_context("spawn"),
                                                  initializer=_one_thread_each)
    try:
        futures = [pool.submit(_row, key, backend, seed, quick, golden_dir) for key, backend in jobs]
        for (key, backend), future in zip(jobs, futures):
            yield key, backend, future.result
    finally:
        # A row that raised (or an interrupt) leaves the rows not yet started unstarted.
        pool.shutdown(wait=True, cancel_futures=True)


def positive_integer(text):
    """An integer >= 1: a number of random cases (``--examples``, the plugin's
    ``--snnref-examples``), where 0 would leave nothing to check, or of rounds."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _processes(text):
    limit = _machine.cores()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {limit}, got {text!r}") from None
    if not 1 <= value <= limit:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {limit} (this machine's cores), got {value}")
    return value


def _continuous_result(key, seed, quick):
    """The continuous row of ``key`` as a verify result: its summary is the checks column."""
    from .continuous import verify as continuous_verify
    from .testing._verify import ModelResult

    row = continuous_verify.row(key, quick, seed)
    return ModelResult(key, "continuous", [row.summary], failures=list(row.failures))


def _write_json(path, results, elapsed):
    from ._files import write_json

    rows = [{"model": r.model, "backend": r.backend, "passed": r.passed, "checks": r.checked, "failures": r.failures}
            | ({} if r.backend == "continuous" else {"cases": r.fd_cases, "worst": r.worst_fd,
                                                        "extra": r.worst_float32})
            | ({"gate": r.gate.as_dict()} if r.gate is not None else {})
            for r in results]
    document = {"passed": all(r.passed for r in results), "seconds": round(elapsed, 1), "results": rows}
    write_json(path, document)


def check_output_dir(option, path):
    """``path`` is a directory that exists and can be written, or can be made in one that can."""
    from pathlib import Path

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{option}: {path} exists and is not a directory")
    existing = target if target.exists() else target.parent if str(target.parent) else Path(".")
    if not existing.exists():
        raise ValueError(f"{option}: {existing} does not exist (the directory to write into must)")
    if not existing.is_dir() or not can_create_in(existing):
        raise ValueError(f"{option}: {existing} is not a writable directory")


def nonempty(text):
    """A name or path: an empty one (an unset shell variable, ``--impl "$IMPL"``) is
    refused, where reading it as absent would run something else and pass."""
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return text


def nonnegative_integer(text):
    """An integer >= 0: a seed (``--seed`` of verify and converge), a number of steps
    (``nir check --max-step-difference``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _golden_generate(args) -> int:
    from pathlib import Path

    from .testing import _golden as golden, golden_cases

    for key in args.model or ():
        registry.model(key, "--model")
    if args.out == "":
        raise ValueError("--out: expected a directory name, got an empty string")
    if args.cases and (args.model or args.out is None):
        raise ValueError("--cases: give --out DIR (the store to write) and no --model (the case file names them)")
    out = Path(args.out or golden.DEFAULT_DIR)

    def progress(what):
        print(f"writing {what}", file=sys.stderr, flush=True)

    try:
        if args.cases:
            # A bad case file is a ValueError naming the file, the case and the field: exit 2.
            manifest = golden_cases.generate(args.cases, out, progress=progress)
        else:
            manifest = golden.generate(out, args.model, progress=progress)
    except golden.GoldenError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        # A refused --out is a usage error, as a bad argument is.
        return 2 if isinstance(error, golden.OutputRefused) else 1
    except OSError as error:
        # A full disk names no file, a refused one the hidden staging folder: say which store.
        print(f"snnref: error: --out {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"{len(manifest['files'])} golden files and {golden.MANIFEST} in {out}")
    return 0


def _store_error(error) -> int:
    """``golden check``'s exit for a store it cannot check: 2 where ``--dir`` names no store
    (the CI's path is wrong), 1 where the store is damaged (its goldens cannot be trusted)."""
    from .testing import _golden as golden

    print(f"snnref: error: {error}", file=sys.stderr)
    return 2 if isinstance(error, golden.NotAStore) else 1


def _golden_check(args) -> int:
    from .testing import _golden as golden

    if args.impl:
        return _golden_check_implementation(args)
    if args.model:
        raise ValueError("--model: applies to --impl only (the spec and the backends run every model)")
    # Golden traces are re-run on CPU tensors (the kernels under the interpreter without a GPU).
    available = [b for b in _available_backends() if b != "cuda"]
    # Named twice is one; "all" among others is every one (--backend spec --backend torch kept torch alone).
    chosen = list(dict.fromkeys(args.backend or ["spec"]))
    backends = available if "all" in chosen else chosen
    for backend in backends:
        if backend not in available:
            raise _unavailable(backend)
    try:
        results = golden.check(golden.store_dir(args.dir), backends,
                               progress=lambda what: print(f"checking {what}", file=sys.stderr, flush=True))
    except golden.GoldenError as error:
        return _store_error(error)
    failed = [r for r in results if not r.passed]
    for result in results:
        if args.verbose or not result.passed:
            print(f"{'PASS' if result.passed else 'FAIL'} {result.name} ({result.backend}): {result.detail}")
    # One result per file, backend and dtype (170 for 85 files on cpu read as twice the store).
    runs = ", ".join(f"{backend} in {' and '.join(golden.rerun_dtypes(backend))}" for backend in backends)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
          f"({len({r.name for r in results})} golden files x {runs})")
    return 1 if failed else 0


def _golden_check_implementation(args) -> int:
    """--impl: the store's checksums, then the gate (golden cases only) on the
    implementation's model, under the contract it declares."""
    from .testing import Implementation, _golden as golden, gate
    from .testing._verify import load_implementation

    if args.backend not in (None, ["spec"]):
        raise ValueError("--backend: applies without --impl only (--impl runs your implementation)")
    fn = load_implementation(args.impl)
    _available_backends()
    try:
        directory = golden.store_dir(args.dir)
        # Every file's checksum, whichever model it holds (no backend re-runs them), and no
        # file the manifest does not list: a store that fails these is not run at all.
        damaged = [r for r in golden.check(directory, ()) if not r.passed]
        models = sorted({e["model"] for e in golden.read_manifest(directory)["files"].values()})
    except golden.GoldenError as error:
        return _store_error(error)
    if damaged:
        for result in damaged:
            print(f"FAIL {result.name} ({result.backend}): {result.detail}")
        print(f"{len(damaged)} failed: the store {directory} is damaged; the implementation was not run")
        return 1
    declared = getattr(fn, "model", None)  # an Implementation names its model
    model = args.model or declared or (models[0] if len(models) == 1 else None)
    if model is None:
        raise ValueError(f"--impl: name the model it implements with --model KEY (the store holds "
                         f"{', '.join(models)})")
    model = registry.model(model, "--model" if args.model else "model").key
    if model not in models:
        raise ValueError(f"--model: the store {directory} holds no golden file of {model} "
                         f"(it holds {', '.join(models)})")
    report = gate.run(Implementation.of(fn, model).named_by(args.impl), kinds=("golden",), golden_dir=directory)
    print(report.text())
    others = [m for m in models if m != model]
    if others:
        print(f"  other models in the store, not run: {', '.join(others)}")
    return 0 if report.passed else 1


def _golden_diff(args) -> int:
    from .testing import _golden as golden

    try:
        result = golden.diff(args.first, args.second)
    except golden.GoldenError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2
    counts = {kind: sum(f.change == kind for f in result.files) for kind in ("changed", "added", "removed")}
    unlisted = sum(f.change == "unlisted" for f in result.files)
    if unlisted:
        counts["unlisted"] = unlisted
    verdict = "identical" if result.identical else "differ"
    print(f"snnref golden diff {args.first} {args.second}: {verdict} ("
          + ", ".join(f"{n} {kind}" for kind, n in counts.items())
          + f"; {result.compared} files in both)")
    for note in result.notes:
        print(f"  {note}")
    for change in result.files:
        print(f"{change.change} {change.name}")
        for note in change.notes:
            print(f"    {note}" if change.change == "unlisted" else f"    manifest {note}")
        for quantity in change.quantities:
            print(f"    {quantity.key:<22} {quantity.change}" + (f": {quantity.detail}" if quantity.detail else ""))
    return 0 if result.identical else 1


def _add_nir(commands):
    """``snnref nir``, or a command that says how to get it when the ``nir`` extra is missing."""
    try:
        from .testing.nir import add_parser
    except ImportError as error:
        # The name bound by "except ... as" is gone after the block: keep the message.
        message = str(error)
        stub = commands.add_parser("nir", help="run or check NIR graphs (needs: pip install 'snnref[nir]')")
        stub.add_argument("rest", nargs=argparse.REMAINDER)
        stub.set_defaults(run=lambda args: print(f"snnref nir: error: {message}", file=sys.stderr) or 2)
    else:
        add_parser(commands)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snnref", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="prove the spec right over the whole registry")
    verify.add_argument("--model", action="append", metavar="KEY",
                        help="check only this registry model (repeatable)")
    verify.add_argument("--seed", type=nonnegative_integer, default=0, help="seed of the random cases (default 0)")
    verify.add_argument("--backend", action="append",
                        choices=["all", "spec", "torch", "cuda", "triton", "cpu", "continuous"],
                        help="check only this backend (repeatable; default: every one available; cuda = the "
                             "torch path on CUDA tensors; triton runs on CUDA when present)")
    verify.add_argument("--quick", action="store_true",
                        help="fewer cases: default surrogate, per-neuron parameters, no strided input or goldens")
    verify.add_argument("--json", metavar="FILE", help="also write the results as JSON (for CI; an infinite worst "
                        "fraction, a failure that is no error over a budget, as the string \"inf\")")
    verify.add_argument("--impl", type=nonempty, metavar="MODULE:CALLABLE",
                        help="check your implementation (snnref.simulate's signature, or a "
                             "snnref.testing.Implementation declaring its contract) of --model KEY")
    verify.add_argument("--golden-dir", type=nonempty, metavar="DIR",
                        help="golden store to use (default: the one installed with snnref)")
    verify.add_argument("--examples", type=positive_integer, metavar="N",
                        help="--impl: random cases (default 8; --quick 3)")
    verify.add_argument("--save-failures", type=nonempty, metavar="DIR",
                        help="--impl: write the first failing case to DIR as .npz, with the command that replays it")
    verify.add_argument("--case", type=nonempty, metavar="FILE",
                        help="--impl: replay one case written by --save-failures")
    verify.add_argument("--report", metavar="DIR",
                        help="also write an HTML page to DIR: the summary table and, for every failing quantity, "
                             "figures of its traces, spike rasters and error (needs pip install 'snnref[report]')")
    verify.add_argument("--jobs", type=_processes, default=None, metavar="N",
                        help="rows run at once, each in its own process (default: this machine's cores; "
                             "1: all in this process; --impl rows always run in this process)")
    verify.set_defaults(run=_verify)
    golden = commands.add_parser("golden", help="generate, check or compare golden traces")
    golden_commands = golden.add_subparsers(dest="golden_command", required=True)
    generate = golden_commands.add_parser("generate", help="write the golden store from the float64 spec")
    generate.add_argument("--model", action="append", metavar="KEY", help="only this model (repeatable)")
    generate.add_argument("--cases", type=nonempty, metavar="CASES.toml",
                          help="write a store of your own cases (models, surrogates, parameters, shapes, seeds, "
                               "initial states, injected traces) to --out")
    generate.add_argument("--out", default=None, help="the store's directory (default: golden; required with --cases)")
    generate.set_defaults(run=_golden_generate)
    check = golden_commands.add_parser("check", help="verify checksums and re-run every golden case")
    check.add_argument("--backend", action="append", choices=["spec", "torch", "triton", "cpu", "all"],
                       help="a backend to re-run on (repeatable; default: spec)")
    check.add_argument("--dir", "--golden-dir", dest="dir", type=nonempty, default=None,
                       help="the store's directory (default: the one installed with snnref)")
    check.add_argument("--impl", type=nonempty, metavar="MODULE:CALLABLE",
                       help="run your implementation (snnref.simulate's signature, or a "
                            "snnref.testing.Implementation) through the gate on the store's cases")
    check.add_argument("--model", type=nonempty, metavar="KEY",
                       help="--impl: the model it implements (default: its declared one, or the store's only one)")
    check.add_argument("--verbose", action="store_true", help="print every result, not only failures")
    check.set_defaults(run=_golden_check)
    compare = golden_commands.add_parser(
        "diff",
        help="which golden traces changed between two stores (exit 0: identical, 1: they differ, 2: unreadable)")
    compare.add_argument("first", type=nonempty, metavar="A", help="a store's directory")
    compare.add_argument("second", type=nonempty, metavar="B", help="another store's directory")
    compare.set_defaults(run=_golden_diff)
    from .continuous import cli as continuous_cli

    continuous_cli.add_parser(commands)
    from .testing import conformance

    conformance.add_parser(commands)
    _add_nir(commands)
    return parser


def main(argv=None) -> int:
    try:
        # Building it imports torch and the peer libraries: seconds in which Ctrl-C is likely.
        parser = _parser()
    except KeyboardInterrupt:
        print("snnref: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    previous = _end_on_sigterm()
    # None where stdout was closed (print then writes nothing).
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = _GuardedStdout(stdout)
    try:
        code = args.run(args)
        # Flushed here rather than at exit, so that a stdout that takes nothing is handled below.
        if stdout is not None:
            sys.stdout.flush()
        return code
    except ValueError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2
    except StdoutLost as lost:
        # /dev/full, a failing device: the output is lost, which the exit code must say.
        print(f"snnref: error: the output could not be written to stdout ({lost.__cause__})", file=sys.stderr)
        _discard(stdout)
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): what is left has nowhere to go.
        _discard(stdout)
        return 128 + signal.SIGPIPE
    except OSError as error:
        # A file the command writes or reads failed (a full disk, a file system that
        # refuses it): its cleanups ran on the way here; the reason, not a traceback.
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: the cleanups ran on the way here (nothing half-written is left); no traceback.
        print("snnref: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class StdoutLost(Exception):
    """stdout refused a write (a full device, an I/O error); the OSError is its cause."""


class _GuardedStdout:
    """``sys.stdout`` during a command: a write error of stdout's (other than a closed
    pipe) becomes StdoutLost, told apart from the same OSError of a file being written."""

    def __init__(self, stream):
        self._stream = stream

    def _guarded(self, call, *arguments):
        try:
            return call(*arguments)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise StdoutLost() from error

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _discard(stdout):
    """Point stdout's descriptor at /dev/null: Python's flush at exit would otherwise
    raise again with what is still buffered."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _end_on_sigterm():
    """Make SIGTERM (kill, timeout, a cancelled CI job) end the command as Ctrl-C
    does, through every cleanup: a store or report being written is removed,
    not left half-written beside its target.  The previous handler, to restore
    (None where handlers cannot be set: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminated)


if __name__ == "__main__":
    sys.exit(main())
