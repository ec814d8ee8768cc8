"""``snnref verify``: a table row per model, exit 0 only when every check passes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import snnref.spec.api as api
from fixtures import impl_mutants, outside_lif
from snnref import cli, registry


def test_verify_passes_and_prints_a_row_per_model(capsys):
    keys = ["tether.LIF", "hxtorch.cuba_refractory_lif", "rnnbuilder.Discontinuous"]
    code = cli.main(["verify", *[arg for key in keys for arg in ("--model", key)]])
    out = capsys.readouterr()
    assert code == 0, out.out
    rows = [line.split() for line in out.out.splitlines() if line.split() and line.split()[0] in keys]
    # One row per model and backend available here (spec, torch, triton; cpu with numba), and a
    # continuous row for the models SPEC.md section 9 maps (not rnnbuilder.Discontinuous), every one passing.
    backends = cli._available_backends()
    assert {"spec", "torch", "triton"} <= set(backends)
    expected = [(k, b) for k in keys for b in backends]
    expected += [(k, "continuous") for k in keys if k != "rnnbuilder.Discontinuous"]
    assert sorted((r[0], r[1]) for r in rows) == sorted(expected)
    assert all(r[-1] == "PASS" for r in rows)
    assert "refractory" in out.out and "gradcheck" in out.out and "bfloat16" in out.out
    jobs = len(expected)
    assert f"{jobs} passed, 0 failed" in out.out
    # Progress goes to stderr while it runs.
    assert f"[ 1/{jobs}] tether.LIF (spec)" in out.err


def test_verify_rows_in_several_processes_print_the_same_table(capsys, monkeypatch):
    """--jobs 2 runs the rows in two spawned processes; the table (rows, order,
    every number) is the one a single process prints."""
    import concurrent.futures

    pools = []

    class CountedPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, workers, *rest, **options):
            pools.append(workers)
            super().__init__(workers, *rest, **options)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", CountedPool)
    arguments = ["verify", "--quick", "--model", "tether.LIF", "--model", "qualia.IFSRL", "--backend", "torch"]
    tables = []
    for jobs in ("1", "2"):
        assert cli.main([*arguments, "--jobs", jobs]) == 0
        out = capsys.readouterr()
        tables.append([line for line in out.out.splitlines() if "passed, 0 failed" not in line])
        assert "[ 2/2] qualia.IFSRL (torch)" in out.err
    assert pools == [2]
    assert tables[0] == tables[1]
    assert [line.split()[:2] for line in tables[1] if line.endswith("PASS")] == \
        [["tether.LIF", "torch"], ["qualia.IFSRL", "torch"]]


@pytest.mark.parametrize("jobs", ["0", "-1", "two", "100000"])
def test_a_bad_job_count_is_refused_by_name(capsys, jobs):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["verify", "--model", "tether.LIF", "--jobs", jobs])
    assert exit_info.value.code == 2
    assert "argument --jobs: expected an integer from 1 to" in capsys.readouterr().err


@pytest.mark.parametrize("arguments,option", [
    (["verify", "--model", "tether.LIF", "--impl", ""], "--impl"),
    (["verify", "--golden-dir", ""], "--golden-dir"),
    (["verify", "--save-failures", ""], "--save-failures"),
    (["verify", "--case", ""], "--case"),
    (["golden", "generate", "--cases", "", "--out", "store"], "--cases"),
    (["golden", "check", "--dir", ""], "--dir/--golden-dir"),
    (["golden", "check", "--impl", ""], "--impl"),
    (["golden", "check", "--model", ""], "--model"),
    (["golden", "diff", "golden", ""], "B"),
    (["nir", "run", "", "--input", "x.npy", "--dt", "1e-3", "--out", "t.npz"], "GRAPH.nir"),
    (["nir", "check", "g.nir", "--input", "", "--dt", "1e-3", "--impl", "m:f"], "--input"),
    (["nir", "check", "g.nir", "--input", "x.npy", "--dt", "1e-3", "--impl", ""], "--impl"),
])
def test_an_empty_name_or_path_is_refused_not_read_as_absent(capsys, arguments, option):
    # An unset shell variable (--impl "$IMPL"): verify and golden check ran without the
    # implementation and passed, generate --cases wrote the built-in store.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2
    assert f"argument {option}: expected a non-empty value" in capsys.readouterr().err


def test_an_os_error_inside_any_command_is_an_error_line_and_exit_2(capsys, monkeypatch, tmp_path):
    # main()'s own handler, beyond golden generate's: here verify's --json on a full disk.
    def full_disk(path, *args):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(cli, "_write_json", full_disk)
    code = cli.main(["verify", "--model", "tether.LIF", "--backend", "spec", "--quick", "--json",
                     str(tmp_path / "results.json")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"snnref: error: [Errno 28] No space left on device: '{tmp_path / 'results.json'}'")


def test_golden_check_model_without_impl_is_a_usage_error(capsys):
    assert cli.main(["golden", "check", "--model", "tether.LIF"]) == 2
    assert "--model: applies to --impl only" in capsys.readouterr().err


def test_ctrl_c_while_the_parser_is_built_is_an_interruption_not_a_traceback(capsys, monkeypatch):
    # Building the parser imports the conformance adapters (torch, the peer libraries): seconds long.
    from snnref.testing import conformance

    def interrupted(commands):
        raise KeyboardInterrupt

    monkeypatch.setattr(conformance, "add_parser", interrupted)
    try:
        code = cli.main(["verify", "--model", "tether.LIF"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped snnref's main as a traceback")
    assert code == 130
    assert capsys.readouterr().err == "snnref: interrupted\n"


def test_verify_fails_on_a_wrong_backward(capsys, plant_backward):
    def wrong(grads, params, state, tape, cot):
        grads["decay_a"] = grads["decay_a"] * 1.01

    plant_backward("tether.ALIF", wrong)
    code = cli.main(["verify", "--model", "tether.ALIF", "--backend", "spec"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "decay_a" in out


def test_verify_fails_on_a_wrong_forward(capsys, monkeypatch):
    family = api._family(registry.model("rnnbuilder.LIF"))
    original = family.forward

    def leaky(row, x, *args):
        # An input gain off by 1e-3: the comparison with lfilter must notice.
        return original(row, x * np.float64(1.001), *args)

    monkeypatch.setattr(family, "forward", leaky)
    assert cli.main(["verify", "--model", "rnnbuilder.LIF", "--backend", "spec"]) == 1
    assert "lfilter" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error(capsys):
    result = subprocess.run([sys.executable, "-m", "snnref.cli", "verify", "--model", "tether.lif"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    # Named by the option, as the command's other errors are (before: "model:").
    assert "snnref: error: --model: unknown name 'tether.lif'; expected one of:" in result.stderr
    assert "(did you mean 'tether.LIF'?)" in result.stderr
    for command in (["golden", "generate", "--out", "store"], ["converge"]):
        assert cli.main([*command, "--model", "tether.lif"]) == 2
        assert "--model: unknown name 'tether.lif'" in capsys.readouterr().err


def test_verify_fails_on_a_wrong_torch_backward(capsys, monkeypatch):
    import snnref.ops.lif as lif

    original = lif._Scan.backward

    def skewed(ctx, *grads):
        result = list(original(ctx, *grads))
        result[0] = result[0] * 1.001  # the input's gradient
        return tuple(result)

    monkeypatch.setattr(lif._Scan, "backward", staticmethod(skewed))
    assert cli.main(["verify", "--model", "qualia.IFSRL", "--backend", "torch"]) == 1
    out = capsys.readouterr().out
    assert "grad:x" in out and "first at step" in out


def test_verify_impl_passes_a_correct_implementation(capsys):
    assert cli.main(["verify", "--impl", "snnref:simulate", "--model", "hxtorch.cuba_refractory_lif"]) == 0
    assert "impl" in capsys.readouterr().out


TABLE_ROW = re.compile(r"(?m)^      ((?:out|final|grad):\S+|spikes) +\S+ +(\d+)/(\d+) +(\S+) ")


def assert_gate_failure(out, model):
    """The gate's report: a row per failing quantity (failing runs, steps), the first failing run."""
    rows = TABLE_ROW.findall(out)
    assert rows and all(int(failing) >= 1 for _, failing, _, _ in rows), out
    assert f"first failing run: {model} " in out, out
    # Where it fails: a row's steps, or the first failing run's first step.
    assert any(steps not in ("-",) for _, _, _, steps in rows) or re.search(r"first at step \d+", out), out
    return {quantity: steps for quantity, _, _, steps in rows}


