"""The registry and the files agree, in both directions, and the rows match SPEC.md section 8."""

import dataclasses
import importlib
import itertools
import math
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from snnref import registry
from snnref.spec import surrogates

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "snnref" / "spec"
# Modules of snnref/spec that are infrastructure, not a model family.
SPEC_INFRASTRUCTURE = {"__init__", "api", "surrogates", "sums"}

MODEL_KEYS = [
    "tether.LIF", "tether.PLIF", "tether.ALIF", "tether.SpikingSelfAttention",
    "rnnbuilder.LIF", "rnnbuilder.NoReset", "rnnbuilder.Cooldown", "rnnbuilder.Adaptive",
    "rnnbuilder.Discontinuous", "qualia.IFSRL", "qualia.ATIF", "hxtorch.cuba_lif",
    "hxtorch.cuba_refractory_lif", "hxtorch.cuba_li", "hxtorch.cuba_iaf",
    "hxtorch.cuba_refractory_iaf",
]
SURROGATE_KEYS = ["arctan", "sigmoid", "fast_sigmoid", "superspike", "spike_linear"]


def test_every_key_of_the_issue_is_there():
    # Present, not exactly these: adding a model is a row plus its files, never a test edit (an
    # outside contributor's new row failed an equality with this list; tests/test_families.py runs
    # this module with a toy row installed).
    assert not set(MODEL_KEYS) - set(registry.MODELS), sorted(set(MODEL_KEYS) - set(registry.MODELS))
    assert not set(SURROGATE_KEYS) - set(registry.SURROGATES)


def test_every_family_has_its_spec_module():
    for row in registry.MODELS.values():
        module = importlib.import_module(f"snnref.spec.{row.family}")
        assert callable(module.forward) and callable(module.backward), row.key


def test_every_spec_module_is_used_by_a_row():
    families = {row.family for row in registry.MODELS.values()}
    modules = {p.stem for p in SPEC_DIR.glob("*.py")} - SPEC_INFRASTRUCTURE
    assert modules == families


def test_surrogate_rows_and_implementations_agree():
    assert set(surrogates.IMPLEMENTATIONS) == set(registry.SURROGATES)


def test_every_model_has_a_hand_worked_test():
    text = "\n".join(p.read_text() for p in (ROOT / "tests" / "handworked").glob("test_*.py"))
    missing = [key for key in registry.MODELS if f'"{key}"' not in text]
    assert not missing, f"no hand-worked test mentions {missing}"


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_row_is_consistent(key):
    row = registry.MODELS[key]
    names = [p.name for p in row.params]
    assert len(set(names)) == len(names)
    for name in row.surrogates:
        scale = registry.SURROGATES[name].scale
        # A model with several spiking stages names one scale parameter per stage.
        for scale_param in getattr(row.options, "scale_params", (scale,)):
            assert scale_param in names, f"{key} accepts {name} but has no parameter {scale_param!r}"
            # A trainable scale needs dF/dscale from every surrogate the model accepts.
            if row.param(scale_param).trainable:
                assert registry.SURROGATES[name].trainable_scale, (key, name)
            # And a scale has a gradient exactly when the surrogate has dF/dscale.
            assert row.param(scale_param).differentiable == registry.SURROGATES[name].trainable_scale, (key, name)
    for var in row.state:
        if isinstance(var.initial, str):
            assert var.initial in names, (key, var.name)
    assert (row.spike_test is None) == (not row.surrogates)
    assert row.spike_test in (None, ">", ">=")
    assert isinstance(row.out, registry.Output) and isinstance(row.reset, registry.Reset)
    assert isinstance(row.options, registry.Options)
    # Only a model that decides spikes resets.
    assert row.spike_test is not None or row.reset == registry.NO_RESET, key


