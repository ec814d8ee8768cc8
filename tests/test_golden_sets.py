"""Golden sets for your own configurations: a case file generates a store with the
built-in store's determinism, manifest and checksums; `golden check` runs the spec
or an implementation against it, `golden diff` says what changed; a bad case file
is refused by file, case and field, and nothing is written."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import snnref
from snnref import cli
from snnref.testing import Implementation, gate
from snnref.testing import _golden as golden, golden_cases

EXAMPLE = Path(__file__).resolve().parents[1] / "tools" / "golden_cases.example.toml"
STEPS, BATCH, NEURONS = 40, 2, 4
# hxtorch's hardware modules (SPEC.md section 8): leak = reset = 80, threshold = 125,
# tau = 10 us (tau_syn and tau_mem in the registry), alpha = 50.
HARDWARE = "{ leak = 80, reset = 80, threshold = 125, tau_syn = 1e-5, tau_mem = 1e-5, alpha = 50 }"

CASES = f"""
[[case]]
name = "hardware"
model = "hxtorch.cuba_lif"
shape = [{STEPS}, {BATCH}, {NEURONS}]
drive = [6.0, 3.0]
seeds = [0, 1]
params = {HARDWARE}
inject = {{ v = "traces/hw_v.npy", spikes = "traces/hw_spikes.npy" }}

[[case]]
name = "plif"
model = "tether.PLIF"
surrogates = ["arctan", "sigmoid"]
shape = [12, 2, 3]
params = {{ decay = [0.8, 0.9, 0.95], threshold = THRESHOLD }}
state = {{ v = [0.1, -0.2, 0.3] }}

[[case]]
name = "readout"
model = "hxtorch.cuba_li"
shape = [20, 1, 5]
"""

EXPECTED_FILES = [
    "hardware/hxtorch_cuba_lif-superspike-seed0.npz",
    "hardware/hxtorch_cuba_lif-superspike-seed1.npz",
    "plif/tether_PLIF-arctan-seed0.npz",
    "plif/tether_PLIF-sigmoid-seed0.npz",
    "readout/hxtorch_cuba_li-none-seed0.npz",
]


def hardware_traces():
    """A recorded-looking membrane around the hardware's 80..125 and its spikes."""
    rng = np.random.default_rng(11)
    membrane = rng.normal(110.0, 15.0, (STEPS, BATCH, NEURONS))
    return membrane, (membrane > 125.0).astype(np.float64)


def write_cases(directory: Path, threshold="1.0") -> Path:
    (directory / "traces").mkdir(parents=True, exist_ok=True)
    membrane, spikes = hardware_traces()
    np.save(directory / "traces" / "hw_v.npy", membrane)
    np.save(directory / "traces" / "hw_spikes.npy", spikes)
    path = directory / "cases.toml"
    path.write_text(CASES.replace("THRESHOLD", threshold))
    return path


