"""Failures you can see (snnref.testing.report): planted bugs in an outside LIF
(tests/fixtures/outside_lif.py) drawn at the quantity and the step where they
fail, a passing run as a summary only, one self-contained page written
atomically, and the three ways to ask for it (snnref verify --report, the
pytest plugin's --snnref-report, assert_conforms(report=...))."""

import html
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import outside_lif
from snnref import cli, testing
from snnref.testing import _checks, _equivalence, gate, report
from snnref.testing._verify import ModelResult

FLIP_STEP = 100
FLIP_LANE = (0, 0)
PNG = b"\x89PNG\r\n\x1a\n"


def flipped_spike(model, x, params, state, *, surrogate=None, inject=None):
    """The correct outside LIF with one output spike flipped at FLIP_STEP, lane FLIP_LANE
    (its membrane and reset untouched): a bug at a known step and neuron."""
    result = outside_lif.correct(model, x, params, state, surrogate=surrogate, inject=inject)
    spikes = result.outputs["out"]
    mask = torch.zeros_like(spikes)
    mask[(FLIP_STEP, *FLIP_LANE)] = 1.0
    # out -> 1 - out at the mask, on the autograd graph like the rest.
    result.outputs["out"] = spikes + mask * (1.0 - 2.0 * spikes.detach())
    return result


flipped_spike.surrogates = outside_lif.correct.surrogates


def long_run(fn):
    return gate.run(testing.Implementation.of(fn, "tether.LIF"), kinds=("long",))


@pytest.fixture(scope="module")
def late_bug():
    """The gate's report of a bug from step LATE_STEP on (the long case only)."""
    return long_run(outside_lif.after_step_50)


def assert_self_contained(directory: Path, page):
    text = page.index.read_text()
    assert not re.search(r"(?i)(https?:|//|src=\"/|href=\"/)", text), "a network or absolute reference"
    sources = re.findall(r'src="([^"]+)"', text)
    assert sorted(sources) == sorted(d.image for d in page.drawn)
    for name in sources:
        assert (directory / name).read_bytes().startswith(PNG), name
    return text


def drawn(page, quantity):
    found = [d for d in page.drawn if d.quantity == quantity]
    assert len(found) == 1, [d.quantity for d in page.drawn]
    return found[0]


def test_a_late_bug_is_drawn_around_its_first_failing_step(tmp_path, late_bug):
    page = report.write(tmp_path / "report", [late_bug])
    text = assert_self_contained(tmp_path / "report", page)
    membrane = drawn(page, "out:v")
    # The traces panel's x values are the window around the first failing step.
    assert membrane.first_step == outside_lif.LATE_STEP
    assert outside_lif.LATE_STEP in membrane.steps
    assert membrane.window[0] <= outside_lif.LATE_STEP < membrane.window[1]
    assert membrane.steps == list(range(*membrane.window))
    assert re.search(rf"out:v</code>: first failing step {outside_lif.LATE_STEP}\b", text), text
    rows = {row.check: row for row in page.rows}
    assert rows["out:v"].status == "fail" and rows["out:v"].anchor == membrane.image[:-4]
    assert rows["out:out"].status == "pass"


def test_a_flipped_spike_is_marked_in_the_rasters_at_its_step(tmp_path):
    page = report.write(tmp_path / "report", [long_run(flipped_spike)])
    text = assert_self_contained(tmp_path / "report", page)
    spikes = drawn(page, "spikes")
    assert spikes.first_step == FLIP_STEP and spikes.lane == FLIP_LANE
    assert FLIP_STEP in spikes.steps
    # The raster marks exactly the one planted difference (flat lane 0 is (batch 0, neuron 0)).
    assert spikes.marked == [(FLIP_STEP, 0)]
    assert f"spikes</code>: first failing step {FLIP_STEP}" in text
    assert "FAIL" in text