@pytest.mark.parametrize("name", sorted(impl_mutants.CASES))
def test_verify_impl_catches_each_planted_mutant(name, capsys):
    _, model = impl_mutants.CASES[name]
    code = cli.main(["verify", "--quick", "--impl", f"fixtures.impl_mutants:{name}", "--model", model])
    out = capsys.readouterr().out
    assert code == 1, out
    assert_gate_failure(out, model)


@pytest.mark.parametrize("name", sorted(outside_lif.BUGS))
def test_verify_impl_catches_each_planted_bug_of_an_outside_lif(name, capsys):
    model, _ = outside_lif.BUGS[name]
    code = cli.main(["verify", "--quick", "--impl", f"fixtures.outside_lif:{name}", "--model", model])
    out = capsys.readouterr().out
    assert code == 1, out
    steps = assert_gate_failure(out, model)
    if name == "after_step_50":
        assert steps["out:v"].startswith(f"{outside_lif.LATE_STEP}-"), out
    if name == "gt_for_ge":
        assert steps["spikes"].startswith("0-"), out


def test_verify_impl_passes_the_correct_outside_lif_with_goldens(capsys, tmp_path, monkeypatch):
    # From another working directory: the installed (here: the repository's) store is found.
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert cli.main(["verify", "--impl", "fixtures.outside_lif:correct", "--model", "tether.LIF",
                     "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "golden" in out and "PASS" in out and "12 golden" in out


def test_verify_impl_save_failures_and_replay(capsys, tmp_path):
    target = tmp_path / "failures"
    assert cli.main(["verify", "--quick", "--impl", "fixtures.outside_lif:after_step_50", "--model", "tether.LIF",
                     "--save-failures", str(target)]) == 1
    out = capsys.readouterr().out
    command = re.search(r"replay: (snnref verify .*)", out).group(1)
    saved = list(target.glob("*.npz"))
    assert len(saved) == 1 and str(saved[0]) in command
    arguments = command.split()[1:]
    assert cli.main(arguments) == 1
    replayed = capsys.readouterr().out
    assert "1 runs, 1 failed" in replayed and assert_gate_failure(replayed, "tether.LIF")
    assert cli.main(arguments[:1] + ["--impl", "fixtures.outside_lif:correct"] + arguments[3:]) == 0


def _saved_case(path, meta, with_x=True):
    arrays = {"meta": np.array(json.dumps(meta))} | ({"in.x": np.zeros((2, 1, 1))} if with_x else {})
    np.savez(path, **arrays)


META = {"model": "tether.LIF", "surrogate": "sigmoid", "kind": "random", "seed": 0, "dtype": "float32"}


@pytest.mark.parametrize("write,why", [
    (lambda path: path.write_bytes(b""), "not a .npz archive: its first bytes are no zip archive's"),
    (lambda path: path.write_bytes(b"model,tether.LIF\n"), "not a .npz archive"),
    (lambda path: _saved_case(path, META) or path.write_bytes(path.read_bytes()[:60]), "BadZipFile"),
    (lambda path: _saved_case(path, {k: v for k, v in META.items() if k != "seed"}), "it lacks seed"),
    (lambda path: _saved_case(path, META, with_x=False), "it lacks in.x"),
    (lambda path: _saved_case(path, ["not", "a", "table"]), "its meta is not a table"),
    # Found by an outside user: these failed inside int() and tuple.index(), or were read as true.
    (lambda path: _saved_case(path, {**META, "seed": "x"}), "its seed 'x' is no integer >= 0"),
    (lambda path: _saved_case(path, {**META, "kind": "zzz"}), "its kind 'zzz' is none of random, "),
    (lambda path: _saved_case(path, {**META, "fill_state": "no"}), "its fill_state 'no' is not true or false"),
    # Found by an outside user: reported as the implementation's crash.
    (lambda path: _saved_case(path, {**META, "surrogate": "nope"}), "the spec refuses its inputs: surrogate: "),
    # Found by an outside user: a FIFO was waited on forever.
    (lambda path: os.mkfifo(path), "OSError: [Errno 22] not a regular file (a FIFO, device or socket)"),
])
def test_a_damaged_case_file_is_a_usage_error(write, why, capsys, tmp_path):
    path = tmp_path / "case.npz"
    write(path)
    assert cli.main(["verify", "--impl", "fixtures.outside_lif:correct", "--model", "tether.LIF",
                     "--case", str(path)]) == 2
    out, err = capsys.readouterr()
    # Before the table's header is printed.
    assert f"--case: {path} is not a case written by --save-failures ({why}" in err and out == ""


def test_verify_golden_dir_override(capsys, tmp_path):
    # The directory is read as the store, and refused before the run when it is none.
    assert cli.main(["verify", "--impl", "fixtures.outside_lif:correct", "--model", "tether.LIF",
                     "--examples", "1", "--golden-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert f"--golden-dir: {tmp_path}/MANIFEST.json: missing manifest" in err and out == ""


@pytest.mark.parametrize("impl,message", [
    ("no_such_module:fn", "--impl: cannot import 'no_such_module'"),
    ("fixtures.impl_mutants:missing", "--impl: 'fixtures.impl_mutants' has no attribute 'missing'"),
    ("fixtures.impl_mutants:CASES", "is not callable"),
    ("fixtures.impl_mutants:not_a_function", "does not have the contract's signature"),
    ("snnref.simulate", "expected package.module:callable"),
])
def test_verify_impl_bad_targets(impl, message, capsys):
    assert cli.main(["verify", "--impl", impl, "--model", "tether.LIF"]) == 2
    assert message in capsys.readouterr().err


def test_a_module_that_raises_while_imported_is_named_with_the_line(tmp_path, capsys, monkeypatch):
    # Found by an outside library author: the type and message alone, no file or line.
    (tmp_path / "broken_neurons.py").write_text("rate = 1\nscale = rate / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["verify", "--impl", "broken_neurons:lif", "--model", "tether.LIF"]) == 2
    assert (f"--impl: cannot import 'broken_neurons' (ZeroDivisionError: division by zero at "
            f"{tmp_path / 'broken_neurons.py'}:2)") in capsys.readouterr().err


def test_verify_json_report(tmp_path, capsys):
    target = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF", "--json", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["passed"] and document["results"][0]["model"] == "tether.LIF"


def test_verify_impl_json_has_the_whole_gate_report(tmp_path, capsys):
    target = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--impl", "fixtures.outside_lif:b10", "--model", "tether.LIF",
                     "--json", str(target)]) == 1
    gate = json.loads(target.read_text())["results"][0]["gate"]
    assert not gate["passed"] and gate["quantities"]["grad:alpha"]["failing"] >= 1
    assert all({"label", "seed", "dtype", "details", "failures"} <= set(run) for run in gate["runs"])


def _no_constant(token):
    raise ValueError(f"non-standard JSON token {token}")


def test_verify_json_is_standard_json_with_an_infinite_worst_as_a_string(tmp_path, capsys):
    # A flip outside the margin is infinitely far from passing; Python wrote it as Infinity, which
    # JSON readers other than Python's reject.
    target = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--impl", "fixtures.outside_lif:gt_for_ge", "--model", "tether.LIF",
                     "--json", str(target)]) == 1
    document = json.loads(target.read_text(), parse_constant=_no_constant)
    row = document["results"][0]
    assert row["gate"]["worst"] == "inf" and row["worst"] == "inf"


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_verify_examples_below_one_is_a_usage_error(count, capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(["verify", "--quick", "--impl", "fixtures.outside_lif:correct", "--model", "tether.LIF",
                  "--examples", count])
    assert ended.value.code == 2
    assert f"argument --examples: expected an integer >= 1, got '{count}'" in capsys.readouterr().err


@pytest.mark.parametrize("make_target,message", [
    (lambda tmp: tmp / "missing" / "r.json", "--json: the directory"),
    (lambda tmp: tmp, "is a directory; expected a file name"),
    (lambda tmp: (tmp / "file").write_text("") or tmp / "file" / "r.json", "file exists and is not a directory"),
])
def test_verify_json_target_is_checked_before_the_run(make_target, message, tmp_path, capsys):
    target = make_target(tmp_path)
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF", "--json", str(target)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "snnref verify:" not in captured.out  # nothing ran


def test_verify_json_and_report_write_through_a_symbolic_link(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "pages").mkdir()
    (tmp_path / "latest.json").symlink_to(tmp_path / "runs" / "run.json")
    (tmp_path / "page").symlink_to(tmp_path / "pages", target_is_directory=True)
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF",
                     "--json", str(tmp_path / "latest.json"), "--report", str(tmp_path / "page")]) == 0
    assert (tmp_path / "latest.json").is_symlink() and (tmp_path / "page").is_symlink()
    assert json.loads((tmp_path / "runs" / "run.json").read_text())["passed"]
    assert (tmp_path / "pages" / "index.html").is_file()


