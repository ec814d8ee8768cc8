"""Failures you can see: an HTML page with PNG figures for ``snnref verify --report DIR``,
the pytest plugin's ``--snnref-report DIR`` and ``assert_conforms(..., report=DIR)``.

``write(directory, results)`` takes ``snnref verify``'s results (``ModelResult``)
or the gate's reports (``GateReport``) and writes ``index.html`` and one PNG per
failing quantity into ``directory``: relative links only, no network resource,
built in a temporary directory beside it and renamed into place.  Matplotlib
(the optional extra ``snnref[report]``) is imported only here and only when a
page is written; its Agg canvas draws without touching pyplot's global backend.

The summary table has one row per model, backend and check with the worst
error as a fraction of its budget (SPEC.md section 7)

(1) f = max |impl - ref| / budget,

the pass bound of finite differences (``FD_BOUND``) for the spec backend,
and a colour and a word:

(2) fail: the check failed (f > 1, a crash, a broken golden);
    near: NEAR <= f <= 1;  pass: f < NEAR.

For every failing quantity one run is drawn: the worst of the runs whose first
failing step is known (for a sum without a time axis the gate locates it in the
first failing run only), else the worst run; at its worst element's lane ``n``
and around its first failing step ``t0``:

(3) the window  W = [max(0, t0 - HALF_WINDOW), min(T, t0 + HALF_WINDOW + 1)),

- the implementation's and the spec's values of the quantity at lane ``n``
  over W (per element for a quantity without a time axis: a parameter's
  gradient, a final state);
- the spike rasters of both over W, differences marked;
- the error against time over the whole run,

(4) e[t] = |impl[t, n] - ref[t, n]|  and  max over lanes of |impl[t] - ref[t]|,

  with the budget drawn as a line (for a spike flip: the forced float64 run's
  distance to threshold |u[t, n]| and the margin a flip must sit within).

A quantity without a time axis whose first failing step the gate located
(bisection over cotangents, ``snnref.testing.gate``) takes that step as ``t0``
for the rasters.  What was drawn (the window, the steps on the x axis) is
kept in each ``Drawn`` record, so that a test can read what the figure shows.
"""

from __future__ import annotations

import html
import re
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .._files import can_create_in, replace_directory, usual_mode

NEAR = 0.5
HALF_WINDOW = 12
RASTER_LANES = 40
MAX_FIGURES = 60
# Elements shown for a quantity without a time axis, around its worst element.
MAX_ELEMENTS = 120
INSTALL = "pip install 'snnref[report]'"
GENERATOR = "snnref report"
INDEX = "index.html"
# Legends beside the axes, never over the data.
LEGEND = dict(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


class ReportError(ValueError):
    """The page cannot be written: the message names the option and what was expected."""


@dataclass
class Row:
    model: str
    backend: str
    check: str
    worst: Optional[float]  # equation (1); None when the check has no budget
    status: str  # equation (2): "pass", "near" or "fail"
    note: str = ""
    anchor: str = ""  # the figure of this failing quantity, if drawn


@dataclass
class Drawn:
    """One failing quantity's figure and what it shows."""

    model: str
    backend: str
    quantity: str
    run: str
    dtype: str
    fraction: float
    first_step: Optional[int]
    worst_index: Tuple[int, ...]
    budget: Optional[float]
    lane: Optional[Tuple[int, ...]]
    window: Optional[Tuple[int, int]]  # equation (3), steps [start, stop)
    steps: List[int] = field(default_factory=list)  # the x values of the traces panel
    marked: List[Tuple[int, int]] = field(default_factory=list)  # (step, flat lane) marked as differing spikes
    # The x values (steps or elements) whose error at the drawn lane is NaN or inf, marked at the cap.
    nonfinite: List[int] = field(default_factory=list)
    image: str = ""


@dataclass
class Page:
    index: Path
    rows: List[Row]
    drawn: List[Drawn]
    left_out: int = 0  # failing quantities beyond MAX_FIGURES, listed but not drawn


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportError(f"the HTML report needs matplotlib, the optional extra snnref[report]: {INSTALL} "
                          f"({error})") from None
    return Figure, FigureCanvasAgg


def _is_report(directory: Path) -> bool:
    index = directory / INDEX
    try:
        return index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:2000]
    except OSError:
        return False