def generate(case_file, out, capsys):
    code = cli.main(["golden", "generate", "--cases", str(case_file), "--out", str(out)])
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(case file, store) generated once for the module."""
    directory = tmp_path_factory.mktemp("cases")
    case_file = write_cases(directory)
    golden_cases.generate(case_file, directory / "store")
    return case_file, directory / "store"


def test_the_store_holds_every_case_surrogate_and_seed_and_the_case_file_hash(made):
    case_file, store = made
    manifest = golden.read_manifest(store)
    assert sorted(manifest["files"]) == EXPECTED_FILES
    assert manifest["format"] == golden.FORMAT
    cases = manifest["cases"]
    assert cases["file"] == "cases.toml"
    assert cases["sha256"] == hashlib.sha256(case_file.read_bytes()).hexdigest()
    assert cases["inputs"] == {name: hashlib.sha256((case_file.parent / name).read_bytes()).hexdigest()
                               for name in ("traces/hw_spikes.npy", "traces/hw_v.npy")}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((store / name).read_bytes()).hexdigest()
    hardware = manifest["files"][EXPECTED_FILES[0]]
    assert hardware["params"] == {"leak": 80.0, "reset": 80.0, "threshold": 125.0, "tau_syn": 1e-5,
                                  "tau_mem": 1e-5, "alpha": 50.0}
    assert [manifest["files"][n]["seed"] for n in EXPECTED_FILES[:2]] == [0, 1]


def test_the_hardware_case_stores_the_given_values_and_the_injected_traces(made):
    _, store = made
    manifest = golden.read_manifest(store)
    arrays = golden.load(store, EXPECTED_FILES[0], manifest["files"][EXPECTED_FILES[0]])
    membrane, spikes = hardware_traces()
    assert arrays["in.x"].shape == (STEPS, BATCH, NEURONS)
    assert float(arrays["param.threshold"]) == 125.0 and float(arrays["param.leak"]) == 80.0
    np.testing.assert_array_equal(arrays["inject.v"], membrane)
    np.testing.assert_array_equal(arrays["inject.spikes"], spikes)
    # SPEC.md section 5: an injected membrane and spike train are what the run returns.
    np.testing.assert_array_equal(arrays["out.v"], membrane)
    np.testing.assert_array_equal(arrays["out.out"], spikes)
    # The input is numpy.random.default_rng(seed).normal(drive) (the module's equation (1)).
    np.testing.assert_array_equal(arrays["in.x"], np.random.default_rng(0).normal(6.0, 3.0, arrays["in.x"].shape))
    plif = golden.load(store, EXPECTED_FILES[2], manifest["files"][EXPECTED_FILES[2]])
    np.testing.assert_array_equal(plif["state.v"], [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(plif["param.decay"], [0.8, 0.9, 0.95])


def test_a_rerun_writes_the_same_bytes(made, tmp_path, capsys):
    case_file, store = made
    code, out = generate(case_file, tmp_path / "again", capsys)
    assert code == 0 and f"5 golden files and {golden.MANIFEST}" in out.out
    names = EXPECTED_FILES + [golden.MANIFEST]
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()) == sorted(names)
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (store / name).read_bytes(), name


def check(arguments, capsys):
    code = cli.main(["golden", "check", *arguments])
    return code, capsys.readouterr()


def test_the_spec_passes_its_store(made, capsys):
    code, out = check(["--dir", str(made[1])], capsys)
    assert code == 0 and "5 passed, 0 failed (5 golden files x spec in float64)" in out.out


def torch_simulate(model, x, params, state, *, surrogate=None, inject=None):
    """snnref.simulate on its torch path, with the gate's signature."""
    return snnref.simulate(model, x, params, state, surrogate=surrogate, inject=inject, backend="torch")


def wrong_leak(model, x, params, state, *, surrogate=None, inject=None):
    """A planted bug: the membrane relaxes towards leak + 1."""
    params = dict(params, leak=params["leak"] + 1.0)
    return torch_simulate(model, x, params, state, surrogate=surrogate, inject=inject)


@pytest.mark.parametrize("model,files", [("hxtorch.cuba_lif", 2), ("tether.PLIF", 2), ("hxtorch.cuba_li", 1)])
def test_snnref_simulate_passes_the_store_through_the_gate(made, capsys, model, files):
    code, out = check(["--dir", str(made[1]), "--impl", "test_golden_sets:torch_simulate", "--model", model],
                      capsys)
    assert code == 0, out.out + out.err
    # Named by --impl, as the plugin names it (a factory's functions share their own name).
    assert f"snnref gate: {model}, implementation test_golden_sets:torch_simulate: PASS" in out.out
    # Each golden case in both dtypes, then the first once more on other values of its shapes.
    assert f"cases: {files} golden, 1 golden again; in float32, float64: {2 * files + 1} runs, 0 failed" in out.out