# SPEC.md section 8: (trainable parameters, state variables, default surrogate).
SECTION_8 = {
    "tether.LIF": ({"decay", "threshold", "alpha"}, ("v",), "arctan"),
    "tether.PLIF": ({"decay", "threshold", "alpha"}, ("v",), "arctan"),
    "tether.ALIF": ({"decay_v", "decay_a", "threshold", "beta", "alpha"}, ("v", "a"), "arctan"),
    "tether.SpikingSelfAttention": (
        {"q_weight", "k_weight", "v_weight", "proj_weight", "proj_bias"}
        | {f"{p}_{n}" for p in "qkv" for n in ("decay", "threshold", "alpha")},
        ("q_v", "k_v", "v_v", "context"), "arctan",
    ),
    "rnnbuilder.LIF": (set(), ("m",), "spike_linear"),
    "rnnbuilder.NoReset": (set(), ("m",), "spike_linear"),
    "rnnbuilder.Cooldown": (set(), ("m",), "spike_linear"),
    "rnnbuilder.Adaptive": (set(), ("m", "r"), "spike_linear"),
    "rnnbuilder.Discontinuous": (set(), (), "spike_linear"),
    "qualia.IFSRL": ({"threshold"}, ("v",), "sigmoid"),
    "qualia.ATIF": ({"threshold"}, ("v",), "sigmoid"),
    "hxtorch.cuba_lif": ({"leak", "reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i"), "superspike"),
    "hxtorch.cuba_refractory_lif": (
        {"leak", "reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i", "r"), "superspike"),
    "hxtorch.cuba_li": ({"leak", "tau_syn", "tau_mem"}, ("v", "i"), None),
    "hxtorch.cuba_iaf": ({"reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i"), "superspike"),
    "hxtorch.cuba_refractory_iaf": ({"reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i", "r"), "superspike"),
}

# Seed defaults, SPEC.md section 8.
DEFAULTS = {
    "tether.LIF": {"decay": 0.9, "threshold": 1.0, "alpha": 2.0},
    "tether.ALIF": {"decay_v": 0.9, "decay_a": 0.9, "threshold": 1.0, "beta": 0.5, "alpha": 2.0},
    "rnnbuilder.Adaptive": {"tau": 5.0, "tau_thr": 5.0, "gamma": 0.25, "gradient_factor": 0.3},
    "qualia.IFSRL": {"threshold": 1.0, "alpha": 1.0},
    "hxtorch.cuba_refractory_lif": {"leak": 0.0, "reset": 0.0, "threshold": 1.0, "tau_syn": 1e-5,
                                    "tau_mem": 1e-5, "alpha": 50.0, "refractory_time": 1e-6, "dt": 1e-6},
}


@pytest.mark.parametrize("key", sorted(SECTION_8))
def test_rows_match_section_8(key):
    trainable, state, default_surrogate = SECTION_8[key]
    row = registry.MODELS[key]
    assert set(row.trainable) == trainable
    assert row.state_names == state
    assert row.default_surrogate == default_surrogate


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_seed_defaults(key):
    row = registry.MODELS[key]
    assert {p.name: p.default for p in row.params} == DEFAULTS[key]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="tether.LIF"):
        registry.model("tether.lif")
    with pytest.raises(ValueError, match="superspike"):
        registry.surrogate("super_spike")


@pytest.mark.parametrize("kind,name,nearest", [
    ("model", "tether.lif", "tether.LIF"),  # case
    ("model", "tether.LFI", "tether.LIF"),  # two letters swapped
    ("surrogate", "super_spike", "superspike"),
])
def test_an_unknown_name_near_a_valid_one_is_suggested(kind, name, nearest):
    with pytest.raises(ValueError, match=re.escape(f"(did you mean {nearest!r}?)")):
        getattr(registry, kind)(name)


def test_an_unknown_name_near_none_lists_the_valid_ones_only():
    with pytest.raises(ValueError, match=re.escape(f"; expected one of: {', '.join(registry.MODELS)}") + "$"):
        registry.model("izhikevich")