def _not_written_by_a_report(directory: Path):
    """The entries of a previous report's directory that no report writes (a user's notes)."""
    return sorted(p.name for p in directory.iterdir()
                  if not (p.is_file() and (p.name == INDEX or re.fullmatch(r"fig-\d{3,}\.png", p.name))))


def check_target(option: str, directory) -> Path:
    """Before any run: matplotlib is there, and ``directory`` can be written or replaced
    (absent, empty, or a previous report: never a directory of other files)."""
    _matplotlib()
    if not str(directory):
        raise ReportError(f"{option}: expected a directory name, got ''")
    # Through a symbolic link: the report replaces the directory it names, the link stays.
    target = Path(os.path.realpath(directory))
    if target.exists() and not target.is_dir():
        raise ReportError(f"{option}: {directory} exists and is not a directory; expected a directory for "
                          f"{INDEX} and its figures")
    if target.is_dir() and any(target.iterdir()) and not _is_report(target):
        raise ReportError(f"{option}: {directory} is a directory of other files; expected a new or empty "
                          f"directory, or a previous snnref report to replace")
    # The whole directory is replaced: files added to an old report would go with it.
    foreign = _not_written_by_a_report(target) if target.is_dir() and _is_report(target) else []
    if foreign:
        raise ReportError(f"{option}: {directory} is a previous snnref report holding files no report writes "
                          f"({', '.join(foreign)}); move them, or choose another directory")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ReportError(f"{option}: the directory {parent} does not exist")
    if not can_create_in(parent):
        raise ReportError(f"{option}: the directory {parent} is not writable")
    return target


def check_apart(option: str, directory, others) -> None:
    """Before any run: no other output of the run (``others``, {option: path or None}) is
    ``directory`` or inside it.  The page replaces its directory whole: a file written
    there first would make it a directory of other files, refused after the whole run."""
    page_directory = Path(os.path.realpath(directory))
    for other, path in others.items():
        if path and Path(os.path.realpath(path)).is_relative_to(page_directory):
            raise ReportError(f"{other}: {path} is inside {option} {directory}, which the page replaces whole; "
                              f"name a path outside it")


def status(failed: bool, fraction: Optional[float]) -> str:
    """Equation (2)."""
    if failed:
        return "fail"
    return "near" if fraction is not None and fraction >= NEAR else "pass"


@dataclass
class _Comparison:
    """One run's compared quantities: the gate's ``Run`` or a backend's ``Report``."""

    label: str
    dtype: str
    details: dict
    traces: dict


@dataclass
class _Source:
    model: str
    backend: str
    rows: List[Row]
    comparisons: List[_Comparison]
    not_checked: List[str] = field(default_factory=list)


def _steps_text(row) -> str:
    if row["first_step"] is not None:
        return f"steps {row['first_step']}-{row['last_step']}"
    return ("not located (within budget without the final state's cotangent)"
            if row.get("passes_without_final_cotangent") else "no time axis")


def _from_gate(gate, backend=None) -> _Source:
    kinds = sorted({r.kind for r in gate.runs})
    backend = backend or f"impl {gate.name}" + (f" ({kinds[0]})" if len(kinds) == 1 else "")
    rows = []
    for quantity, row in gate.quantities().items():
        note = f"{row['failing']}/{row['runs']} runs fail; {_steps_text(row)}" if row["failing"] \
            else f"{row['runs']} runs"
        rows.append(Row(gate.model, backend, quantity, row["worst"], status(bool(row["failing"]), row["worst"]),
                        note))
    rows += [Row(gate.model, backend, "broken", None, "fail", text) for text in gate.broken]
    rows += [Row(gate.model, backend, "crashed", None, "fail", f"{run.label}: {failure}")
             for run in gate.runs if not run.details for failure in run.failures]
    if not gate.runs and not gate.broken:
        rows.append(Row(gate.model, backend, "-", None, "fail", "no case ran"))
    comparisons = [_Comparison(r.label, r.dtype, r.details, r.traces) for r in gate.runs if r.traces]
    return _Source(gate.model, backend, rows, comparisons, gate.not_checked())