def test_a_planted_bug_fails_naming_the_quantity(made, capsys):
    code, out = check(["--dir", str(made[1]), "--impl", "test_golden_sets:wrong_leak", "--model",
                       "hxtorch.cuba_li"], capsys)
    assert code == 1 and "implementation test_golden_sets:wrong_leak: FAIL" in out.out
    # The readout's membrane is its output: both name the step where it first leaves the budget.
    failing = [line.split()[0] for line in out.out.splitlines()[3:] if line.startswith("  out:")]
    assert "out:v" in failing and "out:out" in failing, out.out


def test_an_implementation_of_a_model_the_store_lacks_is_refused(made, capsys):
    code, out = check(["--dir", str(made[1]), "--impl", "test_golden_sets:torch_simulate", "--model",
                       "tether.LIF"], capsys)
    assert code == 2 and "holds no golden file of tether.LIF" in out.err
    code, out = check(["--dir", str(made[1]), "--impl", "test_golden_sets:torch_simulate"], capsys)
    assert code == 2 and "name the model it implements with --model KEY" in out.err


def test_the_gate_on_a_store_without_the_model_says_so(made):
    # Before: the pytest plugin skipped its golden item with "not checked:" and nothing after it.
    report = gate.run(Implementation(torch_simulate, "tether.LIF"), kinds=("golden",), golden_dir=made[1])
    assert not report.runs and f"golden: the store {made[1]} holds no golden file of tether.LIF" in report.unchecked


def diff(first, second, capsys):
    code = cli.main(["golden", "diff", str(first), str(second)])
    return code, capsys.readouterr().out


def test_a_store_is_identical_to_itself(made, capsys):
    code, out = diff(made[1], made[1], capsys)
    assert code == 0 and "identical (0 changed, 0 added, 0 removed; 5 files in both)" in out


def test_a_changed_parameter_names_each_changed_quantity_and_its_first_step(made, tmp_path, capsys):
    case_file, store = made
    other = write_cases(tmp_path, threshold="0.9")
    golden_cases.generate(other, tmp_path / "store")
    code, out = diff(store, tmp_path / "store", capsys)
    assert code == 1 and "differ (2 changed, 0 added, 0 removed; 5 files in both)" in out
    sha256 = [hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in (case_file, other)]
    assert f"case file: cases.toml (sha256 {sha256[0]}) -> cases.toml (sha256 {sha256[1]})" in out
    assert "case input" not in out  # the same traces
    changed = [line.split()[1] for line in out.splitlines() if line.startswith("changed ")]
    assert changed == EXPECTED_FILES[2:4]
    manifest = golden.read_manifest(store)
    before = golden.load(store, EXPECTED_FILES[2], manifest["files"][EXPECTED_FILES[2]])
    after = golden.load(tmp_path / "store", EXPECTED_FILES[2],
                        golden.read_manifest(tmp_path / "store")["files"][EXPECTED_FILES[2]])
    first = np.argwhere(before["out.out"] != after["out.out"])
    assert len(first), "a lower threshold must change some spike"
    section = out.split(f"changed {EXPECTED_FILES[2]}")[1].split("changed ")[0]
    assert f"first differing step {first[0][0]} at {tuple(int(i) for i in first[0])}," in next(
        line for line in section.splitlines() if "out.out" in line)
    # A parameter's values, before and after (it said only "largest difference 0.1 at ()").
    threshold = before["param.threshold"].item(), after["param.threshold"].item()
    assert f"param.threshold        values: {threshold[0]!r} -> {threshold[1]!r}" in section, section


def test_stores_of_different_models_or_formats_say_so(made, tmp_path, capsys):
    _, store = made
    case_file = tmp_path / "lif.toml"
    case_file.write_text('[[case]]\nname = "plif"\nmodel = "tether.LIF"\nshape = [4, 1, 2]\n')
    golden_cases.generate(case_file, tmp_path / "lif")
    code, out = diff(store, tmp_path / "lif", capsys)
    assert code == 1 and "different models: only in" in out and "only in " in out and "tether.LIF" in out
    shutil.copytree(store, tmp_path / "future")
    manifest = json.loads((tmp_path / "future" / golden.MANIFEST).read_text())
    manifest["format"] = golden.FORMAT + 1
    (tmp_path / "future" / golden.MANIFEST).write_text(json.dumps(manifest))
    code, out = diff(store, tmp_path / "future", capsys)
    assert code == 1 and f"different formats: {store} is format 1, {tmp_path / 'future'} is format 2" in out


