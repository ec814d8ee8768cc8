"""The family contract (snnref/families.py): every registry family provides
every layer's required attributes; a missing module or attribute is an error
naming the family, the layer and the attribute; a toy family added at test
time (tests/toyfamily: a registry row and the scaffold's modules) is picked up by
every registry-driven suite with no edit to any test; and the scaffold
(tools/new_family.py) writes a working family."""

import collections
import dataclasses
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.modules import load_module
import snnref
from snnref import families, registry, spec
from snnref.testing import _checks as checks, _equivalence as equivalence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import new_family  # noqa: E402  (tools/ is no package)

TESTS = Path(__file__).resolve().parent
TOY_KEY, TOY_FAMILY = "toy.Leaky", "toy"
# Suites that are registry-driven today: the toy must reach each (and any other
# module that covers every registry model or family).
KNOWN_REGISTRY_DRIVEN = ("test_properties.py", "test_backends.py", "test_mutants.py", "test_gradients.py")


@pytest.mark.parametrize("family", families.names())
def test_every_family_provides_every_layer(family):
    modules = families.validate(family)
    assert set(modules) == set(families.LAYERS)
    assert families.models(family), family


def test_every_row_names_a_family_of_the_contract():
    assert {row.family for row in registry.MODELS.values()} == set(families.names())


def test_a_missing_module_names_the_family_and_layer():
    with pytest.raises(families.FamilyError, match=r"family 'no_such_family', layer 'spec': no module "
                                                   r"snnref\.spec\.no_such_family"):
        families.validate("no_such_family")


def test_a_missing_attribute_names_the_family_layer_and_attribute(monkeypatch):
    reference = types.ModuleType("snnref.spec.half_done")
    reference.forward = reference.backward = lambda *args: None
    reference.RESETS = (registry.NO_RESET,)
    torch_op = types.ModuleType("snnref.ops.half_done")  # no run
    monkeypatch.setitem(sys.modules, reference.__name__, reference)
    monkeypatch.setitem(sys.modules, torch_op.__name__, torch_op)
    with pytest.raises(families.FamilyError, match=r"family 'half_done', layer 'torch': snnref\.ops\.half_done "
                                                   r"lacks the required function 'run'"):
        families.validate("half_done")


# Found by mutation testing (snnref/families.py): each passed with its check changed.
def test_a_required_function_that_is_not_callable_is_refused(monkeypatch):
    torch_op = types.ModuleType("snnref.ops.not_callable")
    torch_op.run = 3  # set, but no function
    monkeypatch.setitem(sys.modules, torch_op.__name__, torch_op)
    with pytest.raises(families.FamilyError, match=r"snnref\.ops\.not_callable lacks the required function 'run'"):
        families.checked("not_callable", "torch")


def test_a_family_module_missing_a_module_it_imports_raises_that_error(monkeypatch):
    # The family's module exists but cannot import numba: that is the error to see, not "no module
    # snnref.kernels.cpu.<family>" (mutant: every ModuleNotFoundError read as the family's own).
    def import_module(name):
        raise ModuleNotFoundError("No module named 'numba'", name="numba")

    monkeypatch.setattr(families.importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError, match="No module named 'numba'") as error:
        families.module("needs_numba", "cpu")
    assert not isinstance(error.value, families.FamilyError)


def test_a_spec_module_without_its_resets_is_refused(monkeypatch):
    reference = types.ModuleType("snnref.spec.undeclared")
    reference.forward = reference.backward = lambda *args: None
    monkeypatch.setitem(sys.modules, reference.__name__, reference)
    with pytest.raises(families.FamilyError, match=r"family 'undeclared', layer 'spec': snnref\.spec\.undeclared "
                                                   r"lacks the required attribute 'RESETS'"):
        families.checked("undeclared", "spec")


# Every reset a row can state (a TO_VALUE reset to a parameter needs the row's
# parameter names, so a number stands for it).
EVERY_RESET = (registry.NO_RESET, registry.HARD_RESET, registry.SOFT_RESET,
               registry.Reset(kind=registry.ResetKind.SUBTRACT, detached=True),
               registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=False),
               registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=True, to=0.5))


@pytest.mark.parametrize("family", families.names())
def test_every_row_states_a_reset_its_family_declares(family):
    declared = families.checked(family, "spec").RESETS
    assert declared and all(isinstance(reset, registry.Reset) for reset in declared)
    for key in families.models(family):
        row = registry.MODELS[key]
        assert row.reset in declared if row.spike_test is not None else row.reset == registry.NO_RESET, key


@pytest.mark.parametrize("family", [f for f in families.names()
                                    if registry.NO_RESET not in families.checked(f, "spec").RESETS])