def _from_result(result) -> _Source:
    if result.gate is not None:
        return _from_gate(result.gate, f"impl {result.gate.name}")
    from ._verify import FD_BOUND

    # Equation (1): the spec's worst is a relative FD error with the pass bound FD_BOUND.
    fraction = {"spec": result.worst_fd / FD_BOUND, "continuous": None}.get(result.backend, result.worst_fd)
    note = "; ".join(result.failures[:3]) + (f"; ... {len(result.failures) - 3} more"
                                            if len(result.failures) > 3 else "")
    row = Row(result.model, result.backend, " ".join(result.checked), fraction,
              status(not result.passed, fraction), note)
    comparisons = [_Comparison(label, report.dtype, report.details, report.traces)
                   for label, report in result.failed_comparisons]
    return _Source(result.model, result.backend, [row], comparisons)


def _source(item) -> _Source:
    if hasattr(item, "runs") and hasattr(item, "quantities"):
        return _from_gate(item)
    if hasattr(item, "worst_fd"):
        return _from_result(item)
    raise TypeError(f"results: expected snnref verify results or gate reports, got {type(item).__name__}")


def _failing_quantities(source: _Source):
    """(quantity, the comparison drawn for it, by ``_preference``) for every failing quantity with traces."""
    best = {}
    for comparison in source.comparisons:
        for quantity, detail in comparison.details.items():
            if not detail.get("failed") or quantity not in comparison.traces:
                continue
            if quantity not in best or _preference(comparison, quantity) > _preference(best[quantity], quantity):
                best[quantity] = comparison
    return sorted(best.items())


def _preference(comparison, quantity):
    """A run with a first failing step (for a sum without a time axis, located by the gate
    in the first failing run only) before one without; then the larger fraction."""
    detail = comparison.details[quantity]
    return detail["first_step"] is not None, float(detail["fraction"])


def _window(center, steps):
    """Equation (3)."""
    return max(0, center - HALF_WINDOW), min(steps, center + HALF_WINDOW + 1)


def _lanes(array):
    """(T, lanes) view of a time-major array."""
    return array.reshape(array.shape[0], -1)


def _finite(values, cap):
    return np.where(np.isfinite(values), values, cap)


def _mark_nonfinite(axes, x, error, cap, drawn):
    """A NaN or inf error drawn at ``cap`` with a marker and a legend entry of its own: the line
    through the cap alone would read as a finite error of that size."""
    bad = ~np.isfinite(error)
    if bad.any():
        axes.plot(x[bad], np.full(int(bad.sum()), cap), "X", color="tab:red", ms=8, ls="none",
                  label=f"NaN or inf (drawn at {cap:.3g})")
        drawn.nonfinite = [int(i) for i in x[bad]]


def _literal(text):
    """``text`` drawn as written: matplotlib reads the part between two "$" as TeX."""
    return text.replace("$", r"\$")