# --- Bad input: one message naming the file, the case and the field; nothing written.

VALID = """[[case]]
name = "hw"
model = "hxtorch.cuba_lif"
shape = [40, 2, 4]
params = { threshold = 125, leak = 80, reset = 80 }
inject = { v = "traces/hw_v.npy" }
"""


def short_trace(directory):
    np.save(directory / "short.npy", np.zeros((STEPS - 1, BATCH, NEURONS)))


def half_spikes(directory):
    np.save(directory / "half.npy", np.full((STEPS, BATCH, NEURONS), 0.5))


def huge_trace(directory):
    # Bytes, not float64: 16 MB on disk, refused before it is converted.
    np.save(directory / "huge.npy", np.zeros((1 << 24) + 1, dtype=np.bool_))


def garbage(directory):
    (directory / "garbage.npy").write_bytes(b"threshold,125\n")


def pickled(directory):
    np.save(directory / "pickled.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("text,prepare,field,message", [
    (VALID.replace("cuba_lif", "cuba_lfi"), None, "model", "unknown model 'hxtorch.cuba_lfi'; expected one of"),
    (VALID.replace("leak = 80", "tau = 1e-5"), None, "params['tau']",
     "hxtorch.cuba_lif has no parameter 'tau'; expected among: leak, reset, threshold, tau_syn, tau_mem"),
    (VALID + 'surrogates = ["superspik"]\n', None, "surrogates", "unknown surrogate 'superspik'"),
    (VALID + 'surrogates = ["arctan"]\n', None, "surrogates", "does not accept 'arctan'; it accepts: superspike"),
    (VALID.replace("leak = 80", "tau_mem = -1e-5"), None, "params['tau_mem']", "expected values > 0"),
    (VALID.replace("leak = 80", "tau_syn = [1e-5, 2e-5]"), None, "params['tau_syn']",
     "expected a scalar, (1,) or (4,)"),
    (VALID.replace("hw_v.npy", "missing.npy"), None, "inject['v']", "traces/missing.npy: no such file"),
    (VALID.replace("traces/hw_v.npy", "short.npy"), short_trace, "inject['v']",
     "short.npy holds shape (39, 2, 4); expected the input's shape (40, 2, 4)"),
    (VALID.replace('v = "traces/hw_v.npy"', 'spikes = "half.npy"'), half_spikes, "inject['spikes']",
     "expected observed spikes of exactly 0 or 1"),
    (VALID.replace("threshold = 125", 'threshold = "pickled.npy"'), pickled, "params['threshold']",
     "pickled.npy: not a numeric .npy"),
    (VALID.replace("threshold = 125", 'threshold = "garbage.npy"'), garbage, "params['threshold']",
     "garbage.npy: not a .npy file (its first bytes are no .npy header)"),
    (VALID.replace('inject = { v', 'inject = { i'), None, "inject['i']",
     "has no hardware observation 'i'; expected among: spikes, v"),
    (VALID.replace("params", "param"), None, "param", "unknown field; expected among"),
    (VALID.replace("shape = [40, 2, 4]", "shape = [40, 2, 0]"), None, "shape",
     "expected a list of two or more integers >= 1"),
    (VALID.replace("shape = [40, 2, 4]", "shape = [40]"), None, "shape", "expected a list of two or more integers"),
    (VALID.replace("shape = [40, 2, 4]", "shape = [100000000000, 1, 2]"), None, "shape",
     "is 200000000000 elements; a golden case holds at most"),
    (VALID + "drive = [1e308, 1e308]\n", None, "drive", "draws values of x beyond float64's range"),
    # Finite in float64, not in float32, whose run the budgets of every check need.
    (VALID.replace("leak = 80", "tau_mem = 1e-300"), None, "in float32, which the budgets of every check need",
     "params['tau_mem']: 1e-300 underflows to 0 in float32"),
    (VALID + "seeds = [1, -1]\n", None, "seeds", "expected a non-empty list of integers from 0 to 2^63 - 1"),
    # TOML integers have no bound; a seed is part of a file name.
    (VALID + f"seeds = [{10 ** 400}]\n", None, "seeds", "from 0 to 2^63 - 1"),
    (VALID.replace("threshold = 125", f"threshold = {10 ** 400}"), None, "params['threshold']",
     "holds an integer beyond float64's range"),
    (VALID + f"drive = [{10 ** 400}, 1]\n", None, "drive", "expected [mean, spread] with a finite mean"),
    (VALID.replace('model = "hxtorch.cuba_lif"', 'model = ["hxtorch.cuba_lif"]'), None, "model",
     "unknown model ['hxtorch.cuba_lif']"),
    # Before: "unknown model None".
    (VALID.replace('model = "hxtorch.cuba_lif"\n', ''), None, "model", "missing; every case names its model"),
    (VALID.replace('v = "traces/hw_v.npy"', 'spikes = "huge.npy"'), huge_trace, "inject['spikes']",
     f"huge.npy holds {(1 << 24) + 1} elements; a golden case holds at most {1 << 24}"),
    (VALID + VALID, None, "name", "used by an earlier case"),
    # Found by an outside user: a number in quotes read "expected the path of a .npy file".
    (VALID.replace("threshold = 125", 'threshold = "125"'), None, "params['threshold']",
     "expected a number, a list of numbers or the path of a .npy file, got the string '125'"),
    # Accepted before: two folders that a case-insensitive file system (macOS, Windows) makes one.
    (VALID.replace('name = "hw"', 'name = "HW"') + VALID, None, "name",
     "used by an earlier case ('HW': one folder where case is not told apart)"),
])
def test_a_bad_case_file_names_file_case_and_field_and_writes_nothing(tmp_path, capsys, text, prepare, field,
                                                                      message):
    write_cases(tmp_path)
    if prepare:
        prepare(tmp_path)
    case_file = tmp_path / "cases.toml"
    case_file.write_text(text)
    before = sorted(tmp_path.rglob("*"))
    code, out = generate(case_file, tmp_path / "out" / "store", capsys)
    assert code == 2, out.err
    assert f"{case_file}: case 'hw': {field}: " in out.err and message in out.err, out.err
    assert sorted(tmp_path.rglob("*")) == before