def test_registry_and_spec_do_not_import_torch():
    code = (
        "import sys, snnref.registry, snnref.spec, snnref.checks, snnref.tolerance\n"
        "import snnref.spec.api as api\n"
        "for row in snnref.registry.MODELS.values(): api._family(row)\n"
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_subpackages_are_attributes_imported_on_first_use():
    """``import snnref`` then ``snnref.nn.LIF``, as the README names them: an
    AttributeError before (only ``import snnref.nn`` made the attribute)."""
    code = (
        "import sys, snnref\n"
        "assert snnref.spec.simulate and snnref.registry.MODELS\n"
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert snnref.nn.PLIF and snnref.compat.tether.lif and snnref.compat.hxtorch.cuba_lif_integration\n"
        "assert snnref.testing.assert_conforms and snnref.testing.adapters and snnref.continuous.simulate\n"
        "for name in ('nosuch', '_private', '__wrapped__', 'a.b'):\n"
        "    for package in (snnref, snnref.compat, snnref.testing):\n"
        "        assert not hasattr(package, name), (package, name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dir_lists_what_the_attributes_serve_and_imports_nothing():
    """Found by an outside user: ``dir(snnref)`` named neither ``simulate`` nor
    ``nn``, so tab completion and ``help(snnref)`` could not find the API."""
    code = (
        "import sys, snnref\n"
        "import snnref.compat, snnref.testing\n"
        "names = dir(snnref)\n"
        "assert {'simulate', 'spec', 'nn', 'compat', 'testing', 'continuous', 'nir', 'registry'} <= set(names), names\n"
        "assert {'tether', 'rnnbuilder', 'qualia', 'hxtorch'} <= set(dir(snnref.compat))\n"
        "assert {'assert_conforms', 'Implementation', 'gate', 'adapters', 'strategies'} <= set(dir(snnref.testing))\n"
        "bad = [m for m in ('torch', 'hypothesis', 'snnref.nn', 'snnref.testing.gate') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_install_as_snnref_kernels_only():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # (snnref.goldens maps the golden store onto golden/: package data, no code.)
    assert config["package-dir"] == {"snnref.kernels": "kernels", "snnref.goldens": "golden"}
    assert "kernels" not in config["packages"] and "snnref.kernels" in config["packages"]
    importlib.import_module("snnref.kernels")


def test_every_package_is_in_the_explicit_list():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "snnref").rglob("__init__.py")}
    found |= {".".join(("snnref",) + p.parent.relative_to(ROOT).parts) for p in (ROOT / "kernels").rglob("__init__.py")}
    assert found | {"snnref.goldens"} == set(config["packages"])


# ---- The typed registry (issue 8, item 2) ----

def test_rows_are_keyword_only():
    row = registry.MODELS["tether.LIF"]
    with pytest.raises(TypeError):
        registry.Model(row.key, row.family, row.doc, row.params, row.state, row.out, row.surrogates)
    with pytest.raises(TypeError):
        registry.Param("decay", 0.9, True)
    with pytest.raises(TypeError):
        registry.Reset(registry.ResetKind.SUBTRACT, True)
    with pytest.raises(TypeError):
        registry.Surrogate("arctan", "alpha", True, 0, 0, "")


def test_rows_refuse_untyped_values():
    row = registry.MODELS["tether.LIF"]
    fields = dict(key="x.Y", family="lif", doc="", params=row.params, state=row.state, surrogates=("arctan",))
    with pytest.raises(TypeError, match="out must be a registry.Output"):
        registry.Model(**fields, out="spikes")
    with pytest.raises(TypeError, match="reset must be a registry.Reset"):
        registry.Model(**fields, out=registry.Output.SPIKES, reset="zero")
    with pytest.raises(TypeError, match="options must be a registry.Options"):
        registry.Model(**fields, out=registry.Output.SPIKES, options={"leak": "decay"})
    with pytest.raises(ValueError, match="'bias', which is not a parameter"):
        registry.Model(**fields, out=registry.Output.SPIKES,
                       reset=registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=True, to="bias"))
    with pytest.raises(ValueError, match="no reset spike to detach"):
        registry.Reset(kind=registry.ResetKind.NONE, detached=True)


