"""The ``snnref`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import registry


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
    try:
        import triton  # noqa: F401
    except ImportError:
        return found
    return found + ["triton"]


def _verify(args) -> int:
    from .verify import FD_BOUND, load_implementation, verify_backend, verify_implementation, verify_model

    keys = args.model or sorted(registry.MODELS)
    for key in keys:
        registry.model(key)
    if args.impl:
        if not args.model:
            raise ValueError("--impl: name the model it implements with --model KEY")
        fn = load_implementation(args.impl)
        _available_backends()
    available = _available_backends()
    backends = ["impl"] if args.impl else available if args.backend == "all" else [args.backend]
    for backend in backends:
        if backend not in available and backend != "impl":
            raise ValueError(f"backend: {backend!r} is not available here (its package is not installed)")
    print(f"snnref verify: {len(keys)} models x {', '.join(backends)}, seed {args.seed}"
          + (f", implementation {args.impl}" if args.impl else "") + (" (quick)" if args.quick else ""))
    print(f"  spec:  worst = vjp(smooth=True) vs finite differences (pass < {FD_BOUND:g} relative); "
          f"extra = worst float32 spec error in ulps")
    print("  torch, cuda, triton, impl: worst = worst error as a fraction of the SPEC.md section 7 budget "
          "(pass <= 1); extra = spike flips explained by teacher forcing")
    header = f"{'model':<30} {'backend':<7} {'cases':>5} {'worst':>9} {'extra':>6}  {'checks':<58} result"
    print(header)
    print("-" * len(header))
    jobs = [(key, backend) for key in keys for backend in backends]
    failed, results = 0, []
    start = time.perf_counter()
    for index, (key, backend) in enumerate(jobs, 1):
        print(f"[{index:>2}/{len(jobs)}] {key} ({backend}) ...", file=sys.stderr, flush=True)
        if backend == "spec":
            result = verify_model(key, args.seed, args.quick)
        elif backend == "impl":
            result = verify_implementation(fn, key, args.seed, args.quick)
        else:
            result = verify_backend(key, backend, args.seed, args.quick)
        results.append(result)
        verdict = "PASS" if result.passed else "FAIL"
        failed += not result.passed
        worst = f"{result.worst_fd:.1e}" if backend == "spec" else f"{result.worst_fd:.3f}"
        print(f"{key:<30} {backend:<7} {result.fd_cases:>5} {worst:>9} {result.worst_float32:>6.1f}  "
              f"{' '.join(result.checked):<58} {verdict}", flush=True)
        for failure in result.failures:
            print(f"    {failure}", flush=True)
    elapsed = time.perf_counter() - start
    print(f"{len(jobs) - failed} passed, {failed} failed ({elapsed:.1f} s)")
    if args.json:
        _write_json(args.json, results, elapsed)
    return 1 if failed else 0


def _write_json(path, results, elapsed):
    import json
    from pathlib import Path

    from .golden import write_atomically

    rows = [{"model": r.model, "backend": r.backend, "passed": r.passed, "cases": r.fd_cases,
             "worst": r.worst_fd, "extra": r.worst_float32, "checks": r.checked, "failures": r.failures}
            for r in results]
    document = {"passed": all(r.passed for r in results), "seconds": round(elapsed, 1), "results": rows}
    target = Path(path)
    if target.parent and not target.parent.is_dir():
        raise ValueError(f"--json: the directory {target.parent} does not exist")
    write_atomically(target, (json.dumps(document, indent=1) + "\n").encode())


def _golden_generate(args) -> int:
    from pathlib import Path

    from . import golden

    for key in args.model or ():
        registry.model(key)
    try:
        manifest = golden.generate(Path(args.out), args.model,
                                   progress=lambda what: print(f"writing {what}", file=sys.stderr, flush=True))
    except golden.GoldenError as error:
        print(f"snnref golden: error: {error}", file=sys.stderr)
        return 1
    print(f"{len(manifest['files'])} golden files and {golden.MANIFEST} in {args.out}")
    return 0


def _golden_check(args) -> int:
    from pathlib import Path

    from . import golden

    # Golden traces are re-run on CPU tensors (the kernels under the interpreter without a GPU).
    available = [b for b in _available_backends() if b != "cuda"]
    backends = available if args.backend == "all" else [args.backend]
    for backend in backends:
        if backend not in available:
            raise ValueError(f"backend: {backend!r} is not available here (its package is not installed)")
    try:
        results = golden.check(Path(args.dir), backends,
                               progress=lambda what: print(f"checking {what}", file=sys.stderr, flush=True))
    except golden.GoldenError as error:
        print(f"snnref golden: error: {error}", file=sys.stderr)
        return 1
    failed = [r for r in results if not r.passed]
    for result in results:
        if args.verbose or not result.passed:
            print(f"{'PASS' if result.passed else 'FAIL'} {result.name} ({result.backend}): {result.detail}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
          f"({len({r.name for r in results})} golden files x {', '.join(backends)})")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="snnref", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="prove the spec right over the whole registry")
    verify.add_argument("--model", action="append", metavar="KEY",
                        help="check only this registry model (repeatable)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    verify.add_argument("--backend", default="all", choices=["all", "spec", "torch", "cuda", "triton"],
                        help="check only this backend (default: every one available; cuda = the torch "
                             "path on CUDA tensors; triton runs on CUDA when present)")
    verify.add_argument("--quick", action="store_true",
                        help="fewer cases: default surrogate, per-neuron parameters, no strided input or goldens")
    verify.add_argument("--json", metavar="FILE", help="also write the results as JSON (for CI)")
    verify.add_argument("--impl", metavar="MODULE:CALLABLE",
                        help="check your implementation (snnref.simulate's signature) of --model KEY")
    verify.set_defaults(run=_verify)
    golden = commands.add_parser("golden", help="generate or check the golden traces")
    golden_commands = golden.add_subparsers(dest="golden_command", required=True)
    generate = golden_commands.add_parser("generate", help="write the golden store from the float64 spec")
    generate.add_argument("--model", action="append", metavar="KEY", help="only this model (repeatable)")
    generate.add_argument("--out", default="golden", help="the store's directory (default: golden)")
    generate.set_defaults(run=_golden_generate)
    check = golden_commands.add_parser("check", help="verify checksums and re-run every golden case")
    check.add_argument("--backend", default="spec", choices=["spec", "torch", "triton", "all"],
                       help="backends to re-run on (default: spec)")
    check.add_argument("--dir", default="golden", help="the store's directory (default: golden)")
    check.add_argument("--verbose", action="store_true", help="print every result, not only failures")
    check.set_defaults(run=_golden_check)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
