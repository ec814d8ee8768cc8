"""The ``snnref`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import registry


def _verify(args) -> int:
    from .verify import FD_BOUND, verify_model

    keys = args.model or sorted(registry.MODELS)
    for key in keys:
        registry.model(key)
    print(f"snnref verify: {len(keys)} models, seed {args.seed}; "
          f"fd = vjp(smooth=True) vs finite differences (pass < {FD_BOUND:g} relative), "
          f"f32 = worst error of the float32 spec, in float32 ulps")
    header = f"{'model':<30} {'fd cases':>8} {'worst fd':>9} {'f32':>6}  {'checks':<58} result"
    print(header)
    print("-" * len(header))
    failed = 0
    start = time.perf_counter()
    for index, key in enumerate(keys, 1):
        print(f"[{index:>2}/{len(keys)}] {key} ...", file=sys.stderr, flush=True)
        result = verify_model(key, args.seed)
        verdict = "PASS" if result.passed else "FAIL"
        failed += not result.passed
        print(f"{key:<30} {result.fd_cases:>8} {result.worst_fd:>9.1e} {result.worst_float32:>6.1f}  "
              f"{' '.join(result.checked):<58} {verdict}", flush=True)
        for failure in result.failures:
            print(f"    {failure}", flush=True)
    elapsed = time.perf_counter() - start
    print(f"{len(keys) - failed} passed, {failed} failed ({elapsed:.1f} s)")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="snnref", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="prove the spec right over the whole registry")
    verify.add_argument("--model", action="append", metavar="KEY",
                        help="check only this registry model (repeatable)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    verify.set_defaults(run=_verify)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"snnref: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