def _draw(Figure, Canvas, source, quantity, comparison, path) -> Drawn:
    detail = comparison.details[quantity]
    trace = comparison.traces[quantity]
    spikes = comparison.traces.get("spikes")
    impl, reference = np.asarray(trace["impl"], float), np.asarray(trace["reference"], float)
    worst_index = tuple(int(i) for i in detail["worst_index"])
    first = detail["first_step"]
    sequence = (quantity == "spikes" or quantity.startswith(("out:", "grad:x"))) and impl.ndim >= 2
    budget = trace.get("budget", trace.get("margin"))
    drawn = Drawn(source.model, source.backend, quantity, comparison.label, comparison.dtype,
                  float(detail["fraction"]), first, worst_index, None if budget is None else float(budget),
                  None, None, image=path.name)
    panels = 3 if spikes is not None else 2
    height = 3.1 * panels
    figure = Figure(figsize=(11, height), dpi=80)
    # Fixed margins in inches (a constrained layout costs more than the drawing); legends on the right.
    figure.subplots_adjust(left=0.07, right=0.77, top=1 - 1.0 / height, bottom=0.5 / height, hspace=0.55)
    Canvas(figure)
    values_axes, *rest = figure.subplots(panels, 1)
    error_axes = rest[-1]
    raster_axes = rest[0] if spikes is not None else None
    fraction = "inf" if not np.isfinite(drawn.fraction) else f"{drawn.fraction:.3g}"
    # Names as given: a "$" in an implementation's name is no TeX to typeset (or fail on).  Escaped
    # here, not by turning math off for the figure, which left the log axes' ticks as raw "$10^{-12}$".
    figure.suptitle(f"{_literal(source.model)} · {_literal(source.backend)}: {quantity} fails "
                    f"({fraction} x budget)\n"
                    f"run: {comparison.label}", fontsize=11)
    if sequence:
        steps = impl.shape[0]
        lane = worst_index[1:]
        center = first if first is not None else worst_index[0]
        drawn.lane, drawn.window = lane, _window(center, steps)
        start, stop = drawn.window
        time = np.arange(start, stop)
        flat_impl, flat_ref = _lanes(impl), _lanes(reference)
        column = int(np.ravel_multi_index(lane, impl.shape[1:])) if lane else 0
        style = dict(drawstyle="steps-mid") if quantity == "spikes" else {}
        line, = values_axes.plot(time, flat_impl[start:stop, column], "o-", color="tab:blue", ms=4,
                                 label="implementation", **style)
        values_axes.plot(time, flat_ref[start:stop, column], "s--", color="tab:orange", ms=3,
                         label="spec (float64)" + (", unforced" if quantity == "spikes" else ""), **style)
        shown = flat_impl[start:stop, column]
        if not np.isfinite(shown).all():
            # Matplotlib leaves NaN out of a line without a word: marked on the spec's value instead.
            bad = ~np.isfinite(shown)
            values_axes.plot(time[bad], flat_ref[start:stop, column][bad], "X", color="tab:red", ms=8,
                             ls="none", label="implementation NaN or inf here")
        drawn.steps = [int(t) for t in line.get_xdata()]
        values_axes.set_title(f"{'spikes' if quantity == 'spikes' else quantity} at lane {lane} "
                              f"(the worst element), steps {start}-{stop - 1}", fontsize=10)
        values_axes.set_xlabel("time step")
        _mark_first(values_axes, first)
        values_axes.legend(**LEGEND)
        _error_against_time(error_axes, quantity, trace, flat_impl, flat_ref, column, lane, drawn)
    else:
        _per_element(values_axes, error_axes, quantity, impl, reference, worst_index, drawn)
        if spikes is not None:
            steps = np.asarray(spikes["impl"]).shape[0]
            differ = np.flatnonzero(np.any(_lanes(np.asarray(spikes["impl"]) != spikes["reference"]), axis=1))
            # A final state is read at the last step; another sum around its first spike difference.
            last = steps - 1 if quantity.startswith("final:") else int(differ[0]) if differ.size else 0
            center = first if first is not None else last
            drawn.window = _window(center, steps)
    if raster_axes is not None:
        _raster(raster_axes, spikes, drawn, first)
    figure.savefig(path, dpi=80)
    return drawn


def _mark_first(axes, first):
    if first is not None:
        axes.axvline(first, color="tab:red", lw=1, ls=":", label=f"first failing step {first}")