def test_a_spiking_row_without_a_reset_in_a_family_that_always_resets_is_refused(family, monkeypatch):
    spiking = next(key for key in families.models(family) if registry.MODELS[key].spike_test is not None)
    planted = dataclasses.replace(registry.MODELS[spiking], key=f"planted.{family}", reset=registry.NO_RESET)
    monkeypatch.setitem(registry.MODELS, planted.key, planted)
    with pytest.raises(families.UnsupportedReset, match=rf"registry row 'planted\.{family}' asks for "
                                                        rf"Reset\(kind=NONE.*which family '{family}' does not"):
        families.validate(family)


def test_a_row_without_spikes_that_states_a_reset_is_refused(monkeypatch):
    readout = next(row for row in registry.MODELS.values() if row.spike_test is None)
    planted = dataclasses.replace(readout, key="planted.readout", reset=registry.HARD_RESET)
    monkeypatch.setitem(registry.MODELS, planted.key, planted)
    with pytest.raises(families.UnsupportedReset, match=r"registry row 'planted\.readout' has no spikes"):
        families.check_reset(planted.key)
    with pytest.raises(ValueError, match="has no spikes"):
        snnref.simulate(planted.key, torch.zeros(2, 1, 3), backend="cpu")


@pytest.mark.parametrize("family", families.names())
def test_a_row_with_a_reset_its_family_lacks_is_refused_naming_row_family_and_reset(family, monkeypatch):
    declared = families.checked(family, "spec").RESETS
    unsupported = next(reset for reset in EVERY_RESET if reset not in declared)
    original = registry.MODELS[families.models(family)[0]]
    planted = dataclasses.replace(original, key=f"planted.{family}", reset=unsupported)
    monkeypatch.setitem(registry.MODELS, planted.key, planted)
    named = (rf"reset: registry row 'planted\.{family}' asks for Reset\(kind={unsupported.kind.name}, "
             rf"detached={unsupported.detached}, to={unsupported.to!r}\), which family '{family}' does not implement")
    with pytest.raises(families.UnsupportedReset, match=named):
        families.validate(family)
    # Refused before any computation, by the reference and by every backend.
    x = np.zeros((2, 1, 3) if original.input_rank is None else (2,) * (original.input_rank - 1) + (3,))
    with pytest.raises(ValueError, match=named):
        spec.simulate(planted.key, x, None)
    with pytest.raises(ValueError, match=named):
        spec.vjp(planted.key, x, None, None, {"out": np.ones_like(x)})
    for backend in ("torch", "cpu", "auto"):
        with pytest.raises(ValueError, match=named):
            snnref.simulate(planted.key, torch.zeros(x.shape), backend=backend)
    # The original row, unchanged, still validates.
    monkeypatch.delitem(registry.MODELS, planted.key)
    families.validate(family)


def test_an_attribute_outside_the_contract_is_refused():
    with pytest.raises(ValueError, match="attribute: 'linear_respons' is not in the spec layer's contract"):
        families.provides("tether.LIF", "spec", "linear_respons")


def test_optional_attributes_are_found_by_name():
    assert families.provides("tether.LIF", "spec", "linear_response")
    assert not families.provides("tether.SpikingSelfAttention", "spec", "linear_response")
    assert families.attribute("rnnbuilder.Cooldown", "torch", "check_input") is not None
    assert families.attribute("tether.LIF", "torch", "check_input") is None


def test_an_unknown_layer_lists_the_layers():
    with pytest.raises(ValueError, match="layer: unknown name 'gpu'; expected one of: spec, torch, triton, cpu"):
        families.module("lif", "gpu")


# The suites whose toy cases run: the reference and torch templates, the long-sum
# bookkeeping every reverse loop owes (a scaffold-made family lacked it and failed those)
# and the refusal of a second derivative through a first-order backward.  Not the kernel
# layers: the toy's are its torch op, with no Triton kernels to compile.  And test_registry,
# whose checks of the table must hold with a row added (a fixed list of the keys failed a
# contributor's new row), but for the two that read the repository's files: the toy's spec
# module and hand-worked test live in tests/toyfamily, where a real family's are not.
RUN = ("(toy and (test_properties or test_gradients or test_backends or test_precision or test_long_sums "
       "or test_second_order) and not triton and not cpu) or (test_registry and not "
       "test_every_spec_module_is_used_by_a_row and not test_every_model_has_a_hand_worked_test)")


def _collected_ids_and_run(tmp_path):
    """pytest on the whole suite in a subprocess with the toy family installed
    (tests/conftest.py): every collected id, and the run of the toy's RUN cases."""
    record = tmp_path / "collected.txt"
    # A fresh pytest: none of this run's (an xdist worker's) pytest variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(SNNREF_TOY_FAMILY="1", SNNREF_TOY_COLLECTED=str(record))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", RUN, "tests"],
                            cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600)
    return record.read_text().splitlines() if record.exists() else [], result