# Found by an outside contributor: each typo was taken, and silently changed what every suite
# checks (they read the same row): domain "postive" dropped alpha's positivity check, spike_test
# "> " ran as ">=", a bare string of surrogates was read letter by letter.
@pytest.mark.parametrize("change,error,match", [
    (dict(domain="postive"), ValueError, r"^Param 'alpha': domain must be one of 'real', 'positive', 'nonnegative', "
                                         r"got 'postive'$"),
    (dict(shape="per-neuron"), ValueError, r"^Param 'alpha': shape must be one of .*, got 'per-neuron'$"),
    (dict(sample=(2.0, 0.5)), ValueError, r"^Param 'alpha': sample must be \(low, high\), two finite numbers with "
                                          r"low <= high, got \(2.0, 0.5\)$"),
    (dict(sample=(0.0, math.inf)), ValueError, r"^Param 'alpha': sample must be"),
])
def test_a_parameter_row_with_a_typo_is_refused_by_field(change, error, match):
    alpha = registry.MODELS["tether.LIF"].param("alpha")
    with pytest.raises(error, match=match):
        dataclasses.replace(alpha, **change)


@pytest.mark.parametrize("change,error,match", [
    (dict(spike_test="> "), ValueError, r"^Model 'tether.LIF': spike_test must be one of '>=', '>', None, got '> '$"),
    (dict(surrogates="arctan"), TypeError, r"^Model 'tether.LIF': surrogates must be a tuple of surrogate keys, "
                                           r"got 'arctan'$"),
    (dict(surrogates=()), ValueError, r"^Model 'tether.LIF': a model that spikes \(spike_test '>='\) names its "
                                      r"surrogates"),
    (dict(state=(registry.StateVar(name="v", initial="nope", recorded="pre-reset"),)), ValueError,
     r"^Model 'tether.LIF': state 'v' starts at 'nope', which is not a parameter$"),
    (dict(params=registry.MODELS["tether.LIF"].params * 2), ValueError,
     r"^Model 'tether.LIF': a parameter name appears twice"),
])
def test_a_model_row_with_a_typo_is_refused_by_field(change, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(registry.MODELS["tether.LIF"], **change)
    with pytest.raises(ValueError, match=r"^StateVar 'v': sample must be"):
        registry.StateVar(name="v", initial=0.0, recorded="pre-reset", sample=(1.0, -1.0))
    with pytest.raises(TypeError, match=r"^StateVar 'v': initial must be a number or a parameter's name, got True$"):
        registry.StateVar(name="v", initial=True, recorded="pre-reset")


def test_a_fixed_parameter_says_why():
    with pytest.raises(ValueError, match="fixed_because"):
        registry.Param(name="dt", default=1.0, trainable=False, differentiable=False)
    with pytest.raises(ValueError, match="fixed_because"):
        registry.Param(name="dt", default=1.0, trainable=False, fixed_because="a reason")
    with pytest.raises(ValueError, match="trainable parameter must be differentiable"):
        registry.Param(name="dt", default=1.0, trainable=True, differentiable=False, fixed_because="a reason")


# Old string spellings of each row's reset, output and options (the registry
# before it was typed, SPEC.md section 8), written out by hand.
RESETS = {
    "tether.LIF": "zero", "tether.PLIF": "zero", "tether.ALIF": "zero", "tether.SpikingSelfAttention": "zero",
    "rnnbuilder.LIF": "subtract", "rnnbuilder.NoReset": None, "rnnbuilder.Cooldown": None,
    "rnnbuilder.Adaptive": "subtract", "rnnbuilder.Discontinuous": None, "qualia.IFSRL": "subtract",
    "qualia.ATIF": "subtract", "hxtorch.cuba_lif": "to_reset", "hxtorch.cuba_refractory_lif": "to_reset",
    "hxtorch.cuba_li": None, "hxtorch.cuba_iaf": "to_reset", "hxtorch.cuba_refractory_iaf": "to_reset",
}
TYPED_RESETS = {
    None: registry.Reset(kind=registry.ResetKind.NONE, detached=False),
    "zero": registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=True, to=0.0),
    "subtract": registry.Reset(kind=registry.ResetKind.SUBTRACT, detached=False),
    "to_reset": registry.Reset(kind=registry.ResetKind.TO_VALUE, detached=True, to="reset"),
}
OUTPUTS = {"qualia.ATIF": "spikes*threshold", "hxtorch.cuba_li": "membrane",
           "tether.SpikingSelfAttention": "projection"}