def _error_against_time(axes, quantity, trace, flat_impl, flat_ref, column, lane, drawn):
    """Equation (4) over the whole run, the window shaded, the budget (or margin) a line."""
    time = np.arange(flat_impl.shape[0])
    if quantity == "spikes" and "distance" in trace:
        distance = np.abs(_lanes(np.asarray(trace["distance"], float))[:, column])
        floor = trace["margin"] * 1e-3 if trace["margin"] > 0 else 1e-300
        axes.semilogy(time, np.maximum(distance, floor), ".-", color="tab:blue", ms=3,
                      label=f"|u| at lane {lane}\n(forced float64 spec)")
        axes.axhline(trace["margin"], color="tab:red", ls="--", label=f"margin {trace['margin']:.3g}")
        flips = flat_impl[:, column] != flat_ref[:, column]
        # Judged: the forced run, given the implementation's earlier spikes, decides otherwise.  The
        # rest follow an earlier flip (the forced run agrees) and are no error, whatever |u| is.
        judged = flips & _lanes(np.asarray(trace["contradicted"], bool))[:, column] if "contradicted" in trace \
            else flips
        for where, marker, colour, label in ((judged, "x", "tab:red", "flips, judged"),
                                             (flips & ~judged, "o", "tab:gray",
                                              "follow an earlier flip")):
            steps_at = np.flatnonzero(where)
            if steps_at.size:
                axes.plot(steps_at, np.maximum(distance[steps_at], floor), marker, color=colour, ms=9, mew=2,
                          fillstyle="none", label=label)
        axes.set_title("distance to threshold against time: a flip is an error where |u| > margin\n"
                       f"or u = 0 exactly in float64 and float32 (0 drawn at {floor:.1e})", fontsize=10)
    elif quantity == "spikes":
        differing = np.sum(flat_impl != flat_ref, axis=1)
        axes.bar(time, differing, color="tab:red", width=0.8, label="lanes whose spike differs")
        axes.set_title("spike differences against time", fontsize=10)
    else:
        budget = float(trace["budget"])
        floor = budget * 1e-6 if budget > 0 else 1e-300
        cap = budget * 1e6 if budget > 0 else 1.0
        raw = np.abs(flat_impl - flat_ref)
        error = _finite(raw, cap)
        axes.semilogy(time, np.maximum(error[:, column], floor), ".-", color="tab:blue", ms=3,
                      label=f"|impl - spec| at lane {lane}")
        axes.semilogy(time, np.maximum(error.max(axis=1), floor), "-", color="0.6", lw=1,
                      label="max over lanes")
        _mark_nonfinite(axes, time, raw[:, column], cap, drawn)
        axes.axhline(budget, color="tab:red", ls="--", label=f"budget {budget:.3g}")
        axes.set_title(f"error against time (floor {floor:.1e} on a log axis)", fontsize=10)
    if drawn.window is not None:
        axes.axvspan(drawn.window[0] - 0.5, drawn.window[1] - 0.5, color="0.9", zorder=0, label="window above")
    _mark_first(axes, drawn.first_step)
    axes.set_xlabel("time step")
    axes.legend(**LEGEND)