# "a" * 101: a name is part of every file name of the case, which file systems cap at 255 bytes.
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-a", "a" * 101])
def test_a_case_name_cannot_leave_the_store_or_hide_in_it(tmp_path, capsys, name):
    # ".." would put the case's files beside the store, over whatever is there.
    (tmp_path / "keep.npz").write_bytes(b"mine")
    case_file = tmp_path / "cases.toml"
    case_file.write_text(f'[[case]]\nname = "{name}"\nmodel = "tether.LIF"\nshape = [5, 1, 2]\n')
    code, out = generate(case_file, tmp_path / "store", capsys)
    assert code == 2 and f"case #1: name: expected a name of at most 100 letters" in out.err, out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.toml", "keep.npz"]


def test_a_case_named_like_the_manifest_is_refused(tmp_path, capsys):
    case_file = tmp_path / "cases.toml"
    case_file.write_text('[[case]]\nname = "MANIFEST.json"\nmodel = "tether.LIF"\nshape = [5, 1, 2]\n')
    code, out = generate(case_file, tmp_path / "store", capsys)
    assert code == 2 and "case #1: name: 'MANIFEST.json' is the store's manifest" in out.err, out.err
    assert not (tmp_path / "store").exists()


def test_a_case_whose_spec_run_overflows_is_refused_and_writes_nothing(tmp_path, capsys):
    """A golden must be finite: under SPEC section 7 no budget holds an inf (and
    a NaN would drop out of any comparison).  x is finite, its sum is not."""
    np.save(tmp_path / "x.npy", np.array([[[1.0]], [[1e308]], [[1e308]]]))
    case_file = tmp_path / "cases.toml"
    case_file.write_text('[[case]]\nname = "big"\nmodel = "rnnbuilder.NoReset"\nx = "x.npy"\n')
    code, out = generate(case_file, tmp_path / "store", capsys)
    assert code == 2 and "case 'big': m: the float64 spec's m leaves float64's range" in out.err, out.err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("text,message", [
    ("[[case]]\nname = \n", "not valid TOML"),
    # Found by an outside user: these read "lists no cases", as if the file had none.
    ("[case]\nname = 'x'\n", "case: expected [[case]] tables, got {'name': 'x'}"),
    ("case = 3\n", "case: expected [[case]] tables, got 3"),
    ("case = []\n", "lists no cases; expected one or more [[case]] tables"),
    ("title = 'x'\n", "unknown top-level key 'title'"),
    ("case = [1, 2]\n", "case #1: case: expected a [[case]] table, got 1"),
])
def test_a_case_file_that_is_not_a_list_of_cases_is_refused(tmp_path, capsys, text, message):
    case_file = tmp_path / "cases.toml"
    case_file.write_text(text)
    code, out = generate(case_file, tmp_path / "out", capsys)
    assert code == 2 and f"{case_file}: " in out.err and message in out.err, out.err
    assert sorted(tmp_path.iterdir()) == [case_file]