LIF_OPTIONS = {"tether.LIF": ("decay", "pre"), "tether.PLIF": ("decay", "pre"), "rnnbuilder.LIF": ("tau", "post"),
               "rnnbuilder.NoReset": ("tau", "post"), "qualia.IFSRL": ("none", "post"),
               "qualia.ATIF": ("none", "post")}


# Over the rows that had strings (a row added since is typed from the start: no entry needed here).
@pytest.mark.parametrize("key", sorted(RESETS))
def test_typed_rows_say_what_the_strings_said(key):
    row = registry.MODELS[key]
    assert row.reset == TYPED_RESETS[RESETS[key]]
    assert row.out == registry.Output(OUTPUTS.get(key, "spikes"))
    assert row.out.spiking == (key not in ("hxtorch.cuba_li", "tether.SpikingSelfAttention"))
    if row.family == "lif":
        assert (row.options.leak.value, row.options.record.value) == LIF_OPTIONS[key]
    elif row.family == "cuba":
        assert row.options == registry.CubaOptions(leak="iaf" not in key, spiking=key != "hxtorch.cuba_li")
    elif row.family == "attention":
        assert row.options.scale_params == ("q_alpha", "k_alpha", "v_alpha")
    else:
        assert row.options == registry.Options()


def test_soft_reset_detached_is_expressible():
    reset = registry.Reset(kind=registry.ResetKind.SUBTRACT, detached=True)
    assert reset.detached and reset.kind is registry.ResetKind.SUBTRACT and reset != registry.SOFT_RESET


# The fixed compile-time ids of the kernels' surrogate branches.
KERNEL_IDS = {"arctan": 0, "sigmoid": 1, "fast_sigmoid": 2, "superspike": 3, "spike_linear": 4}


def test_surrogate_kernel_ids_are_fixed_in_the_rows():
    assert {key: row.kernel_id for key, row in registry.SURROGATES.items()} == KERNEL_IDS


def test_kernels_read_the_rows_kernel_id(monkeypatch):
    """Both kernel packages take the id from the row, not from a position: a row
    whose id changes changes the id the kernels compile."""
    from snnref.kernels.cpu import surrogates as cpu_surrogates

    assert cpu_surrogates.KINDS == KERNEL_IDS
    assert cpu_surrogates.TRAINABLE_SCALE == {0, 1, 2}
    triton_surrogates = pytest.importorskip("snnref.kernels.surrogates")
    moved = dataclasses.replace(registry.SURROGATES["sigmoid"], kernel_id=7)
    monkeypatch.setitem(registry.SURROGATES, "sigmoid", moved)
    assert triton_surrogates.kind_id("sigmoid") == 7
    assert triton_surrogates.kind_id("arctan") == 0


# registry.detached_keys, written out by hand: (model, observed) -> keys.
DETACHED_KEYS = {
    ("tether.LIF", ()): {"reset_spike"},
    ("tether.ALIF", ()): {"reset_spike"},
    ("tether.SpikingSelfAttention", ()): {"q_reset_spike", "k_reset_spike", "v_reset_spike"},
    ("rnnbuilder.LIF", ()): set(),
    ("qualia.IFSRL", ()): set(),
    ("hxtorch.cuba_lif", ()): {"reset_spike"},
    ("hxtorch.cuba_lif", ("spikes",)): {"reset_spike", "inject_spikes"},
    ("hxtorch.cuba_lif", ("v",)): {"inject_v"},
    ("hxtorch.cuba_lif", ("spikes", "v")): {"inject_v", "inject_spikes"},
    ("hxtorch.cuba_li", ()): set(),
    ("hxtorch.cuba_li", ("v",)): {"inject_v"},
    ("hxtorch.cuba_refractory_iaf", ()): {"reset_spike", "refractory_mask", "refractory_carry"},
    ("hxtorch.cuba_refractory_iaf", ("v",)): {"refractory_mask", "refractory_carry", "inject_v",
                                             "inject_v_refractory"},
    ("hxtorch.cuba_refractory_lif", ("spikes", "v")): {
        "refractory_mask", "refractory_carry", "inject_v", "inject_v_refractory", "inject_spikes",
        "inject_spikes_refractory"},
}


