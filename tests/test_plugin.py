"""The pytest plugin (entry point pytest11 "snnref"): one item per model x check,
failing with the gate's report; the snnref_gate fixture.  Each run is a pytest
run in an empty directory, in a subprocess: the installed entry point loads the
plugin, or (an editable install made before the entry point existed) -p loads it
by module name, as the entry point would.  The runs the plugin refuses as they
start share one subprocess (``usage_errors``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snnref import cli
from snnref.testing import _golden, gate

FIXTURES = str(Path(__file__).parent)
# Loading it twice (entry point and -p) is an error in pytest: only one of them.  Whether the
# entry point is installed is asked from another directory (an in-tree snnref.egg-info left
# by a build is visible from the repository root only).
INSTALLED = subprocess.run(
    [sys.executable, "-c", "from importlib.metadata import entry_points as e; "
     "print(any(p.name == 'snnref' for p in e(group='pytest11')))"],
    cwd=Path(__file__).anchor, capture_output=True, text=True).stdout.strip() == "True"
LOAD = [] if INSTALLED else ["-p", "snnref.testing.plugin"]


def _options(cache=False):
    return [*LOAD, *([] if cache else ["-p", "no:cacheprovider"]), "-q", "--snnref-examples", "1"]


def _environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=FIXTURES, TRITON_INTERPRET="1")
    return env


def run_pytest(directory, *arguments, cache=False):
    command = [sys.executable, "-m", "pytest", *_options(cache), *arguments]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, env=_environment(), timeout=300)


BAD_OPTIONS = [
    (["--snnref-impl", "snnref.spec:nothing", "--snnref-model", "tether.LIF"],
     "--snnref-impl: 'snnref.spec' has no attribute 'nothing'"),
    (["--snnref-impl", "snnref.spec:simulate"], "--snnref-model: name the model"),
    (["--snnref-model", "tether.LIF"], "--snnref-model: name the implementation with --snnref-impl"),
    (["--snnref-impl", "fixtures.outside_lif:correct", "--snnref-model", "tether.LFI"],
     "--snnref-model: unknown name 'tether.LFI'"),
]
SAVE_FAILURES_MISUSED = [
    (["--snnref-save-failures", "out"], "--snnref-save-failures: it saves the failing cases of --snnref-impl"),
    (["--snnref-impl", "fixtures.outside_lif:b1", "--snnref-model", "tether.LIF", "--snnref-save-failures",
      "missing/out"], "--snnref-save-failures: missing does not exist (the directory to write into must)"),
]
REPORT_ALONE = ["--snnref-report", "page"]
BAD_VALUES = [
    ("--snnref-examples", "0", "--snnref-examples: expected an integer >= 1, got '0'"),
    # Before: every gate item failed with a traceback from inside the gate.
    ("--snnref-seed", "-1", "--snnref-seed: expected an integer >= 0, got -1"),
    # Before: no page was written, and the run passed.
    ("--snnref-report", "", "--snnref-report: expected a directory name, got ''"),
    # Before: the golden item failed with an 874-line traceback ending in "missing manifest".
    ("--snnref-golden-dir", "nowhere", "--snnref-golden-dir: nowhere: no such directory (expected a golden store)"),
]


# Under pytest-xdist the items are collected on the workers, where a usage error was lost: no
# tests ran (exit 5) with no message, or an INTERNALERROR naming another test.
XDIST = ("-n", "2")
PARALLEL = pytest.mark.parametrize("parallel", [(), XDIST], ids=["serial", "xdist"])


def _bad_value_arguments(option, value):
    return ["--snnref-impl", "fixtures.outside_lif:correct", "--snnref-model", "tether.LIF", option, value]


@pytest.fixture(scope="module")
def usage_errors(tmp_path_factory):
    """{tuple of arguments: (exit code, stderr, directory)} of every refused
    run of this module, each in its own empty directory, all in one pytest
    subprocess (fixtures/usage_runs.py)."""
    runs = [arguments for arguments, _ in BAD_OPTIONS + SAVE_FAILURES_MISUSED] + [REPORT_ALONE]
    runs += [_bad_value_arguments(option, value) for option, value, _ in BAD_VALUES]
    runs += [arguments + list(XDIST) for arguments in runs]
    directories = [tmp_path_factory.mktemp("refused") for _ in runs]
    request = json.dumps([[str(d), _options() + arguments] for d, arguments in zip(directories, runs)])
    # Started in an empty directory too: the checkout's root on sys.path would shadow the installed snnref.
    done = subprocess.run([sys.executable, "-m", "fixtures.usage_runs"], input=request, capture_output=True,
                          text=True, cwd=directories[0], env=_environment(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {tuple(arguments): (code, stderr, directory)
            for arguments, (code, stderr), directory in zip(runs, json.loads(done.stdout), directories)}


def test_one_item_per_model_and_check_and_a_correct_implementation_passes(tmp_path):
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:correct", "--snnref-model", "tether.LIF",
                        "-k", "not golden", "-rA")
    assert result.returncode == 0, result.stdout + result.stderr
    for kind in ("random", "threshold", "wide", "long", "strided", "out_sum", "far"):
        assert f"PASSED ::snnref[tether.LIF-{kind}]" in result.stdout, result.stdout
    assert "7 passed, 1 deselected" in result.stdout
    # A pass shows its report under -rA, what it checked and (where any) what it did not; before,
    # only --snnref-report did.
    # Named by the target: before, by the function's own name, which every variant a factory makes shares.
    assert "snnref gate: tether.LIF, implementation fixtures.outside_lif:correct: PASS" in result.stdout
    assert "within budget (worst fraction): " in result.stdout, result.stdout


def test_the_gate_items_count_as_collected_under_k(tmp_path):
    # Before: "collected 0 items / 6 deselected / -6 selected" (-v undoes run_pytest's -q).
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:correct", "--snnref-model", "tether.LIF",
                        "-k", "random", "--collect-only", "-v")
    assert "collected 8 items / 7 deselected / 1 selected" in result.stdout, result.stdout + result.stderr


def test_a_planted_bug_fails_its_item_with_the_report(tmp_path):
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:gt_for_ge", "--snnref-model",
                        "tether.LIF", "-k", "threshold or random")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED ::snnref[tether.LIF-threshold]" in result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "spikes" in result.stdout and ">= against >" in result.stdout


def test_last_failed_reruns_only_the_failing_item_and_a_model_named_twice_is_one_set(tmp_path):
    options = ["--snnref-impl", "fixtures.outside_lif:gt_for_ge", "--snnref-model", "tether.LIF",
               "--snnref-model", "tether.LIF", "-k", "threshold or random"]
    first = run_pytest(tmp_path, *options, cache=True)
    assert "1 failed, 1 passed" in first.stdout, first.stdout + first.stderr
    again = run_pytest(tmp_path, *options, "--lf", cache=True)
    assert "FAILED ::snnref[tether.LIF-threshold]" in again.stdout, again.stdout + again.stderr
    # -k deselects six items, --lf the one that passed.
    assert "1 failed, 7 deselected" in again.stdout, again.stdout


def test_the_fixture_runs_the_gate_in_a_test_of_ones_own(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        "from fixtures import outside_lif\n"
        "import pytest\n"
        "from snnref.testing import ConformanceError\n\n"
        "def test_correct(snnref_gate):\n"
        "    assert snnref_gate(outside_lif.correct, 'tether.LIF', examples=1, golden=False) <= 1\n\n"
        "def test_b1(snnref_gate):\n"
        "    with pytest.raises(ConformanceError, match='grad:x'):\n"
        "        snnref_gate(outside_lif.b1, 'tether.LIF', examples=1, golden=False)\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr


@PARALLEL
@pytest.mark.parametrize("arguments,message", BAD_OPTIONS)
def test_bad_options_are_usage_errors(usage_errors, arguments, message, parallel):
    code, stderr, _ = usage_errors[tuple(arguments) + parallel]
    assert code == 4 and message in stderr, stderr


def test_an_item_whose_cases_the_contract_rules_out_is_skipped_with_the_reason(tmp_path):
    """A pin that no golden trace fits left the golden item with no run, which
    failed: a CI job with a pinned contract could never pass."""
    (tmp_path / "pinned.py").write_text(
        "from fixtures import outside_lif\n"
        "from snnref.testing import Implementation\n"
        "pinned = Implementation(outside_lif.correct, 'tether.LIF', pin={'alpha': 1.0})\n")
    result = run_pytest(tmp_path, "--snnref-impl", "pinned:pinned", "-k", "golden or random", "-rs",
                        "--snnref-report", str(tmp_path / "page"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout, result.stdout
    assert "golden: no case of this check fits the declared contract; not checked: golden" in result.stdout
    # Before, the page said FAIL: the skipped item's gate had no run, a "no case ran" row.
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<h1>snnref gate (pytest): PASS</h1>" in page and "no case ran" not in page, page


def test_an_item_whose_golden_files_are_all_broken_fails_and_the_golden_dir_is_read(tmp_path):
    """A store whose tether.LIF files are all missing: every golden case is broken and
    none runs.  That is a failure (the gate says so), never 'nothing fits the contract'
    (a skip); and the store is the one --snnref-golden-dir names, not the installed one."""
    manifest = json.loads((_golden.store_dir() / _golden.MANIFEST).read_text())
    manifest["files"] = {n: e for n, e in manifest["files"].items() if e["model"] == "tether.LIF"}
    store = tmp_path / "store"
    store.mkdir()
    (store / _golden.MANIFEST).write_text(json.dumps(manifest))
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:correct", "--snnref-model", "tether.LIF",
                        "--snnref-golden-dir", str(store), "-k", "golden")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED ::snnref[tether.LIF-golden]" in result.stdout, result.stdout
    assert "1 failed, 7 deselected" in result.stdout, result.stdout
    assert "broken: golden" in result.stdout and ": missing" in result.stdout, result.stdout


def test_the_seed_option_draws_the_cases(tmp_path):
    # The label of a random case names its seed, drawn from --snnref-seed (one example: index 0).
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:b1", "--snnref-model", "tether.LIF",
                        "--snnref-seed", "3", "-k", "random")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"seed={gate._seed('tether.LIF', 3, 'random', 0)} " in result.stdout, result.stdout
    assert f"seed={gate._seed('tether.LIF', 0, 'random', 0)} " not in result.stdout, result.stdout


def test_a_failing_item_saves_its_case_and_the_replay_reproduces_it(tmp_path, capsys):
    # Before, the plugin had no --snnref-save-failures: a CI job's failure could not be replayed.
    saved = tmp_path / "failures"
    result = run_pytest(tmp_path, "--snnref-impl", "fixtures.outside_lif:b1", "--snnref-model", "tether.LIF",
                        "-k", "random", "--snnref-save-failures", str(saved))
    assert result.returncode == 1, result.stdout + result.stderr
    (case,) = saved.iterdir()
    # The fixtures import from the tests folder, which the command then puts on PYTHONPATH.
    assert (f"replay: PYTHONPATH={FIXTURES} snnref verify --impl fixtures.outside_lif:b1 --model tether.LIF "
            f"--case {case}") in result.stdout, result.stdout
    assert cli.main(["verify", "--impl", "fixtures.outside_lif:b1", "--model", "tether.LIF", "--case", str(case)]) == 1
    assert "first failing run: tether.LIF" in capsys.readouterr().out


@PARALLEL
@pytest.mark.parametrize("arguments,message", SAVE_FAILURES_MISUSED)
def test_save_failures_without_an_implementation_or_a_directory_is_a_usage_error(usage_errors, arguments, message,
                                                                                 parallel):
    code, stderr, _ = usage_errors[tuple(arguments) + parallel]
    assert code == 4 and message in stderr, stderr


@PARALLEL
def test_a_report_without_an_implementation_is_a_usage_error(usage_errors, parallel):
    code, stderr, directory = usage_errors[tuple(REPORT_ALONE) + parallel]
    assert code == 4, stderr
    assert "--snnref-report: it reports the gate items of --snnref-impl MODULE:CALLABLE" in stderr
    assert directory.is_dir() and not (directory / "page").exists()


@PARALLEL
@pytest.mark.parametrize("option,value,message", BAD_VALUES)
def test_a_bad_number_or_name_is_a_usage_error(usage_errors, option, value, message, parallel):
    code, stderr, _ = usage_errors[tuple(_bad_value_arguments(option, value)) + parallel]
    assert code == 4 and message in stderr, stderr