def test_a_failing_backend_comparison_of_snnref_verify_is_drawn(tmp_path):
    case = _checks.random_case("tether.LIF", np.random.default_rng(7), steps=outside_lif.LATE_STEP + 10,
                               batch=1, neurons=3)
    comparison = _equivalence.compare(case, "torch", torch.float64, implementation=outside_lif.after_step_50)
    assert not comparison.passed
    result = ModelResult("tether.LIF", "torch", ["float64"], 1, comparison.worst, failures=comparison.failures,
                         failed_comparisons=[("tether.LIF float64 (planted)", comparison)])
    page = report.write(tmp_path / "report", [result])
    assert_self_contained(tmp_path / "report", page)
    assert [(row.backend, row.status) for row in page.rows] == [("torch", "fail")]
    membrane = drawn(page, "out:v")
    assert membrane.first_step == outside_lif.LATE_STEP and outside_lif.LATE_STEP in membrane.steps


def test_a_backend_failing_its_golden_traces_is_drawn(tmp_path, monkeypatch):
    """A backend row of ``snnref verify`` whose golden traces fail keeps that
    comparison, and the page draws it (a membrane off by 1e-3 from step 1 on,
    planted into the torch path)."""
    from snnref import registry
    from snnref.ops import lif
    from snnref.testing import _verify

    honest = lif.run

    def late_offset(*arguments):
        outputs, finals, used = honest(*arguments)
        v = outputs["v"]
        outputs["v"] = torch.cat([v[:1], v[1:] + 1e-3])
        return outputs, finals, used

    monkeypatch.setattr(lif, "run", late_offset)
    result = ModelResult("tether.LIF", "torch")
    _verify._golden(result, registry.model("tether.LIF"), "torch")
    assert result.failures and all(f.startswith("golden ") for f in result.failures), result.failures
    assert [label.split()[1] for label, _ in result.failed_comparisons] == ["golden"] * len(result.failures)
    page = report.write(tmp_path / "report", [result])
    assert_self_contained(tmp_path / "report", page)
    membrane = drawn(page, "out:v")
    assert membrane.backend == "torch" and membrane.first_step == 1 and 1 in membrane.steps


def test_a_passing_run_renders_a_summary_only_page(tmp_path):
    outcome = gate.run(testing.Implementation.of(outside_lif.correct, "tether.LIF"), kinds=("threshold",))
    assert outcome.passed, outcome.text()
    page = report.write(tmp_path / "report", [outcome])
    text = assert_self_contained(tmp_path / "report", page)
    assert page.drawn == [] and "<img" not in text
    assert {row.status for row in page.rows} <= {"pass", "near"}
    assert {row.check for row in page.rows} >= {"out:out", "out:v", "grad:x"}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["index.html"]


def test_the_colour_rule():
    assert [report.status(False, f) for f in (0.0, report.NEAR - 1e-9, report.NEAR, 1.0)] == \
        ["pass", "pass", "near", "near"]
    assert report.status(True, 0.1) == "fail" and report.status(False, None) == "pass"


def test_a_new_page_replaces_a_previous_report_and_leaves_nothing_beside_it(tmp_path, late_bug):
    report.write(tmp_path / "report", [late_bug])
    passing = gate.run(testing.Implementation.of(outside_lif.correct, "tether.LIF"), kinds=("threshold",))
    page = report.write(tmp_path / "report", [passing])
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["index.html"]
    assert page.drawn == []