def test_every_registry_driven_suite_picks_up_a_toy_family(tmp_path):
    collected, result = _collected_ids_and_run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ids = collections.defaultdict(list)
    for line in collected:
        ids[Path(line.split("::")[0]).name].append(line)
    real_keys = sorted(registry.MODELS)
    real_families = families.names()
    driven = {}
    for module, lines in ids.items():
        text = "\n".join(lines)
        # A suite that covers every model (or every family) covers the registry:
        # it must cover the toy row too.
        if all(key in text for key in real_keys):
            driven[module] = TOY_KEY in text
        elif all(re.search(rf"[\[-]{family}[\]-]", text) for family in real_families):
            driven[module] = re.search(rf"[\[-]{TOY_FAMILY}[\]-]", text) is not None
    assert set(KNOWN_REGISTRY_DRIVEN) <= set(driven), sorted(driven)
    missed = sorted(module for module, found in driven.items() if not found)
    assert not missed, f"registry-driven suites that do not pick up the toy family: {missed}"
    # Its linear form (the spec module's linear_response) reaches the lfilter
    # property with no table to edit.
    assert any(line.endswith("test_linear_dynamics_equal_lfilter[toy.Leaky]") for line in collected)
    # Not only collected: the toy row ran through the property, gradient and
    # torch equivalence templates and passed them.
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and int(summary.split()[0]) >= 5, summary


def test_the_toy_row_is_absent_without_the_hook():
    assert TOY_KEY not in registry.MODELS
    assert TOY_FAMILY not in families.names()


def test_the_scaffold_writes_a_working_family_and_refuses_an_existing_stem(tmp_path, monkeypatch):
    stem = "scaffolded"
    written = new_family.write(stem, tmp_path, families.names())
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "kernels/cpu/scaffolded.py", "snnref/ops/scaffolded.py", "snnref/spec/scaffolded.py",
        "tests/handworked/test_scaffolded.py"]
    # The files import at the stems the loader uses, and the printed row is a valid registry row.
    for layer, path in (("spec", "snnref/spec"), ("torch", "snnref/ops"), ("cpu", "kernels/cpu")):
        name = families.module_name(stem, layer)
        monkeypatch.setitem(sys.modules, name, load_module(name, tmp_path / path / f"{stem}.py"))
    row = eval(new_family.registry_row(stem).rstrip(","), vars(registry))
    monkeypatch.setitem(registry.MODELS, row.key, row)
    for layer in ("spec", "torch", "cpu"):
        families.checked(stem, layer)
    # The skeleton is a working family: its hand-worked test, finite differences,
    # and the torch and cpu paths against its reference.
    load_module("handworked_scaffolded", tmp_path / "tests/handworked/test_scaffolded.py").test_forward_by_hand()
    case = checks.random_case(row.key, np.random.default_rng(0), steps=5, batch=2, neurons=3, per_neuron=True)
    assert checks.gradient_check(case).worst < 1e-6
    # Its reverse loop reports the size of its parameter's long sum (SPEC.md section 7's third term).
    sizes = {}
    spec.vjp(row.key, case.x, case.params, case.state, case.cotangents, magnitudes=sizes)
    assert set(sizes) >= set(row.differentiable), sizes
    for backend in ("torch", "cpu"):
        for dtype in (torch.float32, torch.float64):
            report = equivalence.compare(case, backend, dtype)
            assert report.passed, f"{backend} {dtype}: {report.failures}"
    with pytest.raises(FileExistsError, match="'scaffolded' already exists"):
        new_family.write(stem, tmp_path)
    with pytest.raises(FileExistsError, match="'lif' already exists .*a registry family"):
        new_family.write("lif", tmp_path / "elsewhere", families.names())
    with pytest.raises(ValueError, match="stem: expected a lower-case Python identifier"):
        new_family.write("New-Family", tmp_path)


def test_threads_whose_first_calls_meet_in_a_family_s_import_all_run():
    # Found by an outside user: in a fresh process, threads starting together on one family got
    # "partially initialized module 'snnref.kernels.cpu.lif' has no attribute 'run'" or a FamilyError
    # saying the install lacked a function: the module another thread was importing, returned half made.
    code = ("import sys, threading, torch, snnref\n"
            "sys.setswitchinterval(1e-6)\n"
            "keys = ['tether.LIF', 'hxtorch.cuba_lif', 'tether.ALIF', 'rnnbuilder.Cooldown'] * 2\n"
            "start, errors = threading.Barrier(len(keys)), []\n"
            "def first_call(key):\n"
            "    start.wait()\n"
            "    try:\n"
            "        snnref.simulate(key, torch.rand(3, 1, 4), backend=sys.argv[1])\n"
            "    except Exception as error:\n"
            "        errors.append(f'{key}: {type(error).__name__}: {error}')\n"
            "threads = [threading.Thread(target=first_call, args=(key,)) for key in keys]\n"
            "for thread in threads: thread.start()\n"
            "for thread in threads: thread.join()\n"
            "print(errors)\n")
    for backend in ("cpu", "torch"):
        done = subprocess.run([sys.executable, "-c", code, backend], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "[]", (backend, done.stdout[-2000:], done.stderr[-2000:])