def _per_element(values_axes, error_axes, quantity, impl, reference, worst_index, drawn):
    """A quantity without a time axis: values and error per element, around the worst one."""
    from matplotlib.ticker import MaxNLocator

    flat_impl, flat_ref = impl.reshape(-1), reference.reshape(-1)
    worst = int(np.ravel_multi_index(worst_index, impl.shape)) if worst_index else 0
    start = max(0, min(worst - MAX_ELEMENTS // 2, flat_impl.size - MAX_ELEMENTS))
    index = np.arange(start, min(flat_impl.size, start + MAX_ELEMENTS))
    values_axes.plot(index, flat_impl[index], "o", color="tab:blue", ms=5, label="implementation")
    values_axes.plot(index, flat_ref[index], "x", color="tab:orange", ms=7, label="spec (float64)")
    bad = ~np.isfinite(flat_impl[index])
    if bad.any():
        values_axes.plot(index[bad], flat_ref[index][bad], "X", color="tab:red", ms=8, ls="none",
                         label="implementation NaN or inf here")
    for axes in (values_axes, error_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlim(index[0] - 0.5, index[-1] + 0.5)
    values_axes.set_title(f"{quantity} per element (flat index; no time axis), worst at {worst_index}",
                          fontsize=10)
    values_axes.set_xlabel("element")
    values_axes.legend(**LEGEND)
    budget = drawn.budget if drawn.budget is not None else 0.0
    floor = budget * 1e-6 if budget > 0 else 1e-300
    cap = budget * 1e6 if budget > 0 else 1.0
    raw = np.abs(flat_impl - flat_ref)
    error = _finite(raw, cap)
    error_axes.semilogy(index, np.maximum(error[index], floor), "o", color="tab:blue", ms=4,
                        label="|impl - spec|")
    _mark_nonfinite(error_axes, index, raw[index], cap, drawn)
    error_axes.axhline(budget, color="tab:red", ls="--", label=f"budget {budget:.3g}")
    located = "" if drawn.first_step is None else f"; located at step {drawn.first_step} by its cotangents"
    error_axes.set_title(f"error per element{located}", fontsize=10)
    error_axes.set_xlabel("element")
    error_axes.legend(**LEGEND)


def _raster(axes, spikes, drawn, first):
    """Both spike trains over the window; lanes around the drawn lane, differences marked."""
    from matplotlib.ticker import MaxNLocator

    impl, reference = _lanes(np.asarray(spikes["impl"]) != 0), _lanes(np.asarray(spikes["reference"]) != 0)
    start, stop = drawn.window
    lanes = impl.shape[1]
    shape = np.asarray(spikes["impl"]).shape[1:]
    differ = impl[start:stop] != reference[start:stop]
    if drawn.lane:
        center = int(np.ravel_multi_index(drawn.lane, shape))
    else:
        columns = np.flatnonzero(differ.any(axis=0))
        center = int(columns[0]) if columns.size else 0
    low = max(0, min(center - RASTER_LANES // 2, lanes - RASTER_LANES))
    shown = slice(low, min(lanes, low + RASTER_LANES))
    for array, marker, style, label in ((reference, "o", dict(mfc="none", mec="tab:orange", ms=7), "spec"),
                                        (impl, "|", dict(color="black", ms=9, mew=1.5), "implementation")):
        t, n = np.nonzero(array[start:stop, shown])
        axes.plot(t + start, n + low, marker, ls="none", label=label, **style)
    t, n = np.nonzero(differ[:, shown])
    drawn.marked = [(int(step), int(lane)) for step, lane in zip(t + start, n + low)]
    axes.plot(t + start, n + low, "x", color="tab:red", ms=10, mew=2, ls="none",
              label=f"differs ({int(differ.sum())} in the window)")
    _mark_first(axes, first)
    axes.set_xlim(start - 0.5, stop - 0.5)
    axes.set_ylim(shown.start - 0.5, shown.stop - 0.5)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("time step")
    axes.set_ylabel("lane (flat)")
    axes.set_title(f"spike rasters, steps {start}-{stop - 1}, lanes {shown.start}-{shown.stop - 1} of {lanes}",
                   fontsize=10)
    axes.legend(**LEGEND)


def _cell(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return "inf" if not np.isfinite(value) else f"{value:.3g}"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td.verdict { background: #cdeccd; }
tr.near td.verdict { background: #ffe9a8; }
tr.fail td.verdict { background: #f5b7b7; font-weight: bold; }
tr.fail td { background: #fdf0f0; }
section { border-top: 2px solid #ccc; margin-top: 2em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
code { font-size: 13px; }
.legend span { padding: 2px 8px; margin-right: 6px; }
"""


def _page(title, rows, drawn, sources, left_out, not_run) -> str:
    failing = sum(r.status == "fail" for r in rows)
    out = ['<!doctype html>', '<html lang="en"><head><meta charset="utf-8">',
           f'<meta name="generator" content="{GENERATOR}">',
           f'<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>',
           f'<h1>{html.escape(title)}: {"FAIL" if failing else "PASS"}</h1>',
           f'<p>{len(rows)} checks, {failing} failing. Worst = the largest error as a fraction of its budget '
           f'(SPEC.md section 7; for the spec backend, the finite-difference error over its bound).</p>',
           '<p class="legend"><span style="background:#cdeccd">PASS: worst &lt; '
           f'{NEAR:g}</span><span style="background:#ffe9a8">NEAR: {NEAR:g} to 1</span>'
           '<span style="background:#f5b7b7">FAIL: over the budget, or crashed</span></p>',
           '<table><thead><tr><th>model</th><th>backend</th><th>check</th><th>worst / budget</th>'
           '<th>result</th><th>note</th></tr></thead><tbody>']
    for row in rows:
        check = html.escape(row.check)
        if row.anchor:
            check = f'<a href="#{row.anchor}">{check}</a>'
        out.append(f'<tr class="{row.status}"><td>{html.escape(row.model)}</td><td>{html.escape(row.backend)}</td>'
                   f'<td>{check}</td><td class="num">{_cell(row.worst)}</td>'
                   f'<td class="verdict">{row.status.upper()}</td><td>{html.escape(row.note)}</td></tr>')
    out.append('</tbody></table>')
    if drawn:
        out.append(f'<h2>Failing quantities ({len(drawn)})</h2>')
    for figure in drawn:
        where = "no time axis" if figure.first_step is None else f"first failing step {figure.first_step}"
        window = "" if figure.window is None else f"; figure window: steps {figure.window[0]}-{figure.window[1] - 1}"
        lane = "" if figure.lane is None else f", lane {figure.lane}"
        budget = "" if figure.budget is None else f"; budget {figure.budget:.3g}"
        anchor = figure.image.rsplit(".", 1)[0]
        out += [f'<section id="{anchor}"><h3>{html.escape(figure.model)} · {html.escape(figure.backend)} · '
                f'<code>{html.escape(figure.quantity)}</code>: {html.escape(where)}</h3>',
                f'<p>In the run <code>{html.escape(figure.run)}</code>: worst {_cell(figure.fraction)} x budget '
                f'at {figure.worst_index}{html.escape(lane)}{budget}{html.escape(window)}.</p>',
                f'<img src="{html.escape(figure.image)}" alt="{html.escape(figure.quantity)}: traces, spike '
                f'rasters and error against time"></section>']
    if left_out:
        out.append(f'<p>{left_out} more failing quantities are in the table but not drawn (at most '
                   f'{MAX_FIGURES} figures).</p>')
    unchecked = [f"{s.model} {s.backend}: {line}" for s in sources for line in s.not_checked] + list(not_run)
    if unchecked:
        out.append('<h2>Not checked</h2><ul>')
        out += [f'<li>{html.escape(line)}</li>' for line in unchecked]
        out.append('</ul>')
    out.append('</body></html>')
    return "\n".join(out) + "\n"


def write(directory, results, *, title="snnref verify", option="report", not_run=()) -> Page:
    """The page for ``results`` (``snnref verify``'s ``ModelResult``s or ``GateReport``s)
    in ``directory``, replacing a previous report there; ``option`` names the argument
    in error messages; ``not_run``: lines listed under "Not checked" beside the results' own
    (the checks a partial session did not run)."""
    Figure, Canvas = _matplotlib()
    target = check_target(option, directory)
    sources = [_source(item) for item in results]
    parent = target.absolute().parent
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        rows, drawn, left_out = [], [], 0
        for source in sources:
            anchors = {}
            for quantity, comparison in _failing_quantities(source):
                if len(drawn) == MAX_FIGURES:
                    left_out += 1
                    continue
                figure = _draw(Figure, Canvas, source, quantity, comparison,
                               building / f"fig-{len(drawn) + 1:03d}.png")
                drawn.append(figure)
                anchors[quantity] = figure.image.rsplit(".", 1)[0]
            for row in source.rows:
                row.anchor = anchors.get(row.check, "")
            rows += source.rows
        (building / INDEX).write_text(_page(title, rows, drawn, sources, left_out, not_run), encoding="utf-8")
        building.chmod(usual_mode(directory=True))
        replace_directory(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Page(target / INDEX, rows, drawn, left_out)

