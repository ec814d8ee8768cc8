"""The ``snnref`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import registry


def _available_backends():
    try:
        import torch  # noqa: F401
    except ImportError:
        return ["spec"]
    return ["spec", "torch"]


def _verify(args) -> int:
    from .verify import FD_BOUND, verify_backend, verify_model

    keys = args.model or sorted(registry.MODELS)
    for key in keys:
        registry.model(key)
    available = _available_backends()
    backends = available if args.backend == "all" else [args.backend]
    for backend in backends:
        if backend not in available:
            raise ValueError(f"backend: {backend!r} is not available here (torch is not installed)")
    print(f"snnref verify: {len(keys)} models x {', '.join(backends)}, seed {args.seed}")
    print(f"  spec:  worst = vjp(smooth=True) vs finite differences (pass < {FD_BOUND:g} relative); "
          f"extra = worst float32 spec error in ulps")
    print("  torch: worst = worst error as a fraction of the SPEC.md section 7 budget (pass <= 1); "
          "extra = spike flips explained by teacher forcing")
    header = f"{'model':<30} {'backend':<7} {'cases':>5} {'worst':>9} {'extra':>6}  {'checks':<58} result"
    print(header)
    print("-" * len(header))
    jobs = [(key, backend) for key in keys for backend in backends]
    failed = 0
    start = time.perf_counter()
    for index, (key, backend) in enumerate(jobs, 1):
        print(f"[{index:>2}/{len(jobs)}] {key} ({backend}) ...", file=sys.stderr, flush=True)
        result = verify_model(key, args.seed) if backend == "spec" else verify_backend(key, backend, args.seed)
        verdict = "PASS" if result.passed else "FAIL"
        failed += not result.passed
        worst = f"{result.worst_fd:.1e}" if backend == "spec" else f"{result.worst_fd:.3f}"
        print(f"{key:<30} {backend:<7} {result.fd_cases:>5} {worst:>9} {result.worst_float32:>6.1f}  "
              f"{' '.join(result.checked):<58} {verdict}", flush=True)
        for failure in result.failures:
            print(f"    {failure}", flush=True)
    elapsed = time.perf_counter() - start
    print(f"{len(jobs) - failed} passed, {failed} failed ({elapsed:.1f} s)")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="snnref", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="prove the spec right over the whole registry")
    verify.add_argument("--model", action="append", metavar="KEY",
                        help="check only this registry model (repeatable)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    verify.add_argument("--backend", default="all", choices=["all", "spec", "torch"],
                        help="check only this backend (default: every one available)")
    verify.set_defaults(run=_verify)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