def test_bad_targets_are_refused_by_name_and_nothing_is_written(tmp_path):
    others = tmp_path / "results"
    others.mkdir()
    (others / "data.csv").write_text("1,2\n")
    with pytest.raises(report.ReportError, match=r"--report: .*results is a directory of other files"):
        report.check_target("--report", others)
    assert [p.name for p in others.iterdir()] == ["data.csv"]
    with pytest.raises(report.ReportError, match=r"--report: .*data.csv exists and is not a directory"):
        report.check_target("--report", others / "data.csv")
    with pytest.raises(report.ReportError, match=r"--report: the directory .*absent does not exist"):
        report.check_target("--report", tmp_path / "absent" / "report")
    with pytest.raises(TypeError, match="results: expected"):
        report.write(tmp_path / "report", ["not a result"])
    with pytest.raises(report.ReportError, match=r"--report: expected a directory name, got ''"):
        report.check_target("--report", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_a_previous_report_holding_a_users_file_is_not_replaced(tmp_path, late_bug):
    # Before, the new page replaced the whole directory, notes and all.
    report.write(tmp_path / "report", [late_bug])
    (tmp_path / "report" / "notes.txt").write_text("mine")
    with pytest.raises(report.ReportError, match=r"a previous snnref report holding files no report writes "
                                                 r"\(notes.txt\)"):
        report.write(tmp_path / "report", [late_bug])
    assert (tmp_path / "report" / "notes.txt").read_text() == "mine"


def test_one_directory_for_the_report_and_the_saved_case_is_refused_before_the_run(tmp_path, capsys):
    # Before: the whole gate ran, the case was saved there, and then the report was refused.
    status = cli.main(["verify", "--impl", "fixtures.outside_lif:after_step_50", "--model", "tether.LIF",
                       "--report", str(tmp_path / "out"), "--save-failures", str(tmp_path / "out")])
    assert status == 2 and "--save-failures: " in (err := capsys.readouterr().err)
    assert f"is inside --report {tmp_path / 'out'}, which the page replaces whole" in err
    assert list(tmp_path.iterdir()) == []


def test_a_json_file_inside_the_report_directory_is_refused_before_the_run(tmp_path, capsys):
    # Found by an outside user: the JSON was written there after the whole run, and then the page was
    # refused (a directory of other files), leaving the stray file to fail the next run the same way.
    (tmp_path / "out").mkdir()
    status = cli.main(["verify", "--impl", "fixtures.outside_lif:after_step_50", "--model", "tether.LIF",
                       "--report", str(tmp_path / "out"), "--json", str(tmp_path / "out" / "results.json")])
    assert status == 2 and "--json: " in (err := capsys.readouterr().err)
    assert "is inside --report" in err and list((tmp_path / "out").iterdir()) == []


def test_a_directory_the_file_system_refuses_is_refused_before_the_run():
    # Found by an outside user: as root, os.access says yes everywhere, and the run failed only at
    # its end, naming a hidden temporary folder.  /proc takes no new file, root or not.
    with pytest.raises(report.ReportError, match=r"^--report: the directory /proc is not writable$"):
        report.check_target("--report", "/proc/snnref-report")
    assert cli.main(["verify", "--model", "tether.LIF", "--backend", "spec", "--quick",
                     "--json", "/proc/results.json"]) == 2
    assert cli.main(["golden", "generate", "--model", "tether.LIF", "--out", "/proc/store"]) == 2


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(report.ReportError, match=r"snnref\[report\]"):
        report.check_target("--report", tmp_path / "report")
    status = cli.main(["verify", "--model", "tether.LIF", "--backend", "spec", "--quick",
                       "--report", str(tmp_path / "report")])
    assert status == 2 and not (tmp_path / "report").exists()


def test_snnref_verify_report_draws_the_failing_quantity(tmp_path, capsys):
    directory = tmp_path / "report"
    status = cli.main(["verify", "--impl", "fixtures.outside_lif:after_step_50", "--model", "tether.LIF",
                       "--quick", "--examples", "1", "--report", str(directory)])
    assert status == 1
    assert f"report: {directory / 'index.html'}" in capsys.readouterr().out
    text = (directory / "index.html").read_text()
    assert f"out:v</code>: first failing step {outside_lif.LATE_STEP}" in text
    assert re.search(r'<tr class="fail"><td>tether.LIF</td>', text)


def test_assert_conforms_writes_the_page_before_it_raises(tmp_path):
    with pytest.raises(testing.ConformanceError, match="spikes"):
        testing.assert_conforms(outside_lif.gt_for_ge, "tether.LIF", kinds=("threshold",),
                                report=tmp_path / "report")
    assert "spikes</code>: first failing step 0" in (tmp_path / "report" / "index.html").read_text()


def test_the_plugin_writes_the_page_of_its_items(tmp_path):
    from test_plugin import run_pytest

    directory = tmp_path / "page"
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:gt_for_ge", "--snnref-model",
                        "tether.LIF", "-k", "threshold", "--snnref-report", str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"snnref report: {directory / 'index.html'}" in result.stdout
    text = (directory / "index.html").read_text()
    assert "spikes</code>: first failing step 0" in text and "(threshold)" in text
    # The checks -k left out are named: the page covers the threshold case alone.
    assert ("tether.LIF: the gate&#x27;s random, wide, long, strided, out_sum, far, golden checks did not run in "
            "this session") in text


def test_a_check_no_case_fits_is_listed_as_such_not_as_one_that_did_not_run(tmp_path):
    # Found by a review: the non-spiking hxtorch.cuba_li has no exact-threshold case, and its skipped item
    # was listed as a check that "did not run in this session", in a complete session.
    from test_plugin import run_pytest

    directory = tmp_path / "page"
    result = run_pytest(tmp_path, "-n", "2", "--snnref-impl", "snnref:simulate", "--snnref-model", "hxtorch.cuba_li",
                        "-k", "threshold or far", "--snnref-report", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    text = (directory / "index.html").read_text()
    assert "hxtorch.cuba_li: threshold: no case of this check fits the declared contract" in text
    assert ("hxtorch.cuba_li: the gate&#x27;s random, wide, long, strided, out_sum, golden checks did not run in "
            "this session") in text


def test_an_interrupted_session_writes_no_page_and_keeps_the_previous_one(tmp_path):
    # Found by an outside user: Ctrl-C during the long case left a page headed PASS, of the checks that
    # had run, in place of the previous (failing) one.
    from test_plugin import run_pytest

    directory = tmp_path / "page"
    report.write(directory, [long_run(outside_lif.after_step_50)])
    before = (directory / "index.html").read_bytes()
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:interrupted_on_long", "--snnref-model",
                        "tether.LIF", "-k", "not golden", "--snnref-report", str(directory))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "snnref report: not written, the session was interrupted" in result.stdout
    assert (directory / "index.html").read_bytes() == before


def test_under_xdist_the_plugin_writes_one_page_of_every_workers_items(tmp_path):
    """With -n 2 the items run on two workers; the controller's page has every
    item's rows (a failing threshold item and a passing random one) and the
    failing quantity's figure."""
    from test_plugin import run_pytest

    directory = tmp_path / "page"
    result = run_pytest(tmp_path, "-n", "2", "--dist", "load", "--snnref-impl", "fixtures.outside_lif:gt_for_ge",
                        "--snnref-model", "tether.LIF", "-k", "threshold or random", "--snnref-report",
                        str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout, result.stdout
    assert f"snnref report: {directory / 'index.html'}" in result.stdout, result.stdout
    text = (directory / "index.html").read_text()
    assert "spikes</code>: first failing step 0" in text
    assert "(threshold)" in text and "(random)" in text


def test_under_xdist_a_contract_with_a_surrogate_made_of_lambdas_gets_its_page(tmp_path):
    # Found by an outside library author: the workers' reports did not pickle (the planned cases hold
    # the custom surrogate), the error was lost in the worker, and no page was written, without a word.
    from test_plugin import run_pytest

    directory = tmp_path / "page"
    result = run_pytest(tmp_path, "-n", "2", "--snnref-impl", "fixtures.lambda_surrogate:arctan_by_lambdas",
                        "-k", "threshold or far", "--snnref-report", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"snnref report: {directory / 'index.html'}" in result.stdout, result.stdout
    assert "(threshold)" in (directory / "index.html").read_text()


# Found by mutation testing: each of these passed a planted bug before.
def test_every_text_cell_of_the_table_is_escaped(tmp_path):
    # A failure message (the note) and a backend name carry '<' and '&': text, never markup.
    result = ModelResult("tether.LIF", "<b>torch</b>", failures=["float32 arctan: grad:x < 0 & <i>planted</i>"])
    page = report.write(tmp_path / "report", [result])
    text = page.index.read_text()
    assert "<b>" not in text and "<i>" not in text, text
    assert "&lt;b&gt;torch&lt;/b&gt;" in text
    assert "grad:x &lt; 0 &amp; &lt;i&gt;planted&lt;/i&gt;" in text


def test_an_implementation_named_with_dollar_signs_is_drawn_with_its_name_as_written(tmp_path):
    # Found by an outside user: matplotlib read "$...$" as TeX, and the page failed after the whole run
    # ("\frac" does not parse) or garbled the name ("costs $5 vs $6").
    name = r"LIF $\tau_m$ (v2, $\frac$ build)"
    failing = gate.run(testing.Implementation(outside_lif.gt_for_ge, "tether.LIF", name=name), kinds=("threshold",))
    page = report.write(tmp_path / "report", [failing])
    assert page.drawn and html.escape(name) in assert_self_contained(tmp_path / "report", page)


def test_the_log_axes_ticks_are_typeset_and_only_the_name_is_drawn_as_written(tmp_path, monkeypatch):
    # Found by an outside user: math was turned off for the whole figure to draw a "$" in a name, and the
    # log axes' ticks read "$\mathdefault{10^{-12}}$", cut at the edge: the error panel had no scale.
    figures = []
    Figure, Canvas = report._matplotlib()

    def recording(*args, **kwargs):
        figures.append(Figure(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(report, "_matplotlib", lambda: (recording, Canvas))
    name = "LIF $5 vs $6"
    failing = gate.run(testing.Implementation(outside_lif.gt_for_ge, "tether.LIF", name=name), kinds=("threshold",))
    report.write(tmp_path / "report", [failing])
    logs = [axes for figure in figures for axes in figure.axes if axes.get_yscale() == "log"]
    assert logs, "no log axis drawn"
    for axes in logs:
        labels = [label for label in axes.get_yticklabels() if label.get_text()]
        assert labels and all(label.get_parse_math() and label.get_text().startswith("$") for label in labels)
    assert all(r"LIF \$5 vs \$6" in figure.get_suptitle() for figure in figures)


def test_a_non_finite_error_is_marked_as_such_not_drawn_as_a_number(tmp_path):
    # Found by an outside user: a NaN membrane was left out of the values panel without a word and drawn
    # in the error panel as a line at the cap (budget x 1e6), which read as an error of that size.
    poisoned = gate.run(testing.Implementation(outside_lif.nan_membrane, "tether.LIF"), examples=1,
                        kinds=("random",))
    membrane = drawn(report.write(tmp_path / "report", [poisoned]), "out:v")
    assert membrane.nonfinite == [membrane.window[1] - 1]
    assert drawn(report.write(tmp_path / "late", [long_run(outside_lif.after_step_50)]), "out:v").nonfinite == []


def test_the_cli_page_names_the_implementation_by_its_target(tmp_path, capsys):
    # Found by an outside user: "impl _variant.<locals>.implementation" for every variant a factory makes.
    status = cli.main(["verify", "--impl", "fixtures.outside_lif:gt_for_ge", "--model", "tether.LIF", "--quick",
                       "--examples", "1", "--report", str(tmp_path / "report")])
    assert status == 1
    text = (tmp_path / "report" / "index.html").read_text()
    assert "impl fixtures.outside_lif:gt_for_ge" in text and "&lt;locals&gt;" not in text


def test_a_gate_implementations_qualified_name_is_escaped(tmp_path):
    # outside_lif's functions are closures: their name is "_variant.<locals>.implementation".
    passing = gate.run(testing.Implementation.of(outside_lif.correct, "tether.LIF"), kinds=("threshold",))
    text = report.write(tmp_path / "report", [passing]).index.read_text()
    assert "_variant.&lt;locals&gt;.implementation" in text and "<locals>" not in text


def test_the_window_is_equation_3_exactly(tmp_path, late_bug):
    page = report.write(tmp_path / "report", [late_bug])
    membrane = [d for d in page.drawn if d.quantity == "out:v"][0]
    first = outside_lif.LATE_STEP
    assert membrane.window == (first - report.HALF_WINDOW, first + report.HALF_WINDOW + 1)
    assert membrane.steps == list(range(first - report.HALF_WINDOW, first + report.HALF_WINDOW + 1))


def test_at_most_max_figures_are_drawn_and_the_rest_are_counted(tmp_path, late_bug, monkeypatch):
    failing = len(report._failing_quantities(report._source(late_bug)))
    assert failing >= 1
    monkeypatch.setattr(report, "MAX_FIGURES", 1)
    page = report.write(tmp_path / "report", [late_bug, late_bug])
    assert len(page.drawn) == 1 and page.left_out == 2 * failing - 1
    text = page.index.read_text()
    assert f"{2 * failing - 1} more failing quantities are in the table but not drawn (at most 1 figures)" in text
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["fig-001.png", "index.html"]


def test_a_gate_report_in_which_no_case_ran_is_a_failing_row(tmp_path):
    # GateReport.passed is False without runs; the page must not read as a pass.
    empty = gate.GateReport("tether.LIF", "nothing", "contract")
    page = report.write(tmp_path / "report", [empty])
    assert [(row.check, row.status, row.note) for row in page.rows] == [("-", "fail", "no case ran")]
    assert "snnref verify: FAIL" in page.index.read_text()


def test_a_near_row_is_a_pass_in_the_verdict_and_the_count(tmp_path):
    near = ModelResult("tether.LIF", "torch", ["float32"], 1, worst_fd=0.7)
    assert near.passed
    page = report.write(tmp_path / "report", [near])
    text = page.index.read_text()
    assert [row.status for row in page.rows] == ["near"]
    assert "<h1>snnref verify: PASS</h1>" in text and "1 checks, 0 failing." in text


def test_each_quantity_is_drawn_from_the_run_in_which_it_failed_worst(tmp_path, late_bug):
    failing = [r for r in late_bug.runs if r.traces and r.details.get("out:v", {}).get("failed")]
    fractions = {float(r.details["out:v"]["fraction"]) for r in failing}
    assert len(fractions) >= 2, "the case needs two failing runs of different size"
    page = report.write(tmp_path / "report", [late_bug])
    membrane = [d for d in page.drawn if d.quantity == "out:v"][0]
    assert membrane.fraction == max(fractions)
    assert membrane.fraction == {row.check: row for row in page.rows}["out:v"].worst


def test_the_spec_rows_worst_is_the_fd_error_over_its_bound(tmp_path):
    from snnref.testing._verify import FD_BOUND

    result = ModelResult("tether.LIF", "spec", ["fd"], 4, worst_fd=0.6 * FD_BOUND)
    page = report.write(tmp_path / "report", [result])
    assert page.rows[0].worst == pytest.approx(0.6) and page.rows[0].status == "near"
    assert '<td class="num">0.6</td>' in page.index.read_text()


def test_a_crashing_implementation_is_a_failing_crashed_row(tmp_path):
    # Runs that crashed have no compared quantities: only the "crashed" rows say that they failed.
    def crashes(model, x, params, state, *, surrogate=None, inject=None):
        raise RuntimeError("planted crash")

    outcome = gate.run(testing.Implementation(crashes, "tether.LIF"), examples=1, kinds=("random",))
    assert outcome.runs and not outcome.passed
    page = report.write(tmp_path / "report", [outcome])
    crashed = [row for row in page.rows if row.check == "crashed"]
    assert crashed and all(row.status == "fail" and "planted crash" in row.note for row in crashed)
    assert "FAIL" in page.index.read_text().split("<h1>")[1].split("</h1>")[0]