@pytest.mark.parametrize("key,observed", sorted(DETACHED_KEYS))
def test_detached_keys(key, observed):
    assert set(registry.detached_keys(registry.MODELS[key], observed)) == DETACHED_KEYS[key, observed]


def _observed_subsets(row):
    return [names for size in range(len(row.inject) + 1) for names in itertools.combinations(row.inject, size)]


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_layer_records_the_registrys_detached_keys(key):
    """The reference, the torch path and the fused CPU scans all record exactly
    ``registry.detached_keys`` (the rule lives there only), for every observation set."""
    import numpy as np
    import torch

    from snnref import backend, checks, spec

    row = registry.MODELS[key]
    case = checks.random_case(key, np.random.default_rng(3), steps=3, inject=bool(row.inject))
    for observed in _observed_subsets(row):
        inject = {name: case.inject[name] for name in observed} if observed else None
        expected = set(registry.detached_keys(row, observed))
        trace = spec.simulate(key, case.x, case.params, case.state, inject=inject)
        assert set(trace.detached) == expected, ("spec", observed)
        tensors = {k: torch.tensor(v) for k, v in case.params.items()}
        state = {k: torch.tensor(v) for k, v in case.state.items()}
        observations = {k: torch.tensor(v) for k, v in inject.items()} if inject else None
        for name in ("torch", "cpu"):
            run = backend.simulate(key, torch.tensor(case.x), tensors, state, backend=name, inject=observations)
            assert set(run.detached) == expected, (name, observed)


# ---- Every gradient a caller can get is verified (issue 8, item 6) ----

# Non-trainable parameters, decided one by one: differentiable (the spec's vjp
# reports the gradient, the checks compare it) or refused (no gradient exists).
NOT_TRAINED = {
    "rnnbuilder.LIF": {"tau": True, "gradient_factor": False},
    "rnnbuilder.NoReset": {"tau": True, "gradient_factor": False},
    "rnnbuilder.Cooldown": {"tau": True, "gradient_factor": False},
    "rnnbuilder.Adaptive": {"tau": True, "tau_thr": True, "gamma": True, "gradient_factor": False},
    "rnnbuilder.Discontinuous": {"threshold": True, "gradient_factor": False},
    "qualia.IFSRL": {"alpha": True},
    "qualia.ATIF": {"alpha": True},
    "hxtorch.cuba_lif": {"alpha": False, "dt": True},
    "hxtorch.cuba_refractory_lif": {"alpha": False, "refractory_time": True, "dt": True},
    "hxtorch.cuba_li": {"dt": True},
    "hxtorch.cuba_iaf": {"alpha": False, "dt": True},
    "hxtorch.cuba_refractory_iaf": {"alpha": False, "refractory_time": True, "dt": True},
}


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_parameter_is_decided(key):
    row = registry.MODELS[key]
    decided = {p.name: p.differentiable for p in row.params if not p.trainable}
    assert decided == NOT_TRAINED.get(key, {})
    assert set(row.differentiable) == set(row.trainable) | {n for n, d in decided.items() if d}


REFUSED = [(key, name) for key, names in sorted(NOT_TRAINED.items()) for name, d in names.items() if not d]


@pytest.mark.parametrize("backend_name", ["torch", "cpu"])
@pytest.mark.parametrize("key,name", REFUSED)
def test_a_parameter_without_gradient_refuses_requires_grad(key, name, backend_name):
    import torch

    from snnref import backend

    row = registry.MODELS[key]
    value = torch.tensor(row.param(name).default, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(2, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"params\['{name}'\]: requires_grad=True, but {key} has no gradient"):
        backend.simulate(key, x, {name: value}, backend=backend_name)
    # The same value without requires_grad runs.
    backend.simulate(key, x, {name: value.detach()}, backend=backend_name)