@pytest.mark.parametrize("backend,needs", [("cuda", "a CUDA device (torch.cuda.is_available() is False here)"),
                                           ("cpu", "numba, which is not installed")])
def test_an_unavailable_backend_says_what_it_needs(backend, needs, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_available_backends", lambda: ["spec", "torch"])
    assert cli.main(["verify", "--model", "tether.LIF", "--backend", backend]) == 2
    assert f"backend: {backend!r} is not available here: it needs {needs}" in capsys.readouterr().err


def test_a_model_named_twice_is_one_row(capsys):
    assert cli.main(["verify", "--quick", "--backend", "spec", "--model", "tether.LIF", "--model", "tether.LIF"]) == 0
    out = capsys.readouterr().out
    assert "1 models x spec" in out and "1 passed, 0 failed" in out


def test_ctrl_c_ends_with_130_and_no_traceback(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_verify", interrupted)
    assert cli.main(["verify", "--model", "tether.LIF"]) == 130
    assert capsys.readouterr().err == "snnref: interrupted\n"


def _diff_of_the_store_with_itself(stdout_redirect="", stdout=None):
    """``snnref golden diff STORE STORE`` (identical: exit 0) in a shell, its stdout
    redirected by the shell or handed over as ``stdout``."""
    from snnref.testing import _golden as golden

    store = str(golden.store_dir(None))
    command = f"{sys.executable} -m snnref.cli golden diff {store} {store} {stdout_redirect}"
    return subprocess.run(["sh", "-c", command], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


def test_a_reader_that_leaves_early_ends_the_command_without_a_traceback():
    """``snnref golden diff A B | head -1``: stdout's reader is gone before the
    output is written.  Exit 141 (128 + SIGPIPE, as a shell reports a command
    that a closed pipe ended) and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = _diff_of_the_store_with_itself(stdout=write_end)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_stdout_that_takes_nothing_is_an_error_not_a_traceback():
    done = _diff_of_the_store_with_itself("> /dev/full")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("snnref: error: the output could not be written to stdout ([Errno 28]"), done.stderr
    assert "Traceback" not in done.stderr


def test_a_closed_stdout_is_no_traceback():
    done = _diff_of_the_store_with_itself(">&-")
    assert (done.returncode, done.stderr) == (0, "")


def test_json_to_a_pipe_or_device_is_refused_before_the_run(capsys, tmp_path):
    # A named pipe stands for /dev/stdout and the like: a failure of this test must not
    # replace a device of the machine running it by a file.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert cli.main(["verify", "--model", "tether.LIF", "--json", str(pipe)]) == 2
    assert f"--json: {pipe} is not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("arguments,message", [
    # Both used to be accepted: no JSON was written, and --impl ran without the named backend, exit 0.
    (["--model", "tether.LIF", "--json", ""], "--json: expected a file name, got ''"),
    (["--impl", "fixtures.outside_lif:correct", "--model", "tether.LIF", "--backend", "triton"],
     "--backend: applies without --impl only"),
    # Ignored under --quick before, and without it a failed check after the whole run.
    (["--model", "tether.LIF", "--golden-dir", "/nonexistent"], "--golden-dir: /nonexistent: no such directory"),
])
def test_an_empty_json_a_backend_with_impl_or_no_golden_store_is_refused_before_the_run(arguments, message, capsys):
    assert cli.main(["verify", "--quick", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--model", "tether.LIF", "--seed", "-5"])
    assert exit_.value.code == 2
    assert "--seed: expected an integer >= 0, got -5" in capsys.readouterr().err


@pytest.mark.parametrize("target,model", [("hxtorch_cuba_lif", "hxtorch.cuba_lif"), ("tether_lif", "tether.LIF")])
def test_verify_impl_reads_the_adapter_contract_as_assert_conforms_does(target, model, capsys):
    # hxtorch's functions take no initial state and tether's no per-neuron scalars: the
    # CLI honours both (it used to ignore them and fail the hxtorch adapter).
    assert cli.main(["verify", "--quick", "--impl", f"fixtures.impl_adapters:{target}", "--model", model]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "not checked: " in out
    assert ("state no" in out) if target.startswith("hxtorch") else ("per-neuron none" in out)
    # The contract line mentions injection only for a model that has hardware observations.
    assert ("inject yes" in out) == bool(registry.model(model).inject) and "inject no" not in out


def test_verify_has_a_continuous_row_for_mapped_models_only(capsys):
    assert cli.main(["verify", "--quick", "--backend", "continuous", "--model", "tether.LIF",
                     "--model", "tether.ALIF"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("tether.LIF ", "tether.ALIF "))]
    # tether.LIF is exact at every dt (SPEC.md section 9); tether.ALIF has no counterpart.
    assert len(rows) == 1 and "continuous" in rows[0] and "exact: max dev" in rows[0] and rows[0].endswith("PASS")
    # Its measurements are in the checks column: no count, worst or extra, rather than a 0 never measured.
    assert rows[0].split()[2:5] == ["-", "-", "-"]


def test_verify_json_gives_a_continuous_row_no_unmeasured_numbers(tmp_path, capsys):
    target = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--backend", "continuous", "--model", "tether.LIF",
                     "--json", str(target)]) == 0
    row, = json.loads(target.read_text())["results"]
    assert row["backend"] == "continuous" and not {"cases", "worst", "extra"} & set(row)
    assert "exact: max dev" in row["checks"][0]


def test_verify_continuous_refuses_models_without_a_counterpart(capsys):
    assert cli.main(["verify", "--quick", "--backend", "continuous", "--model", "tether.ALIF"]) == 2
    out, err = capsys.readouterr()
    # Before the table's header is printed.
    assert "no continuous counterpart for tether.ALIF" in err and out == ""


def test_verify_continuous_row_fails_on_a_wrong_correspondence(capsys, monkeypatch):
    import dataclasses

    from snnref.continuous import convergence

    original = convergence.converge

    def skewed(model, **kwargs):
        # As if the discrete model had left the exact solution.
        return dataclasses.replace(original(model, **kwargs), max_deviation=1e-3)

    monkeypatch.setattr(convergence, "converge", skewed)
    assert cli.main(["verify", "--quick", "--backend", "continuous", "--model", "tether.LIF"]) == 1
    assert "exact relation: max deviation 1.000e-03" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["converge", "nir"])
def test_the_continuous_and_nir_commands_are_wired(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0 and f"usage: snnref {command}" in capsys.readouterr().out


def test_nir_without_its_extra_says_how_to_get_it(capsys, monkeypatch):
    # Without the nir package, "snnref nir" is still a command, which names the extra.
    monkeypatch.setitem(sys.modules, "snnref.nir", None)
    monkeypatch.setitem(sys.modules, "snnref.testing.nir", None)
    assert cli.main(["nir", "run", "graph.nir"]) == 2
    assert "snnref nir: error:" in capsys.readouterr().err


def test_a_full_disk_while_writing_a_store_is_an_error_not_a_traceback(capsys, tmp_path, monkeypatch):
    """An OSError of a file being written (here the third golden file, on a full
    disk) ends the command with its reason and exit code 2, after the store's
    cleanup: no staging folder is left and no store appears.  It was a traceback."""
    from snnref.testing import _golden

    original = _golden.write_atomically
    written = []

    def full_disk(path, data):
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device", str(path))
        original(path, data)

    monkeypatch.setattr(_golden, "write_atomically", full_disk)
    out = tmp_path / "store"
    assert cli.main(["golden", "generate", "--model", "tether.LIF", "--out", str(out)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    # The store is named, not the hidden staging file the OSError names.
    assert error == f"snnref: error: --out {out}: No space left on device", error
    assert list(tmp_path.iterdir()) == []


def test_an_implementation_of_another_model_is_refused_before_the_table(capsys):
    # Found by an outside user: the legend, the header and the row's name were printed first.
    assert cli.main(["verify", "--impl", "fixtures.lambda_surrogate:arctan_by_lambdas", "--model",
                     "tether.PLIF", "--quick"]) == 2
    out, err = capsys.readouterr()
    assert "model: the implementation declares tether.LIF, not tether.PLIF" in err and out == ""


def test_backend_is_repeatable_like_model(capsys):
    """Found by an outside user: ``--backend spec --backend torch`` ran torch alone, silently."""
    assert cli.main(["verify", "--quick", "--model", "tether.LIF", "--backend", "spec", "--backend", "torch",
                     "--backend", "spec"]) == 0
    out = capsys.readouterr().out
    assert "1 models x spec, torch, seed 0" in out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("tether.LIF ")]
    assert rows == [["tether.LIF", "spec"], ["tether.LIF", "torch"]], out
    assert cli.main(["verify", "--impl", "snnref:simulate", "--model", "tether.LIF", "--backend", "spec"]) == 2
    assert "--backend: applies without --impl only" in capsys.readouterr().err
