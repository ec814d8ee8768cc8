"""Measure c_sum, the long-sum term of the tolerance policy (SPEC.md section 7).

Runs random cases of the correct torch, cpu or triton path through
``snnref.testing._equivalence.compare`` with ``c_sum = 0`` and records, for every
gradient that is a long sum (every trainable parameter's; for
tether.SpikingSelfAttention also ``x`` and the initial state's), the
coefficient it would need:

    needed = (error - budget_without_the_term) / (eps * sqrt(n) * A)

(``<= 0`` when the first two terms already cover it), and every quantity that
fails with ``c_sum = 0`` (``--keep-policy``: with the policy's c_sum, the
false failures of the correct path).  Sizes are the hypothesis "thorough" ones and
longer: T up to 200, batch up to 8, N from 1 to 33, every model, accepted
surrogate, scalar or per-neuron parameters, injection.  One JSON line per case;
``--replay MODEL:SEED`` reruns one recorded case and prints its report.

    python tools/calibrate_long_sums.py --backend torch --cases 4000 --out /tmp/torch.jsonl
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def draw_case(key, seed, backend, dtypes, max_steps=200):
    """The case and storage dtype of one line of the output: a function of
    (model, seed, backend, dtypes) alone, so a recorded seed replays exactly."""
    import torch

    from snnref import checks, equivalence, registry

    row = registry.MODELS[key]
    case_rng = np.random.default_rng(seed)
    steps = int(case_rng.integers(1, max_steps + 1))
    batch = int(case_rng.integers(1, 9))
    neurons = int(case_rng.choice([1, 3, 7, 13, 33]))
    surrogate = (row.surrogates or (None,))[int(case_rng.integers(len(row.surrogates or (None,))))]
    case = checks.random_case(key, case_rng, steps=steps, batch=batch, neurons=neurons,
                              surrogate=surrogate, per_neuron=bool(case_rng.integers(2)),
                              random_state=bool(case_rng.integers(2)),
                              inject=bool(row.inject) and bool(case_rng.integers(2)))
    dtypes = dtypes or ([torch.float32, torch.float64] if backend in ("torch", "cpu")
                        else [torch.float32, torch.float16, torch.bfloat16])
    dtypes = [d for d in dtypes if equivalence.storable(row, d)]
    dtype = dtypes[int(case_rng.integers(len(dtypes)))]
    return case, dtype, {"T": steps, "batch": batch, "N": neurons, "surrogate": surrogate}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "cpu", "triton"], required=True)
    parser.add_argument("--cases", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--out", help="JSON lines file to append to (required unless --replay)")
    parser.add_argument("--dtypes", default="", help="comma-separated storage dtypes (default: every one)")
    parser.add_argument("--models", default="", help="comma-separated registry keys (default: every one)")
    parser.add_argument("--keep-policy", action="store_true",
                        help="judge with the policy as it is (c_sum in place): the false-failure count")
    parser.add_argument("--replay", metavar="MODEL:SEED", help="rerun one recorded case and print its report")
    args = parser.parse_args()
    if args.replay is None and (args.out is None or args.cases <= 0):
        parser.error("--out and a positive --cases are required unless --replay is given")
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import dataclasses

    import torch

    from snnref import equivalence, registry, tolerance

    if not args.keep_policy:
        for name, rule in tolerance.POLICY.items():
            tolerance.POLICY[name] = dataclasses.replace(rule, c_sum=0.0)
    chosen = [getattr(torch, d) for d in args.dtypes.split(",") if d]
    if args.replay is not None:
        key, seed = args.replay.rsplit(":", 1)
        case, dtype, sizes = draw_case(key, int(seed), args.backend, chosen, args.max_steps)
        report = equivalence.compare(case, args.backend, dtype)
        print(json.dumps({"model": key, "seed": int(seed), "dtype": report.dtype, **sizes,
                          "failures": report.failures,
                          "details": {k: {f: d.get(f) for f in ("fraction", "error", "budget", "long_sum")}
                                      for k, d in report.details.items()}}, indent=1, default=str))
        return 0
    models = [m for m in args.models.split(",") if m] or sorted(registry.MODELS)
    rng = np.random.default_rng(args.seed)
    with open(args.out, "a") as stream:
        for index in range(args.cases):
            key = models[index % len(models)]
            seed = int(rng.integers(2**32))
            case, dtype, sizes = draw_case(key, seed, args.backend, chosen, args.max_steps)
            start = time.perf_counter()
            try:
                report = equivalence.compare(case, args.backend, dtype)
            except Exception as error:  # recorded, never hidden
                stream.write(json.dumps({"model": key, "seed": seed, "error": repr(error)}) + "\n")
                continue
            rule = tolerance.POLICY[str(dtype).replace("torch.", "")]
            needed = {}
            for quantity, detail in report.details.items():
                if detail.get("long_sum"):
                    magnitude, terms = detail["long_sum"]
                    unit = (rule.sum_eps or rule.eps) * np.sqrt(terms) * magnitude
                    needed[quantity] = (detail["error"] - detail["budget"]) / unit if unit else None
            stream.write(json.dumps({
                "model": key, "seed": seed, "dtype": report.dtype, **sizes,
                "failures": report.failures, "needed": needed,
                "seconds": round(time.perf_counter() - start, 3)}) + "\n")
            stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