def test_a_missing_case_file_and_a_store_over_its_inputs_are_refused(tmp_path, capsys):
    code, out = generate(tmp_path / "nowhere.toml", tmp_path / "out", capsys)
    assert code == 2 and "nowhere.toml: no such file" in out.err
    case_file = write_cases(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out = generate(case_file, tmp_path / "traces", capsys)
    assert code == 2 and "which generating would replace" in out.err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_cases_need_an_out_directory_and_no_model(tmp_path, capsys):
    case_file = write_cases(tmp_path)
    assert cli.main(["golden", "generate", "--cases", str(case_file)]) == 2
    assert "--cases: give --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "golden").exists()


def test_the_example_case_file_is_valid():
    case_set = golden_cases.read(EXAMPLE)
    assert len(case_set.jobs) == 6
    hardware = case_set.jobs[0].case
    assert hardware.model == "hxtorch.cuba_lif" and float(hardware.params["threshold"]) == 125.0


def test_a_contract_that_admits_no_golden_case_fails_saying_why(made):
    # Found by an outside user: under a FAIL the summary read "cases: ; in : 0 runs, 0 failed".
    only = Implementation(torch_simulate, "tether.PLIF", surrogates=("fast_sigmoid",))
    report = gate.run(only, kinds=("golden",), golden_dir=made[1])
    text = report.text()
    assert not report.passed and not report.runs
    assert "  cases: none that the contract admits: nothing was compared (why: not checked, below)" in text
    assert "surrogate arctan is not declared" in text and "in :" not in text


def test_a_fifo_named_as_a_case_file_or_its_input_is_refused_not_waited_on(tmp_path, capsys):
    """Found by an outside user: `golden generate --cases FIFO`, or a case whose x names
    a FIFO, waited for a writer forever."""
    write_cases(tmp_path)
    os.mkfifo(tmp_path / "cases_fifo.toml")
    code, out = generate(tmp_path / "cases_fifo.toml", tmp_path / "out" / "store", capsys)
    assert code == 2 and "cannot be read (not a regular file (a FIFO, device or socket))" in out.err, out.err
    os.mkfifo(tmp_path / "x_fifo.npy")
    case_file = tmp_path / "cases.toml"
    case_file.write_text(VALID.replace('v = "traces/hw_v.npy"', 'v = "x_fifo.npy"'))
    code, out = generate(case_file, tmp_path / "out" / "store", capsys)
    assert code == 2 and "x_fifo.npy: cannot be read (not a regular file (a FIFO, device or socket))" in out.err, \
        out.err
