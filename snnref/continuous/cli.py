"""``snnref converge``: each mapped model against its continuous counterpart, as a table.

Columns per model: the section-9 relation, the measured order (median spike-time,
first-spike and membrane errors, ``convergence`` (4)) or the maximum deviation of
an exact relation, the closed form's agreement with solve_ivp, the exact
gradients' agreement with finite differences, and the surrogate-vs-exact gradient
cosine similarity and relative norm error at the finest dt; then the surrogate
study per level.  ``--plot FILE.png`` draws the errors and the gradient gap
against dt on log axes (needs matplotlib).  Exit code 1 when a section-9 claim
(relation, solve_ivp agreement, finite differences) fails; the surrogate gap is
a measurement and never fails.
"""

from __future__ import annotations

import io
import sys

from .. import registry
from .._files import check_output_file


def add_parser(commands):
    """Register ``converge`` on an argparse subparsers object."""
    parser = commands.add_parser("converge", help="measure each mapped model against its exact continuous-time "
                                                  "counterpart (SPEC.md section 9)")
    parser.add_argument("--model", action="append", metavar="KEY",
                        help="only this registry model (repeatable; default: every mapped model)")
    from ..cli import nonnegative_integer
    from .convergence import MAX_LEVELS, MIN_FIT_POINTS

    parser.add_argument("--levels", type=int, default=6,
                        help=f"halvings of dt (default 6; from {MIN_FIT_POINTS - 1} to {MAX_LEVELS})")
    parser.add_argument("--seed", type=nonnegative_integer, default=0, help="seed of the random cases (default 0)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the errors against dt (needs matplotlib)")
    parser.add_argument("--no-fd", action="store_true", help="skip the finite-difference check (faster)")
    parser.set_defaults(run=run)
    return parser


def _models(args):
    from . import correspondence

    keys = list(dict.fromkeys(args.model)) if args.model else list(correspondence.MAPPED)
    for key in keys:
        registry.model(key, "--model")
        if key not in correspondence.MAPPED:
            raise ValueError(f"--model: {key} has no continuous counterpart (SPEC.md section 9); "
                             f"the models that have one: {', '.join(correspondence.MAPPED)}")
    return keys


def _plot_available(path):
    if path is None:
        return None
    if not path.lower().endswith(".png"):
        raise ValueError(f"--plot: expected a .png file name, got {path!r}")
    # Before the study, not after it: a plot that cannot be written is a usage error.
    check_output_file("--plot", path)
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    return True


def run(args) -> int:
    from . import convergence, verify

    keys = _models(args)
    if not convergence.MIN_FIT_POINTS - 1 <= args.levels <= convergence.MAX_LEVELS:
        raise ValueError(f"--levels: expected {convergence.MIN_FIT_POINTS - 1} to {convergence.MAX_LEVELS} "
                         f"halvings, got {args.levels}")
    plotting = _plot_available(args.plot)
    print(f"snnref converge: {len(keys)} models, {args.levels} halvings of dt, seed {args.seed}")
    print("  measured: fitted order of the median spike-time / first-spike / membrane error, or the largest "
          "deviation of an exact relation; ivp: closed form vs solve_ivp (relative); fd: exact gradient vs "
          "finite differences (relative); cos, rel: surrogate (spec vjp) vs exact gradient at the finest dt")
    header = (f"{'model':<28} {'node':<8} {'relation':<8} {'measured':<22} {'ivp':>8} {'fd':>8} "
              f"{'cos':>7} {'rel':>9}  result")
    print(header)
    print("-" * len(header))
    failed, studies, gaps = 0, [], []
    for key in keys:
        study = convergence.converge(key, levels=args.levels, seed=args.seed)
        gap = convergence.surrogate_gap(key, levels=args.levels, seed=args.seed)
        failures = verify.check_relation(study)
        if not study.ivp_agreement <= verify.IVP_BOUND:
            failures.append(f"solve_ivp: relative difference {study.ivp_agreement:.3e} over {verify.IVP_BOUND:g}")
        fd_text = "-"
        if not args.no_fd:
            report = verify._fd(key, args.seed)
            fd_text = f"{report.worst:.1e}"
            if not report.passed:
                failures.append(f"exact gradients: finite-difference error {report.worst:.3e}")
        if study.relation == "exact":
            measured = f"dev {study.max_deviation:.1e}"
        else:
            measured = "order " + "/".join("-" if v is None else f"{v:.2f}" for v in study.order.values())
        failed += bool(failures)
        print(f"{key:<28} {study.node:<8} {study.relation:<8} {measured:<22} {study.ivp_agreement:>8.1e} "
              f"{fd_text:>8} {gap.cosine[-1]:>7.3f} {gap.relative_error[-1]:>9.3g}  "
              f"{'FAIL' if failures else 'PASS'}", flush=True)
        for failure in failures:
            print(f"    {failure}")
        studies.append(study)
        gaps.append(gap)
    print()
    print("surrogate vs exact gradient per dt (cosine similarity, relative norm error)")
    for gap in gaps:
        cells = "  ".join(f"{dt:.3g}: {c:.3f}, {r:.3g}" for dt, c, r in zip(gap.dts, gap.cosine, gap.relative_error))
        print(f"  {gap.model:<28} ({gap.surrogate}) {cells}")
    if plotting is False:
        print(f"snnref converge: matplotlib is not installed; no plot written to {args.plot}", file=sys.stderr)
    elif plotting:
        _write_plot(args.plot, studies, gaps)
        print(f"plot written to {args.plot}")
    print(f"{len(keys) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _write_plot(path, studies, gaps):
    from pathlib import Path

    import matplotlib.pyplot as plt

    from .._files import write_atomically

    figure, (errors_axis, gradient_axis) = plt.subplots(1, 2, figsize=(13, 5))
    # Enough distinct colours for every mapped model and quantity.
    for axis in (errors_axis, gradient_axis):
        axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for study in studies:
        for name, marker in (("membrane", "o"), ("spike_times", "s")):
            values = study.median_errors[name]
            if study.relation == "euler" and any(v > 0 for v in values if v == v):
                errors_axis.loglog(study.dts, values, marker=marker, label=f"{study.model} {name}")
    errors_axis.set_xlabel("dt (s)")
    errors_axis.set_ylabel("median error")
    errors_axis.set_title("Euler models against the exact solution")
    for gap in gaps:
        gradient_axis.loglog(gap.dts / gap.dts[0], gap.relative_error, marker="o", label=gap.model)
    gradient_axis.set_xlabel("dt / first dt")
    gradient_axis.set_ylabel("|g_surrogate - g_exact| / |g_exact|")
    gradient_axis.set_title("surrogate against exact gradient")
    # A legend only where something was drawn (--no-fd leaves the gradient panel empty).
    for axis in (errors_axis, gradient_axis):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomically(Path(path), buffer.getvalue())
